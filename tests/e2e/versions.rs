use crate::harness::*;
use berth::wire::VersionView;
use std::time::Duration;

fn tpl(cmd: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {cmd}\n    stop_grace_period: 1s\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
    )
}

fn versions(a: &Agent, target: &str) -> Vec<VersionView> {
    serde_json::from_str(&a.ok(&["versions", target, "--json"])).expect("versions json")
}

fn deploy_msg(a: &Agent, app: &str, yaml: &str, msg: &str) -> String {
    let p = a.template(app, yaml);
    a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        app,
        "-m",
        msg,
        "--timeout",
        "60",
    ])
}

/// Every deploy that changes a service makes `<service>-NNN`; numbers are never reused, even
/// after a delete; at most 10 are kept and an 11th deploy is refused and changes nothing.
#[test]
fn versions_number_label_delete_and_limit() {
    let a = Agent::start();
    let out = deploy_msg(&a, "ver", &tpl("sleep 1001"), "first cut");
    assert!(out.contains("web-001") && out.contains("db-001"), "{out}");
    let v = versions(&a, "ver/web");
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].name.as_str(), v[0].weight, v[0].message.as_str()),
        ("web-001", 100, "first cut")
    );
    wait_until("web-001 normal", Duration::from_secs(20), || {
        versions(&a, "ver/web")[0].state == "normal"
    });

    // Only web changes: web-002, db keeps db-001.
    let out = deploy_msg(&a, "ver", &tpl("sleep 1002"), "");
    assert!(out.contains("web-002") && !out.contains("db-002"), "{out}");
    let v = versions(&a, "ver/web");
    assert_eq!(
        v.iter()
            .map(|v| (v.name.as_str(), v.weight, v.state.as_str()))
            .collect::<Vec<_>>()[0],
        ("web-001", 0, "stopped")
    );
    assert_eq!(v[1].weight, 100);
    // web-002 started beside web-001 as ver_web-002_1; alone, it takes the compose name,
    // its version in a label.
    wait_until(
        "web-002 renamed to ver_web_1",
        Duration::from_secs(20),
        || {
            std::process::Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"berth.version\"}}",
                    "ver_web_1",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "web-002")
        },
    );
    let ev = a.ok(&["events", "ver"]);
    assert!(ev.contains("renamed ver_web-002_1 to ver_web_1"), "{ev}");
    let ps = a.ok(&["ps", "ver"]);
    assert!(ps.contains("web-002") && ps.contains("db-001"), "{ps}");

    // The version with traffic cannot go; an old one can, and its number is not reused.
    assert!(
        a.fails(&["version", "rm", "ver/web", "002"])
            .contains("has 100% of the traffic")
    );
    a.ok(&["version", "rm", "ver/web", "001"]);
    assert!(
        a.fails(&["version", "rm", "ver/web", "001"])
            .contains("has no version web-001")
    );
    let out = deploy_msg(&a, "ver", &tpl("sleep 1003"), "");
    assert!(out.contains("web-003"), "{out}");

    // Fill up to 10 (web-002 .. web-011), then the 11th is refused.
    for i in 4..=11 {
        let p = a.template("ver", &tpl(&format!("sleep {}", 1000 + i)));
        a.ok(&["deploy", "-f", path_str(&p), "--name", "ver", "--detach"]);
    }
    assert_eq!(versions(&a, "ver/web").len(), 10);
    let running_before = a.ok(&["inspect", "ver", "--json"]);
    let p = a.template("ver", &tpl("sleep 2000"));
    let err = a.fails(&["deploy", "-f", path_str(&p), "--name", "ver"]);
    assert!(
        err.contains("already has 10 versions")
            && err.contains("berth version rm ver/web")
            && err.contains("web-002"),
        "{err}"
    );
    assert_eq!(
        a.ok(&["inspect", "ver", "--json"]),
        running_before,
        "a refused deploy changes nothing"
    );
    assert!(
        a.fails(&[
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            "ver",
            "-m",
            &"x".repeat(51)
        ])
        .contains("at most 50")
    );
    assert!(
        a.fails(&["versions", "ver/nope"])
            .contains("no service \"nope\"")
    );
    assert!(a.fails(&["versions", "ver"]).contains("APP/SERVICE"));
}

/// A version whose instances never turn healthy is failed, with the probe's error as reason.
#[test]
fn never_healthy_version_fails_with_the_probe_error() {
    let a = Agent::start_with_config("[agent]\nversion_deadline = \"6s\"\n");
    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    labels:\n      berth.probe.url: http://container:8080/\n"
    );
    let p = a.template("sick", &yaml);
    a.ok(&["deploy", "-f", path_str(&p), "--name", "sick", "--detach"]);
    wait_until("web-001 failed", Duration::from_secs(30), || {
        versions(&a, "sick/web")[0].state == "failed"
    });
    let v = &versions(&a, "sick/web")[0];
    assert!(
        v.reason.contains("http://") && v.reason.contains("8080"),
        "{v:?}"
    );
    let table = a.ok(&["versions", "sick/web"]);
    assert!(table.contains("failed: http://"), "{table}");
    assert!(a.ok(&["events", "sick"]).contains("version web-001 failed"));
}
