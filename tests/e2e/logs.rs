//! Logs against the real engine: checkpoints across kill -9 (every line exactly once), lines
//! the engine split joined again, files inside containers through rotation, retention,
//! `logs -f`.

use super::harness::*;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

fn lines(a: &Agent, target: &str, extra: &[&str]) -> Vec<berth::wire::LogLine> {
    let mut args = vec!["logs", target, "--json"];
    args.extend_from_slice(extra);
    a.ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect()
}

/// Counts how often each number appears in lines like "<prefix><n>".
fn counts(lines: &[berth::wire::LogLine], stream: &str, prefix: &str) -> BTreeMap<u32, u32> {
    let mut c = BTreeMap::new();
    for l in lines.iter().filter(|l| l.stream == stream) {
        if let Some(n) = l
            .message
            .strip_prefix(prefix)
            .and_then(|n| n.trim().parse().ok())
        {
            *c.entry(n).or_default() += 1;
        }
    }
    c
}

fn exactly_once(c: &BTreeMap<u32, u32>, n: u32, what: &str) {
    let missing: Vec<u32> = (1..=n).filter(|i| !c.contains_key(i)).take(10).collect();
    let twice: Vec<(u32, u32)> = c
        .iter()
        .filter(|(_, v)| **v != 1)
        .map(|(k, v)| (*k, *v))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{what}: missing {missing:?}, repeated {twice:?} (of {n})"
    );
}

#[test]
fn every_line_exactly_once_across_kill_9_including_files_and_split_lines() {
    let mut a = Agent::start();
    // 20,000 numbered lines on stdout and into a log file (rotated half way), a 40,000-byte
    // line the engine splits into 16 KiB pieces, then idle.
    a.deploy(
        "seq",
        r#"
services:
  count:
    image: berth-test/busybox
    command:
      - sh
      - -c
      - |
        i=0
        while [ $$i -lt 20000 ]; do
          i=$$((i+1)); echo "n $$i"; echo "f $$i" >> /tmp/app.log
          if [ $$i -eq 10000 ]; then mv /tmp/app.log /tmp/app.log.1; head -c 40000 /dev/zero | tr '\0' x; echo; fi
          if [ $$((i % 500)) -eq 0 ]; then sleep 0.1; fi
        done
        exec sleep 100000
    labels:
      berth.log_store_app: /tmp/app.log
"#,
    );
    a.wait_running("seq", 1, Duration::from_secs(60));
    // Both sources have been seen (a file rotated before berth first read it, while the agent
    // is down, cannot be recovered: its old name is unknown).
    wait_until("some lines stored", Duration::from_secs(30), || {
        lines(&a, "seq", &["--tail", "5"]).len() == 5
            && lines(&a, "seq", &["--stream", "app", "--tail", "5"]).len() == 5
    });
    a.kill9();
    std::thread::sleep(Duration::from_secs(2));
    a.restart();
    wait_until("every line stored", Duration::from_secs(90), || {
        let l = lines(&a, "seq", &["--grep", "20000"]);
        l.iter().any(|l| l.message == "n 20000") && l.iter().any(|l| l.message == "f 20000")
    });
    std::thread::sleep(Duration::from_secs(2));
    let all = lines(&a, "seq", &[]);
    exactly_once(&counts(&all, "stdout", "n "), 20000, "stdout");
    exactly_once(
        &counts(&all, "app", "f "),
        20000,
        "the log file through rotation",
    );
    let long: Vec<_> = all
        .iter()
        .filter(|l| l.message.starts_with("xxxx"))
        .collect();
    assert_eq!(
        long.len(),
        1,
        "the split line is one line: {:?}",
        long.iter()
            .map(|l| (
                l.message.len(),
                l.time_ns,
                l.message.chars().rev().take(12).collect::<String>()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(long[0].message.len(), 40000);
    let l = &all[0];
    assert_eq!(
        (
            l.app.as_str(),
            l.service.as_str(),
            l.version.as_str(),
            l.slot,
            l.node.as_str()
        ),
        ("seq", "count", "count-001", 1, "e2e")
    );
    // Filters.
    assert_eq!(
        lines(
            &a,
            "seq/count/1",
            &["--grep", "n 12345", "--stream", "stdout"]
        )
        .len(),
        1
    );
    assert!(lines(&a, "seq", &["--since", "1h", "--tail", "3"]).len() == 3);
    assert!(lines(&a, "seq", &["--until", "2000-01-01T00:00:00Z"]).is_empty());
    assert!(
        a.fails(&["logs", "seq", "--since", "yesterday"])
            .contains("--since")
    );
    assert!(a.fails(&["logs", "nosuch"]).contains("no app"));
    a.ok(&["rm", "seq"]);
}

#[test]
fn follow_streams_live_lines_and_ends_when_the_app_goes() {
    let a = Agent::start();
    a.deploy(
        "tick",
        "services:\n  t:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"i=0; while :; do i=$$((i+1)); echo tick $$i; sleep 0.2; done\"]\n",
    );
    a.wait_running("tick", 1, Duration::from_secs(60));
    let mut child = std::process::Command::new(bin())
        .args([
            "--api",
            &a.api(),
            "--token",
            &a.token(),
            "logs",
            "tick",
            "-f",
            "--json",
            "--tail",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let out = child.stdout.take().expect("stdout");
    let mut reader = std::io::BufReader::new(out).lines();
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let line = reader.next().expect("a line").expect("readable");
        let l: berth::wire::LogLine = serde_json::from_str(&line).expect("json");
        seen.push(
            l.message
                .trim_start_matches("tick ")
                .parse::<u32>()
                .expect("number"),
        );
    }
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "live and in order: {seen:?}"
    );
    a.ok(&["rm", "tick"]);
    // The stream ends cleanly once the app is gone.
    for _ in reader.by_ref() {}
    let status = child.wait().expect("exit");
    assert!(status.success(), "logs -f ended with {status}");
}

#[test]
fn retention_keeps_the_store_within_its_size() {
    let a = Agent::start_with_config("[logs]\nmax_size_mb = 1\n");
    a.deploy(
        "chatty",
        "services:\n  c:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"i=0; while [ $$i -lt 60000 ]; do i=$$((i+1)); echo \\\"line $$i padding padding padding padding padding padding padding padding\\\"; done; exec sleep 100000\"]\n",
    );
    a.wait_running("chatty", 1, Duration::from_secs(60));
    wait_until("the last line is stored", Duration::from_secs(60), || {
        !lines(&a, "chatty", &["--grep", "line 60000 "]).is_empty()
    });
    wait_until("retention ran", Duration::from_secs(90), || {
        let all = lines(&a, "chatty", &[]);
        let bytes: usize = all.iter().map(|l| l.message.len() + 64).sum();
        bytes <= 1 << 20 && all.len() > 1000
    });
    // What is kept is the newest.
    let all = lines(&a, "chatty", &[]);
    assert!(
        all.last()
            .is_some_and(|l| l.message.starts_with("line 60000 "))
    );
    a.ok(&["rm", "chatty"]);
}

/// Export through the outbox: InfluxDB (`logs = true`, measurement berth_log, read back with
/// SELECT) and syslog (RFC 5424 over UDP to a listener of the test's own).
#[test]
fn lines_are_exported_to_influxdb_and_syslog() {
    let influx = super::backends::Influx::start();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"5s\"\n[[metrics.influxdb]]\nurl = \"{}\"\nlogs = true\n[[logs.syslog]]\naddress = \"udp://{}\"\n",
        influx.url(),
        udp.local_addr().expect("addr")
    ));
    a.deploy(
        "exp",
        "services:\n  say:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"echo 'hello \\\"export\\\", world'; echo oops >&2; exec sleep 100000\"]\n",
    );
    a.wait_running("exp", 1, Duration::from_secs(60));
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < 2 {
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("exp.say") {
            got.push(m);
        }
    }
    let info = got
        .iter()
        .find(|m| m.ends_with("hello \"export\", world"))
        .expect("stdout line");
    assert!(info.starts_with("<14>1 ") && info.contains(" e2e exp.say exp_say_1 stdout [berth@32473 app=\"exp\" service=\"say\" version=\"say-001\" slot=\"1\"] "), "{info}");
    assert!(
        got.iter()
            .any(|m| m.starts_with("<11>1 ") && m.ends_with("oops")),
        "{got:?}"
    );
    wait_until("berth_log in InfluxDB", Duration::from_secs(30), || {
        let rows =
            influx.rows("SELECT message, stream FROM berth_log WHERE app='exp' AND service='say'");
        rows.iter()
            .any(|r| r[1] == "hello \"export\", world" && r[2] == "stdout")
            && rows.iter().any(|r| r[1] == "oops" && r[2] == "stderr")
    });
    a.ok(&["rm", "exp"]);
}

/// `log.timestamp`: lines print with their time unless the service says "false" (or `-t`).
#[test]
fn log_timestamp_label_decides_the_time_prefix() {
    let a = Agent::start();
    a.deploy(
        "stamp",
        "services:\n  timed:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"echo tick; exec sleep 100000\"]\n  bare:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"echo tock; exec sleep 100000\"]\n    labels:\n      berth.log.timestamp: \"false\"\n",
    );
    a.wait_running("stamp", 2, Duration::from_secs(60));
    wait_until("both lines stored", Duration::from_secs(20), || {
        lines(&a, "stamp", &[]).len() >= 2
    });
    let out = a.ok(&["logs", "stamp/timed"]);
    let line = out.lines().find(|l| l.ends_with("tick")).expect("tick");
    assert!(
        line.starts_with("20") && line.contains("Z stamp_timed_1 | tick"),
        "{out}"
    );
    let out = a.ok(&["logs", "stamp/bare"]);
    assert!(out.lines().any(|l| l == "stamp_bare_1 | tock"), "{out}");
    let out = a.ok(&["logs", "stamp/bare", "-t"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("20") && l.ends_with("| tock")),
        "{out}"
    );
    a.ok(&["rm", "stamp"]);
}

/// What another member's `logs -f` polls (`after=ID`) is cut to a page that fits the peer
/// channel's 8 MiB answer however long the lines are (the container writes 300 KB lines),
/// and the next page continues after the last line, none lost.
#[test]
fn a_page_after_an_id_is_bounded_in_bytes_and_the_next_one_continues() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  big:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"for i in $$(seq 1 12); do head -c 300000 /dev/zero | tr '\\\\0' a; echo; done; sleep 3600\"]\n    stop_grace_period: 1s\n"
    );
    a.deploy("biglines", &yaml);
    wait_until("12 long lines stored", Duration::from_secs(30), || {
        let (_, body) = a.get_raw("/v1/logs?app=biglines&tail=20", true).unwrap();
        serde_json::from_str::<Vec<berth::wire::LogLine>>(&body).is_ok_and(|l| l.len() >= 12)
    });
    let mut after = 0;
    let mut seen = 0;
    let mut pages = 0;
    while seen < 12 {
        let (status, body) = a
            .get_raw(&format!("/v1/logs?app=biglines&after={after}"), true)
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.len() < 2 << 20, "a page of {} bytes", body.len());
        let lines: Vec<berth::wire::LogLine> = serde_json::from_str(&body).unwrap();
        assert!(
            !lines.is_empty(),
            "a page after {after} was empty with lines left"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.message.len() == 300_000 && l.id > after)
        );
        after = lines.last().unwrap().id;
        seen += lines.len();
        pages += 1;
    }
    assert_eq!(seen, 12);
    assert!(pages >= 3, "12 lines of 300 KB came in {pages} pages");
    a.ok(&["rm", "biglines"]);
}
