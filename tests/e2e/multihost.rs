//! Cluster I on real hosts: each host a network namespace with its own dockerd and its own
//! agent (tests/bed/hosts.sh), talking over a real bridge. Joins under capture, failure
//! detection, partitions, an app driven from the other hosts, restarts, hostile datagrams,
//! key rotation with a host away, and a member that speaks the previous protocol.

use crate::bed::*;
use crate::harness::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Member name -> state, as `berth nodes` on `a` lists them.
fn states(a: &Agent) -> BTreeMap<String, String> {
    let o = a.berth(&["nodes", "--json"]);
    if !o.status.success() {
        return BTreeMap::new();
    }
    let v: Vec<berth::wire::NodeView> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v.into_iter().map(|n| (n.name, n.state)).collect()
}

fn all_alive(a: &Agent, names: &[&str]) -> bool {
    let s = states(a);
    names
        .iter()
        .all(|n| s.get(*n).is_some_and(|st| st == "alive"))
}

/// What each agent sees and the end of its log, for a failure message: a wait on the
/// cluster that times out says who saw whom, and what the agents said about it.
fn report(agents: &[&Agent]) -> String {
    let mut out = String::new();
    for a in agents {
        let log = a.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        out.push_str(&format!(
            "\n--- {} sees {:?}; its log ends:\n",
            a.name,
            states(a)
        ));
        for l in tail.iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Waits until `f`, or fails with `report` of `agents`.
fn converge(what: &str, timeout: Duration, agents: &[&Agent], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for: {what}{}", report(agents));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A token from `a` (`--uses 1`, ten minutes).
fn token(a: &Agent) -> String {
    a.ok(&["cluster", "token", "create", "--ttl", "10m", "--uses", "1"])
        .trim()
        .to_string()
}

/// h1 starts the cluster, every other agent joins it with a token of its own.
fn form(agents: &[&Agent]) {
    agents[0].ok(&["cluster", "init"]);
    for a in &agents[1..] {
        let out = a.ok(&["cluster", "join", &token(agents[0])]);
        assert!(out.contains("joined cluster"), "{out}");
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    for a in agents {
        converge(
            &format!("all alive on {}", a.name),
            Duration::from_secs(20),
            agents,
            || all_alive(a, &names),
        );
    }
}

fn metric(a: &Agent, line_start: &str) -> f64 {
    let (_, body) = a.get_raw("/metrics", true).expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Gossip datagrams `a` dropped unparsed, all reasons together.
fn dropped(a: &Agent) -> f64 {
    ["magic", "short", "auth", "unknown_key", "replay"]
        .iter()
        .map(|r| {
            metric(
                a,
                &format!("berth_gossip_packets_dropped_total{{reason=\"{r}\"}}"),
            )
        })
        .sum()
}

const TICKER: &str = "services:\n  tick:\n    image: berth-test/busybox:latest\n    command: [\"sh\", \"-c\", \"i=0; while true; do echo tick $$i; i=$$((i+1)); sleep 0.5; done\"]\n    stop_grace_period: 1s\n";

#[test]
fn real_hosts_join_by_token_detect_a_lost_host_and_heal_a_partition() {
    let test = "multihost::real_hosts_join_by_token_detect_a_lost_host_and_heal_a_partition";
    let Some(bed) = Bed::up(test, 3) else { return };
    // h1 sends node notices to a webhook on this machine's end of the bridge.
    let port = free_port();
    let receiver = tiny_http::Server::http(format!("{}.254:{port}", bed.prefix)).expect("receiver");
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let stop_receiving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiving = {
        let (notices, stop) = (notices.clone(), stop_receiving.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(Some(mut req)) = receiver.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                if let Ok(v) = serde_json::from_str(&body) {
                    notices.lock().unwrap().push(v);
                }
                let _ = req.respond(tiny_http::Response::empty(204));
            }
        })
    };
    let h1 = bed.agent_with(
        1,
        &[],
        &format!(
            "[metrics]\ninterval = \"1s\"\n[metrics.notify]\non = [\"node\"]\nto = [\"webhook:http://{}.254:{port}/nodes\"]\n",
            bed.prefix
        ),
    );
    let h2 = bed.agent(2, &[1], &[]);
    let mut h3 = bed.agent(3, &[1], &[]);
    let cap = bed.capture();
    h1.ok(&["cluster", "init"]);

    // Bad tokens are refused with their reason and leave the joiner outside.
    let good = token(&h1);
    let mut altered = good.clone();
    let last = if altered.ends_with('0') { "1" } else { "0" };
    altered.replace_range(altered.len() - 1.., last);
    // An expired one (the CLI's shortest life is a minute: made with the cluster's own key).
    let ring = berth::cluster::keys::Keyring::load(&h1.dir.path().join("cluster.key"))
        .unwrap()
        .unwrap();
    let expired = berth::cluster::token::Token::issue(
        &ring,
        vec![format!("{}:7946", bed.addr(1)).parse().unwrap()],
        berth::clock::now_ms() / 1000 - 5,
        1,
        [8; 16],
    )
    .to_text();
    let other = berth::cluster::keys::Keyring::create(berth::clock::now_ms()).unwrap();
    let foreign = berth::cluster::token::Token::issue(
        &other,
        vec![format!("{}:7946", bed.addr(1)).parse().unwrap()],
        berth::clock::now_ms() / 1000 + 600,
        1,
        [9; 16],
    )
    .to_text();
    for (t, says) in [
        (&altered, "wrong or altered"),
        (&expired, "expired"),
        (&foreign, "cluster"),
    ] {
        let err = h2.fails(&["cluster", "join", t]);
        assert!(err.contains(says), "{says}: {err}");
        assert!(
            !h2.dir.path().join("cluster.key").exists(),
            "a refused join left a key"
        );
    }
    let out = h2.ok(&["cluster", "join", &good]);
    assert!(out.contains("joined cluster"), "{out}");
    let err = h3.fails(&["cluster", "join", &good]);
    assert!(err.contains("used"), "{err}");
    let out = h3.ok(&["cluster", "join", &token(&h1)]);
    assert!(out.contains("joined cluster"), "{out}");
    for a in [&h1, &h2, &h3] {
        wait_until("three alive", Duration::from_secs(20), || {
            all_alive(a, &["h1", "h2", "h3"])
        });
    }
    // The cluster's secrets never crossed the bridge in clear, in hex or raw.
    let frames = cap.stop();
    let seen: Vec<u8> = frames.concat();
    assert!(seen.len() > 2000, "the capture saw the joins");
    let key_json = std::fs::read_to_string(h1.dir.path().join("cluster.key")).unwrap();
    let secrets: Vec<&str> = key_json.split('"').filter(|w| w.len() == 64).collect();
    assert!(!secrets.is_empty(), "{key_json}");
    for hex_secret in secrets {
        let raw = hex::decode(hex_secret).unwrap();
        assert!(!seen.windows(64).any(|w| w == hex_secret.as_bytes()));
        assert!(!seen.windows(32).any(|w| w == raw.as_slice()));
    }
    let nodes = h2.ok(&["nodes"]);
    for col in ["CPU", "MEM", "AGENT"] {
        assert!(nodes.contains(col), "{nodes}");
    }
    wait_until(
        "h1's CPU and memory seen on h2",
        Duration::from_secs(30),
        || {
            let o = h2.berth(&["nodes", "--json"]);
            let v: Vec<berth::wire::NodeView> =
                serde_json::from_slice(&o.stdout).unwrap_or_default();
            v.iter().any(|n| {
                n.name == "h1"
                    && n.mem_total > 0
                    && n.cpus > 0
                    && n.protocol == berth::cluster::PROTOCOL
            })
        },
    );

    // 5% of every host's packets lost each way for 20 s: nobody is declared lost.
    for i in 1..=3 {
        bed.loss(i, 5);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        for a in [&h1, &h2, &h3] {
            let s = states(a);
            assert!(
                !s.values().any(|st| st == "lost"),
                "a false lost under 5% loss on {}: {s:?}{}",
                a.name,
                report(&[&h1, &h2, &h3])
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 1..=3 {
        bed.loss(i, 0);
    }

    // h3's agent dies: suspect, then lost on both others within the documented bound
    // (ARCHITECTURE.md, cluster: about 3 s at three members; 10 s allowed here).
    h3.kill9();
    let start = Instant::now();
    let mut saw_suspect = false;
    loop {
        let (s1, s2) = (states(&h1), states(&h2));
        saw_suspect |= s1.get("h3").is_some_and(|s| s == "suspect");
        if s1.get("h3").is_some_and(|s| s == "lost") && s2.get("h3").is_some_and(|s| s == "lost") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "h3 not lost on both within 10 s: {s1:?} {s2:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost_after = start.elapsed();
    eprintln!("h3 lost on both after {lost_after:?} (suspect seen: {saw_suspect})");
    assert!(saw_suspect, "h3 went lost without being suspect first");
    // It comes back by itself, as a new incarnation.
    h3.restart();
    for a in [&h1, &h2, &h3] {
        converge(
            &format!("h3 alive again on {}", a.name),
            Duration::from_secs(20),
            &[&h1, &h2, &h3],
            || all_alive(a, &["h1", "h2", "h3"]),
        );
    }

    // h1's notifiers heard of it: lost, then alive again (one notice each, in order).
    // Only h3's are counted: with h3 dead, h1 has no member to probe h2 through, and on a
    // loaded CI machine h2 was once suspected and lost for a moment (its two notices came
    // first; they are printed, and the 5% loss above is where false losses are checked).
    let h3s = || -> Vec<String> {
        notices
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                assert_eq!(n["kind"], "node", "{n}");
                n["message"].as_str().unwrap_or("").to_string()
            })
            .filter(|m| m.starts_with("node h3 "))
            .collect()
    };
    wait_until(
        "h3's notices at the webhook",
        Duration::from_secs(30),
        || h3s().len() >= 2,
    );
    // Two seconds more, so a duplicate sent soon after the second notice is counted too.
    std::thread::sleep(Duration::from_secs(2));
    stop_receiving.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = receiving.join();
    let got = h3s();
    let others: Vec<serde_json::Value> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| !n["message"].as_str().unwrap_or("").starts_with("node h3 "))
        .cloned()
        .collect();
    if !others.is_empty() {
        eprintln!("other node notices meanwhile: {others:?}");
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("node h3 ") && got[0].contains(" is lost "),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("node h3 ") && got[1].contains("is alive again"),
        "{got:?}"
    );

    // A partition: h2 cut off keeps running its app; the others see it lost; all converge
    // once the cut heals.
    let pinned = format!("{TICKER}    environment:\n      - constraint:node==h2\n");
    let out = h2.deploy("part", &pinned);
    assert!(out.contains("1/1 running"), "{out}");
    bed.cut(2);
    for a in [&h1, &h3] {
        wait_until("h2 lost on the others", Duration::from_secs(15), || {
            states(a).get("h2").is_some_and(|s| s == "lost")
        });
    }
    wait_until("h1 and h3 lost on h2", Duration::from_secs(15), || {
        let s = states(&h2);
        ["h1", "h3"]
            .iter()
            .all(|n| s.get(*n).is_some_and(|st| st == "lost"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        h2.engine_containers("part"),
        vec![("part_tick_1".to_string(), "running".to_string())],
        "the cut-off host keeps its app"
    );
    let apps = h1.ok(&["apps"]);
    assert!(
        apps.contains("part") && apps.contains("stale"),
        "h1 still lists h2's app, marked stale: {apps}"
    );
    bed.heal(2);
    for a in [&h1, &h2, &h3] {
        wait_until(
            "all alive after the cut healed",
            Duration::from_secs(30),
            || all_alive(a, &["h1", "h2", "h3"]),
        );
    }
    wait_until("h2's app fresh on h1", Duration::from_secs(15), || {
        let apps = h1.ok(&["apps"]);
        apps.contains("part") && !apps.contains("stale")
    });
}

#[test]
fn an_app_on_one_real_host_is_listed_followed_and_scaled_from_the_others() {
    let test = "multihost::an_app_on_one_real_host_is_listed_followed_and_scaled_from_the_others";
    let Some(bed) = Bed::up(test, 3) else { return };
    let mut h1 = bed.agent(1, &[2, 3], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    let mut h3 = bed.agent(3, &[1], &[]);
    form(&[&h1, &h2, &h3]);
    // Pinned to h1 (placement would spread it): an app on one host, seen from the others.
    let pinned = format!("{TICKER}    environment:\n      - constraint:node==h1\n");
    let out = h1.deploy("far", &pinned);
    assert!(out.contains("1/1 running"), "{out}");
    let id = h1.running("far")[0].container_id.clone();
    for a in [&h2, &h3] {
        wait_until(
            "far and its container on the others",
            Duration::from_secs(15),
            || a.ok(&["apps"]).contains("far") && a.ok(&["ps"]).contains(&id),
        );
    }
    let ps = h2.ok(&["ps"]);
    assert!(ps.contains("NODE") && ps.contains("h1"), "{ps}");
    let versions = h3.ok(&["versions", "far/tick"]);
    assert!(versions.contains("001"), "{versions}");

    // `logs -f` on h2 streams h1's container as it writes.
    let mut cmd = h2.follow_command(&["logs", "-f", "far", "--tail", "2"]);
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("logs -f");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ticks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ticks.len() < 6 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(n) = l
                    .rsplit("tick ")
                    .next()
                    .and_then(|n| n.trim().parse::<u64>().ok())
                {
                    ticks.push(n);
                }
            }
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ticks.len() >= 6, "a follow on h2 saw {ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, none lost or repeated: {ticks:?}"
    );

    // A scale asked on h3 is run by h1, on h1's engine.
    h3.ok(&["scale", "far", "tick=2"]);
    h1.wait_running("far", 2, Duration::from_secs(30));
    assert_eq!(h1.engine_containers("far").len(), 2);
    assert!(h3.docker_ok(&["ps", "-q"]).is_empty(), "nothing ran on h3");
    // `top` on h3 shows h1's containers, each with its node.
    wait_until("h1's figures in top on h3", Duration::from_secs(30), || {
        let t = h3.ok(&["top", "--no-stream"]);
        t.contains("NODE")
            && t.lines()
                .filter(|l| l.starts_with("h1") && l.contains("far_tick"))
                .count()
                == 2
    });

    // `berth exec` on h2 runs in h1's container, carried over the peer channel: stdout,
    // stderr and the exit code apart, stdin to its end; h1's event names who and through whom.
    let far = h1.running("far");
    let slot1 = far.iter().find(|i| i.slot == 1).expect("slot 1");
    let out = h2.ok(&["exec", "far/tick/1", "--", "cat", "/etc/hostname"]);
    assert!(
        slot1.container_id.starts_with(out.trim()) && !out.trim().is_empty(),
        "{out} vs {}",
        slot1.container_id
    );
    let o = h3.exits(
        &[
            "exec",
            "far/tick",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 7",
        ],
        7,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-err\n");
    let mut child = h2
        .follow_command(&["exec", "-i", "far/tick", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cli");
    let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), big.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("cli");
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{big}done\n"));
    let e = h2.fails(&["exec", "far/tick/9", "--", "true"]);
    assert!(e.contains("far/tick/9 is not running"), "{e}");
    let events = h1.ok(&["events", "far"]);
    assert!(
        events.contains("exec in") && events.contains("through h2"),
        "{events}"
    );

    // h1 cut off: h2 refuses changes to far, naming the owner and its state, and still
    // lists it, stale.
    bed.cut(1);
    wait_until("h1 lost on h2", Duration::from_secs(15), || {
        states(&h2).get("h1").is_some_and(|s| s == "lost")
    });
    let err = h2.fails(&["scale", "far", "tick=1"]);
    assert!(err.contains("h1") && err.contains("lost"), "{err}");
    let apps = h2.ok(&["apps"]);
    assert!(apps.contains("far") && apps.contains("stale"), "{apps}");
    let t = h2.ok(&["top", "--no-stream"]);
    assert!(t.contains("no figures from h1: lost"), "{t}");
    bed.heal(1);
    wait_until("all alive after the cut", Duration::from_secs(30), || {
        all_alive(&h2, &["h1", "h2", "h3"])
    });
    assert_eq!(h1.running("far").len(), 2, "h1 never stopped its app");

    // h3 restarted with its state file deleted: it rejoins through its seed and sees far.
    h3.kill9();
    std::fs::remove_file(h3.dir.path().join("state.db")).unwrap();
    for side in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(h3.dir.path().join(side));
    }
    h3.restart();
    wait_until("h3 caught up", Duration::from_secs(30), || {
        all_alive(&h3, &["h1", "h2", "h3"]) && h3.ok(&["apps"]).contains("far")
    });

    // h1 alone (every peer's agent gone) restarted on its own state keeps running far and
    // takes changes to it.
    drop(h2);
    drop(h3);
    h1.restart();
    h1.wait_running("far", 2, Duration::from_secs(30));
    h1.ok(&["scale", "far", "tick=1"]);
    h1.wait_running("far", 1, Duration::from_secs(30));
}

#[test]
fn hostile_datagrams_a_previous_protocol_member_and_a_key_rotation_with_a_host_away() {
    let test = "multihost::hostile_datagrams_a_previous_protocol_member_and_a_key_rotation_with_a_host_away";
    let Some(bed) = Bed::up(test, 3) else { return };
    let h1 = bed.agent(1, &[], &[]);
    // h2 speaks protocol 2, the previous release's.
    let h2 = bed.agent(2, &[1], &[("BERTH_CLUSTER_PROTOCOL", "2")]);
    let mut h3 = bed.agent(3, &[1], &[]);
    let cap = bed.capture();
    form(&[&h1, &h2, &h3]);

    // The old member is listed with its protocol, its app is visible on the new ones and the
    // new ones' apps on it; what it cannot do is refused with why.
    wait_until(
        "each member's protocol listed",
        Duration::from_secs(20),
        || {
            let nodes = h1.ok(&["nodes"]);
            nodes.contains("(p2)") && nodes.matches("(p3)").count() == 2
        },
    );
    let out = h2.deploy("old", TICKER);
    assert!(out.contains("1/1 running"), "{out}");
    let out = h1.deploy("new", TICKER);
    assert!(out.contains("1/1 running"), "{out}");
    wait_until("old on h1 and new on h2", Duration::from_secs(20), || {
        h1.ok(&["apps"]).contains("old") && h2.ok(&["apps"]).contains("new")
    });
    h1.ok(&["scale", "old", "tick=2"]);
    h2.wait_running("old", 2, Duration::from_secs(30));
    // The old member runs its own apps alone and takes no slots of the others'.
    assert_eq!(h2.engine_containers("old").len(), 2);
    h2.ok(&["scale", "new", "tick=4"]);
    converge(
        "new over h1 and h3",
        Duration::from_secs(30),
        &[&h1, &h2, &h3],
        || {
            let s = spread("new", &[&h1, &h2, &h3]);
            s["h1"] == 2 && s["h3"] == 2 && s["h2"] == 0
        },
    );

    // Hostile datagrams to h1's gossip port from the bridge: random bytes, a captured packet
    // with one bit flipped, one sealed under another cluster's key, a replayed one. All are
    // dropped and counted; the membership does not change.
    let frames = cap.stop();
    let captured: Vec<Vec<u8>> = udp_to(&frames, 7946)
        .into_iter()
        .filter(|(src, _)| *src == bed.addr(3))
        .map(|(_, p)| p)
        .collect();
    assert!(
        !captured.is_empty(),
        "gossip from h3 to the others was captured"
    );
    let before = dropped(&h1);
    let replay_before = metric(&h1, "berth_gossip_packets_dropped_total{reason=\"replay\"}");
    let sock = std::net::UdpSocket::bind(format!("{}:0", bed.addr(254))).unwrap();
    let to = format!("{}:7946", bed.addr(1));
    let mut flipped = captured[0].clone();
    let at = flipped.len() - 20;
    flipped[at] ^= 0x10;
    let other = berth::cluster::keys::Keyring::create(berth::clock::now_ms()).unwrap();
    let foreign = berth::cluster::seal::seal(
        &other,
        berth::cluster::keys::Purpose::Gossip,
        7,
        1,
        [3; 12],
        b"{}",
    );
    let mut random = vec![0u8; 300];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    for p in [&random, &flipped, &foreign, &captured[0]] {
        sock.send_to(p, &to).unwrap();
    }
    wait_until(
        "four datagrams dropped and counted",
        Duration::from_secs(10),
        || dropped(&h1) - before >= 4.0,
    );
    assert!(
        metric(&h1, "berth_gossip_packets_dropped_total{reason=\"replay\"}") > replay_before,
        "the replayed packet was dropped as a replay"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(all_alive(&h1, &["h1", "h2", "h3"]));
    assert_eq!(states(&h1).len(), 3, "no member made up: {:?}", states(&h1));

    // Key rotation with h3 away: the others switch, h3 back with only the retired key says
    // so and rejoins with a token.
    h3.kill9();
    wait_until("h3 lost", Duration::from_secs(15), || {
        states(&h1).get("h3").is_some_and(|s| s == "lost")
    });
    let out = h1.ok(&["cluster", "rotate-key"]);
    assert!(out.contains("rotated") || out.contains("key"), "{out}");
    wait_until(
        "h1 and h2 alive under the new key",
        Duration::from_secs(20),
        || all_alive(&h1, &["h1", "h2"]) && all_alive(&h2, &["h1", "h2"]),
    );
    h3.restart();
    wait_until(
        "h3 says it holds only a retired key",
        Duration::from_secs(40),
        || h3.ok(&["events", "-n", "50"]).contains("rejoin"),
    );
    let data_dir = h3.dir.path().display().to_string();
    let doctor = h3.berth(&["doctor", "--data-dir", &data_dir]);
    let text = String::from_utf8_lossy(&doctor.stdout).to_string()
        + &String::from_utf8_lossy(&doctor.stderr);
    assert!(text.contains("retired") && text.contains("token"), "{text}");
    h3.ok(&["cluster", "leave"]);
    let out = h3.ok(&["cluster", "join", &token(&h1)]);
    assert!(out.contains("joined cluster"), "{out}");
    for a in [&h1, &h2, &h3] {
        wait_until(
            "three alive after the rejoin",
            Duration::from_secs(30),
            || all_alive(a, &["h1", "h2", "h3"]),
        );
    }
}

/// TICKER with `replicas` and extra service lines (placement, labels).
fn ticker(replicas: u32, extra: &str) -> String {
    format!("{TICKER}    deploy:\n      replicas: {replicas}\n{extra}")
}

/// Each host's running containers of `app`, by host name.
fn spread(app: &str, hosts: &[&Agent]) -> BTreeMap<String, usize> {
    hosts
        .iter()
        .map(|h| {
            let n = h
                .engine_containers(app)
                .iter()
                .filter(|(_, st)| st == "running")
                .count();
            (h.name.clone(), n)
        })
        .collect()
}

#[test]
fn six_replicas_spread_over_three_real_hosts_and_node_labels_steer_them() {
    let test = "multihost::six_replicas_spread_over_three_real_hosts_and_node_labels_steer_them";
    let Some(bed) = Bed::up(test, 3) else { return };
    let mut h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    let h3 = bed.agent(3, &[1], &[]);
    form(&[&h1, &h2, &h3]);
    // Placement waits for the members' node records (they say what each can take).
    records_on(&h1, 3);
    let all = [&h1, &h2, &h3];

    // Six replicas deployed through h1 land two on each host, each run by its own agent;
    // the deploy reports them all running.
    let p = h1.template("wide", &ticker(6, ""));
    let o = h1.berth(&[
        "deploy",
        "-f",
        p.to_str().unwrap(),
        "--name",
        "wide",
        "--timeout",
        "60",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("6/6 running"),
        "{out}{}\n{}{}",
        String::from_utf8_lossy(&o.stderr),
        h1.ok(&["events", "wide"]),
        report(&all)
    );
    // The owner killed and restarted: it runs its own share again and never starts the
    // others' (no container of `wide` is created on h1 meanwhile).
    let ids = |h: &Agent| h.docker_ok(&["ps", "-aq", "--filter", "label=berth.app=wide"]);
    let before = ids(&h1);
    h1.kill9();
    h1.restart();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        ids(&h1),
        before,
        "h1's containers of wide after its restart"
    );
    let all = [&h1, &h2, &h3];
    let s = spread("wide", &all);
    assert!(
        s.values().all(|n| *n == 2),
        "{s:?}\n{}{}",
        h1.ok(&["events", "wide"]),
        report(&all)
    );
    // `ps` on any host lists all six with their node.
    for h in all {
        converge("six in ps", Duration::from_secs(15), &all, || {
            let ps = h.ps("wide");
            ps.iter().filter(|i| i.state == "running").count() == 6
                && ["h1", "h2", "h3"]
                    .iter()
                    .all(|n| ps.iter().filter(|i| i.node == *n).count() == 2)
        });
    }
    // Scaled to 3 from h2: one left on each host.
    h2.ok(&["scale", "wide", "tick=3"]);
    converge("one on each", Duration::from_secs(30), &all, || {
        spread("wide", &all).values().all(|n| *n == 1)
    });

    // A constraint on a node label: only the host labelled takes them.
    h1.ok(&["node", "label", "h3", "disk=ssd"]);
    wait_until("the label on h1", Duration::from_secs(15), || {
        h1.ok(&["nodes"]).contains("disk=ssd")
    });
    let ssd = ticker(2, "    environment:\n      - constraint:disk==ssd\n");
    let out = h1.deploy("ssd", &ssd);
    assert!(out.contains("2/2 running"), "{out}");
    let s = spread("ssd", &all);
    assert_eq!(s["h3"], 2, "{s:?}");

    // A rule no host meets fails the deploy before anything starts, naming the rule and
    // what each host lacks.
    let nowhere = ticker(1, "    environment:\n      - constraint:disk==nvme\n");
    let p = h1.template("nowhere", &nowhere);
    let err = h1.fails(&["deploy", "-f", p.to_str().unwrap(), "--name", "nowhere"]);
    assert!(err.contains("disk==nvme"), "{err}");
    assert!(err.contains("h2") && err.contains("h3"), "{err}");
    assert!(!h1.ok(&["apps"]).contains("nowhere"));
    let s = spread("nowhere", &all);
    assert!(s.values().all(|n| *n == 0), "{s:?}");

    // Drained, h3's instances move to the others, each started there before it stops on
    // h3; undrained and rebalanced, they spread again.
    h2.ok(&["scale", "wide", "tick=6"]);
    converge("two on each", Duration::from_secs(30), &all, || {
        spread("wide", &all).values().all(|n| *n == 2)
    });
    h1.ok(&["node", "drain", "h3"]);
    converge("h3 drained", Duration::from_secs(40), &all, || {
        let s = spread("wide", &all);
        s["h3"] == 0 && s["h1"] + s["h2"] == 6
    });
    let events = h1.ok(&["events", "wide", "-n", "100"]);
    assert!(events.contains("placed"), "{events}");
    h1.ok(&["node", "undrain", "h3"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        spread("wide", &all)["h3"],
        0,
        "a running instance is never moved by itself"
    );
    let out = h3.ok(&["rebalance", "wide/tick"]);
    assert!(out.contains("moving"), "{out}");
    converge("spread again", Duration::from_secs(40), &all, || {
        spread("wide", &all).values().all(|n| *n == 2)
    });
    let out = h2.ok(&["rebalance", "wide/tick"]);
    assert!(out.contains("nothing to move"), "{out}");

    // Removed through h3 (owner h1): every host's containers go.
    h3.ok(&["rm", "wide"]);
    converge(
        "wide gone everywhere",
        Duration::from_secs(30),
        &all,
        || all.iter().all(|h| h.engine_containers("wide").is_empty()),
    );
}

#[test]
fn a_routed_service_on_three_real_hosts_is_served_through_every_hosts_router() {
    let test =
        "multihost::a_routed_service_on_three_real_hosts_is_served_through_every_hosts_router";
    let Some(bed) = Bed::up(test, 3) else { return };
    // Each host's router listens on its bridge address.
    let agent = |i: usize, seeds: &[usize]| bed.agent_routed(i, seeds);
    let (h1, h2, h3) = (agent(1, &[]), agent(2, &[1]), agent(3, &[1]));
    let all = [&h1, &h2, &h3];
    form(&all);
    records_on(&h1, 3);
    // Three instances, each answering with its own container id.
    let web = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'hostname > /www/id; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"3\"\n      berth.probe.url: http://container:8080/id\n      berth.routing.port_8080: web.test.local\n      berth.lb.port_8080: tcp://:9000\n"
    );
    let out = h1.deploy("web", &web);
    assert!(out.contains("3/3 running"), "{out}");
    let s = spread("web", &all);
    assert!(s.values().all(|n| *n == 1), "{s:?}");
    let ids: Vec<String> = h1.ps("web").into_iter().map(|i| i.container_id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");

    // Through the router of any host, requests go to the instances on every host.
    for i in 1..=3 {
        let addr = format!("{}:8080", bed.addr(i));
        converge(
            &format!("all three instances through h{i}'s router"),
            Duration::from_secs(20),
            &all,
            || {
                let t = router_tally_at(&addr, "web.test.local", "/id", 30);
                t.len() == 3
                    && t.keys()
                        .all(|id| ids.iter().any(|c| c.starts_with(id.as_str())))
            },
        );
        let t = router_tally_at(&addr, "web.test.local", "/id", 60);
        assert!(
            t.values().all(|n| *n == 20),
            "round robin through h{i}: {t:?}"
        );
    }

    // The TCP router port on every host reaches the instances on every host too.
    for i in 1..=3 {
        let addr = format!("{}:9000", bed.addr(i));
        converge(
            &format!("all three instances through h{i}'s TCP port"),
            Duration::from_secs(20),
            &all,
            || {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..30 {
                    use std::io::{Read, Write};
                    let Ok(mut c) = std::net::TcpStream::connect(&addr) else {
                        return false;
                    };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = c.write_all(b"GET /id HTTP/1.0\r\n\r\n");
                    let mut out = String::new();
                    let _ = c.read_to_string(&mut out);
                    if let Some((_, body)) = out.split_once("\r\n\r\n") {
                        seen.insert(body.trim().to_string());
                    }
                }
                seen.len() == 3
            },
        );
    }

    // h3's instance stops answering (its container stopped under the engine): the routers
    // of h1 and h2 take it out of rotation on the first refused connection and the request
    // goes to another instance; no request fails.
    let on_h3 = h3.engine_containers("web");
    assert_eq!(on_h3.len(), 1, "{on_h3:?}");
    h3.docker_ok(&["stop", "-t", "0", &on_h3[0].0]);
    for i in [1, 2] {
        let t = router_tally_at(
            &format!("{}:8080", bed.addr(i)),
            "web.test.local",
            "/id",
            40,
        );
        assert!(
            t.keys().all(|k| !k.starts_with("HTTP")),
            "a request failed through h{i} while h3's instance was down: {t:?}"
        );
    }
    // h3's agent brings it back and every router uses it again.
    h3.wait_running("web", 3, Duration::from_secs(30));
    converge(
        "h3's instance back in rotation",
        Duration::from_secs(30),
        &all,
        || {
            router_tally_at(
                &format!("{}:8080", bed.addr(1)),
                "web.test.local",
                "/id",
                30,
            )
            .len()
                == 3
        },
    );
}

#[test]
fn global_services_follow_the_members_and_zones_spread_or_refuse() {
    let test = "multihost::global_services_follow_the_members_and_zones_spread_or_refuse";
    let Some(bed) = Bed::up(test, 3) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    let h3 = bed.agent(3, &[1], &[]);
    let all = [&h1, &h2, &h3];
    // An app deployed before there is a cluster keeps its instances where they run when
    // the cluster forms (placing it the first time adopts them).
    let out = h1.deploy("early", &ticker(2, ""));
    assert!(out.contains("2/2 running"), "{out}");
    let early = h1.docker_ok(&["ps", "-q", "--filter", "label=berth.app=early"]);
    form(&[&h1, &h2]);
    let records = |n: usize| {
        let h1 = &h1;
        move || {
            let o = h1.berth(&["nodes", "--json"]);
            let v: Vec<berth::wire::NodeView> =
                serde_json::from_slice(&o.stdout).unwrap_or_default();
            v.len() == n && v.iter().all(|x| !x.agent.is_empty())
        }
    };
    wait_until(
        "two node records on h1",
        Duration::from_secs(20),
        records(2),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        h1.docker_ok(&["ps", "-q", "--filter", "label=berth.app=early"]),
        early,
        "early's instances stayed on h1"
    );

    // Global: one instance on every member, and on a member that joins later.
    let global = format!("{TICKER}    labels:\n      aliyun.global: \"true\"\n");
    let out = h1.deploy("everywhere", &global);
    assert!(out.contains("2/2 running"), "{out}");
    let s = spread("everywhere", &all);
    assert_eq!((s["h1"], s["h2"], s["h3"]), (1, 1, 0), "{s:?}");
    let out = h3.ok(&["cluster", "join", &token(&h1)]);
    assert!(out.contains("joined cluster"), "{out}");
    converge(
        "one on the member that joined",
        Duration::from_secs(30),
        &all,
        || spread("everywhere", &all).values().all(|n| *n == 1),
    );
    // ... and none on a member that stops being eligible.
    h1.ok(&["node", "drain", "h2"]);
    converge(
        "none on the drained member",
        Duration::from_secs(30),
        &all,
        || {
            let s = spread("everywhere", &all);
            (s["h1"], s["h2"], s["h3"]) == (1, 0, 1)
        },
    );
    h1.ok(&["node", "undrain", "h2"]);

    // Zones: availability:az==2 spreads over both zones; az==3 with two zones is refused
    // before anything starts, naming the zones there are.
    wait_until(
        "three node records on h1",
        Duration::from_secs(20),
        records(3),
    );
    h1.ok(&["node", "label", "h1", "az=1"]);
    h1.ok(&["node", "label", "h2", "az=1"]);
    h1.ok(&["node", "label", "h3", "az=2"]);
    wait_until("zones on h1", Duration::from_secs(15), || {
        h1.ok(&["nodes"]).matches("az=").count() == 3
    });
    let zoned = ticker(2, "    environment:\n      - availability:az==2\n");
    let out = h1.deploy("zoned", &zoned);
    assert!(out.contains("2/2 running"), "{out}");
    let s = spread("zoned", &all);
    assert_eq!(s["h3"], 1, "one in zone 2: {s:?}");
    assert_eq!(s["h1"] + s["h2"], 1, "one in zone 1: {s:?}");
    let three = ticker(2, "    environment:\n      - availability:az==3\n");
    let p = h1.template("three", &three);
    let err = h1.fails(&["deploy", "-f", p.to_str().unwrap(), "--name", "three"]);
    assert!(err.contains("az==3") && err.contains("1, 2"), "{err}");
    assert!(spread("three", &all).values().all(|n| *n == 0));

    // Anti-affinity between two services, in the seed's spellings: `cache` never beside
    // `db` (Swarm classic's `affinity:service!=`), and `worker` (soft `==~`) preferring the
    // hosts in zone 1 (`constraint:az==~1`, a single `=` form `constraint:az=1` too).
    let pair = format!(
        "services:
  db:
    image: {IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    environment:
      - constraint:az=2
  cache:
    image: {IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    deploy:
      replicas: 2
    environment:
      - affinity:service!=db
  worker:
    image: {IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    environment:
      - constraint:az==~1
"
    );
    let out = h1.deploy("pair", &pair);
    assert!(out.contains("running"), "{out}");
    let on = |h: &Agent, svc: &str| {
        h.engine_containers("pair")
            .iter()
            .filter(|(n, st)| n.starts_with(&format!("pair_{svc}")) && st == "running")
            .count()
    };
    assert_eq!(on(&h3, "db"), 1, "db in zone 2 (h3)");
    assert_eq!(on(&h3, "cache"), 0, "cache beside db");
    assert_eq!((on(&h1, "cache"), on(&h2, "cache")), (1, 1));
    assert_eq!(on(&h1, "worker") + on(&h2, "worker"), 1, "worker in zone 1");
}

/// Waits until `a` has the node records of `n` members (placement waits for them).
fn records_on(a: &Agent, n: usize) {
    wait_until(
        &format!("{n} node records on {}", a.name),
        Duration::from_secs(20),
        || {
            let o = a.berth(&["nodes", "--json"]);
            let v: Vec<berth::wire::NodeView> =
                serde_json::from_slice(&o.stdout).unwrap_or_default();
            v.len() == n && v.iter().all(|x| !x.agent.is_empty())
        },
    );
}

/// A grace of 3 s before a lost member's instances move (60 s by default).
const GRACE: &str = "reschedule_after = \"3s\"\n";
const RESCHEDULE: &str = "    environment:\n      - reschedule:on-node-failure\n";

#[test]
fn a_lost_hosts_instances_move_when_asked_and_it_comes_back_to_exactly_the_count() {
    let test =
        "multihost::a_lost_hosts_instances_move_when_asked_and_it_comes_back_to_exactly_the_count";
    let Some(bed) = Bed::up(test, 3) else { return };
    let h1 = bed.agent_with(1, &[], GRACE);
    let h2 = bed.agent_with(2, &[1], GRACE);
    let mut h3 = bed.agent_with(3, &[1], GRACE);
    form(&[&h1, &h2, &h3]);
    records_on(&h1, 3);
    // `moving` is owned by h3, the host that goes down; `staying` by h1.
    for (app, extra, owner) in [("moving", RESCHEDULE, &h3), ("staying", "", &h1)] {
        let out = owner.deploy(app, &ticker(3, extra));
        assert!(out.contains("3/3 running"), "{out}");
        let s = spread(app, &[&h1, &h2, &h3]);
        assert!(s.values().all(|n| *n == 1), "{app}: {s:?}");
    }

    // h3 goes down: its agent killed, its engine stopped (its containers with it).
    h3.kill9();
    bed.stop_engine(3);
    let down = Instant::now();
    let two = [&h1, &h2];
    converge("h3 lost on h1", Duration::from_secs(30), &two, || {
        states(&h1).get("h3").is_some_and(|s| s == "lost")
    });
    let lost = down.elapsed();
    converge(
        "moving runs 3 on h1 and h2",
        Duration::from_secs(40),
        &two,
        || spread("moving", &two).values().sum::<usize>() == 3,
    );
    eprintln!(
        "h3 down -> lost in {lost:?}; -> its instance running elsewhere in {:?} (grace 3 s)",
        down.elapsed()
    );
    // Never more than asked for, and what did not ask stays.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(spread("moving", &two).values().sum::<usize>(), 3);
    assert_eq!(spread("staying", &two).values().sum::<usize>(), 2);
    // One of h1 and h2 took `moving` over from h3 (the same one seen from both), and
    // changes to it work again from either.
    let ev = h1.ok(&["events", "moving", "-n", "100"]);
    assert!(ev.contains("rescheduled off lost h3 to h"), "{ev}");
    assert!(
        ev.contains("took this app over from h3, which has been lost for"),
        "{ev}"
    );
    h2.ok(&["scale", "moving", "tick=4"]);
    converge("moving runs 4", Duration::from_secs(30), &two, || {
        spread("moving", &two).values().sum::<usize>() == 4
    });
    let ev = h1.ok(&["events", "staying", "-n", "100"]);
    assert!(
        ev.contains(
            "instance 3 stays on lost h3: the service does not ask for reschedule:on-node-failure"
        ) || ev.contains("stays on lost h3: the service does not ask"),
        "{ev}"
    );
    // On its way back, h3 stops its copy of the moved instance and runs its own again: the
    // cluster holds exactly three of each.
    bed.start_engine(3);
    h3.restart();
    let all = [&h1, &h2, &h3];
    converge(
        "h3 alive again on h1",
        Duration::from_secs(30),
        &all,
        || all_alive(&h1, &["h1", "h2", "h3"]),
    );
    converge("4 and 3 again", Duration::from_secs(60), &all, || {
        let m = spread("moving", &all);
        let s = spread("staying", &all);
        m.values().sum::<usize>() == 4 && m["h3"] == 0 && s.values().all(|n| *n == 1)
    });
    std::thread::sleep(Duration::from_secs(4));
    let m = spread("moving", &all);
    assert_eq!((m.values().sum::<usize>(), m["h3"]), (4, 0), "{m:?}");
    // h3 gave `moving` up, said so, and lists it once, owned elsewhere; a change through
    // h3 reaches the new owner.
    let ev = h3.ok(&["events", "moving", "-n", "100"]);
    assert!(
        ev.contains("took this app over while this host was away"),
        "{ev}"
    );
    let apps = h3.ok(&["apps"]);
    assert_eq!(apps.matches("moving").count(), 1, "{apps}");
    h3.ok(&["scale", "moving", "tick=2"]);
    converge("moving runs 2", Duration::from_secs(30), &all, || {
        spread("moving", &all).values().sum::<usize>() == 2
    });
}

#[test]
fn two_hosts_move_nothing_by_themselves_and_node_rm_forces_it() {
    let test = "multihost::two_hosts_move_nothing_by_themselves_and_node_rm_forces_it";
    let Some(bed) = Bed::up(test, 2) else { return };
    let h1 = bed.agent_with(1, &[], GRACE);
    let h2 = bed.agent_with(2, &[1], GRACE);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let out = h1.deploy("pair", &ticker(2, RESCHEDULE));
    assert!(out.contains("2/2 running"), "{out}");
    assert_eq!(spread("pair", &[&h1])["h1"], 1);
    let out = h2.deploy("theirs", &ticker(2, RESCHEDULE));
    assert!(out.contains("2/2 running"), "{out}");
    // `data` keeps its data in a local volume on each host and does not ask to move.
    let data = format!(
        "{TICKER}    deploy:\n      replicas: 2\n    volumes:\n      - store:/data\nvolumes:\n  store: {{}}\n"
    );
    let out = h1.deploy("data", &data);
    assert!(out.contains("2/2 running"), "{out}");
    // h2's link goes down: each side sees the other lost, neither a majority.
    bed.cut(2);
    converge("h2 lost on h1", Duration::from_secs(30), &[&h1], || {
        states(&h1).get("h2").is_some_and(|s| s == "lost")
    });
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(spread("pair", &[&h1])["h1"], 1, "h1 moved h2's instance");
    assert_eq!(spread("pair", &[&h2])["h2"], 1, "h2 stopped its own");
    assert_eq!(spread("theirs", &[&h1])["h1"], 1, "h1 took h2's app");
    let err = h1.fails(&["scale", "theirs", "tick=3"]);
    assert!(err.contains("lost"), "{err}");
    let ev = h1.ok(&["events", "pair", "-n", "100"]);
    assert!(
        ev.contains("stay on lost h2: this host sees 1 of the 2 members, not a strict majority")
            && ev.contains("`berth node rm h2` moves them"),
        "{ev}"
    );
    // The operator forgets h2: its instance runs on h1.
    h1.ok(&["node", "rm", "h2"]);
    converge("both on h1", Duration::from_secs(30), &[&h1], || {
        spread("pair", &[&h1])["h1"] == 2
    });
    let ev = h1.ok(&["events", "pair", "-n", "100"]);
    assert!(ev.contains("rescheduled off removed node"), "{ev}");
    // What keeps its data on h2 stays assigned there, and says why.
    assert_eq!(spread("data", &[&h1])["h1"], 1, "data moved off h2");
    let ev = h1.ok(&["events", "data", "-n", "100"]);
    assert!(
        ev.contains("stays assigned to removed node")
            && ev.contains("it keeps data there (local volume store)"),
        "{ev}"
    );
    // h2's own app is h1's now, with both instances.
    converge("theirs both on h1", Duration::from_secs(30), &[&h1], || {
        spread("theirs", &[&h1])["h1"] == 2
    });
    let ev = h1.ok(&["events", "theirs", "-n", "100"]);
    assert!(ev.contains("took this app over from"), "{ev}");
    h1.ok(&["scale", "theirs", "tick=3"]);
    converge("theirs 3 on h1", Duration::from_secs(30), &[&h1], || {
        spread("theirs", &[&h1])["h1"] == 3
    });
}

/// Every running container of `app` on `hosts`, by name (a name twice is a duplicate).
fn names(app: &str, hosts: &[&Agent]) -> Vec<String> {
    let mut out: Vec<String> = hosts
        .iter()
        .flat_map(|h| {
            h.engine_containers(app)
                .into_iter()
                .filter(|(_, st)| st == "running")
                .map(|(n, _)| n)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_partition_3_to_2_moves_on_the_majority_side_only_and_heals_to_exactly_the_count() {
    let test = "multihost::a_partition_3_to_2_moves_on_the_majority_side_only_and_heals_to_exactly_the_count";
    let Some(bed) = Bed::up(test, 5) else { return };
    let h: Vec<Agent> = (1..=5)
        .map(|i| bed.agent_with(i, if i == 1 { &[] } else { &[1] }, GRACE))
        .collect();
    let all: Vec<&Agent> = h.iter().collect();
    form(&all);
    records_on(&h[0], 5);
    // `wide` is owned by h1 (majority side), `edge` by h5 (minority side); both ask to be
    // rescheduled, one instance on each host.
    for (app, owner) in [("wide", 0), ("edge", 4)] {
        let out = h[owner].deploy(app, &ticker(5, RESCHEDULE));
        assert!(out.contains("5/5 running"), "{out}");
        let s = spread(app, &all);
        assert!(s.values().all(|n| *n == 1), "{app}: {s:?}");
    }
    // h4 and h5 are cut off: the majority (h1, h2, h3) sees 3 of 5 members.
    bed.cut(4);
    bed.cut(5);
    let major = [&h[0], &h[1], &h[2]];
    let cut_at = Instant::now();
    let mut most = BTreeMap::new();
    converge(
        "the majority runs 5 of each",
        Duration::from_secs(60),
        &major,
        || {
            for app in ["wide", "edge"] {
                let n: usize = spread(app, &major).values().sum();
                let m = most.entry(app).or_insert(0);
                *m = (*m).max(n);
            }
            ["wide", "edge"]
                .iter()
                .all(|app| spread(app, &major).values().sum::<usize>() == 5)
        },
    );
    eprintln!(
        "cut -> 5 of each on the majority side in {:?}",
        cut_at.elapsed()
    );
    for _ in 0..10 {
        for app in ["wide", "edge"] {
            let n: usize = spread(app, &major).values().sum();
            let m = most.entry(app).or_insert(0);
            *m = (*m).max(n);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        most,
        BTreeMap::from([("edge", 5), ("wide", 5)]),
        "the majority side ran more than asked"
    );
    // The minority keeps running what it ran, and moves nothing.
    for i in [3, 4] {
        let s = spread("wide", &[&h[i]]);
        assert_eq!(s[&h[i].name], 1, "{} stopped its wide", h[i].name);
        let s = spread("edge", &[&h[i]]);
        assert_eq!(s[&h[i].name], 1, "{} changed its edge", h[i].name);
    }
    let ev = h[4].ok(&["events", "edge", "-n", "100"]);
    assert!(
        !ev.contains("rescheduled off"),
        "a minority host rescheduled: {ev}"
    );
    // Healed: the cut hosts stop their copies of what moved, and every host agrees on
    // exactly five of each, none of them on h4 or h5.
    bed.heal(4);
    bed.heal(5);
    let healed = Instant::now();
    let settled = || {
        ["wide", "edge"].iter().all(|app| {
            let s = spread(app, &all);
            s.values().sum::<usize>() == 5 && s["h4"] == 0 && s["h5"] == 0
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled() {
        if Instant::now() >= deadline {
            // What each host runs and what the owners' events say, to see which side kept
            // what (this failed once under the full suite's load).
            let mut why = String::new();
            for app in ["wide", "edge"] {
                why.push_str(&format!(
                    "\n{app}: {:?} names {:?}",
                    spread(app, &all),
                    names(app, &all)
                ));
                for x in &all {
                    why.push_str(&format!(
                        "\n--- {}'s events of {app}:\n{}",
                        x.name,
                        String::from_utf8_lossy(&x.berth(&["events", app, "-n", "30"]).stdout)
                    ));
                }
            }
            panic!(
                "timed out waiting for exactly 5 of each again:{why}{}",
                report(&all)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("heal -> exactly 5 of each in {:?}", healed.elapsed());
    std::thread::sleep(Duration::from_secs(4));
    for app in ["wide", "edge"] {
        let n = names(app, &all);
        assert_eq!(n.len(), 5, "{app}: {n:?}");
        let unique: std::collections::BTreeSet<&String> = n.iter().collect();
        assert_eq!(unique.len(), 5, "{app}: duplicates {n:?}");
    }
    let ev = h[4].ok(&["events", "edge", "-n", "100"]);
    assert!(
        ev.contains("took this app over while this host was away"),
        "{ev}"
    );
}

#[test]
fn kill9_of_the_owner_during_a_deploy_and_of_a_member_during_a_rebalance_leaves_no_duplicate() {
    let test = "multihost::kill9_of_the_owner_during_a_deploy_and_of_a_member_during_a_rebalance_leaves_no_duplicate";
    let Some(bed) = Bed::up(test, 3) else { return };
    let mut h1 = bed.agent(1, &[], &[]);
    let mut h2 = bed.agent(2, &[1], &[]);
    let h3 = bed.agent(3, &[1], &[]);
    form(&[&h1, &h2, &h3]);
    records_on(&h1, 3);
    // The owner is killed a moment into a deploy of six.
    let p = h1.template("crash", &ticker(6, ""));
    h1.ok(&[
        "deploy",
        "-f",
        p.to_str().unwrap(),
        "--name",
        "crash",
        "--detach",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    h1.kill9();
    std::thread::sleep(Duration::from_secs(2));
    h1.restart();
    let all = [&h1, &h2, &h3];
    converge("six, two on each", Duration::from_secs(60), &all, || {
        spread("crash", &all).values().all(|n| *n == 2)
    });
    std::thread::sleep(Duration::from_secs(4));
    let n = names("crash", &all);
    assert_eq!(n.len(), 6, "{n:?}");
    let total: usize = all.iter().map(|h| h.engine_containers("crash").len()).sum();
    assert_eq!(total, 6, "an orphan (a stopped container) was left");
    // A rebalance whose target member is killed while its new instances start: after the
    // restart, two on each host and nothing else.
    h1.ok(&["node", "drain", "h3"]);
    converge("h3 drained", Duration::from_secs(40), &all, || {
        let s = spread("crash", &all);
        s["h3"] == 0 && s["h1"] + s["h2"] == 6
    });
    h1.ok(&["node", "undrain", "h3"]);
    std::thread::sleep(Duration::from_secs(3));
    let out = h1.ok(&["rebalance", "crash/tick"]);
    assert!(out.contains("moving"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    h2.kill9();
    std::thread::sleep(Duration::from_secs(2));
    h2.restart();
    let all = [&h1, &h2, &h3];
    converge("spread again", Duration::from_secs(60), &all, || {
        spread("crash", &all).values().all(|n| *n == 2)
    });
    std::thread::sleep(Duration::from_secs(4));
    let n = names("crash", &all);
    assert_eq!(n.len(), 6, "{n:?}");
    let total: usize = all.iter().map(|h| h.engine_containers("crash").len()).sum();
    assert_eq!(total, 6, "an orphan was left");
}

/// A routed web service answering `/v` with `tag` after `delay` seconds, probed there.
fn tagged_web(tag: &str, replicas: u32, delay: u32, rolling: bool) -> String {
    let rolling = if rolling {
        "      berth.rolling_updates: \"true\"\n      berth.rolling_updates.parallelism: \"1\"\n"
    } else {
        ""
    };
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'echo {tag} > /www/v; sleep {delay}; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 2s\n    labels:\n      berth.scale: \"{replicas}\"\n      berth.probe.url: http://container:8080/v\n      berth.routing.port_8080: web.test.local\n{rolling}"
    )
}

#[test]
fn version_splits_and_rolling_updates_hold_across_hosts() {
    let test = "multihost::version_splits_and_rolling_updates_hold_across_hosts";
    let Some(bed) = Bed::up(test, 3) else { return };
    let agent = |i: usize, seeds: &[usize]| bed.agent_routed(i, seeds);
    let (h1, h2, h3) = (agent(1, &[]), agent(2, &[1]), agent(3, &[1]));
    let all = [&h1, &h2, &h3];
    form(&all);
    records_on(&h1, 3);
    let out = h1.deploy("sp", &tagged_web("v1", 3, 0, false));
    assert!(out.contains("3/3 running"), "{out}");
    assert!(spread("sp", &all).values().all(|n| *n == 1));
    let router = |i: usize| format!("{}:8080", bed.addr(i));

    // A second version beside it, then 90/10: through any host's router, 1,000 requests
    // split within 3 points, with the instances on three hosts.
    let p = h1.template("sp", &tagged_web("v2", 3, 0, false));
    let out = h1.ok(&[
        "deploy",
        "-f",
        p.to_str().unwrap(),
        "--name",
        "sp",
        "--traffic",
        "none",
        "--timeout",
        "60",
    ]);
    assert!(out.contains("runs at 0% of the traffic"), "{out}");
    h2.ok(&["traffic", "sp/web", "002=90", "001=10"]);
    converge("three of each serve", Duration::from_secs(60), &all, || {
        let ps = h3.ps("sp");
        ["web-001", "web-002"].iter().all(|v| {
            ps.iter()
                .filter(|i| i.version == *v && i.health == "healthy")
                .count()
                == 3
        })
    });
    converge("every router splits", Duration::from_secs(20), &all, || {
        (1..=3).all(|i| router_tally_at(&router(i), "web.test.local", "/v", 40).len() == 2)
    });
    for i in [1, 3] {
        let t = router_tally_at(&router(i), "web.test.local", "/v", 1000);
        let v2 = t.get("v2").copied().unwrap_or(0);
        assert_eq!(
            v2 + t.get("v1").copied().unwrap_or(0),
            1000,
            "through h{i}: {t:?}"
        );
        // Random draws: +-45 is 4.7 standard deviations of 900 in 1,000 (releases.rs).
        assert!(
            (855..=945).contains(&v2),
            "90% +-4.5 to web-002 through h{i}: {t:?}"
        );
    }
    h1.ok(&["traffic", "sp/web", "002=100"]);
    converge("web-001 gone", Duration::from_secs(60), &all, || {
        h1.ps("sp").iter().all(|i| i.version == "web-002")
    });

    // A rolling update one instance at a time over the three hosts, each new instance slow
    // to answer, under a request loop through h2's router: no request fails, and the
    // cluster never has more than one new instance starting at once.
    let load = Load::start_at(router(2), "web.test.local");
    let p = h1.template("sp", &tagged_web("v3", 3, 2, true));
    let deploy = {
        let p = p.clone();
        let mut h = h1.follow_command(&[
            "deploy",
            "-f",
            p.to_str().unwrap(),
            "--name",
            "sp",
            "--timeout",
            "120",
        ]);
        std::thread::spawn(move || h.output().expect("berth deploy runs"))
    };
    let mut most_starting = 0;
    let started = Instant::now();
    loop {
        let starting: usize = all
            .iter()
            .map(|h| {
                h.ps("sp")
                    .iter()
                    .filter(|i| i.node == h.name && i.version == "web-003")
                    .filter(|i| i.health != "healthy")
                    .count()
            })
            .sum();
        most_starting = most_starting.max(starting);
        if deploy.is_finished() || started.elapsed() > Duration::from_secs(150) {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let o = deploy.join().expect("deploy thread");
    let (ok, failed) = load.finish();
    assert!(
        o.status.success(),
        "{}{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        h1.ok(&["events", "sp", "-n", "100"])
    );
    assert!(
        failed.is_empty(),
        "failed requests: {failed:?} (ok: {ok:?})\nevents:\n{}",
        h1.ok(&["events", "sp", "-n", "200"])
    );
    assert!(ok.get("v3").copied().unwrap_or(0) > 0, "{ok:?}");
    assert_eq!(
        most_starting, 1,
        "new instances starting at once over the cluster (parallelism 1)"
    );
    converge(
        "three of web-003, one per host",
        Duration::from_secs(30),
        &all,
        || {
            let s = spread("sp", &all);
            s.values().all(|n| *n == 1)
                && h1
                    .ps("sp")
                    .iter()
                    .all(|i| i.version == "web-003" && i.health == "healthy")
        },
    );
}

#[test]
fn secrets_and_configs_given_by_value_reach_the_members_running_the_instances() {
    let test =
        "multihost::secrets_and_configs_given_by_value_reach_the_members_running_the_instances";
    let Some(bed) = Bed::up(test, 2) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let p = h1.template(
        "vault",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 600\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"2\"\n    secrets:\n      - pw\n    configs:\n      - source: motd\n        target: /etc/motd\nsecrets:\n  pw:\n    environment: PW\nconfigs:\n  motd:\n    content: welcome aboard\n"
        ),
    );
    let o = h1
        .follow_command(&[
            "deploy",
            "-f",
            p.to_str().unwrap(),
            "--name",
            "vault",
            "--timeout",
            "60",
        ])
        .env("PW", "pw-from-the-shell-5521")
        .output()
        .expect("deploy runs");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let on_h2 = h2.engine_containers("vault");
    assert_eq!(on_h2.len(), 1, "{on_h2:?}");
    let cat = |f: &str| h2.docker_ok(&["exec", &on_h2[0].0, "cat", f]);
    assert_eq!(cat("/run/secrets/pw").trim(), "pw-from-the-shell-5521");
    assert_eq!(cat("/etc/motd").trim(), "welcome aboard");
    // Written under h2's own data directory, 0400.
    let modes: Vec<u32> = std::fs::read_dir(h2.dir.path().join("files/vault"))
        .expect("h2 wrote the files")
        .flatten()
        .map(|e| {
            use std::os::unix::fs::PermissionsExt;
            e.metadata().expect("meta").permissions().mode() & 0o777
        })
        .collect();
    assert!(
        modes.len() == 2 && modes.iter().all(|m| *m == 0o400),
        "{modes:?}"
    );
    // h2 saves h1's records (every 2 s) sealed: the secret is nowhere in its state files.
    std::thread::sleep(Duration::from_secs(5));
    for f in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(h2.dir.path().join(f)).unwrap_or_default();
        assert!(
            !bytes
                .windows(b"pw-from-the-shell-5521".len())
                .any(|w| w == b"pw-from-the-shell-5521"),
            "h2's {f} holds the secret in clear"
        );
    }
    // The app removed: h2's copies go once its container has.
    h1.ok(&["rm", "vault"]);
    wait_until("h2's copies removed", Duration::from_secs(30), || {
        !h2.dir.path().join("files/vault").exists()
    });
}

/// A template's certificate (`proxy.SSL_CERT`) deployed on one host is served by every
/// member's HTTPS listener: its key reaches the other member with the app's record and is
/// written there 0400, and goes when the app does.
#[test]
fn a_templates_certificate_is_served_by_every_members_https_listener() {
    let test = "multihost::a_templates_certificate_is_served_by_every_members_https_listener";
    let Some(bed) = Bed::up(test, 2) else { return };
    let https = |i: usize| format!("https = \"{}:8443\"\n", bed.addr(i));
    let h1 = bed.agent_routed_with(1, &[], &https(1));
    let h2 = bed.agent_routed_with(2, &[1], &https(2));
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let ck = rcgen::generate_simple_self_signed(vec!["shop.example.com".into()]).expect("cert");
    let pem = format!("{}{}", ck.signing_key.serialize_pem(), ck.cert.pem()).replace('\n', "\\n");
    h1.deploy(
        "shop",
        &format!(
            "web:\n  image: {IMAGE}\n  command: httpd -f -p 8080 -h /www\n  expose: [8080]\n  labels:\n    aliyun.proxy.VIRTUAL_HOST: https://shop.example.com\n    aliyun.proxy.SSL_CERT: '{pem}'\n"
        ),
    );
    for i in [1, 2] {
        let addr = format!("{}:8443", bed.addr(i));
        converge(
            &format!("h{i} serves the template's certificate"),
            Duration::from_secs(30),
            &[&h1, &h2],
            || {
                crate::tls::served_cert_at(&addr, Some("shop.example.com")).trim()
                    == ck.cert.pem().trim()
            },
        );
    }
    let key_files = || -> Vec<u32> {
        std::fs::read_dir(h2.dir.path().join("files/shop"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("tls-web-"))
                    .map(|e| {
                        use std::os::unix::fs::PermissionsExt;
                        e.metadata().expect("meta").permissions().mode() & 0o777
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(key_files(), vec![0o400]);
    h1.ok(&["rm", "shop"]);
    wait_until(
        "h2's copy of the key removed",
        Duration::from_secs(30),
        || key_files().is_empty(),
    );
}

/// The nodes of the `--json` log lines in `out`.
fn log_nodes(out: &str) -> std::collections::BTreeSet<String> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<berth::wire::LogLine>(l).ok())
        .map(|l| l.node)
        .collect()
}

#[test]
fn logs_of_an_app_gather_the_lines_of_every_member_running_it() {
    let test = "multihost::logs_of_an_app_gather_the_lines_of_every_member_running_it";
    let Some(bed) = Bed::up(test, 2) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let out = h1.deploy("chatty", &ticker(2, ""));
    assert!(out.contains("2/2 running"), "{out}");
    assert_eq!(spread("chatty", &[&h1, &h2]).values().sum::<usize>(), 2);
    let both: std::collections::BTreeSet<String> = ["h1", "h2"].map(String::from).into();
    // From the owner and from the other member: the lines of both instances, merged by time.
    for h in [&h1, &h2] {
        converge(
            &format!("both members' lines through {}", h.name),
            Duration::from_secs(20),
            &[&h1, &h2],
            || log_nodes(&h.ok(&["logs", "chatty", "--tail", "40", "--json"])) == both,
        );
        let lines: Vec<berth::wire::LogLine> = h
            .ok(&["logs", "chatty", "--tail", "40", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(lines.len() <= 40, "{}", lines.len());
        assert!(
            lines.windows(2).all(|w| w[0].time_ns <= w[1].time_ns),
            "not merged by time"
        );
    }
    // Followed from h2: new lines of both instances keep coming.
    let mut child = h2
        .follow_command(&["logs", "-f", "chatty", "--tail", "0", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen != both && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.extend(log_nodes(&l));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seen, both,
        "logs -f on h2 did not bring both members' lines"
    );
}

#[test]
fn an_oss_volume_is_mounted_on_every_member_running_a_user_of_it() {
    let test = "multihost::an_oss_volume_is_mounted_on_every_member_running_a_user_of_it";
    let Some(bed) = Bed::up(test, 2) else { return };
    let s3 = crate::backends::S3::start_on(&format!("{}.254", bed.prefix), "shared-data");
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    // The writer runs on h1, the reader on h2: one bucket, a mount on each host.
    let yaml = format!(
        "services:\n  writer:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo hello-across-hosts > /data/hello.txt; exec sleep 3600\"]\n    stop_grace_period: 1s\n    volumes: [\"shared:/data:nocopy\"]\n    environment:\n      - constraint:node==h1\n  reader:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    volumes: [\"shared:/mnt/s:ro\"]\n    environment:\n      - constraint:node==h2\nvolumes:\n  shared:\n    driver: oss\n    driver_opts:\n      endpoint: {}\n      bucket: shared-data\n      path: app\n      access_key: AKIDBERTHTESTKEY1\n      secret_key: berthTestSecretKey0123456789xyz\n      other_opts: -o use_path_request_style\n",
        s3.url()
    );
    let out = h1.deploy("ossx", &yaml);
    assert!(out.contains("running"), "{out}");
    let reader = h2.engine_containers("ossx");
    assert_eq!(reader.len(), 1, "{reader:?}");
    let docker_h2 = bed.place(2, &[]).docker_host;
    wait_until(
        "the reader on h2 sees the file",
        Duration::from_secs(40),
        || {
            std::process::Command::new("docker")
                .args([
                    "-H",
                    &docker_h2,
                    "exec",
                    &reader[0].0,
                    "cat",
                    "/mnt/s/hello.txt",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "hello-across-hosts")
        },
    );
    // h2 holds the volume (credentials sealed under its own key, masked in every view)
    // and mounted it.
    let ls = h2.ok(&["volume", "ls"]);
    assert!(ls.contains("ossx_shared") && ls.contains("mounted"), "{ls}");
    // `volume ls` on any member: the volume's state on each member that holds it.
    converge(
        "the volume on both members",
        Duration::from_secs(20),
        &[&h1, &h2],
        || {
            let v: Vec<berth::wire::VolumeView> =
                serde_json::from_str(&h1.ok(&["volume", "ls", "--json"])).unwrap_or_default();
            let rows: Vec<(&str, &str)> = v
                .iter()
                .filter(|x| x.name == "ossx_shared")
                .map(|x| (x.node.as_str(), x.state.as_str()))
                .collect();
            rows == [("h1", "mounted"), ("h2", "mounted")]
        },
    );
    let v = h2.ok(&["volume", "inspect", "ossx_shared"]);
    assert!(!v.contains("berthTestSecretKey0123456789xyz"), "{v}");
}

#[test]
fn a_service_reaches_another_services_instances_on_other_hosts_by_name() {
    let test = "multihost::a_service_reaches_another_services_instances_on_other_hosts_by_name";
    let Some(bed) = Bed::up(test, 3) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    let h3 = bed.agent(3, &[1], &[]);
    form(&[&h1, &h2, &h3]);
    records_on(&h1, 3);
    // web runs on h1 only, db on h2 and h3 only: web reaches db by its name and by the
    // alias its link gives, with no port published anywhere.
    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    links: [\"db:database\"]\n    environment:\n      - constraint:node==h1\n  db:\n    image: {IMAGE}\n    command: sh -c 'hostname > /www/id; exec httpd -f -p 5432 -h /www'\n    stop_grace_period: 1s\n    expose: [\"5432\"]\n    labels:\n      berth.scale: \"2\"\n      berth.probe.url: http://container:5432/id\n    environment:\n      - constraint:node!=h1\n"
    );
    let out = h1.deploy("shop", &yaml);
    assert!(out.contains("running"), "{out}");
    let web = h1.engine_containers("shop");
    assert_eq!(web.len(), 1, "{web:?}");
    let docker_h1 = bed.place(1, &[]).docker_host;
    let get = |container: &str, url: &str| -> Option<String> {
        let o = std::process::Command::new("docker")
            .args([
                "-H", &docker_h1, "exec", container, "timeout", "5", "wget", "-qO-", url,
            ])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Both db instances answer through the name, each on its own host.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        if let Some(id) = get(&web[0].0, "http://db:5432/id") {
            seen.insert(id);
        }
        if Instant::now() > deadline {
            panic!(
                "db's two instances did not both answer web by name ({seen:?})\nh1 containers:\n{}\n{:?}\nh1 log:\n{}\nh2 log:\n{}",
                h1.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Ports}}"]),
                std::process::Command::new("docker")
                    .args([
                        "-H",
                        &docker_h1,
                        "exec",
                        &web[0].0,
                        "sh",
                        "-c",
                        "nslookup db; timeout 5 wget -qO- http://db:5432/id"
                    ])
                    .output(),
                h1.log(),
                h2.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let db_hosts: std::collections::BTreeSet<String> = [&h2, &h3]
        .iter()
        .flat_map(|h| h.engine_containers("shop"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(db_hosts.len(), 2, "{db_hosts:?}");
    let alias = get(&web[0].0, "http://database:5432/id").unwrap_or_default();
    assert!(
        seen.contains(&alias),
        "the link alias reaches db too: {alias:?} {seen:?}"
    );
    // The holder on h1 answers to db's names and publishes nothing on the host.
    let holder = h1.docker_ok(&[
        "ps",
        "--filter",
        "label=berth.holds=shop/db",
        "--format",
        "{{.Names}} {{.Ports}}",
    ]);
    assert_eq!(holder.lines().count(), 1, "{holder}");
    assert!(
        holder.trim().starts_with("berth-names_shop_db_"),
        "{holder}"
    );
    let holder_name = holder
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let holder_ip = h1.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &holder_name,
    ]);
    // The attack: a container of another app on h1 cannot reach shop's db through the
    // holder (it lives on shop's network only).
    let other = h1.deploy(
        "other",
        &format!(
            "services:\n  probe:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      - constraint:node==h1\n"
        ),
    );
    assert!(other.contains("running"), "{other}");
    let probe = h1.engine_containers("other");
    let stolen = get(&probe[0].0, &format!("http://{}:5432/id", holder_ip.trim()));
    assert_eq!(stolen, None, "another app's container reached shop's db");
    assert_eq!(get(&probe[0].0, "http://db:5432/id"), None);
    // db gone from the other hosts: h1's holder goes with it.
    h1.ok(&["scale", "shop", "db=0"]);
    wait_until("h1's holder removed", Duration::from_secs(40), || {
        h1.docker_ok(&["ps", "-aq", "--filter", "label=berth.holds=shop/db"])
            .trim()
            .is_empty()
    });
    h1.ok(&["rm", "shop"]);
}

/// The owner decides for instances it does not run: h1 owns an autoscaled service pinned
/// to h2; h2's figures reach h1 in its node record, and h1 scales it out when it burns.
#[test]
fn the_owner_autoscales_a_service_that_runs_on_another_host() {
    let test = "multihost::the_owner_autoscales_a_service_that_runs_on_another_host";
    let Some(bed) = Bed::up(test, 2) else { return };
    let metrics = "[metrics]\ninterval = \"1s\"\n";
    let h1 = bed.agent_with(1, &[], metrics);
    let h2 = bed.agent_with(2, &[1], metrics);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let all = [&h1, &h2];
    let yaml = r#"services:
  burn:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "while true; do if [ -f /ctl/burn ]; then i=0; while [ $$i -lt 20000 ]; do i=$$((i+1)); done; else sleep 0.3; fi; done"]
    cpus: 0.25
    stop_grace_period: 1s
    volumes: ["ctl:/ctl"]
    environment:
      - constraint:node==h2
    labels:
      aliyun.auto_scaling.min_instances: "1"
      aliyun.auto_scaling.max_instances: "2"
      aliyun.auto_scaling.max_cpu: "70"
      aliyun.auto_scaling.period_seconds: "5"
      aliyun.auto_scaling.periods: "2"
volumes:
  ctl: {}
"#;
    let p = h1.template("far", yaml);
    h1.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "far",
        "--timeout",
        "90",
    ]);
    converge("far runs on h2", Duration::from_secs(60), &all, || {
        spread("far", &all) == BTreeMap::from([("h1".into(), 0), ("h2".into(), 1)])
    });
    let c = h2.docker_ok(&["ps", "-q", "--filter", "label=berth.app=far"]);
    h2.docker_ok(&["exec", c.trim(), "touch", "/ctl/burn"]);
    converge(
        "h1 scaled far out on h2's figures",
        Duration::from_secs(90),
        &all,
        || spread("far", &all) == BTreeMap::from([("h1".into(), 0), ("h2".into(), 2)]),
    );
    let events = h1.ok(&["events", "far", "-n", "50"]);
    assert!(
        events.contains("autoscaled far/burn to 2: cpu above 70%"),
        "{events}"
    );
    let shown = h1.ok(&["autoscale", "far/burn"]);
    assert!(
        shown.contains("far/burn: 2 instances (auto 1..2)"),
        "{shown}"
    );
    h2.docker_ok(&["exec", c.trim(), "rm", "/ctl/burn"]);
}

/// Scale to zero in a cluster: requests through a member's router keep a service up (its
/// node record says when it was last asked for); once idle everywhere it goes to zero, and a
/// request held by that member (not the owner) asks the owner to start it, and is served.
#[test]
fn a_service_idles_to_zero_across_hosts_and_a_members_router_starts_it_again() {
    let test =
        "multihost::a_service_idles_to_zero_across_hosts_and_a_members_router_starts_it_again";
    let Some(bed) = Bed::up(test, 2) else { return };
    let metrics = "[metrics]\ninterval = \"1s\"\n";
    let h1 = bed.agent_routed_with(1, &[], metrics);
    let h2 = bed.agent_routed_with(2, &[1], metrics);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    let all = [&h1, &h2];
    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'echo hello > /www/index.html; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 1s\n    environment:\n      - constraint:node==h2\n    labels:\n      berth.probe.url: http://container:8080/index.html\n      berth.routing.port_8080: idle.test.local\n      berth.auto_scaling.min_instances: \"0\"\n      berth.auto_scaling.max_instances: \"2\"\n      berth.auto_scaling.idle_seconds: \"10\"\n"
    );
    let p = h1.template("idle", &yaml);
    h1.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "idle",
        "--timeout",
        "90",
    ]);
    let h2_router = format!("{}:8080", bed.addr(2));
    let on_h2 = || spread("idle", &all).get("h2").copied().unwrap_or(0);
    converge("idle runs on h2", Duration::from_secs(60), &all, || {
        on_h2() == 1
    });
    // Asked for through h2's router only, for longer than idle_seconds: h1 (the owner, whose
    // router sees nothing) keeps it up.
    let until = Instant::now() + Duration::from_secs(16);
    while Instant::now() < until {
        let (status, body, _) = router_get_at(&h2_router, "idle.test.local", "/", None);
        assert_eq!((status, body.trim()), (200, "hello"), "{}", report(&all));
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(on_h2(), 1, "{}", h1.ok(&["events", "idle", "-n", "30"]));
    // Idle everywhere: to zero.
    converge("idle at zero", Duration::from_secs(60), &all, || {
        on_h2() == 0
    });
    // A request through h2's router: held there, h1 asked, the instance started, served.
    let (status, body, _) = router_get_at(&h2_router, "idle.test.local", "/", None);
    assert_eq!(
        (status, body.trim()),
        (200, "hello"),
        "{}{}",
        h1.ok(&["events", "idle", "-n", "30"]),
        report(&all)
    );
    let events = h1.ok(&["events", "idle", "-n", "50"]);
    assert!(events.contains("scaled idle/web to zero"), "{events}");
    assert!(
        events.contains("cold start of idle/web: a request came"),
        "{events}"
    );
}

/// A job's containers are placed like a service's: a task over six containers spreads over
/// the three hosts; each member makes and starts the attempts the owner places on it, the
/// owner sees them exit in the members' records, the dependant task starts after all of
/// them, and `remove-finished` has each member remove its own (after reading their logs,
/// which `berth logs --run` gathers from every member).
#[test]
fn a_jobs_containers_spread_over_the_hosts_and_run_once_each() {
    let test = "multihost::a_jobs_containers_spread_over_the_hosts_and_run_once_each";
    let Some(bed) = Bed::up(test, 3) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    let h3 = bed.agent(3, &[1], &[]);
    form(&[&h1, &h2, &h3]);
    records_on(&h1, 3);
    let all = [&h1, &h2, &h3];
    let t = format!(
        "labels:\n  aliyun.project_type: batch\nservices:\n  work:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo worked on $$(hostname); sleep 2\"]\n    labels:\n      aliyun.scale: \"6\"\n  sum:\n    image: {IMAGE}\n    command: [\"echo\", \"summed\"]\n    labels:\n      aliyun.depends: work\n"
    );
    let out = h1.deploy("spread", &t);
    assert!(out.contains("job run 1 queued"), "{out}");
    // While run 1 works: its six containers, two on each host. Each is removed as soon as
    // it exits, and a loaded machine starts the hosts' containers seconds apart, so the
    // names each host's engine showed are gathered over the polls.
    let mut seen: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); 3];
    converge(
        "two work containers on each host",
        Duration::from_secs(60),
        &all,
        || {
            for (h, names) in all.iter().zip(seen.iter_mut()) {
                names.extend(
                    h.engine_containers("spread")
                        .into_iter()
                        .map(|(n, _)| n)
                        .filter(|n| n.starts_with("spread_work_")),
                );
            }
            seen.iter().all(|names| names.len() >= 2)
        },
    );
    assert!(
        seen.iter().all(|names| names.len() == 2),
        "two work containers on each host, no more: {seen:?}"
    );
    let runs = |h: &Agent| -> Vec<berth::wire::RunView> {
        serde_json::from_str(&h.ok(&["runs", "spread", "--json"])).unwrap_or_default()
    };
    converge("run 1 finished", Duration::from_secs(90), &all, || {
        runs(&h1).first().is_some_and(|r| r.run.state == "finished")
    });
    let r = &runs(&h1)[0];
    let nodes: std::collections::BTreeSet<&str> = r
        .attempts
        .iter()
        .filter(|a| a.task == "work")
        .map(|a| a.node.as_str())
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "work attempts on h1 (\"\"), h2 and h3: {r:?}"
    );
    assert_eq!(r.attempts.len(), 7, "six work + one sum, no retry: {r:?}");
    assert!(r.attempts.iter().all(|a| a.exit_code == Some(0)), "{r:?}");
    let work_end = r
        .attempts
        .iter()
        .filter(|a| a.task == "work")
        .map(|a| a.ended_ms)
        .max()
        .unwrap_or(0);
    let sum_start = r
        .attempts
        .iter()
        .find(|a| a.task == "sum")
        .map_or(0, |a| a.started_ms);
    assert!(
        sum_start >= work_end,
        "sum at {sum_start}, work ended {work_end}"
    );
    // The runs are the owner's, shown from any host (its requests go to the owner), and
    // `berth jobs` on any host lists the job with its owner.
    assert_eq!(runs(&h3)[0].run.run, 1);
    let jobs: Vec<berth::wire::JobView> =
        serde_json::from_str(&h3.ok(&["jobs", "--json"])).expect("jobs JSON");
    assert!(
        jobs.iter()
            .any(|j| j.app == "spread" && j.node == "h1" && j.state == "finished"),
        "{jobs:?}"
    );
    // remove-finished: every member removes the containers it ran.
    converge(
        "finished containers removed everywhere",
        Duration::from_secs(60),
        &all,
        || all.iter().all(|h| h.engine_containers("spread").is_empty()),
    );
    let logs = h2.ok(&["logs", "spread/work", "--run", "1"]);
    assert_eq!(logs.matches("worked on").count(), 6, "{logs}");
}

#[test]
fn a_private_image_reaches_the_member_running_its_slot_with_the_owners_login() {
    let test =
        "multihost::a_private_image_reaches_the_member_running_its_slot_with_the_owners_login";
    let Some(bed) = Bed::up(test, 2) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    // A real registry with basic auth on the bed's bridge; the image pushed there from
    // h1's engine, which then holds no copy of that name (nor does h2's).
    let reg =
        crate::backends::Registry::start_at(&bed.gateway(), Some(&bed.place(1, &[]).docker_host));
    let image = reg.push(IMAGE, "private/sleeper:1");
    let mut login = h1
        .follow_command(&[
            "registry",
            "login",
            &reg.host(),
            "-u",
            &reg.user,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli");
    std::io::Write::write_all(
        &mut login.stdin.take().expect("stdin"),
        reg.password.as_bytes(),
    )
    .expect("password");
    let o = login.wait_with_output().expect("login");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = h1.deploy(
        "priv",
        &format!(
            "services:\n  app:\n    image: {image}\n    command: sleep 600\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"2\"\n"
        ),
    );
    assert!(out.contains("2/2 running"), "{out}");
    // One slot on each host: h2 pulled the image it lacked with h1's login, handed over in
    // the app's record, and keeps no login of its own.
    assert_eq!(
        spread("priv", &[&h1, &h2]),
        BTreeMap::from([("h1".to_string(), 1), ("h2".to_string(), 1)])
    );
    let events = h1.ok(&["events", "priv"]);
    assert!(
        events.contains(&format!("pulled {image} (it was not on this host)")),
        "{events}"
    );
    assert!(
        !h2.ok(&["registry", "ls"]).contains(&reg.host()),
        "h2 keeps no login"
    );

    // CI pushes another build under the same tag and asks for a redeploy: h1 pulls it, and
    // h2, which has the old build of that name, pulls it again to run what h1 runs.
    let sock = bed.place(1, &[]).docker_host;
    let mut build = std::process::Command::new("docker")
        .args([
            "-H",
            &sock,
            "build",
            "-q",
            "-t",
            "berth-test/sleeper-v2",
            "-",
        ])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    std::io::Write::write_all(
        &mut build.stdin.take().expect("stdin"),
        format!("FROM {IMAGE}\nLABEL berth.test=v2\n").as_bytes(),
    )
    .expect("dockerfile");
    let built = build.wait_with_output().expect("build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    reg.push("berth-test/sleeper-v2", "private/sleeper:1");
    h1.ok(&["redeploy", "priv"]);
    let new_id = h1.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    // By id: a container renamed to its compose name between a listing and an inspect by
    // name would not be found.
    wait_until(
        "both hosts run the new build",
        Duration::from_secs(60),
        || {
            let (a, b) = (h1.running_images("priv"), h2.running_images("priv"));
            a == [new_id.clone()] && b == [new_id.clone()]
        },
    );
    let events = h1.ok(&["events", "priv"]);
    assert!(
        events.contains(&format!(
            "pulled {image} again: the owner runs another build of it"
        )),
        "{events}"
    );
}

/// The environment of `app`'s one running container on `h`; panics when it
/// runs more or fewer than one there.
fn env_on(h: &Agent, app: &str) -> Vec<String> {
    match one_env_on(h, app) {
        Ok(env) => env,
        Err(running) => panic!("not one running container of {app}: {running}"),
    }
}

/// The environment of `app`'s container on `h` when exactly one runs there,
/// else the list seen (a poll may catch a rolling update between versions).
fn one_env_on(h: &Agent, app: &str) -> Result<Vec<String>, String> {
    let running: Vec<_> = h
        .running(app)
        .into_iter()
        .filter(|i| i.node == h.name)
        .collect();
    if running.len() != 1 {
        return Err(format!("{running:?}"));
    }
    let out = h.docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &running[0].container_id,
    ]);
    Ok(serde_json::from_str(out.trim()).expect("env list"))
}

#[test]
fn a_config_set_made_on_one_host_binds_changes_and_applies_from_the_others() {
    let test = "multihost::a_config_set_made_on_one_host_binds_changes_and_applies_from_the_others";
    let Some(bed) = Bed::up(test, 2) else { return };
    let h1 = bed.agent(1, &[], &[]);
    let h2 = bed.agent(2, &[1], &[]);
    form(&[&h1, &h2]);
    records_on(&h1, 2);
    h1.ok(&[
        "configset",
        "create",
        "shared",
        "-e",
        "GREETING=hello",
        "-e",
        "PW=s3cr3t-value",
        "--secret",
        "PW",
    ]);
    wait_until("h2 lists h1's set", Duration::from_secs(15), || {
        let ls = h2.ok(&["configset", "ls"]);
        ls.contains("shared") && ls.contains("h1")
    });
    let shown = h2.ok(&["configset", "show", "shared"]);
    assert!(
        shown.contains("held by:     member h1") && !shown.contains("s3cr3t-value"),
        "{shown}"
    );
    let e = h2.fails(&["configset", "create", "shared", "-e", "A=1"]);
    assert!(e.contains("exists on member h1"), "{e}");

    // Deployed through h2 (and owned there) with h1's set.
    let p = h2.template(
        "cfg",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 600\n    stop_grace_period: 1s\n    environment:\n      - GREETING=${{GREETING}}\n      - PW=${{PW}}\n      - constraint:node==h2\n"
        ),
    );
    h2.ok(&[
        "deploy",
        "-f",
        p.to_str().unwrap(),
        "--name",
        "cfg",
        "--config-set",
        "shared",
        "--timeout",
        "60",
    ]);
    let env = env_on(&h2, "cfg");
    assert!(env.iter().any(|e| e == "GREETING=hello"), "{env:?}");
    assert!(env.iter().any(|e| e == "PW=s3cr3t-value"), "{env:?}");

    // Changed through h2: made by h1, which holds it; cfg on h2 is out of date, and h1 sees
    // it bound.
    let out = h2.ok(&["configset", "set", "shared", "GREETING=bonjour"]);
    assert!(out.contains("revision 2"), "{out}");
    wait_until("cfg out of date on h2", Duration::from_secs(15), || {
        h2.ok(&["apps"]).contains("config set shared changed")
    });
    wait_until(
        "h1 sees cfg bound and out of date",
        Duration::from_secs(15),
        || {
            h1.ok(&["configset", "show", "shared"])
                .contains("cfg (out of date)")
        },
    );
    let e = h1.fails(&["configset", "rm", "shared"]);
    assert!(e.contains("bound to cfg"), "{e}");
    // An operator on h2 may not replace the secret of a set h1 holds.
    let op = h2
        .ok(&["access", "create", "ci", "--role", "operator"])
        .trim()
        .to_string();
    let o = h2
        .follow_command(&["configset", "set", "shared", "PW=mine"])
        .env("BERTH_TOKEN", &op)
        .env_remove("BERTH_TOKEN_FILE")
        .output()
        .expect("cli");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("item PW of config set shared is secret"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Applied on h1: h2, cfg's owner, deploys it again with the new value.
    let out = h1.ok(&["configset", "apply", "shared"]);
    assert!(out.contains("cfg"), "{out}");
    wait_until("cfg runs the new value", Duration::from_secs(60), || {
        one_env_on(&h2, "cfg").is_ok_and(|env| env.iter().any(|e| e == "GREETING=bonjour"))
    });
    assert!(!h2.ok(&["apps"]).contains("config set shared changed"));
}
