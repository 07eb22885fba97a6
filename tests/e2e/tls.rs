//! TLS: termination for `https://` routes and websockets through the router, and the API
//! served over TLS for a remote CLI.

use crate::harness::*;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwarded headers a backend saw: (name, value).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A websocket echo server in this process; records the handshake's forwarded headers.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn echo_server() -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let cb = |req: &tungstenite::handshake::server::Request,
                          resp: tungstenite::handshake::server::Response| {
                    let mut g = s.lock().expect("lock");
                    for (k, v) in req.headers() {
                        if k.as_str().starts_with("x-forwarded") {
                            g.push((k.to_string(), v.to_str().unwrap_or("").to_string()));
                        }
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, cb) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if m.is_close() || ws.send(m).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn curl(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// HTTPS terminated by the router with a certificate chosen by SNI, plain requests for an
/// https route redirected, a route without a certificate refused at deploy, a bad
/// certificate refused at start, and a websocket echoed through the router with forwarded
/// headers.
#[test]
fn https_routes_and_websockets() {
    let dir = tempfile::tempdir().expect("tmp");
    let ck = rcgen::generate_simple_self_signed(vec!["tls.example.com".into()]).expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let (http, https) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\nhttps = \"127.0.0.1:{https}\"\ntls_handshake_timeout = \"1s\"\n[[router.tls]]\ndomain = \"tls.example.com\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let (ws_port, seen) = echo_server();
    a.deploy(
        "tls",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    labels:\n      berth.routing.port_8080: https://tls.example.com\n  ws:\n    image: {IMAGE}\n    command: sleep 3600\n    network_mode: host\n    stop_grace_period: 1s\n    labels:\n      berth.routing.port_{ws_port}: ws.example.com\n"
        ),
    );

    // HTTPS, verified against the certificate.
    let resolve = format!("tls.example.com:{https}:127.0.0.1");
    let url = format!("https://tls.example.com:{https}/index.html");
    let ca = cert.to_str().expect("path");
    wait_until("https answers", Duration::from_secs(20), || {
        curl(&["--cacert", ca, "--resolve", &resolve, &url])
            .1
            .contains("hello from berth")
    });
    // A client that connects and never starts the handshake is cut off at
    // tls_handshake_timeout (1 s here), not held.
    {
        use std::io::Read;
        let mut idle = TcpStream::connect(("127.0.0.1", https)).expect("connect");
        idle.set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        let t = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let r = idle.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "held {:?}",
            t.elapsed()
        );
    }
    // No certificate for other names: the handshake fails.
    let other = format!("other.example.com:{https}:127.0.0.1");
    let (ok, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &other,
        &format!("https://other.example.com:{https}/"),
    ]);
    assert!(!ok, "{out}");
    // Plain HTTP to an https route: a permanent redirect to the TLS listener.
    let (_, head) = curl(&[
        "-I",
        "-H",
        "Host: tls.example.com",
        &format!("http://127.0.0.1:{http}/index.html"),
    ]);
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 308")
            && head.contains(&format!(
                "location: https://tls.example.com:{https}/index.html"
            )),
        "{head}"
    );
    // acs/proxy's FORCE_SSL: a plain VIRTUAL_HOST served over HTTPS, plain HTTP redirected.
    a.deploy(
        "forced",
        &format!(
            "forced:
  image: {IMAGE}
  command: sh -c 'mkdir -p /www/forced && echo forced > /www/forced/id; exec httpd -f -p 8080 -h /www'
  expose: [8080]
  labels:
    aliyun.proxy.VIRTUAL_HOST: http://tls.example.com/forced
    aliyun.proxy.FORCE_SSL: \"true\"\n"
        ),
    );
    let forced = format!("https://tls.example.com:{https}/forced/id");
    wait_until(
        "FORCE_SSL's route answers over https",
        Duration::from_secs(20),
        || {
            curl(&["--cacert", ca, "--resolve", &resolve, &forced])
                .1
                .trim()
                == "forced"
        },
    );
    let (_, head) = curl(&[
        "-I",
        "-H",
        "Host: tls.example.com",
        &format!("http://127.0.0.1:{http}/forced/id"),
    ]);
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 308") && head.contains(&format!("location: {forced}")),
        "{head}"
    );

    // An https route for a name without a certificate deploys with a warning and is served
    // over plain HTTP (no redirect to a handshake that would fail).
    let p = a.template(
        "nocert",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    labels:\n      berth.routing.port_8080: https://shop.example.com\n"
        ),
    );
    let o = a.berth(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "nocert",
        "--timeout",
        "60",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("no certificate")
            && err.contains("[[router.tls]]")
            && err.contains("shop.example.com"),
        "{err}"
    );
    wait_until(
        "plain http for the uncovered https route",
        Duration::from_secs(20),
        || {
            router_get(http, "shop.example.com", "/index.html", None)
                .1
                .contains("hello from berth")
        },
    );

    // A websocket through the router, echoed, with the forwarded headers added.
    let stream = TcpStream::connect(("127.0.0.1", http)).expect("router");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (mut ws, resp) =
        tungstenite::client("ws://ws.example.com/chat", stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "second message over the same connection"] {
        ws.send(tungstenite::Message::text(text)).expect("send");
        let back = ws.read().expect("echo");
        assert_eq!(back.to_text().expect("text"), text);
    }
    let _ = ws.close(None);
    let headers = seen.lock().expect("lock").clone();
    for (k, v) in [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "ws.example.com"),
    ] {
        assert!(
            headers.iter().any(|(hk, hv)| hk == k && hv == v),
            "{k}: {v} missing in {headers:?}"
        );
    }

    // A key that does not belong to the certificate: the agent refuses to start, saying so.
    let other_key = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
    let bad_key = dir.path().join("bad.pem");
    std::fs::write(&bad_key, other_key.signing_key.serialize_pem()).expect("write");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "[router]\nhttps = \"127.0.0.1:{}\"\n[[router.tls]]\ndomain = \"tls.example.com\"\ncert = \"{}\"\nkey = \"{}\"\n",
            free_port(),
            cert.display(),
            bad_key.display()
        ),
    )
    .expect("write");
    let o = std::process::Command::new(bin())
        .args(["agent", "--config", path_str(&cfg), "--data-dir"])
        .arg(dir.path().join("bad-data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("agent runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("does not belong to"), "{err}");
}

/// The API over TLS (`[agent] tls_cert`/`tls_key`): the CLI, its WebSockets (`exec`) and the
/// console's requests go encrypted, trusting the certificate with `--ca-cert`; plain HTTP
/// and an untrusted certificate are refused; half a TLS configuration stops the agent with
/// what is missing.
#[test]
fn the_api_over_tls_serves_the_cli_and_exec_and_refuses_plain_http() {
    use std::io::{Read, Write};
    let certs = tempfile::tempdir().expect("tmp");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert = certs.path().join("api.pem");
    let key = certs.path().join("api.key");
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let a = Agent::start_with_config(&format!(
        "[agent]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    assert!(a.api().starts_with("https://"));
    // A client that starts a handshake and stalls (a TLS record header promising a
    // ClientHello that never comes) holds no worker: the agent answers others meanwhile
    // and drops it within the request head's time (10 s).
    let mut stalled: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", a.port)).expect("connect");
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).expect("write");
            s
        })
        .collect();
    let stalled_at = std::time::Instant::now();
    a.deploy(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"),
    );
    assert!(a.ok(&["apps"]).contains("web"));
    let out = a.ok(&["exec", "web/app", "--", "echo", "over tls"]);
    assert_eq!(out, "over tls\n");
    let (status, body) = a.get_raw("/v1/apps", true).expect("https");
    assert_eq!(status, 200, "{body}");
    for s in &mut stalled {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
    }
    let held = stalled_at.elapsed();
    assert!(
        held < std::time::Duration::from_secs(14),
        "stalled handshakes were held {held:?}"
    );

    // Without trusting the certificate: refused, saying why.
    let o = a
        .follow_command(&["apps"])
        .env_remove("BERTH_CA_CERT")
        .output()
        .expect("cli");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(e.contains("certificate") || e.contains("issuer"), "{e}");
    // Plain HTTP on the TLS port gets no HTTP answer (the token never crosses in clear).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", a.port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // Half a configuration: the agent says what is missing and does not start.
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("berth.toml");
    std::fs::write(
        &conf,
        format!("[agent]\ntls_cert = \"{}\"\n", cert.display()),
    )
    .expect("toml");
    let o = std::process::Command::new(bin())
        .args(["agent", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("agent");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("needs both tls_cert and tls_key"), "{e}");
}

/// `lb.port_N: https://:P`: the router terminates TLS on the router port with its
/// certificates and serves that service, whatever the name asked; without certificates the
/// port is not opened and an event says why.
#[test]
fn an_lb_port_with_the_https_scheme_terminates_tls_for_its_service() {
    let dir = tempfile::tempdir().expect("tmp");
    let ck = rcgen::generate_simple_self_signed(vec!["lb.example.com".into()]).expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let (https, lbp) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttps = \"127.0.0.1:{https}\"\ntcp_address = \"127.0.0.1\"\n[[router.tls]]\ndomain = \"lb.example.com\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    a.deploy(
        "sec",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    labels:\n      aliyun.probe.url: http://container:8080/index.html\n      aliyun.lb.port_8080: https://:{lbp}\n"
        ),
    );
    let resolve = format!("lb.example.com:{lbp}:127.0.0.1");
    let url = format!("https://lb.example.com:{lbp}/index.html");
    let ca = cert.to_str().expect("path");
    let mut last = String::new();
    wait_until("the https lb port answers", Duration::from_secs(20), || {
        last = curl(&["--cacert", ca, "--resolve", &resolve, &url]).1;
        last.contains("hello from berth")
    });
    // Plain HTTP on that port is not served.
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{lbp}/index.html")]);
    assert!(!ok);

    // Without router certificates: refused to open, with the reason as an event.
    let b = Agent::start_with_config("[router]\ntcp_address = \"127.0.0.1\"\n");
    let other = free_port();
    b.deploy(
        "insec",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    labels:\n      aliyun.lb.port_8080: https://:{other}\n"
        ),
    );
    let mut events = String::new();
    wait_until("the refusal is an event", Duration::from_secs(20), || {
        events = b.ok(&["events"]);
        events.contains(&format!("router HTTPS port {other}"))
    });
    assert!(events.contains("[[router.tls]]"), "{events}");
}

/// The PEM of the certificate a TLS server on `port` shows for `sni` (none: no SNI).
fn served_cert(port: u16, sni: Option<&str>) -> String {
    served_cert_at(&format!("127.0.0.1:{port}"), sni)
}

/// The same for a server at `addr` (HOST:PORT).
pub fn served_cert_at(addr: &str, sni: Option<&str>) -> String {
    let mut c = std::process::Command::new("openssl");
    c.args(["s_client", "-connect", addr]);
    match sni {
        Some(n) => c.args(["-servername", n]),
        None => c.arg("-noservername"),
    };
    let o = c
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let out = String::from_utf8_lossy(&o.stdout);
    match (
        out.find("-----BEGIN CERTIFICATE-----"),
        out.find("-----END CERTIFICATE-----"),
    ) {
        (Some(a), Some(b)) => out[a..b + "-----END CERTIFICATE-----".len()].to_string(),
        _ => format!(
            "no certificate: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// acs/proxy's `SSL_CERT` and `DEFAULT_SSL_CERT` labels, with no `[[router.tls]]` at all:
/// the router serves a template's certificate (the guide's form: key first, lines joined by
/// `\n`) to clients asking for its service's virtual hosts, the default one to every other
/// name and to clients without SNI, and redirects plain HTTP for the https route. A new
/// certificate is served without touching the containers. A key that is not the
/// certificate's is refused at deploy with nothing deployed. The key is in neither the
/// stored template nor the spec berth shows; it is a 0400 file under the data directory.
#[test]
fn a_templates_ssl_cert_labels_are_served_by_name_and_its_key_kept_out_of_sight() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let shop = rcgen::generate_simple_self_signed(vec!["shop.example.com".into()]).expect("cert");
    let fallback =
        rcgen::generate_simple_self_signed(vec!["default.example.com".into()]).expect("cert");
    let (shop_ca, fallback_ca) = (dir.path().join("shop.pem"), dir.path().join("default.pem"));
    std::fs::write(&shop_ca, shop.cert.pem()).expect("write");
    std::fs::write(&fallback_ca, fallback.cert.pem()).expect("write");
    // acs/proxy's documented form: one line, the key first, `\n` between lines.
    let one_line = |ck: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        format!("{}{}", ck.signing_key.serialize_pem(), ck.cert.pem()).replace('\n', "\\n")
    };
    let (http, https) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\nhttps = \"127.0.0.1:{https}\"\ntls_handshake_timeout = \"1s\"\n"
    ));
    let template = |shop_pem: &str| {
        format!(
            "web:
  image: {IMAGE}
  command: httpd -f -p 8080 -h /www
  expose: [8080]
  labels:
    aliyun.proxy.VIRTUAL_HOST: https://shop.example.com
    aliyun.proxy.SSL_CERT: '{shop_pem}'
other:
  image: {IMAGE}
  command: sh -c 'mkdir -p /www && echo other > /www/id; exec httpd -f -p 8080 -h /www'
  expose: [8080]
  labels:
    aliyun.proxy.VIRTUAL_HOST: http://other.example.com
    aliyun.proxy.DEFAULT_SSL_CERT: '{}'
",
            one_line(&fallback)
        )
    };
    let out = a.deploy("shop", &template(&one_line(&shop)));
    assert!(!out.contains("no certificate"), "{out}");
    let resolve = format!("shop.example.com:{https}:127.0.0.1");
    let url = format!("https://shop.example.com:{https}/index.html");
    let ca = shop_ca.to_str().expect("path");
    let mut last = String::new();
    wait_until(
        "the template's certificate is served",
        Duration::from_secs(20),
        || {
            last = curl(&["--cacert", ca, "--resolve", &resolve, &url]).1;
            last.contains("hello from berth")
        },
    );
    // Any other name, and no name at all: the default certificate.
    let fallback_pem = fallback.cert.pem();
    assert_eq!(
        served_cert(https, Some("other.example.com")).trim(),
        fallback_pem.trim()
    );
    assert_eq!(served_cert(https, None).trim(), fallback_pem.trim());
    assert_eq!(
        served_cert(https, Some("shop.example.com")).trim(),
        shop.cert.pem().trim()
    );
    let (ok, out) = curl(&[
        "--cacert",
        fallback_ca.to_str().expect("path"),
        "--resolve",
        &format!("default.example.com:{https}:127.0.0.1"),
        &format!("https://default.example.com:{https}/"),
    ]);
    assert!(ok, "{out}");
    // Plain HTTP for the https route: redirected, as a certificate covers it now.
    let (_, head) = curl(&[
        "-I",
        "-H",
        "Host: shop.example.com",
        &format!("http://127.0.0.1:{http}/index.html"),
    ]);
    assert!(
        head.to_ascii_lowercase().starts_with("http/1.1 308"),
        "{head}"
    );

    // The key is written 0400 under the data directory, and shown nowhere.
    let key_pem = shop.signing_key.serialize_pem();
    let key_line = key_pem.lines().nth(1).expect("a base64 line").to_string();
    let files = a.dir.path().join("files").join("shop");
    let key_file = std::fs::read_dir(&files)
        .expect("the app's files")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("tls-web-"))
        .expect("the key file")
        .path();
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), key_pem);
    let mode = std::fs::metadata(&key_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400, "{mode:o}");
    for view in [
        a.ok(&["inspect", "shop"]),
        a.ok(&["inspect", "shop", "--template"]),
        a.ok(&["inspect", "shop", "--json"]),
    ] {
        assert!(!view.contains(&key_line), "{view}");
    }
    assert!(
        a.ok(&["inspect", "shop", "--template"])
            .contains("-----BEGIN PRIVATE KEY-----\\n********\\n")
    );
    assert!(a.ok(&["inspect", "shop"]).contains("BEGIN CERTIFICATE"));

    // A renewed certificate: served at once, the containers left as they are.
    let before: Vec<String> = a
        .running("shop")
        .into_iter()
        .map(|i| i.container_id)
        .collect();
    let renewed =
        rcgen::generate_simple_self_signed(vec!["shop.example.com".into()]).expect("cert");
    a.deploy("shop", &template(&one_line(&renewed)));
    wait_until(
        "the renewed certificate is served",
        Duration::from_secs(20),
        || served_cert(https, Some("shop.example.com")).trim() == renewed.cert.pem().trim(),
    );
    let mut after: Vec<String> = a
        .running("shop")
        .into_iter()
        .map(|i| i.container_id)
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(before, after);

    // Another certificate's key: refused at deploy, nothing made.
    let mismatched = format!(
        "{}{}",
        fallback.signing_key.serialize_pem(),
        shop.cert.pem()
    )
    .replace('\n', "\\n");
    let p = a.template("bad", &template(&mismatched).replace("other:", "other2:"));
    let err = a.fails(&["deploy", "-f", path_str(&p), "--name", "badcert"]);
    assert!(
        err.contains("proxy.SSL_CERT") && err.contains("does not belong to the certificate"),
        "{err}"
    );
    assert!(!a.ok(&["apps"]).contains("badcert"));
    assert!(a.engine_containers("badcert").is_empty());
}
