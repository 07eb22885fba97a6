//! Releases that overlap, against the real engine and router: a deploy arriving while
//! another release is under way. Each step checks the deploy's exit code, `berth versions`
//! and where 300 requests through the router go.

use crate::harness::*;
use berth::wire::VersionView;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HOST: &str = "overlap.example.com";

struct Web<'a> {
    tag: &'a str,
    replicas: u32,
    /// The probe's path: `/v` answers, `/missing` never does.
    probe: &'a str,
    /// Seconds before the web server starts (a batch of a rolling update takes that long).
    start_delay: u32,
    /// The shell ignores SIGTERM, so a stop takes the whole grace period (10 s).
    slow_stop: bool,
    /// `rolling_updates` with this batch size.
    rolling: Option<u32>,
}

impl Web<'_> {
    fn new(tag: &str) -> Web<'_> {
        Web {
            tag,
            replicas: 2,
            probe: "/v",
            start_delay: 0,
            slow_stop: false,
            rolling: None,
        }
    }

    /// Four instances, rolling updates one at a time.
    fn four(tag: &str) -> Web<'_> {
        Web {
            replicas: 4,
            rolling: Some(1),
            ..Web::new(tag)
        }
    }

    fn yaml(&self) -> String {
        let serve = if self.slow_stop {
            "trap '' TERM; httpd -f -p 8080 -h /www"
        } else {
            "exec httpd -f -p 8080 -h /www"
        };
        let script = format!(
            "echo {} > /www/v; sleep {}; {serve}",
            self.tag, self.start_delay
        );
        let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
        let mut labels = format!(
            "      berth.scale: \"{}\"\n      berth.probe.url: http://container:8080{}\n      berth.routing.port_8080: {HOST}\n",
            self.replicas, self.probe
        );
        if let Some(p) = self.rolling {
            labels.push_str(&format!(
                "      berth.rolling_updates: \"true\"\n      berth.rolling_updates.parallelism: \"{p}\"\n"
            ));
        }
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: {command}\n    stop_grace_period: 10s\n    labels:\n{labels}"
        )
    }
}

fn router_agent() -> (Agent, u16) {
    let port = free_port();
    let a = Agent::start_with_config(&format!("[router]\nhttp = \"127.0.0.1:{port}\"\n"));
    (a, port)
}

/// Runs `berth deploy`; returns whether it succeeded, what it said and how long it took.
fn deploy(a: &Agent, app: &str, web: &Web, extra: &[&str]) -> (bool, String, Duration) {
    let p = a.template(app, &web.yaml());
    let mut args = vec![
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        app,
        "--timeout",
        "120",
    ];
    args.extend(extra);
    let started = Instant::now();
    let out = a.berth(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, started.elapsed())
}

fn versions(a: &Agent, app: &str) -> Vec<VersionView> {
    serde_json::from_str(&a.ok(&["versions", &format!("{app}/web"), "--json"]))
        .expect("versions json")
}

/// `name -> (weight the router applies, state)`, for the versions that are not stopped.
fn shown(a: &Agent, app: &str) -> BTreeMap<String, (u32, String)> {
    versions(a, app)
        .into_iter()
        .map(|v| (v.name, (v.weight, v.state)))
        .collect()
}

fn weights(a: &Agent, app: &str) -> BTreeMap<String, u32> {
    versions(a, app)
        .into_iter()
        .filter(|v| v.weight > 0)
        .map(|v| (v.name, v.weight))
        .collect()
}

/// Where `n` requests go: tag -> count (failures as `HTTP nnn`).
fn tally(port: u16, n: usize) -> BTreeMap<String, usize> {
    router_tally(port, HOST, "/v", n)
}

/// All of 300 requests answered by `tag`.
fn all_from(port: u16, tag: &str) {
    let t = tally(port, 300);
    assert_eq!(t.get(tag), Some(&300), "300 requests to {tag}: {t:?}");
}

/// 300 requests split as `berth versions` says, where `tag` maps a version to the tag its
/// instances answer with. Returns false when the split moved while the requests ran (then
/// nothing is asserted). The router draws each request's version at random, so a share of
/// `w`% over 300 requests has a standard deviation of up to 2.9 points: each version must be
/// within 4.5 of them (plus a point of rounding) of its figure. A fixed 10 points, 3.4 of
/// them at a 50% share, failed about once in a hundred runs of a test that checks the split
/// a dozen times (CI, stop 44: 22% against 33%).
fn split_matches(a: &Agent, app: &str, port: u16, tag: &dyn Fn(&str) -> String) -> bool {
    let before = weights(a, app);
    let t = tally(port, 300);
    if weights(a, app) != before {
        return false;
    }
    let total: usize = t.values().sum();
    assert_eq!(total, 300);
    assert!(
        t.keys().all(|k| !k.starts_with("HTTP")),
        "failed requests: {t:?}"
    );
    for (name, w) in &before {
        let got = t.get(&tag(name)).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
        let p = f64::from(*w) / 100.0;
        let sigma = (p * (1.0 - p) / total as f64).sqrt() * 100.0;
        assert!(
            (got - f64::from(*w)).abs() <= 4.5 * sigma + 1.0,
            "versions says {name} has {w}%, the router gave it {got:.1}% (allowed: {:.1} \
             points): {t:?} vs {before:?}",
            4.5 * sigma + 1.0
        );
    }
    for k in t.keys() {
        assert!(
            before.keys().any(|name| tag(name) == *k),
            "{k} answered, but versions gives it no traffic: {t:?} vs {before:?}"
        );
    }
    true
}

/// Sequence 1: a version whose probe fails is still `creating (promote)` when the fix
/// arrives as a rolling update. The fix's deploy succeeds; the failing version is failed as
/// superseded, its instances gone at once; later `--traffic none` deploys in a row succeed.
#[test]
fn a_fix_deployed_over_a_failing_version_succeeds() {
    let (a, port) = router_agent();
    let (ok, out, _) = deploy(&a, "ov1", &Web::new("v1"), &[]);
    assert!(ok, "{out}");
    all_from(port, "v1");

    let bad = Web {
        probe: "/missing",
        ..Web::new("bad")
    };
    let (ok, out, _) = deploy(&a, "ov1", &bad, &["--detach"]);
    assert!(ok, "{out}");
    wait_until("web-002 runs", Duration::from_secs(30), || {
        a.running("ov1")
            .iter()
            .filter(|i| i.version == "web-002")
            .count()
            == 2
    });
    let s = shown(&a, "ov1");
    assert_eq!(s["web-001"], (100, "normal".into()), "{s:?}");
    assert_eq!(s["web-002"], (0, "creating".into()), "{s:?}");
    all_from(port, "v1");

    let fix = Web {
        replicas: 2,
        rolling: Some(1),
        ..Web::new("v3")
    };
    let (ok, out, _) = deploy(&a, "ov1", &fix, &[]);
    assert!(ok, "the fix's deploy failed: {out}");
    assert!(
        out.contains("web-003 is normal with 100% of the traffic"),
        "{out}"
    );
    let v = versions(&a, "ov1");
    let web2 = v.iter().find(|v| v.name == "web-002").expect("web-002");
    assert_eq!(
        (web2.state.as_str(), web2.reason.as_str(), web2.weight),
        ("failed", "superseded by web-003", 0)
    );
    let s = shown(&a, "ov1");
    assert_eq!(s["web-003"], (100, "normal".into()), "{s:?}");
    assert_eq!(s["web-001"], (0, "stopped".into()), "{s:?}");
    all_from(port, "v3");
    let ev = a.ok(&["events", "ov1", "-n", "200"]);
    assert!(
        ev.contains(
            "web-002: creating at 0% (promote) -> failed at 0%: superseded by web-003 (cause: deploy of web-003)"
        ),
        "{ev}"
    );
    assert!(ev.contains("its version failed or was superseded"), "{ev}");
    wait_until("web-002's instances gone", Duration::from_secs(30), || {
        a.ps("ov1").iter().all(|i| i.version != "web-002")
    });

    // Standby deploys in a row: each succeeds and the traffic stays on web-003.
    for (n, tag) in [(4, "v4"), (5, "v5")] {
        let (ok, out, took) = deploy(&a, "ov1", &Web::new(tag), &["--traffic", "none"]);
        assert!(ok, "--traffic none deploy of web-00{n} failed: {out}");
        assert!(out.contains("runs at 0% of the traffic"), "{out}");
        let s = shown(&a, "ov1");
        assert_eq!(s["web-003"], (100, "normal".into()), "{s:?}");
        assert_eq!(s[&format!("web-00{n}")], (0, "normal".into()), "{s:?}");
        all_from(port, "v3");
        eprintln!("--traffic none deploy of web-00{n} took {took:?}");
    }
    let s = shown(&a, "ov1");
    assert_eq!(s["web-004"].1, "stopped", "{s:?}");
}

/// Sequence 2: during a rolling update `berth versions` shows the split the router applies,
/// batch by batch.
#[test]
fn versions_show_the_routers_split_during_a_rolling_update() {
    let (a, port) = router_agent();
    let (ok, out, _) = deploy(&a, "ov2", &Web::four("r1"), &[]);
    assert!(ok, "{out}");
    // Each new instance takes ~4 s to answer: the split holds still between batches.
    let slow = Web {
        start_delay: 4,
        ..Web::four("r2")
    };
    let (ok, out, _) = deploy(&a, "ov2", &slow, &["--detach"]);
    assert!(ok, "{out}");
    let tag = |name: &str| {
        if name == "web-001" {
            "r1".to_string()
        } else {
            "r2".to_string()
        }
    };
    let started = Instant::now();
    let mut seen = BTreeMap::new();
    loop {
        let w = weights(&a, "ov2");
        if split_matches(&a, "ov2", port, &tag) {
            seen.insert(w.get("web-002").copied().unwrap_or(0), w);
        }
        if versions(&a, "ov2")
            .iter()
            .any(|v| v.name == "web-002" && v.state == "normal")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "rolling update did not finish: {:?}",
            versions(&a, "ov2")
        );
    }
    wait_until("the split settles", Duration::from_secs(10), || {
        weights(&a, "ov2") == BTreeMap::from([("web-002".to_string(), 100)])
    });
    all_from(port, "r2");
    // Intermediate splits were seen and matched (25/75, 50/50 or 75/25 of 4 instances).
    assert!(
        seen.keys().any(|w| *w > 0 && *w < 100),
        "no intermediate split was observed: {seen:?}"
    );
    eprintln!("splits seen: {seen:?}");
}

/// Sequence 3: a `--blue-green` deploy arriving while a rolling update is under way is
/// refused (saying why and what to do); the rolling update carries on to its version and
/// the traffic never goes back to the old one. Then a blue/green release awaiting
/// confirmation refuses the next release until it is confirmed or rolled back.
#[test]
fn a_deploy_during_a_rolling_update_or_an_unconfirmed_release_is_refused() {
    let (a, port) = router_agent();
    let (ok, out, _) = deploy(&a, "ov3", &Web::four("b1"), &[]);
    assert!(ok, "{out}");
    let slow = Web {
        start_delay: 3,
        ..Web::four("b2")
    };
    let (ok, out, _) = deploy(&a, "ov3", &slow, &["--detach"]);
    assert!(ok, "{out}");
    wait_until("the first batch serves", Duration::from_secs(30), || {
        weights(&a, "ov3").contains_key("web-002")
    });
    let before = versions(&a, "ov3");
    let (ok, err, _) = deploy(&a, "ov3", &Web::new("b3"), &["--blue-green"]);
    assert!(
        !ok,
        "a blue/green deploy during a rolling update was accepted: {err}"
    );
    assert!(
        err.contains("rolling update to web-002 is in progress")
            && err.contains("berth rollback ov3/web"),
        "{err}"
    );
    let after = versions(&a, "ov3");
    assert_eq!(
        after.len(),
        before.len(),
        "a refused deploy added a version"
    );
    assert!(after.iter().all(|v| v.name != "web-003"));
    // The rolling update carries on; web-001 never gets its traffic back.
    let tag = |name: &str| {
        if name == "web-001" {
            "b1".to_string()
        } else {
            "b2".to_string()
        }
    };
    let started = Instant::now();
    while !versions(&a, "ov3")
        .iter()
        .any(|v| v.name == "web-002" && v.state == "normal")
    {
        let w = weights(&a, "ov3");
        assert!(
            w.contains_key("web-002"),
            "the traffic went back to web-001: {w:?}"
        );
        split_matches(&a, "ov3", port, &tag);
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    wait_until(
        "web-002 has all the traffic",
        Duration::from_secs(10),
        || weights(&a, "ov3") == BTreeMap::from([("web-002".to_string(), 100)]),
    );
    all_from(port, "b2");

    // Blue/green: awaiting confirmation refuses the next release.
    let (ok, out, _) = deploy(&a, "ov3", &Web::new("b3"), &["--blue-green"]);
    assert!(ok, "{out}");
    assert!(out.contains("release confirm ov3/web"), "{out}");
    all_from(port, "b2");
    let (ok, err, _) = deploy(&a, "ov3", &Web::new("b4"), &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("web-003 is a blue/green release awaiting confirmation")
            && err.contains("berth release confirm ov3/web")
            && err.contains("berth release abort ov3/web"),
        "{err}"
    );
    let s = shown(&a, "ov3");
    assert_eq!(s["web-003"], (0, "awaiting confirmation".into()), "{s:?}");
    assert!(!s.contains_key("web-004"), "{s:?}");
    all_from(port, "b2");
    a.ok(&["release", "abort", "ov3/web"]);
    let (ok, out, _) = deploy(&a, "ov3", &Web::new("b4"), &[]);
    assert!(ok, "{out}");
    all_from(port, "b4");
}

/// Sequence 4: a `--traffic none` deploy returns when its own version is up, without
/// waiting for the previous standby version (which takes its whole 10 s grace to stop).
#[test]
fn a_standby_deploy_does_not_wait_for_the_previous_standby_to_stop() {
    let (a, port) = router_agent();
    let (ok, out, _) = deploy(&a, "ov4", &Web::new("s1"), &[]);
    assert!(ok, "{out}");
    let slow = |tag| Web {
        slow_stop: true,
        ..Web::new(tag)
    };
    let (ok, out, first) = deploy(&a, "ov4", &slow("s2"), &["--traffic", "none"]);
    assert!(ok, "{out}");
    let (ok, out, second) = deploy(&a, "ov4", &slow("s3"), &["--traffic", "none"]);
    assert!(ok, "{out}");
    assert!(
        second < Duration::from_secs(8),
        "the second --traffic none deploy took {second:?} (the first {first:?})"
    );
    let s = shown(&a, "ov4");
    assert_eq!(s["web-001"], (100, "normal".into()), "{s:?}");
    assert_eq!(s["web-002"].1, "stopped", "{s:?}");
    assert_eq!(s["web-003"], (0, "normal".into()), "{s:?}");
    all_from(port, "s1");
    eprintln!("--traffic none deploys took {first:?} and {second:?}");
}
