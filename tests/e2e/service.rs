//! The agent as a system service: SIGTERM stops it cleanly (log lines read so far stored
//! with their checkpoints, the outbox delivered), SIGHUP reloads sinks, alarms and log
//! retention, and a bad file is refused without changing anything.

use super::harness::*;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An InfluxDB-like write listener of the test's own: answers 503 with `Retry-After: 3600`
/// (so the agent's sender waits an hour) until `accept` is set, then 204; counts the lines
/// it accepted.
struct Sink {
    port: u16,
    accept: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    lines: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Sink {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("listener");
        let port = server.server_addr().to_ip().expect("ip").port();
        let s = Sink {
            port,
            accept: Arc::new(AtomicBool::new(false)),
            refused: Arc::new(AtomicUsize::new(0)),
            lines: Arc::new(AtomicUsize::new(0)),
        };
        let (accept, refused, lines) = (s.accept.clone(), s.refused.clone(), s.lines.clone());
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut gz = Vec::new();
                let _ = req.as_reader().read_to_end(&mut gz);
                if accept.load(Ordering::SeqCst) {
                    let mut text = String::new();
                    let _ = flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text);
                    lines.fetch_add(text.lines().count(), Ordering::SeqCst);
                    let _ = req.respond(tiny_http::Response::empty(204));
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let r = tiny_http::Response::empty(503).with_header(
                        tiny_http::Header::from_bytes("Retry-After", "3600").expect("header"),
                    );
                    let _ = req.respond(r);
                }
            }
        });
        s
    }

    fn toml(&self) -> String {
        format!(
            "[[metrics.influxdb]]\nurl = \"http://127.0.0.1:{}\"\ndatabase = \"t\"\n",
            self.port
        )
    }
}

fn outbox_lines(a: &Agent) -> i64 {
    let v: Vec<berth::wire::OutboxStats> =
        serde_json::from_str(&a.get_raw("/v1/outbox", true).expect("outbox").1).expect("json");
    v.iter().map(|s| s.lines).sum()
}

fn db(a: &Agent) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        a.dir.path().join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open state.db")
}

/// The highest "n N" line of `app` in the store, read while the agent is down: from a copy
/// of the database file (so the agent's own files stay as the stop left them), through the
/// store's own reader (rows may be packed).
fn stored_max(a: &Agent, app: &str) -> u32 {
    let copy = tempfile::tempdir().expect("tempdir");
    let path = copy.path().join("state.db");
    std::fs::copy(a.dir.path().join("state.db"), &path).expect("copy state.db");
    let store = berth::store::Store::open(&path).expect("open the copy");
    let q = berth::store::LogQuery {
        app: app.into(),
        limit: 10_000_000,
        ..Default::default()
    };
    store
        .query_logs(&q)
        .expect("query")
        .iter()
        .filter_map(|l| l.message.strip_prefix("n ")?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// The newest "n N" line the engine holds for a container. `docker logs` can come back
/// empty or with an error while the engine is busy (the suite runs three tests at once):
/// it is asked again for up to 20 s, and what it said is in the panic if it never answers.
fn engine_last(container: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::process::Command::new("docker")
            .args(["logs", "--tail", "1", container])
            .output()
            .expect("docker logs");
        let n = String::from_utf8_lossy(&out.stdout)
            .trim()
            .strip_prefix("n ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n > 10 {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "docker logs --tail 1 {container} gave no line past 10: status {}, stdout {:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_stores_the_lines_read_and_delivers_the_outbox_before_exit() {
    let sink = Sink::start();
    let mut a = Agent::start_with_config(&format!("[metrics]\ninterval = \"1s\"\n{}", sink.toml()));
    // A steady trickle of numbered lines: the follower's hand-over never idles, so lines
    // sit in memory between hand-overs (up to 1,000 of them).
    a.deploy(
        "term",
        "services:\n  talk:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"i=0; while true; do i=$$((i+1)); echo \\\"n $$i\\\"; sleep 0.005; done\"]\n",
    );
    a.wait_running("term", 1, Duration::from_secs(60));
    let container = "term_talk_1";
    wait_until("the sink refused a write", Duration::from_secs(30), || {
        sink.refused.load(Ordering::SeqCst) > 0
    });
    // The sender now waits an hour (Retry-After); points pile up in the outbox.
    wait_until(
        "points queue in the outbox",
        Duration::from_secs(20),
        || outbox_lines(&a) > 50,
    );
    sink.accept.store(true, Ordering::SeqCst);
    let printed = engine_last(container);
    // Long enough for the follower to have read them (it runs behind the engine by a few ms).
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    assert!(
        a.terminate(Duration::from_secs(20)),
        "the agent exits on SIGTERM; log:\n{}",
        a.log()
    );
    eprintln!("stopped in {:?}", t.elapsed());
    // Delivered at shutdown, not an hour later.
    assert!(
        sink.lines.load(Ordering::SeqCst) > 50,
        "the outbox went out"
    );
    let left: i64 = db(&a)
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "nothing left in the outbox");
    // Every line the engine had before the signal is stored, with its checkpoint.
    let stored = stored_max(&a, "term");
    assert!(
        stored >= printed,
        "stored up to {stored}, the engine had {printed} a second before SIGTERM"
    );
    let cps: i64 = db(&a)
        .query_row("SELECT COUNT(*) FROM log_checkpoints", [], |r| r.get(0))
        .expect("count");
    assert!(cps > 0, "checkpoints written");
    // The WAL was folded into the database file.
    let wal = a.dir.path().join("state.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "state.db-wal is empty after a clean stop"
    );
    // After the restart, every number exactly once.
    a.restart();
    let until = engine_last(container);
    wait_until("the follower caught up", Duration::from_secs(30), || {
        let out = a.ok(&["logs", "term", "--json"]);
        out.contains(&format!("\"n {until}\""))
    });
    let mut seen = std::collections::BTreeMap::<u32, u32>::new();
    for l in a.ok(&["logs", "term", "--json"]).lines() {
        let l: berth::wire::LogLine = serde_json::from_str(l).expect("json line");
        if let Some(n) = l.message.strip_prefix("n ").and_then(|n| n.parse().ok()) {
            *seen.entry(n).or_default() += 1;
        }
    }
    let first = seen.keys().next().copied().unwrap_or(1);
    let gaps: Vec<u32> = (first..=until)
        .filter(|n| !seen.contains_key(n))
        .take(10)
        .collect();
    let twice: Vec<u32> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .take(10)
        .collect();
    assert!(
        first == 1 && gaps.is_empty() && twice.is_empty(),
        "from {first}: missing {gaps:?}, twice {twice:?}"
    );
    a.ok(&["rm", "term"]);
}

#[test]
fn sighup_reloads_sinks_alarms_and_retention_and_refuses_a_bad_file() {
    let sink = Sink::start();
    sink.accept.store(true, Ordering::SeqCst);
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    let config = a.dir.path().join("berth.toml");
    let events = |a: &Agent| a.ok(&["events", "-n", "200"]);
    // About 5 MiB of log lines, kept under the default retention (1 GiB).
    a.deploy(
        "chatty",
        "services:\n  c:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"i=0; while [ $$i -lt 60000 ]; do i=$$((i+1)); echo \\\"line $$i padding padding padding padding padding padding padding padding\\\"; done; exec sleep 100000\"]\n",
    );
    let stored = |a: &Agent| -> (usize, usize) {
        let out = a.ok(&["logs", "chatty", "--json"]);
        let lines: Vec<berth::wire::LogLine> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        (
            lines.len(),
            lines.iter().map(|l| l.message.len() + 64).sum(),
        )
    };
    wait_until("60,000 lines stored", Duration::from_secs(60), || {
        stored(&a).0 >= 60_000
    });
    // Nothing is sent before the reload.
    assert_eq!(sink.lines.load(Ordering::SeqCst), 0);

    // Add a sink, an alarm and tighter retention; SIGHUP.
    std::fs::write(
        &config,
        format!(
            "[metrics]\ninterval = \"1s\"\n{}[[metrics.alarm]]\nname = \"hot\"\nmetric = \"cpu_percent\"\nthreshold = 99.0\napp = \"host\"\n[logs]\nretain_days = 3\nmax_size_mb = 1\n",
            sink.toml()
        ),
    )
    .expect("write config");
    a.signal("HUP");
    wait_until("points reach the new sink", Duration::from_secs(20), || {
        sink.lines.load(Ordering::SeqCst) > 0
    });
    let ev = events(&a);
    assert!(
        ev.contains("configuration reloaded") && ev.contains("logs kept 3 days / 1 MiB"),
        "{ev}"
    );
    // The new retention applies at once, not at the next minute's pass.
    wait_until(
        "the store shrinks to 1 MiB",
        Duration::from_secs(15),
        || {
            let (n, bytes) = stored(&a);
            bytes <= 1 << 20 && n > 1000
        },
    );
    let alarms = a.ok(&["alarm", "ls"]);
    assert!(alarms.contains("hot"), "{alarms}");

    // A broken file changes nothing: the sink keeps receiving, the alarm stays.
    std::fs::write(&config, "[metrics]\ninterval = \"soon\"\n").expect("write config");
    a.signal("HUP");
    wait_until("the refusal is reported", Duration::from_secs(10), || {
        events(&a).contains("reload refused")
    });
    let ev = events(&a);
    assert!(ev.contains("metrics interval"), "the reason is named: {ev}");
    let before = sink.lines.load(Ordering::SeqCst);
    wait_until(
        "the old sink still receives",
        Duration::from_secs(10),
        || sink.lines.load(Ordering::SeqCst) > before,
    );
    assert!(a.ok(&["alarm", "ls"]).contains("hot"));

    // Removing the sink stops its sender; a restart-only change is reported as such.
    std::fs::write(
        &config,
        "[agent]\nreconcile_interval = \"7s\"\n[metrics]\ninterval = \"1s\"\n",
    )
    .expect("write config");
    a.signal("HUP");
    wait_until("the second reload", Duration::from_secs(10), || {
        events(&a).matches("configuration reloaded").count() >= 2
    });
    assert!(
        events(&a).contains(
            "applied only on restart (systemctl restart berth): [agent] reconcile_interval"
        ),
        "{}",
        events(&a)
    );
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = sink.lines.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sink.lines.load(Ordering::SeqCst),
        stopped_at,
        "no writes after the sink was removed"
    );
    assert!(!a.ok(&["alarm", "ls"]).contains("hot"));
    // Still serving.
    a.ok(&["apps"]);
    a.ok(&["rm", "chatty"]);
}

/// What systemd's `Type=notify` sees: READY=1 once the API answers, RELOADING=1 then READY=1
/// around a SIGHUP, STOPPING=1 on SIGTERM.
#[test]
fn systemd_notifications_follow_the_agent_life() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let port = free_port();
    let mut child = std::process::Command::new(bin())
        .args(["agent", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "notify",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent starts");
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // Ready means the API answers.
    let health = http_agent()
        .get(format!("http://127.0.0.1:{port}/v1/health"))
        .call()
        .expect("health answers");
    assert_eq!(health.status(), 200);
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill")
    };
    kill("-HUP");
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    kill("-TERM");
    assert_eq!(next(), "STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the agent exits after STOPPING=1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
