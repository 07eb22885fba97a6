//! Metrics against real back ends: InfluxDB 1.6 (v1 writes, an outage), Prometheus (scrapes),
//! a listener of the test's own for the v2 path, custom script and HTTP metrics.

use super::backends::{Influx, Prometheus};
use super::harness::*;
use std::io::Read;
use std::time::Duration;

const APP: &str = "mtr";

fn config(influx: &str, extra: &str) -> String {
    format!(
        "[metrics]\ninterval = \"2s\"\nprometheus_public = true\n[[metrics.influxdb]]\nurl = \"{influx}\"\ndatabase = \"telegraf\"\n{extra}"
    )
}

#[test]
fn points_reach_influxdb_with_telegraf_names_and_survive_an_outage() {
    let mut influx = Influx::start();
    let a = Agent::start_with_config(&config(&influx.url(), ""));
    // The JSON document busybox httpd serves for monitoring.http.
    a.deploy(
        APP,
        r#"
services:
  web:
    image: berth-test/busybox
    command: ["sh", "-c", "echo '{\"requests\": 42, \"ok\": true, \"region\": \"eu\"}' > /www/m.json; httpd -f -p 80 -h /www"]
    labels:
      berth.scale: "2"
      berth.monitoring.script: "echo 'queue,q=jobs depth=7i'; echo 'this is not line protocol'"
      berth.monitoring.http: "http://container:80/m.json"
      berth.monitoring.tags: "region"
"#,
    );
    a.wait_running(APP, 2, Duration::from_secs(60));
    wait_until(
        "container points in InfluxDB",
        Duration::from_secs(30),
        || {
            !influx.rows(&format!(
                "SELECT usage_total FROM docker_container_cpu WHERE app='{APP}' AND cpu='cpu-total'"
            ))
            .is_empty()
        },
    );
    // Telegraf's names and tags, with berth's.
    let r = influx.query(&format!(
        "SHOW TAG KEYS FROM docker_container_cpu WHERE app='{APP}'"
    ));
    let keys = r.to_string();
    for k in [
        "host",
        "container_name",
        "container_image",
        "container_status",
        "app",
        "service",
        "version",
        "slot",
        "node",
    ] {
        assert!(
            keys.contains(&format!("\"{k}\"")),
            "tag {k} missing: {keys}"
        );
    }
    for m in [
        "docker_container_mem",
        "docker_container_net",
        "docker_container_status",
        "cpu",
        "mem",
        "disk",
        "system",
        "net",
    ] {
        wait_until(&format!("measurement {m}"), Duration::from_secs(20), || {
            !influx
                .rows(&format!("SELECT * FROM {m} LIMIT 1"))
                .is_empty()
        });
    }
    let mem = influx.rows(&format!(
        "SELECT usage, usage_percent FROM docker_container_mem WHERE app='{APP}' LIMIT 1"
    ));
    assert!(
        mem[0][1].as_i64().is_some_and(|u| u > 0),
        "usage is an integer: {mem:?}"
    );
    let load = influx.rows("SELECT load1, n_cpus FROM system LIMIT 1");
    assert!(load[0][2].as_i64().is_some_and(|n| n >= 1), "{load:?}");
    // Custom metrics: the script's good line, the JSON with its tag, berth tags added.
    wait_until("custom metrics", Duration::from_secs(20), || {
        !influx
            .rows(&format!(
                "SELECT depth FROM queue WHERE app='{APP}' AND q='jobs'"
            ))
            .is_empty()
            && !influx
                .rows("SELECT requests FROM /^httpjson_mtr_web/ WHERE region='eu'")
                .is_empty()
    });
    let events = a.ok(&["events", APP]);
    assert!(
        events.contains("bad custom metric line") && events.contains("this is not line protocol"),
        "{events}"
    );

    // An outage: InfluxDB down for a minute while containers run; nothing is lost or doubled.
    let first_t = |influx: &Influx, s: &str| -> Vec<i64> {
        influx
            .rows(s)
            .iter()
            .filter_map(|r| r[0].as_i64())
            .collect()
    };
    let series =
        format!("SELECT exitcode FROM docker_container_status WHERE container_name='{APP}_web_1'");
    let before = first_t(&influx, &series);
    let start = *before.first().expect("points before the outage");
    influx.stop();
    std::thread::sleep(Duration::from_secs(60));
    let waiting = a.get_raw("/v1/outbox", true).expect("outbox").1;
    assert!(
        waiting.contains("\"lines\":") && !waiting.contains("\"lines\":0,"),
        "lines wait in the outbox: {waiting}"
    );
    influx.restart();
    wait_until("the outbox drains", Duration::from_secs(60), || {
        let (_, b) = a.get_raw("/v1/outbox", true).expect("outbox");
        let v: Vec<berth::wire::OutboxStats> = serde_json::from_str(&b).expect("json");
        v.iter().all(|s| s.lines == 0)
    });
    let after = first_t(&influx, &format!("{series} AND time >= {start}"));
    let end = *after.last().expect("points");
    // Cycles run on multiples of the interval and their points carry the tick: every tick
    // between the first and the last point is there exactly once, but for ticks the agent
    // itself skipped because a cycle ran over (a loaded machine) and counted.
    let step = 2_000_000_000;
    assert!(end - start > 60_000_000_000, "the window spans the outage");
    for w in after.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > 0 && gap % step == 0,
            "points out of the tick grid or doubled between {} and {}",
            w[0],
            w[1]
        );
    }
    let missing = (end - start) / step + 1 - after.len() as i64;
    let (_, prom) = a.get_raw("/metrics", false).expect("metrics");
    let skipped: i64 = prom
        .lines()
        .find_map(|l| l.strip_prefix("berth_metrics_cycles_skipped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the skipped-cycles counter") as i64;
    assert!(
        missing <= skipped,
        "{missing} ticks missing, the agent skipped {skipped}: {after:?}"
    );
    let mut dedup = after.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), after.len());
    let stats: Vec<berth::wire::OutboxStats> =
        serde_json::from_str(&a.get_raw("/v1/outbox", true).expect("outbox").1).expect("json");
    assert!(
        stats.iter().all(|s| s.dropped == 0),
        "nothing dropped: {stats:?}"
    );
    a.ok(&["rm", APP]);
}

#[test]
fn prometheus_scrapes_the_agent_and_promtool_accepts_it() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\nprometheus_public = true\n");
    a.deploy("prom", "services:\n  web:\n    image: berth-test/web\n");
    a.wait_running("prom", 1, Duration::from_secs(60));
    wait_until("a collection cycle", Duration::from_secs(20), || {
        a.get_raw("/metrics", false)
            .is_ok_and(|(c, b)| c == 200 && b.contains("container_cpu_usage_seconds_total{"))
    });
    let (_, text) = a.get_raw("/metrics", false).expect("metrics");
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = check.wait_with_output().expect("promtool runs");
    // The lint problems allowed are those node_exporter's own output has, on the names
    // dashboards query: camelCase meminfo and netstat names (`node_memory_MemTotal_bytes`,
    // `node_netstat_Tcp_CurrEstab`) and the entropy pool counted in bits.
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let node_exporters_own = |l: &str| {
        ((l.starts_with("node_memory_") || l.starts_with("node_netstat_"))
            && l.ends_with("metric names should be written in 'snake_case' not 'camelCase'"))
            || (l.starts_with("node_entropy_")
                && l.ends_with("use base unit \"bytes\" instead of \"bits\""))
    };
    let other: Vec<&str> = problems
        .lines()
        .filter(|l| !node_exporters_own(l))
        .collect();
    assert!(other.is_empty(), "promtool check metrics: {problems}");
    assert!(
        out.status.success() || problems.contains("node_memory_MemTotal_bytes"),
        "promtool failed without saying why: {problems}"
    );
    for name in [
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_uname_info{",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let p = Prometheus::start(&format!("127.0.0.1:{}", a.port));
    wait_until(
        "Prometheus has container series",
        Duration::from_secs(40),
        || {
            let r = p.query("container_memory_working_set_bytes{app=\"prom\"}");
            !r.is_empty() && r[0]["metric"]["name"] == "prom_web_1"
        },
    );
    assert!(!p.query("node_load1").is_empty());
    assert!(!p.query("node_memory_MemAvailable_bytes").is_empty());
    let uname = p.query("node_uname_info");
    assert!(
        !uname.is_empty() && uname[0]["metric"]["sysname"] == "Linux",
        "{uname:?}"
    );
    assert!(!p.query("berth_reconcile_seconds").is_empty());
    // Without prometheus_public the endpoint wants the token.
    let b = Agent::start();
    assert_eq!(b.get_raw("/metrics", false).expect("answer").0, 401);
    assert_eq!(b.get_raw("/metrics", true).expect("answer").0, 200);
    a.ok(&["rm", "prom"]);
}

/// The v2 write path, checked by a listener of the test's own: path, org/bucket/precision,
/// the token header, a gzip body of valid line protocol; a 429 with Retry-After is retried.
#[test]
fn v2_writes_carry_token_and_gzip_and_429_is_retried() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("listener");
    let port = server.server_addr().to_ip().expect("ip").port();
    let a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"1s\"\n[[metrics.influxdb]]\nurl = \"http://127.0.0.1:{port}\"\napi = \"v2\"\norg = \"acme\"\nbucket = \"b1\"\ntoken = \"s3cret\"\n"
    ));
    let mut seen = 0;
    let mut refused_once = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen < 2 {
        assert!(std::time::Instant::now() < deadline, "no v2 writes arrived");
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_secs(5)) else {
            continue;
        };
        let url = req.url().to_string();
        assert!(url.starts_with("/api/v2/write?"), "{url}");
        for p in ["org=acme", "bucket=b1", "precision=ns"] {
            assert!(url.contains(p), "{url} lacks {p}");
        }
        let header = |n: &'static str| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv(n))
                .map(|h| h.value.as_str().to_string())
        };
        assert_eq!(header("Authorization").as_deref(), Some("Token s3cret"));
        assert_eq!(header("Content-Encoding").as_deref(), Some("gzip"));
        let mut gz = Vec::new();
        req.as_reader().read_to_end(&mut gz).expect("body");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gzip body");
        assert!(text.lines().count() <= 5000);
        for l in text.lines() {
            berth::metrics::line::parse_line(l, 0).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        }
        assert!(text.contains("system,host="), "{text}");
        if !refused_once {
            refused_once = true;
            let r = tiny_http::Response::empty(429)
                .with_header(tiny_http::Header::from_bytes("Retry-After", "1").expect("header"));
            let _ = req.respond(r);
            continue;
        }
        seen += 1;
        let _ = req.respond(tiny_http::Response::empty(204));
    }
    wait_until(
        "the outbox empties after the 429",
        Duration::from_secs(20),
        || {
            let v: Vec<berth::wire::OutboxStats> =
                serde_json::from_str(&a.get_raw("/v1/outbox", true).expect("outbox").1)
                    .expect("json");
            v.iter().all(|s| s.lines == 0 && s.dropped == 0)
        },
    );
    let events = a.ok(&["events"]);
    assert!(events.contains("HTTP 429"), "{events}");
}

#[test]
fn top_history_and_alarms() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    a.deploy(
        "hot",
        "services:\n  burn:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"while :; do :; done\"]\n",
    );
    a.wait_running("hot", 1, Duration::from_secs(60));
    a.ok(&[
        "alarm",
        "add",
        "burning",
        "--metric",
        "cpu_percent",
        "--above",
        "50",
        "--periods",
        "2",
        "--app",
        "hot",
    ]);
    assert!(
        a.fails(&["alarm", "add", "bad", "--metric", "disk", "--above", "1"])
            .contains("cpu_percent")
    );
    wait_until("the alarm is raised", Duration::from_secs(30), || {
        a.ok(&["events", "hot"])
            .contains("alarm burning raised: hot_burn_1 cpu_percent")
    });
    let top = a.ok(&["top", "--no-stream", "hot"]);
    assert!(
        top.contains("hot_burn_1") && top.contains("running"),
        "{top}"
    );
    let t: berth::wire::Top =
        serde_json::from_str(&a.ok(&["top", "--no-stream", "--json", "hot"])).expect("json");
    assert!(
        t.containers[0].cpu_percent.is_some_and(|c| c > 50.0),
        "{t:?}"
    );
    let h: Vec<berth::wire::Series> =
        serde_json::from_str(&a.ok(&["metrics", "hot", "--json"])).expect("json");
    assert_eq!(h[0].name, "hot_burn_1");
    assert!(!h[0].buckets.is_empty());
    a.ok(&["stop", "hot"]);
    a.ok(&["alarm", "rm", "burning"]);
    assert!(a.ok(&["alarm", "ls"]).lines().count() <= 1);
    a.ok(&["rm", "hot"]);
}

/// The collector keeps a container's cgroup and /proc files open between cycles. A restart
/// (new cgroup, new process, new network namespace) must be followed, and a removed
/// container's files closed within a cycle or two (held open they would pin its cgroup).
#[test]
fn kept_metric_files_follow_a_restart_and_close_when_a_container_goes() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    a.deploy(
        "kept",
        "services:\n  idle:\n    image: berth-test/idle\n    stop_grace_period: 1s\n",
    );
    a.wait_running("kept", 1, Duration::from_secs(60));
    let id = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=berth.node={}", a.node_id),
        "--filter",
        "label=berth.app=kept",
    ]);
    assert_eq!(id.lines().count(), 1, "{id}");
    let pid_of = || docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let held = |pid: &str| {
        a.open_files()
            .into_iter()
            .filter(|f| f.contains(&id) || f.starts_with(&format!("/proc/{pid}/")))
            .collect::<Vec<_>>()
    };
    let top_row = || -> Option<berth::wire::TopRow> {
        let t: berth::wire::Top =
            serde_json::from_str(&a.ok(&["top", "--no-stream", "--json", "kept"])).ok()?;
        t.containers.into_iter().next()
    };
    let pid1 = pid_of();
    wait_until(
        "the agent keeps the container's files open",
        Duration::from_secs(20),
        || held(&pid1).len() >= 5,
    );
    // A restart in place: same id and cgroup path, a new cgroup, pid and network namespace.
    let before = a.ok(&["top", "--no-stream", "--json", "kept"]);
    docker_ok(&["restart", "-t", "1", &id]);
    let pid2 = pid_of();
    assert_ne!(pid1, pid2);
    let t_restart = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    wait_until(
        "figures of the restarted container (memory, network) after the restart",
        Duration::from_secs(30),
        || {
            let t: berth::wire::Top =
                serde_json::from_str(&a.ok(&["top", "--no-stream", "--json", "kept"]))
                    .expect("top json");
            t.time_ns > t_restart
                && t.containers
                    .first()
                    .is_some_and(|r| r.status == "running" && r.mem_bytes > 0)
        },
    );
    assert!(
        held(&pid2)
            .iter()
            .any(|f| f == &format!("/proc/{pid2}/net/dev")),
        "the new process's files are read: {:?}\nbefore: {before}",
        held(&pid2)
    );
    assert!(top_row().is_some_and(|r| r.mem_bytes > 0));
    // Removed: nothing of it stays open.
    a.ok(&["rm", "kept"]);
    let mut last = Vec::new();
    let closed = (0..40).any(|_| {
        last = held(&pid2);
        last.is_empty() || {
            std::thread::sleep(Duration::from_millis(500));
            false
        }
    });
    assert!(
        closed,
        "the removed container's files are still open: {last:?}"
    );
}

/// `--notify webhook:URL`: each raise and clear of an alarm is POSTed as JSON through the
/// outbox, so a receiver that is down while they happen gets every one, once, in order,
/// when it comes back.
#[test]
fn alarm_webhook_down_for_a_while_gets_every_notice_once() {
    let port = free_port();
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    // Busy for 3 s, idle for 3 s, again and again.
    a.deploy(
        "pulse",
        "services:\n  beat:\n    image: berth-test/busybox\n    stop_grace_period: 1s\n    command: [\"sh\", \"-c\", \"while :; do end=$$(($$(date +%s)+3)); while [ $$(date +%s) -lt $$end ]; do :; done; sleep 3; done\"]\n",
    );
    a.wait_running("pulse", 1, Duration::from_secs(60));
    let hook = format!("webhook:http://127.0.0.1:{port}/alarm");
    let e = a.fails(&[
        "alarm",
        "add",
        "bad",
        "--metric",
        "cpu_percent",
        "--above",
        "1",
        "--notify",
        "mailto:x",
    ]);
    assert!(e.contains("webhook:http"), "{e}");
    a.ok(&[
        "alarm",
        "add",
        "pulse",
        "--metric",
        "cpu_percent",
        "--above",
        "40",
        "--app",
        "pulse",
        "--notify",
        &hook,
    ]);
    // The receiver is down while the alarm goes up and down.
    let count = |what: &str| {
        a.ok(&["events", "pulse"])
            .matches(&format!("alarm pulse {what}"))
            .count()
    };
    wait_until("raised twice and cleared", Duration::from_secs(60), || {
        count("raised") >= 2 && count("cleared") >= 1
    });
    a.ok(&["alarm", "rm", "pulse"]);
    std::thread::sleep(Duration::from_secs(2));
    let (raised, cleared) = (count("raised"), count("cleared"));
    let expected = raised + cleared;

    // Back: every notice arrives, once.
    let server = tiny_http::Server::http(format!("127.0.0.1:{port}")).expect("receiver");
    let mut got: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while got.len() < expected && std::time::Instant::now() < deadline {
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        assert_eq!(req.url(), "/alarm");
        let mut body = String::new();
        req.as_reader().read_to_string(&mut body).expect("body");
        got.push(serde_json::from_str(&body).expect("one JSON notice"));
        let _ = req.respond(tiny_http::Response::empty(204));
    }
    // Nothing more comes (no notice twice).
    if let Ok(Some(req)) = server.recv_timeout(Duration::from_secs(3)) {
        panic!("an extra notice: {}", req.url());
    }
    assert_eq!(got.len(), expected, "{got:?}");
    let states: Vec<&str> = got.iter().filter_map(|n| n["state"].as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "raised").count(), raised);
    assert_eq!(states[0], "raised");
    assert!(
        states.windows(2).all(|w| w[0] != w[1]),
        "in order: {states:?}"
    );
    let first = &got[0];
    assert_eq!(first["alarm"], "pulse");
    assert_eq!(first["app"], "pulse");
    assert_eq!(first["metric"], "cpu_percent");
    assert!(first["value"].as_f64().is_some_and(|v| v > 40.0), "{first}");
    assert!(
        first["series"]
            .as_str()
            .is_some_and(|s| s.starts_with("pulse_beat"))
    );
    a.ok(&["rm", "pulse"]);
}

/// `--notify syslog`: each raise goes to the `[[logs.syslog]]` servers as an RFC 5424
/// message (stream `alarm`); refused with no syslog server configured.
#[test]
fn alarm_notifies_the_syslog_servers() {
    let plain = Agent::start();
    let e = plain.fails(&[
        "alarm",
        "add",
        "x",
        "--metric",
        "cpu_percent",
        "--above",
        "1",
        "--notify",
        "syslog",
    ]);
    assert!(e.contains("[[logs.syslog]]"), "{e}");
    drop(plain);

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"1s\"\n[[logs.syslog]]\naddress = \"udp://{}\"\n",
        udp.local_addr().expect("addr")
    ));
    a.deploy(
        "warm",
        "services:\n  burn:\n    image: berth-test/busybox\n    stop_grace_period: 1s\n    command: [\"sh\", \"-c\", \"while :; do :; done\"]\n",
    );
    a.wait_running("warm", 1, Duration::from_secs(60));
    a.ok(&[
        "alarm",
        "add",
        "warmth",
        "--metric",
        "cpu_percent",
        "--above",
        "40",
        "--app",
        "warm",
        "--notify",
        "syslog",
    ]);
    assert!(a.ok(&["alarm", "ls"]).contains("syslog"));
    let mut buf = [0u8; 65536];
    let msg = loop {
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("alarm warmth raised") {
            break m;
        }
    };
    assert!(msg.starts_with("<14>1 "), "{msg}");
    assert!(msg.contains(" warm.burn warm_burn_1 alarm "), "{msg}");
    a.ok(&["rm", "warm"]);
}

/// `[metrics.notify]`: a job's failed run goes to the event notifiers (a webhook, one JSON
/// notice per POST through the outbox), its finished runs do not.
#[test]
fn a_failed_job_run_is_sent_to_the_event_notifiers() {
    let port = free_port();
    let server = tiny_http::Server::http(format!("127.0.0.1:{port}")).expect("receiver");
    let a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"1s\"\n[metrics.notify]\nto = [\"webhook:http://127.0.0.1:{port}/events\"]\n"
    ));
    let job = |cmd: &str| {
        format!(
            "labels:\n  aliyun.project_type: batch\nservices:\n  task:\n    image: berth-test/busybox\n    command: [\"sh\", \"-c\", \"{cmd}\"]\n    labels:\n      aliyun.retry_count: \"0\"\n"
        )
    };
    a.deploy("fine", &job("exit 0"));
    a.deploy("broken", &job("exit 2"));
    let mut got: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while got.is_empty() && std::time::Instant::now() < deadline {
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        assert_eq!(req.url(), "/events");
        let mut body = String::new();
        req.as_reader().read_to_string(&mut body).expect("body");
        got.push(serde_json::from_str(&body).expect("one JSON notice"));
        let _ = req.respond(tiny_http::Response::empty(204));
    }
    assert_eq!(got.len(), 1, "{got:?}");
    let n = &got[0];
    assert_eq!(n["kind"], "job", "{n}");
    assert_eq!(n["app"], "broken", "{n}");
    assert!(
        n["message"]
            .as_str()
            .unwrap_or("")
            .contains("run 1 failed after"),
        "{n}"
    );
    assert!(
        n["host"].is_string() && n["time_ms"].as_i64().is_some(),
        "{n}"
    );
    // Nothing more: the finished job sent nothing.
    let more = server.recv_timeout(Duration::from_secs(4)).expect("recv");
    assert!(more.is_none(), "a notice for a finished run");
    // A bad target is refused at start with what to write.
    let bad = tempfile::tempdir().expect("tmp");
    let conf = bad.path().join("berth.toml");
    std::fs::write(
        &conf,
        "[metrics.notify]\non = [\"disk\"]\nto = [\"syslog\"]\n",
    )
    .expect("toml");
    let o = std::process::Command::new(bin())
        .args(["agent", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(bad.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("agent");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"node\""));
}
