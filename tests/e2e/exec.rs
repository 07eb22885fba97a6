//! `berth exec` against the real agent and engine: output and exit codes, stdin, a slot, a
//! terminal whose size follows resizes (spoken as the console's terminal speaks it, over a
//! raw WebSocket), events naming who ran what, roles, a cross-site browser refused, and the
//! idle close.

use super::harness::*;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn app() -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    scale: 2\n"
    )
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A raw session as the console opens it.
fn open(a: &Agent, query: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
    use tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/v1/apps/shop/services/app/exec?{query}",
        a.api().replace("http://", "ws://")
    );
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    match tungstenite::connect(req) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => Err((0, e.to_string())),
    }
}

fn send(ws: &mut Ws, kind: u8, bytes: &[u8]) {
    let mut m = vec![kind];
    m.extend_from_slice(bytes);
    ws.send(Message::Binary(m.into())).expect("send");
}

/// Reads until `until` says the output so far is enough (or the exit code arrives).
fn read_until(
    ws: &mut Ws,
    within: Duration,
    until: impl Fn(&str) -> bool,
) -> (String, Option<i32>) {
    let deadline = Instant::now() + within;
    let mut out = String::new();
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                1 | 2 => {
                    out.push_str(&String::from_utf8_lossy(&b[1..]));
                    if until(&out) {
                        return (out, None);
                    }
                }
                3 => return (out, Some(i32::from_be_bytes([b[1], b[2], b[3], b[4]]))),
                4 => {
                    out.push_str(&format!("[error] {}", String::from_utf8_lossy(&b[1..])));
                    return (out, None);
                }
                _ => {}
            },
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (out, None)
}

#[test]
fn exec_runs_commands_with_their_streams_exit_codes_terminal_and_roles() {
    let a = Agent::start_with_config("[agent]\nexec_idle = \"3s\"\n");
    a.deploy("shop", &app());
    a.wait_running("shop", 2, Duration::from_secs(60));
    let ps = a.running("shop");
    let id_of = |slot: u32| {
        ps.iter()
            .find(|i| i.slot == slot)
            .map(|i| i.container_id.clone())
            .expect("slot")
    };

    // No TTY, as a script runs it: stdout, the exit code as the CLI's.
    let out = a.ok(&["exec", "shop/app", "--", "cat", "/etc/hostname"]);
    assert!(id_of(1).starts_with(out.trim()), "{out} vs {}", id_of(1));
    let out = a.ok(&["exec", "shop/app/2", "--", "hostname"]);
    assert!(id_of(2).starts_with(out.trim()), "{out} vs {}", id_of(2));
    let o = a.exits(
        &[
            "exec",
            "shop/app",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 7",
        ],
        7,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-err\n");
    // stdin with -i: bytes in, the same bytes out, EOF ends the command.
    let mut child = a
        .follow_command(&["exec", "-i", "shop/app", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cli");
    let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(big.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("cli");
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{big}done\n"));
    // Bad input: what is wrong and how to fix it.
    let e = a.fails(&["exec", "shop/nope", "--", "true"]);
    assert!(e.contains("no container of a service \"nope\""), "{e}");
    let e = a.fails(&["exec", "shop/app/9", "--", "true"]);
    assert!(e.contains("shop/app/9 is not running"), "{e}");
    // The engine's own message, and its exit code.
    let o = a.berth(&["exec", "shop/app", "--", "/no/such/binary"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(matches!(o.status.code(), Some(126 | 127)), "{said}");
    assert!(said.contains("/no/such/binary"), "{said}");

    // A terminal as the console's: the size given at start, then a resize.
    let token = a.token();
    let auth = format!("Bearer {token}");
    let mut ws = open(
        &a,
        "cmd=sh&tty=1&cols=100&rows=30",
        &[("Authorization", &auth)],
    )
    .expect("session");
    send(&mut ws, 0, b"stty size\n");
    let (out, _) = read_until(&mut ws, Duration::from_secs(10), |o| o.contains("30 100"));
    assert!(out.contains("30 100"), "{out:?}");
    let mut size = 120u16.to_be_bytes().to_vec();
    size.extend_from_slice(&40u16.to_be_bytes());
    send(&mut ws, 1, &size);
    send(&mut ws, 0, b"stty size\n");
    let (out, _) = read_until(&mut ws, Duration::from_secs(10), |o| o.contains("40 120"));
    assert!(out.contains("40 120"), "{out:?}");
    send(&mut ws, 0, b"exit 3\n");
    let (_, code) = read_until(&mut ws, Duration::from_secs(10), |_| false);
    assert_eq!(code, Some(3));

    // The CLI's -t on a real terminal (util-linux `script` gives it one): its size goes
    // with the command, its raw mode passes the bytes through. (An engine before API 1.42
    // takes the size only once the command started: a command that asks at once may see
    // none, as with `docker exec -t`.)
    let cmd = format!(
        "stty cols 90 rows 20; BERTH_API={} BERTH_TOKEN={token} {} exec -it shop/app -- sh -c 'sleep 0.5; stty size; exit 4'",
        a.api(),
        bin()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("20 90"), "{said}");
    assert_eq!(o.status.code(), Some(4), "{said}");

    // Idle: closed with why (exec_idle is 3 s here; 15 minutes by default).
    let mut ws = open(&a, "cmd=sh&tty=1", &[("Authorization", &auth)]).expect("session");
    let t0 = Instant::now();
    let (out, code) = read_until(&mut ws, Duration::from_secs(20), |_| false);
    assert!(out.contains("closed after"), "{out:?}");
    assert!(code.is_none() && t0.elapsed() >= Duration::from_secs(3));

    // Not a WebSocket; no token; a viewer; an operator; a hostile message.
    let (status, body) = a
        .get_raw("/v1/apps/shop/services/app/exec?cmd=sh", true)
        .expect("get");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    assert_eq!(open(&a, "cmd=sh", &[]).err().map(|e| e.0), Some(401));
    let viewer = a
        .ok(&["access", "create", "dash", "--role", "viewer"])
        .trim()
        .to_string();
    let e = open(
        &a,
        "cmd=sh",
        &[("Authorization", &format!("Bearer {viewer}"))],
    )
    .unwrap_err();
    assert_eq!(e.0, 403, "{e:?}");
    assert!(e.1.contains("needs operator"), "{e:?}");
    let op = a
        .ok(&["access", "create", "ci", "--role", "operator"])
        .trim()
        .to_string();
    let o = a
        .follow_command(&["exec", "shop/app", "--", "true"])
        .env("BERTH_TOKEN", &op)
        .env_remove("BERTH_TOKEN_FILE")
        .output()
        .expect("cli");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ws = open(&a, "cmd=cat", &[("Authorization", &auth)]).expect("session");
    send(&mut ws, 9, b"?");
    let (out, _) = read_until(&mut ws, Duration::from_secs(10), |_| false);
    assert!(out.contains("unknown message kind"), "{out:?}");
    // A message over the 64 KiB bound ends the session; the agent answers on.
    let mut ws = open(&a, "cmd=cat", &[("Authorization", &auth)]).expect("session");
    let _ = ws.send(Message::Binary(vec![0u8; 200 * 1024].into()));
    let (out, code) = read_until(&mut ws, Duration::from_secs(10), |_| false);
    assert!(code.is_none() && !out.contains('\0'), "{out:?}");
    assert!(matches!(ws.read(), Err(_) | Ok(Message::Close(_))));
    assert_eq!(a.get_raw("/v1/health", false).expect("health").0, 200);

    // Every exec is an event: who, which container, what command.
    let events = a.ok(&["events", "shop", "-n", "50"]);
    assert!(
        events.contains("exec in shop_app_1 by the API token: cat /etc/hostname"),
        "{events}"
    );
    assert!(events.contains("by access ci (operator): true"), "{events}");
    assert!(events.contains("(tty): sh"), "{events}");
}
