//! Two real agents (the binary, the real engine) joined into a cluster through the CLI: the
//! second sees the first's app and its real containers with a NODE column, and a scale asked
//! on the second is run by the first. Both agents share this host's engine, each with its own
//! node id (the quick check); `multihost.rs` runs the cluster on real hosts, an engine each.

use crate::harness::*;
use std::time::Duration;

fn cluster_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = u.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

#[test]
fn a_second_host_joins_by_token_sees_the_first_hosts_app_and_scales_it_there() {
    let conf = |p: u16| format!("[cluster]\nbind = \"127.0.0.1:{p}\"\n");
    let a = Agent::start_named("e2e-a", &conf(cluster_port()));
    let b = Agent::start_named("e2e-b", &conf(cluster_port()));
    let out = a.ok(&["cluster", "init"]);
    assert!(out.contains("created"), "{out}");
    let token = a.ok(&["cluster", "token", "create", "--ttl", "10m"]);
    let token = token.trim();
    assert!(token.starts_with("berth1-"), "{token}");
    // A token with one character changed is refused with the reason; the good one works.
    let mut bad = token.to_string();
    let last = if bad.ends_with('0') { "1" } else { "0" };
    bad.replace_range(bad.len() - 1.., last);
    let out = b.fails(&["cluster", "join", &bad]);
    assert!(out.contains("wrong or altered"), "{out}");
    let out = b.ok(&["cluster", "join", token]);
    assert!(out.contains("joined cluster"), "{out}");
    wait_until("both alive on b", Duration::from_secs(15), || {
        let n = b.ok(&["nodes"]);
        n.matches("alive").count() == 2 && n.contains("e2e-a") && n.contains("e2e-b")
    });
    let nodes = b.ok(&["nodes"]);
    assert!(
        nodes.contains("SEEN") && nodes.contains("s ago") && !nodes.contains("d ago"),
        "{nodes}"
    );
    let web = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n"
    );
    let out = a.deploy("clu", &web);
    assert!(out.contains("1/1 running"), "{out}");
    wait_until(
        "clu listed on b with its node",
        Duration::from_secs(15),
        || {
            let apps = b.ok(&["apps"]);
            apps.contains("clu") && apps.contains("NODE") && apps.contains("e2e-a")
        },
    );
    let id = a.running("clu")[0].container_id.clone();
    wait_until("clu's container on b", Duration::from_secs(15), || {
        b.ok(&["ps"]).contains(&id)
    });
    // Scale asked on b: a runs it, with real containers.
    b.ok(&["scale", "clu", "web=2"]);
    wait_until("two containers on a", Duration::from_secs(30), || {
        a.running("clu").len() == 2
    });
    let events = b.ok(&["events", "-n", "200"]);
    assert!(
        events.contains("[e2e-a]") && events.contains("scale"),
        "{events}"
    );
    a.ok(&["rm", "clu"]);
}
