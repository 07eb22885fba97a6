//! The seed guide's templates unchanged (issue 23), through the real agent, engine and
//! router: external services, ...

use super::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// A TCP service outside the app on this machine's loopback: answers each line with
/// `outside: LINE`.
fn outside_service() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().expect("clone");
                let mut line = String::new();
                if BufReader::new(c).read_line(&mut line).is_ok() {
                    let _ = w.write_all(format!("outside: {line}").as_bytes());
                }
            });
        }
    });
    port
}

#[test]
fn an_external_service_is_reached_by_its_name_and_link_alias_and_listed() {
    let a = Agent::start();
    let port = outside_service();
    let p = a.template(
        "shop",
        &format!(
            "services:
  client:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
    links:
      - db:mysql
    depends_on:
      - db
  db:
    external:
      host: localhost
      ports:
        - {port}
  ghost:
    external:
      host: nowhere.invalid
      ports: [5432]
"
        ),
    );
    let o = a.berth(&["deploy", "-f", p.to_str().expect("path"), "--name", "shop"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "an unresolvable host is a warning, not a failure: {err}"
    );
    assert!(
        err.contains("external service ghost: host nowhere.invalid does not resolve"),
        "{err}"
    );
    a.wait_running("shop", 1, Duration::from_secs(60));
    // Listed where its name leads; no container for it.
    let ps = a.ok(&["ps", "shop"]);
    assert!(
        ps.contains("external") && ps.contains(&format!("localhost:{port}")),
        "{ps}"
    );
    assert_eq!(a.engine_containers("shop").len(), 1, "only the client runs");
    // Its name and its link alias lead outside, from inside the app's network.
    for name in ["db", "mysql"] {
        let cmd = format!("echo hi-{name} | nc -w 3 {name} {port}");
        let mut got = String::new();
        wait_until(
            &format!("{name} answers from outside"),
            Duration::from_secs(30),
            || {
                let o = a.berth(&["exec", "shop/client", "--", "sh", "-c", &cmd]);
                got = String::from_utf8_lossy(&o.stdout).into_owned();
                got.contains(&format!("outside: hi-{name}"))
            },
        );
    }
    let events = a.ok(&["events", "shop"]);
    assert!(
        events.contains("nowhere.invalid does not resolve"),
        "{events}"
    );
}

#[test]
fn a_service_labelled_for_prometheus_is_scraped_alone_by_a_real_prometheus() {
    let a = Agent::start_with_config("[metrics]\ninterval = \"1s\"\nprometheus_public = true\n");
    a.deploy(
        "shop",
        &format!(
            "services:
  web:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
    labels:
      aliyun.monitoring.addon.prometheus: http://prometheus:9090
      aliyun.monitoring.script: \"echo 'orders,queue=eu depth=7i,open=true'\"
  other:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
"
        ),
    );
    a.wait_running("shop", 2, Duration::from_secs(60));
    let prom = crate::backends::Prometheus::start_path(
        &format!("127.0.0.1:{}", a.port),
        "/metrics/shop/web",
    );
    // The service's own series and its custom metric, as a real Prometheus stores them.
    wait_until(
        "Prometheus has web's series",
        Duration::from_secs(60),
        || {
            !prom
                .query("container_cpu_usage_seconds_total{service=\"web\"}")
                .is_empty()
                && !prom
                    .query("orders_depth{queue=\"eu\",service=\"web\"}")
                    .is_empty()
        },
    );
    let depth = prom.query("orders_depth");
    assert_eq!(depth[0]["value"][1], "7", "{depth:?}");
    assert_eq!(prom.query("orders_open")[0]["value"][1], "1");
    // Nothing of the host or of the other service on that path.
    for q in [
        "node_cpu_seconds_total",
        "container_cpu_usage_seconds_total{service=\"other\"}",
        "berth_container_running{service=\"other\"}",
    ] {
        assert!(prom.query(q).is_empty(), "{q} was scraped from web's path");
    }
    // A service without the label has no such path, and says how to get one.
    let (status, body) = a.get_raw("/metrics/shop/other", false).expect("get");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("monitoring.addon.prometheus"), "{body}");
}

/// A service that answers `GET /id` with `name`, routed by `routing` on port 8080.
fn named_web(name: &str, routing: &str) -> String {
    format!(
        "  {name}:
    image: {IMAGE}
    command: sh -c 'mkdir -p /www && echo {name} > /www/id; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    labels:
      aliyun.probe.url: http://container:8080/id
      aliyun.routing.port_8080: \"{routing}\"
"
    )
}

/// The seed's blue/green between services is confirmed whole or not at all: while the new
/// service has failed (its probe never passes), confirm is refused with the reason and
/// nothing changes (the old service keeps the route); abort then drops the new service.
#[test]
fn a_release_between_services_is_not_confirmed_while_the_new_service_failed() {
    let http = free_port();
    let a = Agent::start_with_config(&format!(
        "[agent]\nversion_deadline = \"4s\"\n[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\n"
    ));
    a.deploy(
        "web",
        &format!("services:\n{}", named_web("nginx-v1", "nginx")),
    );
    wait_until("v1 routed", Duration::from_secs(30), || {
        router_tally(http, "nginx.test.local", "/id", 5).contains_key("nginx-v1")
    });
    let broken = named_web("nginx-v2", "nginx").replace(
        "aliyun.probe.url: http://container:8080/id",
        "aliyun.probe.url: http://container:8080/missing",
    );
    let p = a.template("bg", &format!("services:\n{broken}"));
    a.berth(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "web",
        "--blue-green",
        "--timeout",
        "20",
    ]);
    let mut e = String::new();
    wait_until(
        "confirm is refused for the failed service",
        Duration::from_secs(30),
        || {
            e = a.fails(&["release", "confirm", "web"]);
            e.contains("failed")
        },
    );
    assert!(
        e.contains("nginx-v2")
            && e.contains("nothing was changed")
            && e.contains("release abort web"),
        "{e}"
    );
    assert!(a.ok(&["apps"]).contains("awaiting confirmation"));
    let t = router_tally(http, "nginx.test.local", "/id", 20);
    assert_eq!(t.get("nginx-v1"), Some(&20), "{t:?}");
    a.ok(&["release", "abort", "web"]);
    wait_until("v2 removed", Duration::from_secs(30), || {
        a.ps("web").iter().all(|i| i.service != "nginx-v2")
    });
    assert!(!a.ok(&["apps"]).contains("awaiting confirmation"));
}

#[test]
fn wildcard_routes_take_what_no_exact_host_does_longest_suffix_first() {
    let http = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\n"
    ));
    let t = format!(
        "services:\n{}{}{}",
        named_web("wide", "*.example.com"),
        named_web("shops", "*.shop.example.com"),
        named_web("exact", "api.example.com")
    );
    a.deploy("wild", &t);
    a.wait_running("wild", 3, Duration::from_secs(60));
    let who = |host: &str| {
        let mut last = (0, String::new());
        wait_until(&format!("{host} routed"), Duration::from_secs(20), || {
            let (status, body, _) = router_get(http, host, "/id", None);
            last = (status, body.trim().to_string());
            status != 502 && status != 503
        });
        last
    };
    assert_eq!(who("api.example.com"), (200, "exact".to_string()));
    assert_eq!(who("www.example.com"), (200, "wide".to_string()));
    assert_eq!(who("a.b.example.com"), (200, "wide".to_string()));
    assert_eq!(who("eu.shop.example.com"), (200, "shops".to_string()));
    assert_eq!(who("x.eu.shop.example.com"), (200, "shops".to_string()));
    assert_eq!(who("shop.example.com"), (200, "wide".to_string()));
    assert_eq!(who("example.com").0, 404);
    // A wildcard anywhere but the whole first label is refused at deploy, saying how.
    let p = a.template(
        "bad",
        &format!("services:\n{}", named_web("w", "a*.example.com")),
    );
    let e = a.fails(&["deploy", "-f", p.to_str().expect("path"), "--name", "bad"]);
    assert!(e.contains("a wildcard is the whole first label"), "{e}");
}

#[test]
fn a_published_service_without_a_route_gets_a_default_domain_and_ps_lists_endpoints() {
    let (http, tcp) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    let t = format!(
        "services:
  web:
    image: {IMAGE}
    command: sh -c 'mkdir -p /www && echo web > /www/id; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    ports:
      - \"8080\"
  db:
    image: {IMAGE}
    command: sh -c 'mkdir -p /www && echo db > /www/id; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    labels:
      aliyun.lb.port_8080: tcp://:{tcp}
{}",
        named_web("api", "api.example.com/v1")
    );
    a.deploy("shop", &t);
    a.wait_running("shop", 3, Duration::from_secs(60));
    let ps = a.ok(&["ps", "shop"]);
    assert!(ps.contains("ENDPOINTS"), "{ps}");
    let line = |svc: &str| {
        ps.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(svc))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("web").contains("http://web.shop.test.local"), "{ps}");
    assert!(
        line("db").contains(&format!("tcp://127.0.0.1:{tcp}")),
        "{ps}"
    );
    assert!(line("api").contains("http://api.example.com/v1"), "{ps}");
    assert!(
        !line("db").contains("db.shop.test.local"),
        "an lb port has no default domain: {ps}"
    );
    // The default domain is routed.
    let mut got = (0, String::new());
    wait_until(
        "web's default domain routed",
        Duration::from_secs(20),
        || {
            let (s, b, _) = router_get(http, "web.shop.test.local", "/id", None);
            got = (s, b.trim().to_string());
            s == 200
        },
    );
    assert_eq!(got.1, "web");
}

#[test]
fn the_router_answers_a_load_balancers_health_check_and_its_own_503_page() {
    let http = free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let page = dir.path().join("503.html");
    std::fs::write(&page, "<h1>Back soon</h1>").expect("page");
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\nerror_page = \"{}\"\n",
        page.display()
    ));
    // Never healthy: its probe asks for a page it does not have.
    let p = a.template(
        "down",
        &format!(
            "services:
  web:
    image: {IMAGE}
    command: sh -c 'mkdir -p /www; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    labels:
      aliyun.probe.url: http://container:8080/missing
      aliyun.routing.port_8080: down.example.com
"
        ),
    );
    a.ok(&[
        "deploy",
        "-f",
        p.to_str().expect("path"),
        "--name",
        "down",
        "--detach",
    ]);
    let mut got = (0, String::new());
    wait_until("the 503 page", Duration::from_secs(30), || {
        let (s, b, _) = router_get(http, "down.example.com", "/", None);
        got = (s, b);
        s == 503
    });
    assert_eq!(got.1, "<h1>Back soon</h1>");
    // The health URI answers while the router serves, whatever the Host; a routed host's
    // own path of that name stays its app's.
    let (s, b, _) = router_get(http, "10.0.0.1", "/haproxy-monitor", None);
    assert_eq!((s, b.trim()), (200, "berth router: serving"));
    let (s, _, _) = router_get(http, "down.example.com", "/haproxy-monitor", None);
    assert_eq!(s, 503);
    // A page too big, or missing, stops the agent at start naming the setting.
    let big = dir.path().join("big.html");
    std::fs::write(&big, vec![b'x'; 300 << 10]).expect("big");
    let conf = dir.path().join("berth.toml");
    std::fs::write(
        &conf,
        format!("[router]\nerror_page = \"{}\"\n", big.display()),
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
    assert!(e.contains("error_page") && e.contains("256 KiB"), "{e}");
}

#[test]
fn a_local_route_is_reached_from_a_container_that_links_it_and_not_from_outside() {
    let http = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\n"
    ));
    a.deploy(
        "rest",
        &format!("services:\n{}", named_web("restserver", "restserver.local")),
    );
    a.deploy(
        "front",
        &format!(
            "services:
  web:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
    external_links:
      - restserver.local
"
        ),
    );
    a.wait_running("rest", 1, Duration::from_secs(60));
    a.wait_running("front", 1, Duration::from_secs(60));
    // From inside front's network: the name leads to the router, which routes it by Host.
    let mut got = String::new();
    wait_until(
        "restserver.local answers inside",
        Duration::from_secs(30),
        || {
            let o = a.berth(&[
                "exec",
                "front/web",
                "--",
                // (this busybox's wget crashes on -T)
                "wget",
                "-q",
                "-O",
                "-",
                "http://restserver.local/id",
            ]);
            got = String::from_utf8_lossy(&o.stdout).trim().to_string();
            got == "restserver"
        },
    );
    // The public listener does not serve it.
    let (s, _, _) = router_get(http, "restserver.local", "/id", None);
    assert_eq!(s, 404, "a .local route on the public listener");
}

#[test]
fn the_routers_access_log_is_stored_and_its_counters_are_per_route_and_version() {
    let http = free_port();
    // Exported like any log: to a syslog listener of the test's own.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\naccess_log = true\n[[logs.syslog]]\naddress = \"udp://{}\"\n",
        udp.local_addr().expect("addr")
    ));
    a.deploy(
        "acc",
        &format!("services:\n{}", named_web("web", "acc.example.com")),
    );
    a.wait_running("acc", 1, Duration::from_secs(60));
    wait_until("acc routed", Duration::from_secs(20), || {
        router_get(http, "acc.example.com", "/id", None).0 == 200
    });
    for _ in 0..4 {
        assert_eq!(router_get(http, "acc.example.com", "/id", None).0, 200);
    }
    assert_eq!(router_get(http, "acc.example.com", "/nothing", None).0, 404);
    assert_eq!(
        router_get(http, "nowhere.example.com", "/x?q=1", None).0,
        404
    );
    // Every request is a line of the router's own stream, naming where it went.
    let mut logs = String::new();
    wait_until("the access lines stored", Duration::from_secs(10), || {
        logs = a.ok(&["logs", "--router"]);
        logs.contains("nowhere.example.com")
    });
    let served: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"GET /id HTTP/1.1\" 200 4 "))
        .collect();
    assert!(served.len() >= 5, "{logs}");
    assert!(
        served
            .iter()
            .all(|l| l.contains("host=acc.example.com to=acc/web web-001 127.0.0.1:")),
        "{logs}"
    );
    assert!(
        logs.contains("\"GET /x?q=1 HTTP/1.1\" 404 ")
            && logs.contains("host=nowhere.example.com to=- "),
        "{logs}"
    );
    // Each line reached the syslog listener, as the router's own stream.
    let mut buf = [0u8; 65536];
    let exported = loop {
        let n = udp
            .recv(&mut buf)
            .expect("the access line as a syslog datagram");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("nowhere.example.com") {
            break m;
        }
    };
    assert!(
        exported.starts_with("<14>1 ")
            && exported.contains(" _router.access router access [berth@32473 app=\"_router\" service=\"access\" version=\"\" slot=\"0\"] ")
            && exported.contains("\"GET /x?q=1 HTTP/1.1\" 404 "),
        "{exported}"
    );
    // Filters work on it like on any stream; an app's own logs do not have it.
    let grep = a.ok(&["logs", "--router", "--grep", "nowhere"]);
    assert_eq!(grep.lines().count(), 1, "{grep}");
    assert!(!a.ok(&["logs", "acc"]).contains("host=acc.example.com"));
    // The counters: per route, version and status class.
    let (_, prom) = a.get_raw("/metrics", true).expect("metrics");
    let sample = |needle: &str| -> f64 {
        prom.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{prom}"))
    };
    let labels = "route=\"acc.example.com/\",app=\"acc\",service=\"web\"";
    assert!(
        sample(&format!(
            "berth_router_requests_total{{{labels},version=\"web-001\",code=\"2xx\"}}"
        )) >= 5.0
    );
    assert_eq!(
        sample(&format!(
            "berth_router_requests_total{{{labels},version=\"web-001\",code=\"4xx\"}}"
        )),
        1.0
    );
    assert!(
        sample(&format!(
            "berth_router_request_duration_seconds_count{{{labels},version=\"web-001\"}}"
        )) >= 6.0
    );
    assert!(sample("berth_router_unrouted_requests_total") >= 1.0);
    assert!(sample("berth_router_access_log_lines_total") >= 7.0);
    assert_eq!(sample("berth_router_access_log_dropped_total"), 0.0);
    // A second version gets counters of its own.
    a.deploy(
        "acc",
        &format!("services:\n{}", named_web("web", "acc.example.com"))
            .replace("echo web", "echo two"),
    );
    wait_until("the new version serves", Duration::from_secs(60), || {
        router_get(http, "acc.example.com", "/id", None).1.trim() == "two"
    });
    let (_, prom) = a.get_raw("/metrics", true).expect("metrics");
    assert!(
        prom.contains(&format!(
            "berth_router_requests_total{{{labels},version=\"web-002\",code=\"2xx\"}}"
        )),
        "{prom}"
    );
}

#[test]
fn an_lb_port_with_the_http_scheme_serves_its_service_whatever_the_host() {
    let (http, lbp) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    let t = format!(
        "services:
  web:
    image: {IMAGE}
    command: sh -c 'mkdir -p /www && echo plain > /www/id; exec httpd -f -p 8080 -h /www'
    stop_grace_period: 1s
    labels:
      aliyun.probe.url: http://container:8080/id
      aliyun.lb.port_8080: http://slb_front:{lbp}
"
    );
    a.deploy("front", &t);
    a.wait_running("front", 1, Duration::from_secs(60));
    let ps = a.ok(&["ps", "front"]);
    assert!(ps.contains(&format!("http://127.0.0.1:{lbp}")), "{ps}");
    let mut got = (0, String::new());
    wait_until("the lb port serves HTTP", Duration::from_secs(20), || {
        let (s, b, _) = router_get(lbp, "anything.example.org", "/id", None);
        got = (s, b.trim().to_string());
        s == 200
    });
    assert_eq!(got.1, "plain");
    // Any Host, the same service; the router's own listener does not route it by name.
    assert_eq!(router_get(lbp, "10.9.9.9", "/id", None).0, 200);
    assert_eq!(router_get(http, "anything.example.org", "/id", None).0, 404);
    // Counted under its port.
    let (_, prom) = a.get_raw("/metrics", true).expect("metrics");
    assert!(
        prom.contains(&format!("berth_router_requests_total{{route=\"http://:{lbp}\",app=\"front\",service=\"web\",version=\"web-001\",code=\"2xx\"}}")),
        "{prom}"
    );
}

/// The seed's blue/green: the new template renames the service (`nginx-v1` -> `nginx-v2`,
/// both routed at `nginx`). Deployed with `--blue-green`, v2 starts beside v1 at 0% of the
/// route; `traffic --route` splits it 30/70 (measured over 1,000 requests); confirm removes
/// v1; a second release to v3 is aborted, which removes v3 and restores v2's template; a
/// service in both templates is never touched; two services naming one route without a
/// release share it equally.
#[test]
fn the_seeds_blue_green_between_renamed_services_splits_confirms_and_aborts() {
    let http = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ndomain = \"test.local\"\n"
    ));
    let template = |v: &str| {
        format!(
            "services:\n{}{}",
            named_web(v, "nginx"),
            named_web("other", "other")
        )
    };
    let deploy_bg = |v: &str| {
        let p = a.template("bg", &template(v));
        a.berth(&[
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            "web",
            "--blue-green",
            "--timeout",
            "60",
        ])
    };
    const HOST: &str = "nginx.test.local";
    let tally = |n: usize| router_tally(http, HOST, "/id", n);
    let only = |who: &str| {
        let t = tally(20);
        t.len() == 1 && t.contains_key(who)
    };
    a.deploy("web", &template("nginx-v1"));
    a.wait_running("web", 2, Duration::from_secs(60));
    wait_until("v1 routed", Duration::from_secs(20), || only("nginx-v1"));
    let other_id = |a: &Agent| {
        a.running("web")
            .into_iter()
            .find(|i| i.service == "other")
            .map(|i| i.container_id)
            .unwrap_or_default()
    };
    let other = other_id(&a);

    // v2 beside v1, at 0% of the route, until confirmed.
    let out = deploy_bg("nginx-v2");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("blue/green between services"), "{said}");
    assert!(said.contains("at 0% of nginx"), "{said}");
    a.wait_running("web", 3, Duration::from_secs(60));
    let apps = a.ok(&["apps"]);
    assert!(apps.contains("awaiting confirmation"), "{apps}");
    assert!(only("nginx-v1"), "v2 gets nothing before the split");
    let routes = a.ok(&["routes", "web"]);
    assert!(
        routes
            .lines()
            .any(|l| l.contains("nginx-v2") && l.contains("0%") && l.contains("new")),
        "{routes}"
    );
    // Another deploy waits for the release to end; bad weights change nothing.
    let e = a.fails(&[
        "deploy",
        "-f",
        path_str(&a.template("x", &template("nginx-v9"))),
        "--name",
        "web",
    ]);
    assert!(
        e.contains("awaiting confirmation") && e.contains("release confirm web"),
        "{e}"
    );
    for (bad, says) in [
        (vec!["nginx-v2=30", "nginx-v1=60"], "add up to 90"),
        (
            vec!["nginx-v2=30", "other=70"],
            "not one of the route's services",
        ),
    ] {
        let mut args = vec!["traffic", "web", "--route", "nginx"];
        args.extend(bad);
        let e = a.fails(&args);
        assert!(e.contains(says), "{e}");
    }
    let e = a.fails(&["traffic", "web", "--route", "shop", "nginx-v2=100"]);
    assert!(e.contains("no shared route"), "{e}");
    assert!(only("nginx-v1"));

    // 30/70 over 3,000 requests, within 3%. The router picks by a random roll, so the
    // count is binomial: sigma is 25 requests (0.84%), and 3% is 3.6 sigma (1,000 requests
    // made it 2.1 sigma: one run in 25 failed on a correct split).
    a.ok(&[
        "traffic",
        "web",
        "--route",
        "nginx",
        "nginx-v2=30",
        "nginx-v1=70",
    ]);
    wait_until("the split applied", Duration::from_secs(10), || {
        tally(20).contains_key("nginx-v2")
    });
    let t = tally(3000);
    let v2 = t.get("nginx-v2").copied().unwrap_or(0);
    assert_eq!(
        v2 + t.get("nginx-v1").copied().unwrap_or(0),
        3000,
        "every request answered by v1 or v2: {t:?}"
    );
    assert!((810..=990).contains(&v2), "30% within 3%: {t:?}");
    let counters = a.get_raw("/metrics", true).expect("metrics").1;
    assert!(
        counters.contains("service=\"nginx-v2\",version=\"nginx-v2-001\""),
        "the router counts each service's version on the shared route"
    );

    // Confirm: v1 goes, v2 takes the route; `other` was never touched.
    let said = a.ok(&["release", "confirm", "web"]);
    assert!(said.contains("confirmed"), "{said}");
    wait_until("only v2 answers", Duration::from_secs(10), || {
        only("nginx-v2")
    });
    wait_until("v1 removed", Duration::from_secs(30), || {
        a.ps("web").iter().all(|i| i.service != "nginx-v1")
    });
    assert!(!a.ok(&["apps"]).contains("awaiting confirmation"));
    assert!(
        a.fails(&["release", "confirm", "web"])
            .contains("no blue/green release")
    );

    // v3, aborted: v3 goes, the template is v2's again.
    let out = deploy_bg("nginx-v3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.wait_running("web", 3, Duration::from_secs(60));
    let said = a.ok(&["release", "abort", "web"]);
    assert!(said.contains("aborted"), "{said}");
    wait_until("v3 removed", Duration::from_secs(30), || {
        a.ps("web").iter().all(|i| i.service != "nginx-v3")
    });
    assert!(only("nginx-v2"));
    let inspect = a.ok(&["inspect", "web"]);
    assert!(
        inspect.contains("nginx-v2") && !inspect.contains("nginx-v3"),
        "{inspect}"
    );
    assert_eq!(
        other_id(&a),
        other,
        "a service in both templates is untouched"
    );

    // Without a release, two services naming one route share it equally.
    let p = a.template(
        "two",
        &format!(
            "services:\n{}{}",
            named_web("left", "nginx"),
            named_web("right", "nginx")
        ),
    );
    a.ok(&["rm", "web"]);
    a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "two",
        "--timeout",
        "60",
    ]);
    wait_until("both serve", Duration::from_secs(20), || {
        tally(20).len() == 2
    });
    let t = tally(400);
    let left = t.get("left").copied().unwrap_or(0);
    assert!((160..=240).contains(&left), "equal shares: {t:?}");
}

/// An acs/proxy template as the guide writes them (compose v1 layout): the proxy service is
/// not run and its published port becomes a router listener; `VIRTUAL_HOST` routes by host,
/// wildcard, path and front port; `VIRTUAL_HOST_WEIGHT` puts a rule first; `BALANCE:
/// source` keeps a client on one instance; `COOKIE` sets the sticky cookie; `required`
/// takes what no rule does.
#[test]
fn an_acs_proxy_template_is_routed_by_the_router_with_its_labels() {
    let (http, proxy_port, chat_port) = (free_port(), free_port(), free_port());
    let a = Agent::start_with_config(&format!("[router]\nhttp = \"127.0.0.1:{http}\"\n"));
    let app = |name: &str| {
        format!(
            "    image: {IMAGE}\n    expose:\n        - 8080/tcp\n    command: sh -c 'mkdir -p /www/api && echo {name} > /www/id && echo {name} > /www/api/id && hostname > /www/host; exec httpd -f -p 8080 -h /www'\n    stop_grace_period: 1s\n    restart: always\n"
        )
    };
    let t = format!(
        "lb:
    image: registry.aliyuncs.com/acs/proxy:0.5
    ports:
        - '{proxy_port}:80'
    restart: always
    labels:
        aliyun.custom_addon: \"proxy\"
        aliyun.global: \"true\"
        aliyun.lb.port_80: tcp://proxy_test:80
    environment:
        ADDITIONAL_SERVICES: \"*\"
appone:
{}    labels:
        aliyun.scale: \"2\"
        aliyun.proxy.VIRTUAL_HOST: \"http://appone.example.com, http://*.example.com\"
        aliyun.proxy.BALANCE: \"source\"
apptwo:
{}    labels:
        aliyun.proxy.VIRTUAL_HOST: \"http://*.example.com/api, http://chat.example.com:{chat_port}\"
        aliyun.proxy.VIRTUAL_HOST_WEIGHT: \"10\"
        aliyun.proxy.COOKIE: \"CONTAINERID insert indirect\"
fallback:
{}    labels:
        aliyun.proxy.required: \"true\"
",
        app("appone"),
        app("apptwo"),
        app("fallback")
    );
    let p = a.template("px", &t);
    let out = a.berth(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "px",
        "--timeout",
        "60",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("acs/proxy load balancer"), "{said}");
    a.wait_running("px", 4, Duration::from_secs(60));
    assert!(
        a.ps("px").iter().all(|i| i.service != "lb"),
        "the proxy service is not run"
    );
    let at = |port: u16, host: &str, path: &str| -> (u16, String) {
        let mut last = (0, String::new());
        wait_until(
            &format!("{host}{path} on :{port}"),
            Duration::from_secs(20),
            || {
                let (s, b, _) = router_get_at(&format!("127.0.0.1:{port}"), host, path, None);
                last = (s, b.trim().to_string());
                s != 502 && s != 503
            },
        );
        last
    };
    let ok = |s: &str| (200, s.to_string());
    assert_eq!(at(http, "appone.example.com", "/id"), ok("appone"));
    assert_eq!(at(http, "www.example.com", "/id"), ok("appone"), "wildcard");
    assert_eq!(
        at(proxy_port, "appone.example.com", "/id"),
        ok("appone"),
        "the proxy's port"
    );
    // The heavier rule takes /api even of the exact host.
    assert_eq!(at(http, "appone.example.com", "/api/id"), ok("apptwo"));
    // A front port in VIRTUAL_HOST: that host there; on the router's own port, the wildcard.
    assert_eq!(at(chat_port, "chat.example.com", "/id"), ok("apptwo"));
    assert_eq!(at(http, "chat.example.com", "/id"), ok("appone"));
    // What no rule takes goes to the required service.
    assert_eq!(at(http, "10.1.2.3", "/id"), ok("fallback"));
    // BALANCE source: one client, one instance (of two).
    let hosts: std::collections::BTreeSet<String> = (0..20)
        .map(|_| at(http, "appone.example.com", "/host").1)
        .collect();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    // COOKIE: the router's sticky cookie.
    let (_, _, cookie) = router_get(http, "appone.example.com", "/api/id", None);
    assert!(
        cookie
            .as_deref()
            .is_some_and(|c| c.starts_with("berth_sticky=")),
        "{cookie:?}"
    );
    // The guide's client in another app: `external_links: proxy:appone.example.com` resolves
    // the name to the router (the proxy's role), which routes it by Host.
    a.deploy(
        "client",
        &format!(
            "restclient:\n  image: {IMAGE}\n  command: sleep 600\n  stop_grace_period: 1s\n  external_links:\n    - \"proxy:appone.example.com\"\n"
        ),
    );
    a.wait_running("client", 1, Duration::from_secs(60));
    let mut said = String::new();
    wait_until(
        "the client reaches appone through the router",
        Duration::from_secs(30),
        || {
            said = std::process::Command::new("docker")
                .args([
                    "exec",
                    "client_restclient_1",
                    "wget",
                    "-qO-",
                    "http://appone.example.com/id",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            said == "appone"
        },
    );
}

/// `lb.port_N: udp://` through the engine: a real UDP server (socat) in two containers
/// behind a router UDP port; each client address keeps its instance (a flow), and the
/// router counts the flows under its port.
#[test]
fn an_lb_port_with_the_udp_scheme_forwards_datagrams_to_the_service() {
    let (http, udp) = (free_port(), free_port());
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    let t = format!(
        "services:
  dns:
    image: {UDP_IMAGE}
    command: [\"socat\", \"UDP4-RECVFROM:5353,fork\", \"SYSTEM:read q; echo $$q $$(hostname)\"]
    stop_grace_period: 1s
    labels:
      aliyun.scale: \"2\"
      aliyun.lb.port_5353: udp://slb_dns:{udp}
"
    );
    a.deploy("udp", &t);
    a.wait_running("udp", 2, Duration::from_secs(60));
    let ps = a.ok(&["ps", "udp"]);
    assert!(ps.contains(&format!("udp://127.0.0.1:{udp}")), "{ps}");
    let ask = |sock: &std::net::UdpSocket, q: &str| -> Option<String> {
        sock.send_to(format!("{q}\n").as_bytes(), ("127.0.0.1", udp))
            .ok()?;
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    };
    let client = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s
    };
    let first = client();
    let mut answer = None;
    wait_until(
        "a datagram answered through the router",
        Duration::from_secs(20),
        || {
            answer = ask(&first, "ping");
            answer.is_some()
        },
    );
    let answer = answer.unwrap_or_default();
    let (word, host) = answer.split_once(' ').unwrap_or_default();
    assert_eq!(word, "ping", "{answer}");
    // The same client, the same instance; clients spread over both instances.
    for i in 0..5 {
        assert_eq!(ask(&first, &format!("q{i}")), Some(format!("q{i} {host}")));
    }
    // New clients until both instances answered one (the second instance may join the
    // router's table a moment after the first).
    let mut hosts = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hosts.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(a) = ask(&client(), "hi") {
            hosts.insert(
                a.split_once(' ')
                    .map(|x| x.1.to_string())
                    .unwrap_or_default(),
            );
        }
    }
    assert_eq!(
        hosts.len(),
        2,
        "both instances answer some clients: {hosts:?}"
    );
    let metrics = a.get_raw("/metrics", true).expect("metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("berth_router_connections_total")
                && l.contains(&format!("udp://:{udp}"))),
        "flows counted under the port"
    );
}

/// The guide's templates in `tests/data/ok/seed-*.yml` deploy unchanged, with local images
/// tagged as they name them (nothing can be pulled here): every service they run runs, and
/// the acs/proxy one is answered by the router.
#[test]
fn the_guides_templates_deploy_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let http = free_port();
    let a = Agent::start_with_config(&format!(
        "[router]\nhttp = \"127.0.0.1:{http}\"\ntcp_address = \"127.0.0.1\"\n"
    ));
    for image in [
        "nginx:latest",
        "nginx",
        "wordpress:4.2",
        "registry.cn-hangzhou.aliyuncs.com/linhuatest/hello-world:latest",
    ] {
        docker_ok(&["tag", WEB_IMAGE, image]);
    }
    for image in [
        "redis:7",
        "coredns/coredns",
        "registry.cn-hangzhou.aliyuncs.com/linhuatest/rsyslog:latest",
    ] {
        docker_ok(&["tag", IDLE_IMAGE, image]);
    }
    // (file, containers it runs); the client of "between" runs curl in a loop on alpine.
    for (file, want) in [
        ("seed-external.yml", 1),
        ("seed-lb-slb-name.yml", 1),
        ("seed-proxy-basic.yml", 1),
        ("seed-guide-proxy-cookie.yml", 1),
        ("seed-guide-proxy-errorpage.yml", 1),
        ("seed-guide-proxy-wildcard.yml", 1),
        ("seed-guide-proxy-default.yml", 1),
        ("seed-guide-proxy-urlparam.yml", 2),
        ("seed-guide-proxy-accesslog.yml", 2),
        ("seed-guide-proxy-between.yml", 1),
    ] {
        let app = file.trim_end_matches(".yml").replace("seed-guide-", "g-");
        let out = a.ok(&[
            "deploy",
            "-f",
            path_str(&dir.join(file)),
            "--name",
            &app,
            "--timeout",
            "60",
        ]);
        assert!(
            out.contains(&format!("{want}/{want} running")),
            "{file}: {out}"
        );
        if file.contains("proxy") {
            assert!(
                a.ps(&app).iter().all(|i| i.service != "lb"),
                "{file}: the acs/proxy service is not run"
            );
        }
    }
    // They stay (an `rm` would wait out the grace of images that ignore SIGTERM); the
    // acs/proxy ones share appone.example.com, which the router answers.
    let mut got = (0, String::new());
    wait_until("appone routed", Duration::from_secs(20), || {
        let (s, b, _) = router_get(http, "appone.example.com", "/", None);
        got = (s, b.trim().to_string());
        s == 200
    });
    assert_eq!(got.1, "hello from berth");
}

/// `monitoring.addon.prometheus: ":PORT"`: the service's exposition on a port of its own
/// (no token, as an exporter), scraped by a real Prometheus; only that service's series
/// are there, and the port closes when the label goes.
#[test]
fn a_service_labelled_with_a_prometheus_port_is_scraped_there_by_a_real_prometheus() {
    let port = free_port();
    let a = Agent::start_with_config(
        "[metrics]\ninterval = \"1s\"\n[router]\ntcp_address = \"127.0.0.1\"\n",
    );
    let t = |label: &str| {
        format!(
            "services:
  web:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
    labels:
      {label}
      aliyun.monitoring.script: \"echo 'orders,queue=eu depth=7i'\"
  other:
    image: {IMAGE}
    command: sleep 600
    stop_grace_period: 1s
"
        )
    };
    a.deploy(
        "shop",
        &t(&format!("aliyun.monitoring.addon.prometheus: \":{port}\"")),
    );
    a.wait_running("shop", 2, Duration::from_secs(60));
    let prom = crate::backends::Prometheus::start_path(&format!("127.0.0.1:{port}"), "/metrics");
    wait_until(
        "Prometheus has web's series from its port",
        Duration::from_secs(60),
        || {
            !prom
                .query("container_cpu_usage_seconds_total{service=\"web\"}")
                .is_empty()
                && !prom.query("orders_depth{queue=\"eu\"}").is_empty()
        },
    );
    for q in [
        "node_cpu_seconds_total",
        "container_cpu_usage_seconds_total{service=\"other\"}",
    ] {
        assert!(prom.query(q).is_empty(), "{q} was scraped from web's port");
    }
    // Only GET /metrics is answered there.
    let url = format!("http://127.0.0.1:{port}");
    let agent = http_agent();
    let status = |r: Result<ureq::http::Response<ureq::Body>, ureq::Error>| {
        r.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    assert_eq!(status(agent.get(&format!("{url}/v1/apps")).call()), 404);
    assert_eq!(status(agent.post(&format!("{url}/metrics")).send("x")), 405);
    // The label gone, the port closes.
    a.deploy("shop", &t("aliyun.scale: \"1\""));
    wait_until("the port closed", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}
