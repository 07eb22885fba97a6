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
