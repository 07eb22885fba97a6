use crate::harness::*;
use std::time::Duration;

fn health_of(a: &Agent, app: &str, slot: u32) -> (String, String) {
    a.ps(app)
        .into_iter()
        .find(|i| i.slot == slot && i.state == "running")
        .map(|i| (i.container_id, i.health))
        .unwrap_or_default()
}

fn wait_health(a: &Agent, app: &str, want: &str, secs: u64) -> String {
    let mut id = String::new();
    wait_until(
        &format!("{app} slot 1 {want}"),
        Duration::from_secs(secs),
        || {
            let (i, h) = health_of(a, app, 1);
            id = i;
            h == want
        },
    );
    id
}

/// An http probe turns healthy; the page removed, it turns unhealthy, stays so, and the
/// instance is replaced by a healthy one.
#[test]
fn http_probe_flips_and_unhealthy_instance_is_replaced() {
    let a = Agent::start();
    a.deploy(
        "hp",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    labels:\n      berth.probe.url: http://container:8080/index.html\n      berth.probe.timeout_seconds: \"1\"\n"
        ),
    );
    let first = wait_health(&a, "hp", "healthy", 20);
    docker_ok(&["exec", "hp_web_1", "rm", "/www/index.html"]);
    wait_health(&a, "hp", "unhealthy", 20);
    let ps = a.ok(&["ps", "hp"]);
    assert!(ps.contains("unhealthy"), "{ps}");
    // Replaced after staying unhealthy; the fresh container has the page again.
    let second = wait_health(&a, "hp", "healthy", 60);
    assert_ne!(first, second, "the unhealthy instance must be replaced");
    let ev = a.ok(&["events", "hp", "-n", "100"]);
    for needle in [
        "hp_web_1 is healthy",
        "is unhealthy: http://",
        "answered 404",
        "replacing it",
        "removed hp_web_1 (unhealthy)",
    ] {
        assert!(ev.contains(needle), "{needle:?} not in events:\n{ev}");
    }
}

/// A tcp probe fails once the listener is killed; a cmd probe once its check starts failing.
#[test]
fn tcp_and_cmd_probes_flip() {
    let a = Agent::start();
    a.deploy(
        "tp",
        &format!(
            "services:\n  tcp:\n    image: {IMAGE}\n    command: sh -c 'httpd -p 9000 -h /www; exec sleep 3600'\n    stop_grace_period: 1s\n    labels:\n      berth.probe.url: tcp://container:9000\n  cmd:\n    image: {IMAGE}\n    command: sh -c 'touch /tmp/ok; exec sleep 3600'\n    stop_grace_period: 1s\n    labels:\n      berth.probe.cmd: test -f /tmp/ok\n"
        ),
    );
    let healthy = |svc: &str| {
        a.ps("tp")
            .into_iter()
            .find(|i| i.service == svc)
            .map(|i| i.health)
            .unwrap_or_default()
    };
    wait_until("both healthy", Duration::from_secs(20), || {
        healthy("tcp") == "healthy" && healthy("cmd") == "healthy"
    });
    docker_ok(&["exec", "tp_tcp_1", "killall", "httpd"]);
    docker_ok(&["exec", "tp_cmd_1", "rm", "/tmp/ok"]);
    wait_until("both unhealthy", Duration::from_secs(20), || {
        matches!(healthy("tcp").as_str(), "unhealthy" | "failed")
            && matches!(healthy("cmd").as_str(), "unhealthy" | "failed")
    });
    let ev = a.ok(&["events", "tp", "-n", "100"]);
    assert!(ev.contains("tp_tcp_1 is unhealthy: tcp "), "{ev}");
    assert!(
        ev.contains("tp_cmd_1 is unhealthy: `test -f /tmp/ok` exited with 1"),
        "{ev}"
    );
}

/// `depends` waits for the dependency to be healthy, not only running.
#[test]
fn depends_waits_for_health() {
    let a = Agent::start();
    a.deploy(
        "dh",
        &format!(
            "services:\n  db:\n    image: {IMAGE}\n    command: sh -c 'sleep 3; touch /tmp/ready; exec sleep 3600'\n    stop_grace_period: 1s\n    labels:\n      berth.probe.cmd: test -f /tmp/ready\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    labels:\n      berth.depends: db\n"
        ),
    );
    let ev = a.ok(&["events", "dh", "-n", "100"]);
    let pos = |s: &str| {
        ev.find(s)
            .unwrap_or_else(|| panic!("{s} not in events:\n{ev}"))
    };
    assert!(pos("dh_db_1 is healthy") < pos("created dh_web_1"), "{ev}");
}
