//! Attacks on the agent by an untrusted container or an untrusted client, performed for real
//! against a real agent and engine. Each test asserts the attack fails *and* the agent keeps
//! serving (API answers, router routes, other logs still arrive, memory stays bounded).

use super::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `req` on a fresh connection and returns what came back until close or `wait`.
fn raw(port: u16, req: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    let mut r = s;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error answer (408/431) before the close
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Opens `n` connections to `port` and says how many the server closed at once (refused
/// over its connection cap); the rest are returned, still open.
fn flood(port: u16, n: usize) -> (usize, Vec<TcpStream>) {
    let conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (closed, open): (Vec<TcpStream>, Vec<TcpStream>) = conns
        .into_iter()
        .partition(|s| closed_within(s, Duration::from_millis(20)));
    (closed.len(), open)
}

/// A template whose one service serves `script` as the CGI program `/cgi-bin/s` (busybox
/// httpd on `port`), with these extra label lines.
fn cgi_app(port: u16, script: &str, labels: &str) -> String {
    let script: String = script.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        r#"
services:
  web:
    image: {IMAGE}
    command:
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin
        cat > /www/cgi-bin/s <<'EOF'
{script}        EOF
        chmod +x /www/cgi-bin/s
        exec httpd -f -p {port} -h /www
    labels:
{labels}"#
    )
}

fn healthy_quickly(a: &Agent) {
    let t = Instant::now();
    let r = a.get_raw("/v1/health", false);
    assert!(
        matches!(r, Ok((200, _))) && t.elapsed() < Duration::from_secs(3),
        "the API must keep answering: {r:?} after {:?}",
        t.elapsed()
    );
}

#[test]
fn api_survives_huge_lengths_stalled_bodies_slow_heads_and_connection_floods() {
    let mut a = Agent::start();
    let (port, token) = (a.port, a.token());
    // A declared length of 4 EiB (tiny_http allocated it to drain the body and aborted): on a
    // public route, on a protected one without the token, and with it.
    let huge = "Content-Length: 4611686018427387904\r\n";
    let cases = [
        (
            format!("GET /v1/health HTTP/1.1\r\nHost: x\r\n{huge}\r\n"),
            "200",
        ),
        (
            format!("POST /v1/apps HTTP/1.1\r\nHost: x\r\n{huge}\r\n"),
            "401",
        ),
        (
            format!(
                "POST /v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{huge}\r\n"
            ),
            "413",
        ),
    ];
    for (req, want) in &cases {
        let resp = raw(port, req.as_bytes(), Duration::from_secs(5));
        assert!(
            status_line(&resp).contains(want),
            "{req:?} answered {resp:?}"
        );
    }
    healthy_quickly(&a);

    // 40 authorised requests that promise a body and never send it (16 stopped tiny_http).
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(
            format!("POST /v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{")
                .as_bytes(),
        )
        .expect("write");
        stalled.push(s);
    }
    healthy_quickly(&a);
    a.ok(&["apps"]);

    // A head that trickles in one header line a second never completes: closed at the head
    // deadline (10 s), not held for ever.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /v1/health HTTP/1.1\r\n")
        .expect("write");
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(20) {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() || closed_within(&slow, Duration::from_secs(1))
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow head was not cut off within 20 s");
    assert!(start.elapsed() >= Duration::from_secs(5), "cut too early");
    healthy_quickly(&a);

    // A 1 MiB header line: refused (431) or closed; the agent lives.
    let big = format!(
        "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    let resp = raw(port, big.as_bytes(), Duration::from_secs(5));
    assert!(
        resp.is_empty() || status_line(&resp).contains("431"),
        "{:?}",
        status_line(&resp)
    );
    healthy_quickly(&a);

    // A flood of idle connections: past the cap (256) they are closed at once, and the
    // ones held are closed at the head deadline; then the API answers again.
    let (refused, idle) = flood(port, 300);
    assert!(
        refused >= 44,
        "only {refused} of 300 idle connections were refused"
    );
    wait_until(
        "the API answers after the flood",
        Duration::from_secs(20),
        || matches!(a.get_raw("/v1/health", false), Ok((200, _))),
    );
    drop(idle);

    assert!(
        a.peak_rss_kib() < 200 << 10,
        "agent peak RSS {} KiB",
        a.peak_rss_kib()
    );
    // Shutdown does not wait on the stalled bodies for ever.
    assert!(
        a.terminate(Duration::from_secs(20)),
        "SIGTERM hung with stalled requests open"
    );
    drop(stalled);
}

#[test]
fn router_sets_forwarded_headers_and_survives_idle_floods_and_slow_heads() {
    let http_port = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http_port}\"\nheader_timeout = \"2s\"\nmax_connections = 1100\ntrusted_proxies = [\"10.99.0.0/16\"]\n"
    ));
    // A CGI script that prints the request's headers as the instance received them.
    a.deploy(
        "hx",
        &cgi_app(
            8080,
            "#!/bin/sh\necho Content-Type: text/plain\necho\nenv",
            "      berth.probe.url: http://container:8080/index.html\n      berth.routing.port_8080: hx.test\n",
        ),
    );
    let get = |extra: &str| {
        raw(
            http_port,
            format!("GET /cgi-bin/s HTTP/1.1\r\nHost: hx.test\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(10),
        )
    };
    wait_until("the route answers", Duration::from_secs(30), || {
        status_line(&get("")).contains("200")
    });
    // Spoofed over plain HTTP from an untrusted client: the router's values win.
    let env = get(
        "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n",
    );
    for want in [
        "HTTP_X_FORWARDED_PROTO=http\n",
        "HTTP_X_FORWARDED_HOST=hx.test\n",
        "HTTP_X_FORWARDED_FOR=127.0.0.1\n",
    ] {
        assert!(env.contains(want), "{want:?} not in:\n{env}");
    }
    assert!(
        !env.contains("6.6.6.6")
            && !env.contains("evil.example")
            && !env.contains("HTTP_FORWARDED="),
        "a client's forwarded values reached the app:\n{env}"
    );

    // 1,000 idle connections (slowloris without a byte): the router still routes, and
    // closes them at the head deadline.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", http_port)).expect("connect"))
        .collect();
    let t = Instant::now();
    assert!(
        status_line(&get("")).contains("200"),
        "routes during the flood"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    // Past the cap (1,100 in this config): closed at accept.
    let (refused, over) = flood(http_port, 200);
    assert!(
        refused >= 90,
        "only {refused} of 200 over the cap were refused"
    );
    std::thread::sleep(Duration::from_secs(3));
    let still_open = idle
        .iter()
        .filter(|s| !closed_within(s, Duration::from_millis(5)))
        .count();
    assert_eq!(still_open, 0, "idle connections outlived header_timeout");
    drop(idle);
    drop(over);
    // A head sent a byte at a time is cut off too.
    let mut slow = TcpStream::connect(("127.0.0.1", http_port)).expect("connect");
    let start = Instant::now();
    let mut closed = false;
    for b in b"GET /cgi-bin/s HTTP/1.1\r\nHost: hx.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle() {
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
        if slow.write_all(&[*b]).is_err() || closed_within(&slow, Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled head was not cut off");
    assert!(
        status_line(&get("")).contains("200"),
        "routes after the attacks"
    );
}

#[test]
fn container_symlinks_fifos_and_floods_cannot_reach_host_files_or_stall_logs() {
    let mut a = Agent::start();
    let data_dir = a.dir.path().display().to_string();
    // The container plants, where its labels say its logs are: a link to the host's
    // /etc/shadow (absolute), a link through the magic /proc/self/root, its log directory
    // linked to the agent's data dir (api.token), a FIFO, a char device, a directory of
    // sparse 8 MiB files; it also writes a 40 KiB piece without a newline on stdout and
    // floods stderr, then keeps logging a heartbeat.
    let yaml = format!(
        r#"
services:
  evil:
    image: {IMAGE}
    command:
      - sh
      - -c
      - |
        mkdir -p /var/log /sparse
        ln -sf /etc/shadow /var/log/shadow.log
        ln -sf /proc/self/root/etc/shadow /var/log/magic.log
        ln -sfn {data_dir} /var/log/dir
        mkfifo /var/log/fifo.log
        mknod /var/log/dev.log c 1 3 || true
        for i in 1 2 3 4; do dd if=/dev/zero of=/sparse/$$i.log bs=1 count=0 seek=8388608 2>/dev/null; done
        echo "good 1" >> /tmp/good.log
        head -c 40000 /dev/zero | tr '\0' p
        seq 1 300000 | sed 's/^/flood /' >&2
        w=0; until [ -e /tmp/go ] || [ $$w -ge 900 ]; do sleep 0.2; w=$$((w+1)); done
        i=0; while :; do i=$$((i+1)); echo "beat $$i"; echo "good $$i" >> /tmp/good.log; sleep 0.2; done
    labels:
      berth.log_store_shadow: /var/log/shadow.log
      berth.log_store_magic: /var/log/magic.log
      berth.log_store_dir: /var/log/dir
      berth.log_store_fifo: /var/log/fifo.log
      berth.log_store_dev: /var/log/dev.log
      berth.log_store_sparse: /sparse
      berth.log_store_good: /tmp/good.log
"#
    );
    a.deploy("evil", &yaml);
    a.wait_running("evil", 1, Duration::from_secs(60));
    let lines = |extra: &[&str]| -> Vec<berth::wire::LogLine> {
        let mut args = vec!["logs", "evil", "--json"];
        args.extend_from_slice(extra);
        a.ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    };
    // The stderr flood is stored while the stdout piece is still pending (it ends only when
    // the test says so, after at most 3 minutes): held lines are let go past their bound,
    // with a checkpoint.
    wait_until(
        "the flood is stored while the piece is pending",
        Duration::from_secs(150),
        || {
            lines(&["--stream", "stderr", "--tail", "1"])
                .first()
                .is_some_and(|l| l.message == "flood 300000")
        },
    );
    docker_ok(&["exec", "evil_evil_1", "touch", "/tmp/go"]);
    // Lines keep arriving from the honest sources (the FIFO did not block the log loop).
    wait_until(
        "heartbeat and file lines arrive",
        Duration::from_secs(60),
        || {
            let all = lines(&["--stream", "stdout", "--tail", "20"]);
            all.iter().any(|l| l.message.starts_with("beat 5"))
                && lines(&["--stream", "good", "--tail", "20"])
                    .iter()
                    .any(|l| l.message == "good 5")
        },
    );
    // Memory stayed bounded through the flood (checked before the queries below, whose
    // 100,000-line answers are built in memory).
    let rss = a.peak_rss_kib();
    eprintln!("agent peak RSS after the flood: {rss} KiB");
    assert!(rss < 96 << 10, "agent peak RSS {rss} KiB");
    std::thread::sleep(Duration::from_secs(2));
    let token = a.token();
    // Nothing from a planted source, nothing of a host file anywhere.
    for stream in ["shadow", "magic", "dir", "fifo", "dev"] {
        let got = lines(&["--stream", stream, "--tail", "10"]);
        assert!(got.is_empty(), "planted source {stream} was read: {got:?}");
    }
    for needle in [token.as_str(), "root:"] {
        let got = lines(&["--grep", needle, "--tail", "10"]);
        assert!(got.is_empty(), "a host file leaked into the logs: {got:?}");
    }
    // Every flood line is there once, in order (a query returns at most 100,000 lines: the
    // newest 100,000 are checked whole, older ones by sample).
    let newest = lines(&["--stream", "stderr", "--tail", "100000"]);
    let want: Vec<String> = (200_001..=300_000).map(|i| format!("flood {i}")).collect();
    let got: Vec<&str> = newest.iter().map(|l| l.message.as_str()).collect();
    assert!(
        got == want,
        "the newest flood lines are not 200001..=300000 once each"
    );
    for n in [99_999, 54_321, 123_456, 199_999] {
        let got = lines(&[
            "--grep",
            &format!("flood {n}"),
            "--stream",
            "stderr",
            "--tail",
            "100",
        ]);
        assert!(
            got.iter()
                .filter(|l| l.message == format!("flood {n}"))
                .count()
                == 1,
            "flood {n}: {got:?}"
        );
    }
    // The piece without a newline became a line of its own.
    let all = lines(&["--stream", "stdout", "--tail", "1000"]);
    assert!(all.iter().any(|l| l.message.starts_with("pppp")));
    let all = lines(&["--stream", "sparse", "--tail", "1000"]);
    // Sparse files: at most 1 MiB a poll, in bounded lines.
    assert!(
        all.iter()
            .filter(|l| l.stream == "sparse")
            .all(|l| l.message.len() <= 64 << 10)
    );
    healthy_quickly(&a);
    // SIGTERM is not held up by the FIFO.
    assert!(a.terminate(Duration::from_secs(20)), "SIGTERM hung");
}

#[test]
fn a_scrape_that_redirects_is_not_followed_to_host_services() {
    // A host-only service the container must not reach through the agent.
    let secret = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let secret_port = secret.local_addr().expect("addr").port();
    secret.set_nonblocking(true).expect("nonblocking");
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\n");
    // The container answers the scrape with a redirect to a host-only address.
    a.deploy(
        "ssrf",
        &cgi_app(
            80,
            &format!(
                "#!/bin/sh\nprintf 'HTTP/1.1 302 Found\\r\\nLocation: http://127.0.0.1:{secret_port}/v1/apps\\r\\nContent-Length: 0\\r\\n\\r\\n'"
            ),
            "      berth.monitoring.http: \"http://container:80/cgi-bin/s\"\n",
        ),
    );
    a.wait_running("ssrf", 1, Duration::from_secs(60));
    wait_until("the refusal is reported", Duration::from_secs(30), || {
        a.ok(&["events", "ssrf", "-n", "50"]).contains("redirect")
    });
    assert!(
        secret.accept().is_err(),
        "the scrape followed the redirect to a host-only port"
    );
    healthy_quickly(&a);
}

#[test]
fn rm_volumes_keeps_volumes_the_app_did_not_make() {
    let a = Agent::start();
    let keep = format!("keep{}", &a.node_id[..8]);
    a.ok(&["volume", "create", &keep, "--driver", "local"]);
    a.deploy(
        "rmv",
        &format!(
            "services:\n  s:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    volumes: [\"shared:/shared\", \"own:/own\"]\nvolumes:\n  shared:\n    name: {keep}\n  own: {{}}\n"
        ),
    );
    a.wait_running("rmv", 1, Duration::from_secs(60));
    a.ok(&["rm", "rmv", "--volumes"]);
    let ls = a.ok(&["volume", "ls"]);
    assert!(
        ls.contains(&keep),
        "a volume made with `volume create` went:\n{ls}"
    );
    assert!(
        !ls.contains("rmv_own"),
        "the app's own volume stayed:\n{ls}"
    );
    a.ok(&["volume", "rm", &keep]);
}

#[test]
fn a_full_disk_drops_and_counts_log_lines_and_collection_resumes_when_space_returns() {
    // A 40 MiB data dir, 24 MiB of it taken by a file the test removes later; retention far
    // above the disk's size, so only the disk can stop the log store.
    let mut a = Agent::start_on_small_disk("[logs]\nmax_size_mb = 1024\n", 40);
    let filler = a.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 24 << 20]).expect("filler");
    let pad = "x".repeat(200);
    a.deploy(
        "full",
        &format!(
            r#"
services:
  log:
    image: {IMAGE}
    command:
      - sh
      - -c
      - |
        i=1
        while :; do seq $$i $$((i+999)) | sed 's/$$/ {pad}/'; i=$$((i+1000)); sleep 0.1; done
"#
        ),
    );
    let dropped = |a: &Agent| -> u64 {
        a.get_raw("/metrics", true)
            .ok()
            .and_then(|(_, text)| {
                text.lines()
                    .find(|l| l.starts_with("berth_log_lines_dropped_total "))
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0) as u64
    };
    wait_until(
        "lines are dropped once the disk is full",
        Duration::from_secs(90),
        || dropped(&a) > 0,
    );
    // The agent keeps serving while the disk is full.
    healthy_quickly(&a);
    let before = dropped(&a);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        dropped(&a) > before,
        "lines keep being dropped (and counted) while full"
    );
    // Space returns: collection resumes by itself, and an event says how many went.
    std::fs::remove_file(&filler).expect("free space");
    wait_until(
        "storing resumes with an event",
        Duration::from_secs(30),
        || {
            a.ok(&["events", "-n", "200"])
                .contains("log lines are stored again")
        },
    );
    let newest = |a: &Agent| {
        a.ok(&["logs", "full", "--json", "--tail", "1"])
            .lines()
            .filter_map(|l| serde_json::from_str::<berth::wire::LogLine>(l).ok())
            .filter_map(|l| {
                l.message
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .max()
            .unwrap_or(0)
    };
    let n = newest(&a);
    wait_until("new lines are stored", Duration::from_secs(20), || {
        newest(&a) > n
    });
    let events = a.ok(&["events", "-n", "200"]);
    assert!(events.contains("dropped"), "{events}");
    a.ok(&["rm", "full"]);
    assert!(a.terminate(Duration::from_secs(20)), "SIGTERM hung");
}

/// A `monitoring.addon.prometheus: ":PORT"` exposition port answers without a token, so
/// anyone on the network reaches it: a declared body of 4 EiB, a 1 MiB header, a head that
/// trickles in and a flood of idle connections each fail, and then the port answers a
/// scrape again (and the API never stopped answering).
#[test]
fn a_prometheus_exposition_port_survives_huge_lengths_slow_heads_and_floods() {
    let port = free_port();
    let a = Agent::start_with_config(
        "[metrics]\ninterval = \"1s\"\n[router]\ntcp_address = \"127.0.0.1\"\n",
    );
    a.deploy(
        "prom",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 600\n    stop_grace_period: 1s\n    labels:\n      aliyun.monitoring.addon.prometheus: \":{port}\"\n"
        ),
    );
    let scrape = || {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return String::new();
        }
        raw(
            port,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
    };
    wait_until(
        "the exposition port answers",
        Duration::from_secs(30),
        || {
            let r = scrape();
            status_line(&r).contains("200") && r.contains("container_")
        },
    );

    let huge = raw(
        port,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4611686018427387904\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        huge.is_empty() || status_line(&huge).contains("405"),
        "{:?}",
        status_line(&huge)
    );
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    let resp = raw(port, big.as_bytes(), Duration::from_secs(5));
    assert!(
        resp.is_empty() || status_line(&resp).contains("431"),
        "{:?}",
        status_line(&resp)
    );
    healthy_quickly(&a);

    // A head trickling in a line a second is cut off at the head deadline (10 s).
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").expect("write");
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(25) {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() || closed_within(&slow, Duration::from_secs(1))
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow head was not cut off within 25 s");
    assert!(start.elapsed() >= Duration::from_secs(5), "cut too early");

    // 100 idle connections: past the cap (64) closed at once; the held ones go at the head
    // deadline, and a scrape is answered again.
    let (refused, idle) = flood(port, 100);
    assert!(
        refused >= 30,
        "only {refused} of 100 idle connections were refused"
    );
    healthy_quickly(&a);
    wait_until(
        "a scrape is answered after the flood",
        Duration::from_secs(30),
        || status_line(&scrape()).contains("200"),
    );
    drop(idle);
}
