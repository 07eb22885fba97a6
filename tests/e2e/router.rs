use crate::harness::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// HTTP by host (full domain and prefix), round robin over healthy instances, stickiness,
/// 404/503, and the TCP proxy, all through a real agent's router to real containers.
#[test]
fn router_routes_balances_sticks_and_proxies_tcp() {
    let (http_port, tcp_port) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http_port}\"\ndomain = \"test.local\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    // Each instance writes its own id into /www/id, so responses tell instances apart.
    let svc = |sticky: bool, lb: &str| {
        format!(
            "    image: {IMAGE}\n    command: sh -c 'hostname > /www/id; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"2\"\n      berth.probe.url: http://container:8080/id\n      berth.routing.session_sticky: \"{sticky}\"\n{lb}"
        )
    };
    let yaml = format!(
        "services:\n  web:\n{}      berth.routing.port_8080: shop.example.com;shop\n  api:\n{}      berth.routing.port_8080: shop.example.com/api\n",
        svc(
            false,
            &format!("      berth.lb.port_8080: tcp://:{tcp_port}\n")
        ),
        svc(true, "")
    );
    a.deploy("rt", &yaml);
    let ids: BTreeMap<String, String> = a
        .ps("rt")
        .into_iter()
        .map(|i| (i.container_id.clone(), i.service.clone()))
        .collect();

    // Round robin over both web instances, by full domain and by prefix of the router domain.
    let mut seen = BTreeMap::new();
    for host in ["shop.example.com", "shop.test.local"] {
        for _ in 0..20 {
            let (status, body, _) = router_get(http_port, host, "/id", None);
            assert_eq!(status, 200, "{body}");
            *seen.entry(body.trim().to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 2, "both web instances serve: {seen:?}");
    assert!(
        seen.keys().all(|id| ids
            .iter()
            .any(|(c, s)| c.starts_with(id.as_str()) && s == "web")),
        "{seen:?} {ids:?}"
    );
    assert!(seen.values().all(|n| *n == 20), "round robin: {seen:?}");

    // The longer path prefix goes to `api`, which is sticky.
    let (status, body, cookie) = router_get(http_port, "shop.example.com", "/api/../id", None);
    assert_eq!(status, 200, "{body}");
    let (_, api_id, cookie) = (status, body, cookie.expect("sticky cookie"));
    assert!(cookie.starts_with("berth_sticky="), "{cookie}");
    let pair = cookie.split(';').next().unwrap_or_default().to_string();
    for _ in 0..10 {
        let (_, body, _) = router_get(http_port, "shop.example.com", "/api/../id", Some(&pair));
        assert_eq!(body, api_id, "sticky");
    }

    let (status, body, _) = router_get(http_port, "nobody.example.com", "/", None);
    assert_eq!(
        (status, body.contains("no app is routed")),
        (404, true),
        "{body}"
    );

    // TCP proxy to the web instances.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).expect("tcp router port");
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.contains("hello from berth"), "{out}");

    // No instance: 503.
    a.ok(&["scale", "rt", "web=0"]);
    wait_until(
        "503 once web has no instance",
        Duration::from_secs(20),
        || router_get(http_port, "shop.example.com", "/id", None).0 == 503,
    );
}

/// A POST with `Host` through the router at `port` (raw HTTP/1.1): (status, body).
fn router_post(port: u16, host: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("router");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// Triggers answer on the router's public address as on the API, for requests no route
/// takes; an app's own `/hooks/` path on its domain stays the app's.
#[test]
fn triggers_answer_on_the_routers_address_where_no_route_takes_the_request() {
    let http_port = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http_port}\"\ndomain = \"test.local\"\n"
    ));
    a.deploy(
        "shop",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'echo app > /www/id; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 1s\n    labels:\n      berth.routing.port_8080: shop\n"
        ),
    );
    let out = a.ok(&[
        "trigger",
        "create",
        "shop",
        "--action",
        "scale",
        "--service",
        "web",
        "--replicas",
        "2",
    ]);
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("POST "))
        .expect("a URL")
        .to_string();
    let path = &url[url.find("/hooks/").expect("path")..];
    let (id_path, _) = path.split_once("?secret=").expect("secret");
    // The app's own domain: its request, not a trigger (nothing scaled).
    let (status, body) = router_post(http_port, "shop.test.local", path);
    assert!(!body.contains("outcome"), "{status} {body}");
    // No route for the router's own address: wrong secret refused, the right one scales.
    let host = format!("127.0.0.1:{http_port}");
    let (status, body) = router_post(http_port, &host, &format!("{id_path}?secret=nope"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unknown trigger or wrong secret"), "{body}");
    assert_eq!(a.running("shop").len(), 1);
    let (status, body) = router_post(http_port, &host, path);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("outcome"), "{body}");
    a.wait_running("shop", 2, Duration::from_secs(60));
    let ev = a.ok(&["events", "shop"]);
    assert!(ev.contains("called from 127.0.0.1:"), "{ev}");
    // A path that is not a trigger's is the router's 404, as before.
    let (status, _) = router_post(http_port, &host, "/hooks/a/b");
    assert_eq!(status, 404);
}
