use crate::harness::*;
use std::time::Duration;

/// kill -9 in the middle of a deploy of 5 replicas, restart: the agent finishes the deploy,
/// with no duplicate and no orphan; foreign containers are never touched.
#[test]
fn kill9_mid_deploy_then_restart_converges_without_duplicates() {
    let mut a = Agent::start();
    // Containers berth must leave alone: one with another node's id, one without labels.
    let foreign = format!("foreign_{}", a.node_id);
    let plain = format!("plain_{}", a.node_id);
    let _cleanup = Containers(vec![foreign.clone(), plain.clone()]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &foreign,
        "--label",
        "berth.node=someone-else",
        "--label",
        "berth.app=crash",
        "--label",
        "berth.service=web",
        "--label",
        "berth.slot=9",
        IMAGE,
        "sleep",
        "3600",
    ]);
    docker_ok(&["run", "-d", "--name", &plain, IMAGE, "sleep", "3600"]);

    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"5\"\n"
    );
    // Kill at several points after the deploy is accepted, so some kills land before any
    // container exists, some between create and start, some mid-way through the five.
    let mut seen = Vec::new();
    for (n, delay_ms) in [0u64, 100, 120, 150, 250, 400, 700].into_iter().enumerate() {
        let app = format!("crash{n}");
        let p = a.template(&app, &yaml);
        a.ok(&["deploy", "-f", path_str(&p), "--name", &app, "--detach"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        a.kill9();
        let at_kill = a.engine_containers(&app);
        seen.push(format!("{delay_ms}ms: {at_kill:?}"));
        a.restart();
        a.wait_running(&app, 5, Duration::from_secs(60));
        let names: Vec<String> = a
            .engine_containers(&app)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let want: Vec<String> = (1..=5).map(|i| format!("{app}_web_{i}")).collect();
        assert_eq!(
            names, want,
            "after killing at {delay_ms}ms with {at_kill:?}"
        );
    }
    eprintln!("states at kill -9:\n{}", seen.join("\n"));

    // Restart again with everything running: nothing is recreated.
    let ids: Vec<String> = a
        .running("crash0")
        .into_iter()
        .map(|i| i.container_id)
        .collect();
    a.restart();
    std::thread::sleep(Duration::from_secs(2));
    let ids2: Vec<String> = a
        .running("crash0")
        .into_iter()
        .map(|i| i.container_id)
        .collect();
    assert_eq!(ids, ids2, "adopted, not recreated");
    for c in [&foreign, &plain] {
        assert_eq!(
            docker_ok(&["inspect", "-f", "{{.State.Status}}", c]),
            "running",
            "{c} was touched"
        );
        docker_ok(&["rm", "-f", c]);
    }
}

/// Desired state survives the agent: an app deployed, the agent killed, a container killed
/// while no agent runs, then the agent back: the container is replaced.
#[test]
fn state_survives_agent_restart() {
    let mut a = Agent::start();
    a.deploy("keep", &format!("services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"));
    a.kill9();
    docker_ok(&["kill", "keep_web_1"]);
    a.restart();
    wait_until("replaced after restart", Duration::from_secs(20), || {
        a.running("keep").len() == 1
    });
    assert!(a.ok(&["apps"]).contains("keep"));
}

/// Regression: while a container kept failing (its name held by a container berth does not
/// manage), every planned action was skipped for backoff, the loop re-planned at once forever
/// (a core busy) and never saw SIGTERM.
#[test]
fn failing_container_backs_off_and_sigterm_still_stops_the_agent() {
    let mut a = Agent::start();
    // Both names berth tries: the compose one, then the one with the version.
    let squatters = ["squat_web_1", "squat_web-001_1"];
    for squatter in squatters {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", squatter])
            .output();
        docker_ok(&["run", "-d", "--name", squatter, IMAGE, "sleep", "600"]);
    }
    let _cleanup = Containers(squatters.iter().map(|s| s.to_string()).collect());
    let p = a.template(
        "squat",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: sleep 600\n"),
    );
    a.ok(&["deploy", "-f", path_str(&p), "--name", "squat", "--detach"]);
    std::thread::sleep(Duration::from_secs(1));
    let before = a.cpu_seconds();
    std::thread::sleep(Duration::from_secs(3));
    let used = a.cpu_seconds() - before;
    let events = a.ok(&["events", "squat"]);
    assert!(
        events.contains("a container berth does not manage has that name"),
        "{events}"
    );
    assert!(
        used < 0.5,
        "agent used {used:.2} CPU seconds in 3 s while a container was failing"
    );
    let apps: Vec<berth::wire::AppStatus> =
        serde_json::from_str(&a.ok(&["apps", "--json"])).expect("json");
    let status = &apps[0];
    assert_eq!(status.state, berth::model::AppState::Failing);
    assert!(
        a.terminate(Duration::from_secs(10)),
        "agent did not exit on SIGTERM"
    );
}
