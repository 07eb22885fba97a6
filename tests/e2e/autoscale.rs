//! Autoscaling on the real engine: services that burn CPU or hold memory when told to (a
//! file on a shared volume) scale out step by step, stop at their maximum, and come back
//! to their minimum when the load goes; bounds are enforced on `berth scale`.

use super::harness::*;
use std::time::{Duration, Instant};

/// Each instance loops: burns CPU while /ctl/burn exists, holds 48 MiB in /dev/shm (charged
/// to its memory cgroup) while /ctl/mem exists. A tenth of a core each: four burning fit on a
/// busy 2-CPU host (the suite runs beside), so each gets its whole limit.
const TEMPLATE: &str = r#"
services:
  cpu:
    image: berth-test/busybox
    command: ["sh", "-c", "while true; do if [ -f /ctl/burn ]; then i=0; while [ $$i -lt 20000 ]; do i=$$((i+1)); done; else sleep 0.3; fi; done"]
    cpus: 0.1
    volumes: ["ctl:/ctl"]
    labels:
      aliyun.auto_scaling.min_instances: "1"
      aliyun.auto_scaling.max_instances: "4"
      aliyun.auto_scaling.max_cpu: "70"
      aliyun.auto_scaling.min_cpu: "20"
      aliyun.auto_scaling.period_seconds: "5"
      aliyun.auto_scaling.periods: "2"
      aliyun.auto_scaling.cooldown_seconds: "12"
  mem:
    image: berth-test/busybox
    command: ["sh", "-c", "while true; do if [ -f /ctl/mem ]; then [ -f /dev/shm/x ] || dd if=/dev/zero of=/dev/shm/x bs=1M count=48 2>/dev/null; else rm -f /dev/shm/x; fi; sleep 0.3; done"]
    mem_limit: 64m
    volumes: ["ctl:/ctl"]
    labels:
      aliyun.auto_scaling.min_instances: "1"
      aliyun.auto_scaling.max_instances: "3"
      aliyun.auto_scaling.max_memory: "70"
      aliyun.auto_scaling.min_memory: "30"
      aliyun.auto_scaling.step: "2"
      aliyun.auto_scaling.period_seconds: "5"
      aliyun.auto_scaling.periods: "2"
      aliyun.auto_scaling.cooldown_seconds: "12"
volumes:
  ctl: {}
"#;

fn count(a: &Agent, service: &str) -> usize {
    a.running("auto")
        .iter()
        .filter(|i| i.service == service)
        .count()
}

/// The autoscale events of a service, oldest first, with their times (ms).
fn decisions(a: &Agent, service: &str) -> Vec<(i64, String)> {
    let out = a.ok(&["events", "auto", "-n", "200", "--json"]);
    let mut v: Vec<(i64, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<berth::wire::Event>(l).ok())
        .filter(|e| e.kind == "autoscale" && e.service == service)
        .map(|e| (e.time_ms, e.message))
        .collect();
    v.sort();
    v
}

#[test]
fn cpu_and_memory_scale_out_step_by_step_stop_at_max_and_come_back() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    a.deploy("auto", TEMPLATE);
    a.wait_running("auto", 2, Duration::from_secs(60));
    // Listed with their bounds.
    let apps = a.ok(&["apps"]);
    assert!(apps.contains("cpu 1 (auto 1..4)"), "{apps}");
    assert!(a.ok(&["ps", "auto"]).contains("mem 1 (auto 1..3)"));
    // Bounds: a manual scale outside them is refused and changes nothing; inside, kept.
    let e = a.fails(&["scale", "auto", "cpu=6"]);
    assert!(e.contains("between 1 and 4"), "{e}");
    let e = a.fails(&["scale", "auto", "mem=0"]);
    assert!(e.contains("between 1 and 3"), "{e}");
    assert_eq!(count(&a, "cpu"), 1);
    // Inside them: kept until the next decision, which brings an idle service back in.
    a.ok(&["scale", "auto", "cpu=2"]);
    assert_eq!(count(&a, "cpu"), 2);
    wait_until(
        "the manual count scaled back in",
        Duration::from_secs(60),
        || count(&a, "cpu") == 1,
    );
    let cpu = decisions(&a, "cpu");
    assert!(
        cpu.iter()
            .any(|(_, m)| m.contains("2 -> 1") && m.contains("cpu below 20%")),
        "{cpu:?}"
    );

    // Load: every instance burns its CPU limit and holds 75% of its memory.
    a.docker_ok(&["exec", "auto_cpu_1", "touch", "/ctl/burn", "/ctl/mem"]);
    let t = Instant::now();
    wait_until("cpu scaled out to 4", Duration::from_secs(180), || {
        count(&a, "cpu") == 4
    });
    wait_until("mem scaled out to 3", Duration::from_secs(120), || {
        count(&a, "mem") == 3
    });
    eprintln!("out in {:?}", t.elapsed());
    // Step by step (1 at a time for cpu), with the cool-down between decisions.
    let cpu = decisions(&a, "cpu");
    let tos: Vec<bool> = ["1 -> 2", "2 -> 3", "3 -> 4"]
        .iter()
        .map(|s| cpu.iter().any(|(_, m)| m.contains(s)))
        .collect();
    assert_eq!(tos, [true, true, true], "{cpu:?}");
    let outs: Vec<&(i64, String)> = cpu.iter().filter(|(_, m)| m.contains("above")).collect();
    for w in outs.windows(2) {
        // The events' times are when they were written, a few ms after the decision.
        assert!(
            w[1].0 - w[0].0 >= 11_500,
            "decisions closer than the cool-down: {cpu:?}"
        );
    }
    assert!(outs[0].1.contains("cpu above 70%"), "{cpu:?}");
    // mem: by step 2, capped at the maximum 3.
    let mem = decisions(&a, "mem");
    assert!(
        mem[0].1.contains("memory above 70%") && mem[0].1.contains("1 -> 3"),
        "{mem:?}"
    );
    // At the maximum it stays, and says why.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(count(&a, "cpu"), 4);
    let shown = a.ok(&["autoscale", "auto/cpu"]);
    assert!(shown.contains("maximum 4"), "{shown}");
    assert!(
        shown.contains("PERIOD") && shown.contains("1 -> 2"),
        "{shown}"
    );

    // The load goes: back to the minimum, one at a time.
    a.docker_ok(&["exec", "auto_cpu_1", "rm", "/ctl/burn", "/ctl/mem"]);
    wait_until("cpu back to 1", Duration::from_secs(240), || {
        count(&a, "cpu") == 1
    });
    wait_until("mem back to 1", Duration::from_secs(120), || {
        count(&a, "mem") == 1
    });
    let cpu = decisions(&a, "cpu");
    for s in ["4 -> 3", "3 -> 2", "2 -> 1"] {
        assert!(
            cpu.iter()
                .any(|(_, m)| m.contains(s) && m.contains("cpu below 20%")),
            "{s}: {cpu:?}"
        );
    }
    // Never under the minimum.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(count(&a, "cpu"), 1);
    assert_eq!(count(&a, "mem"), 1);
}

fn zero_template(tcp_port: u16) -> String {
    format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: sh -c 'echo hello from zero > /www/index.html; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    labels:
      berth.probe.url: http://container:8080/index.html
      berth.routing.port_8080: zero.example.com
      berth.lb.port_8080: tcp://:{tcp_port}
      berth.auto_scaling.min_instances: "0"
      berth.auto_scaling.max_instances: "2"
      berth.auto_scaling.idle_seconds: "10"
  broken:
    image: {IMAGE}
    command: ["/no/such/program"]
    labels:
      berth.scale: "0"
      berth.routing.port_8080: broken.example.com
      berth.auto_scaling.min_instances: "0"
      berth.auto_scaling.cold_start_timeout: "4"
"#
    )
}

fn wait_zero(a: &Agent) {
    wait_until("web scaled to zero", Duration::from_secs(60), || {
        count_of(a, "zero", "web") == 0
    });
}

fn count_of(a: &Agent, app: &str, service: &str) -> usize {
    a.ps(app)
        .iter()
        .filter(|i| i.service == service && i.state == "running")
        .count()
}

#[test]
fn an_idle_service_goes_to_zero_and_the_next_requests_start_it_even_after_a_crash() {
    let (http_port, tcp_port) = (free_port(), free_port());
    let mut a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"1s\"\n[router]\nhttp = \"127.0.0.1:{http_port}\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    a.deploy("zero", &zero_template(tcp_port));
    let (status, body, _) = router_get(http_port, "zero.example.com", "/", None);
    assert_eq!((status, body.trim()), (200, "hello from zero"));

    // Idle: to zero, and an event says why.
    wait_zero(&a);
    let events = a.ok(&["events", "zero", "-n", "50"]);
    assert!(
        events.contains("scaled zero/web to zero: no request"),
        "{events}"
    );
    assert_eq!(
        a.ps("zero").iter().filter(|i| i.service == "web").count(),
        0,
        "its containers are gone"
    );

    // 20 requests at once: all answered, through one cold start.
    let t = Instant::now();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    let (st, b, _) = router_get(http_port, "zero.example.com", "/", None);
                    (st, b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    eprintln!("cold start for 20 requests: {:?}", t.elapsed());
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 200 && b.contains("hello from zero")),
        "{answers:?}"
    );
    assert_eq!(count_of(&a, "zero", "web"), 1, "one instance started");
    let events = a.ok(&["events", "zero", "-n", "50"]);
    assert!(
        events.contains("cold start of zero/web: a request came"),
        "{events}"
    );
    assert!(
        events.contains("cold start of zero/web: the first request went through after"),
        "{events}"
    );

    // A TCP connection starts it too.
    wait_zero(&a);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).expect("tcp router port");
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    use std::io::{Read, Write};
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.contains("hello from zero"), "{out}");

    // A service that cannot start: 503 with Retry-After after its timeout; the agent is fine.
    let t = Instant::now();
    let r = http_agent()
        .get(format!("http://127.0.0.1:{http_port}/"))
        .header("Host", "broken.example.com")
        .call()
        .expect("router answers");
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert!(a.ok(&["apps"]).contains("zero"));

    // kill -9 while at zero: still at zero after the restart, and still starts on a request.
    wait_zero(&a);
    a.kill9();
    a.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count_of(&a, "zero", "web"), 0, "at zero after the restart");
    let (status, body, _) = router_get(http_port, "zero.example.com", "/", None);
    assert_eq!((status, body.trim()), (200, "hello from zero"));
}

/// Two versions splitting the traffic 50/50: the service scales out on their average, each
/// version runs the new count, and the split stays as it was set.
#[test]
fn autoscaling_during_a_fifty_fifty_split_keeps_the_split() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    let template = |v: u32| {
        format!(
            r#"
services:
  web:
    image: berth-test/busybox
    command: ["sh", "-c", "while true; do if [ -f /ctl/burn ]; then i=0; while [ $$i -lt 20000 ]; do i=$$((i+1)); done; else sleep 0.3; fi; done"]
    environment: ["RELEASE={v}"]
    cpus: 0.1
    stop_grace_period: 1s
    volumes: ["ctl:/ctl"]
    labels:
      aliyun.auto_scaling.min_instances: "1"
      aliyun.auto_scaling.max_instances: "2"
      aliyun.auto_scaling.max_cpu: "70"
      aliyun.auto_scaling.period_seconds: "5"
      aliyun.auto_scaling.periods: "2"
volumes:
  ctl: {{}}
"#
        )
    };
    a.deploy("split", &template(1));
    let p = a.template("split", &template(2));
    a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "split",
        "--traffic",
        "none",
        "--timeout",
        "60",
    ]);
    a.ok(&["traffic", "split/web", "002=50", "001=50"]);
    a.wait_running("split", 2, Duration::from_secs(60));
    a.docker_ok(&["exec", "split_web_1", "touch", "/ctl/burn"]);
    wait_until(
        "both versions at 2 instances",
        Duration::from_secs(120),
        || a.running("split").len() == 4,
    );
    let by_version = |v: &str| a.running("split").iter().filter(|i| i.version == v).count();
    assert_eq!((by_version("web-001"), by_version("web-002")), (2, 2));
    let versions: Vec<berth::wire::VersionView> =
        serde_json::from_str(&a.ok(&["versions", "split/web", "--json"])).expect("json");
    let weights: Vec<(String, u32)> = versions
        .iter()
        .filter(|v| v.weight > 0)
        .map(|v| (v.name.clone(), v.weight))
        .collect();
    assert_eq!(
        weights,
        [("web-001".to_string(), 50), ("web-002".to_string(), 50)],
        "{versions:?}"
    );
    a.docker_ok(&["exec", "split_web_1", "rm", "/ctl/burn"]);
}

/// A rolling update of a service the autoscaler scaled out replaces the instances it runs
/// now (not the template's count), and the count stays within the bounds.
#[test]
fn a_rolling_update_keeps_the_autoscaled_count() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    let template = |v: u32| {
        format!(
            r#"
services:
  web:
    image: berth-test/busybox
    command: ["sh", "-c", "while true; do if [ -f /ctl/burn ]; then i=0; while [ $$i -lt 20000 ]; do i=$$((i+1)); done; else sleep 0.3; fi; done"]
    environment: ["RELEASE={v}"]
    cpus: 0.1
    stop_grace_period: 1s
    volumes: ["ctl:/ctl"]
    labels:
      berth.rolling_updates: "true"
      aliyun.auto_scaling.min_instances: "1"
      aliyun.auto_scaling.max_instances: "2"
      aliyun.auto_scaling.max_cpu: "70"
      aliyun.auto_scaling.period_seconds: "5"
      aliyun.auto_scaling.periods: "2"
volumes:
  ctl: {{}}
"#
        )
    };
    a.deploy("roll", &template(1));
    a.docker_ok(&["exec", "roll_web_1", "touch", "/ctl/burn"]);
    wait_until("scaled out to 2", Duration::from_secs(90), || {
        a.running("roll").len() == 2
    });
    a.deploy("roll", &template(2));
    wait_until(
        "web-002 runs both instances",
        Duration::from_secs(120),
        || {
            let r = a.running("roll");
            r.len() == 2
                && r.iter()
                    .all(|i| i.version == "web-002" && i.name == format!("roll_web_{}", i.slot))
        },
    );
    let apps = a.ok(&["apps"]);
    assert!(apps.contains("web 2 (auto 1..2)"), "{apps}");
    let _ = a.docker_ok(&["exec", "roll_web_1", "rm", "-f", "/ctl/burn"]);
}
