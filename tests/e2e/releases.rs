//! Releases through the real router: traffic split, rollback, blue/green, rolling and
//! start-first updates under a continuous request loop, automatic rollback, draining.

use crate::harness::*;
use berth::wire::VersionView;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HOST: &str = "rel.example.com";
/// Labels for rolling updates two instances at a time.
const ROLLING: &str =
    "      berth.rolling_updates: \"true\"\n      berth.rolling_updates.parallelism: \"2\"\n";

fn router_agent() -> (Agent, u16) {
    let port = free_port();
    let a = Agent::start_with_config(&format!("[router]\nhttp = \"127.0.0.1:{port}\"\n"));
    (a, port)
}

/// A web service whose instances answer `/v` with `tag`; a CGI `/cgi-bin/slow` takes 4 s.
fn web(tag: &str, replicas: u32, extra_labels: &str) -> String {
    let script = format!(
        "echo {tag} > /www/v; mkdir -p /www/cgi-bin; printf '#!/bin/sh\\nsleep 4\\necho Content-Type: text/plain\\necho\\necho slow-{tag}\\n' > /www/cgi-bin/slow; chmod +x /www/cgi-bin/slow; exec httpd -f -p 8080 -h /www"
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: {command}\n    stop_grace_period: 5s\n    labels:\n      berth.scale: \"{replicas}\"\n      berth.probe.url: http://container:8080/v\n      berth.routing.port_8080: {HOST}\n{extra_labels}"
    )
}

fn versions(a: &Agent, target: &str) -> Vec<VersionView> {
    serde_json::from_str(&a.ok(&["versions", target, "--json"])).expect("versions json")
}

fn state_of(a: &Agent, target: &str, name: &str) -> (u32, String) {
    versions(a, target)
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| (v.weight, v.state))
        .unwrap_or_default()
}

/// Which tags answer `n` requests.
fn tally(port: u16, n: usize) -> BTreeMap<String, usize> {
    router_tally(port, HOST, "/v", n)
}

fn only(port: u16, tag: &str) -> bool {
    let t = tally(port, 20);
    t.len() == 1 && t.contains_key(tag)
}

impl Load {
    fn start(port: u16) -> Load {
        Load::start_at(format!("127.0.0.1:{port}"), HOST)
    }
}

/// `--traffic none`, a 90/10 split measured over 1,000 requests, bad weights refused with
/// nothing changed, rollback to the previous and to a named version.
#[test]
fn traffic_split_and_rollback() {
    let (a, port) = router_agent();
    a.deploy("tr", &web("v1", 2, ""));
    assert!(only(port, "v1"));

    let p = a.template("tr", &web("v2", 2, ""));
    let out = a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "tr",
        "--traffic",
        "none",
        "--timeout",
        "60",
    ]);
    assert!(out.contains("runs at 0% of the traffic"), "{out}");
    // One instance of web-002 for checking, no traffic.
    let v = versions(&a, "tr/web");
    assert_eq!(
        v.iter()
            .map(|v| (v.name.as_str(), v.weight, v.replicas))
            .collect::<Vec<_>>(),
        [("web-001", 100, 2), ("web-002", 0, 1)]
    );
    assert!(only(port, "v1"));

    // Bad weights: refused, nothing changes.
    for (args, says) in [
        (&["002=90", "001=20"][..], "add up to 110"),
        (&["009=100"], "no version web-009"),
        (&["002=abc"], "whole percent"),
    ] {
        let mut cmd = vec!["traffic", "tr/web"];
        cmd.extend(args);
        let err = a.fails(&cmd);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (status, body) = a.post_raw(
        "/v1/apps/tr/services/web/traffic",
        br#"{"weights": {"002": 50, "001": 40}}"#,
        true,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(versions(&a, "tr/web"), v, "refused weights change nothing");

    a.ok(&["traffic", "tr/web", "002=90", "001=10"]);
    wait_until(
        "web-002 runs both replicas",
        Duration::from_secs(30),
        || {
            a.running("tr")
                .iter()
                .filter(|i| i.version == "web-002" && i.health == "healthy")
                .count()
                == 2
        },
    );
    let t = tally(port, 1000);
    let v2 = t.get("v2").copied().unwrap_or(0);
    assert_eq!(t.values().sum::<usize>(), 1000);
    // The router draws each request's version at random: 900 of 1,000 has a standard
    // deviation of 9.5 requests, and +-45 is 4.7 of them (+-30, 3.2 of them, failed a
    // correct split about once in 600 runs).
    assert!((855..=945).contains(&v2), "90% +-4.5 to web-002: {t:?}");
    assert_eq!(v2 + t.get("v1").copied().unwrap_or(0), 1000, "{t:?}");

    // Rollback: all traffic to the version before the main one; traffic shifts lose nothing.
    let load = Load::start(port);
    let out = a.ok(&["rollback", "tr/web"]);
    assert!(out.contains("web-001"), "{out}");
    wait_until("only v1 answers", Duration::from_secs(10), || {
        only(port, "v1")
    });
    wait_until("web-002 stopped", Duration::from_secs(30), || {
        state_of(&a, "tr/web", "web-002").1 == "stopped"
            && a.ps("tr").iter().all(|i| i.version == "web-001")
    });
    // And forward again to a named version: it starts again and takes the traffic.
    a.ok(&["rollback", "tr/web", "002"]);
    wait_until("only v2 answers", Duration::from_secs(40), || {
        only(port, "v2")
    });
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "failed requests during traffic shifts: {failed:?} ({ok:?})"
    );
    assert!(
        a.fails(&["rollback", "tr/web", "002"])
            .contains("already has all the traffic")
    );
}

/// Blue/green: the new version runs all its instances at 0% until confirmed; abort drops it.
#[test]
fn blue_green_confirm_and_abort() {
    let (a, port) = router_agent();
    a.deploy("bg", &web("blue", 2, ""));
    let bg = |tag: &str| {
        let p = a.template("bg", &web(tag, 2, ""));
        a.ok(&[
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            "bg",
            "--blue-green",
            "--timeout",
            "60",
        ])
    };
    let out = bg("green");
    assert!(
        out.contains("awaiting confirmation") || out.contains("release confirm"),
        "{out}"
    );
    assert_eq!(
        state_of(&a, "bg/web", "web-002"),
        (0, "awaiting confirmation".to_string())
    );
    assert_eq!(
        a.running("bg")
            .iter()
            .filter(|i| i.version == "web-002")
            .count(),
        2,
        "all of green runs before the switch"
    );
    assert!(only(port, "blue"));

    a.ok(&["release", "confirm", "bg/web"]);
    wait_until("only green answers", Duration::from_secs(10), || {
        only(port, "green")
    });
    wait_until("blue removed", Duration::from_secs(30), || {
        a.ps("bg").iter().all(|i| i.version == "web-002")
    });
    assert_eq!(state_of(&a, "bg/web", "web-001").1, "stopped");
    assert!(
        a.fails(&["release", "confirm", "bg/web"])
            .contains("no blue/green release")
    );

    bg("teal");
    assert_eq!(state_of(&a, "bg/web", "web-003").1, "awaiting confirmation");
    a.ok(&["release", "abort", "bg/web"]);
    wait_until("teal removed", Duration::from_secs(30), || {
        a.ps("bg").iter().all(|i| i.version == "web-002")
    });
    assert_eq!(state_of(&a, "bg/web", "web-003").1, "stopped");
    assert!(only(port, "green"));
}

/// A rolling update of 4 instances, 2 at a time, under a continuous request loop: no request
/// fails, and no more than 2 instances are ever replaced at once.
#[test]
fn rolling_update_under_load_loses_no_request() {
    let (a, port) = router_agent();
    a.deploy("roll", &web("r1", 4, ROLLING));
    let load = Load::start(port);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    a.deploy("roll", &web("r2", 4, ROLLING));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} (ok: {ok:?})"
    );
    assert!(ok.contains_key("r1") && ok.contains_key("r2"), "{ok:?}");
    assert!(only(port, "r2"));
    let ev = a.ok(&["events", "roll", "-n", "200"]);
    // Batches: slots 1-2 replaced before 3-4 were touched.
    let pos = |s: &str| ev.find(s).unwrap_or_else(|| panic!("{s} missing in {ev}"));
    assert!(
        pos("roll_web-002_2 is healthy").max(pos("roll_web-002_1 is healthy"))
            < pos("removed roll_web_3"),
        "{ev}"
    );
    assert!(ev.contains("replaced by the rolling update"), "{ev}");
    eprintln!("rolling update of 4 took {took:?}; answers {ok:?}");
}

/// Without rolling updates the new version starts beside the old one and takes the traffic
/// when healthy; a slow request to an old instance finishes before that instance stops.
#[test]
fn start_first_update_drains_and_loses_no_request() {
    let (a, port) = router_agent();
    a.deploy("sf", &web("s1", 2, ""));
    let load = Load::start(port);
    // A slow request in flight on an old instance while the update happens.
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = router_get(port, HOST, "/cgi-bin/slow", None);
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    a.deploy("sf", &web("s2", 2, ""));
    let ((status, body, _), took) = slow.join().expect("slow request");
    let (ok, failed) = load.finish();
    assert_eq!((status, body.trim()), (200, "slow-s1"), "after {took:?}");
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} (ok: {ok:?})"
    );
    assert!(only(port, "s2"));
    // The deploy returns once web-002 takes the traffic; web-001 drains and goes after.
    wait_until("web-001 removed", Duration::from_secs(30), || {
        a.ps("sf").iter().all(|i| i.version == "web-002")
    });
    // A stopped instance leaves `ps` when it exits and its removal's event follows a moment
    // later.
    wait_until("the removal's event", Duration::from_secs(10), || {
        a.ok(&["events", "sf", "-n", "200"])
            .contains("removed sf_web_1")
    });
    let ev = a.ok(&["events", "sf", "-n", "200"]);
    let pos = |s: &str| ev.find(s).unwrap_or_else(|| panic!("{s} missing in {ev}"));
    assert!(
        pos("takes all the traffic") < pos("removed sf_web_1"),
        "{ev}"
    );
}

/// A rolling update whose new instances never get healthy stops after its first batch and
/// rolls back by itself: the deploy fails saying why, the old version serves again, the
/// requests in between never fail.
#[test]
fn failing_rolling_update_rolls_itself_back() {
    let (a, port) = router_agent();
    a.deploy("rb", &web("ok", 4, ROLLING));
    // The new version's probe asks for a file that is not there.
    let bad = web("bad", 4, ROLLING).replace("8080/v", "8080/missing");
    let load = Load::start(port);
    let p = a.template("rb", &bad);
    let err = a.fails(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "rb",
        "--timeout",
        "90",
    ]);
    let (ok, failed) = load.finish();
    assert!(
        err.contains("web-002 failed"),
        "{err}\n{}\n{:?}",
        a.ok(&["events", "rb", "-n", "100"]),
        a.ps("rb")
    );
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} (ok: {ok:?})"
    );
    assert!(
        !ok.contains_key("bad"),
        "an unhealthy instance got traffic: {ok:?}"
    );
    let ev = a.ok(&["events", "rb", "-n", "200"]);
    assert!(
        ev.contains("rolling update to web-002 failed") && ev.contains("rolled back to web-001"),
        "{ev}"
    );
    assert!(
        !ev.contains("removed rb_web_3"),
        "only the first batch was touched: {ev}"
    );
    wait_until("4 of web-001 again", Duration::from_secs(30), || {
        let ps = a.ps("rb");
        ps.len() == 4
            && ps
                .iter()
                .all(|i| i.version == "web-001" && i.health == "healthy")
    });
    assert_eq!(state_of(&a, "rb/web", "web-002").1, "failed");
    assert!(only(port, "ok"));
}
