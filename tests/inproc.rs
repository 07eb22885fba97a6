//! In-process agent tests: the daemon's real wiring (`daemon::Daemon`: store, loops, API)
//! over the recording fake engine (`runtime::fake`), driven through the real HTTP API.
//! They check the executor, the backoff, deploy validation, removal and crash adoption in
//! seconds; the e2e tests (tests/e2e) check the same against the real engine.

use berth::daemon::Daemon;
use berth::model::InstanceState;
use berth::runtime::fake::FakeRuntime;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node {
    daemon: Option<Daemon>,
    engine: Arc<FakeRuntime>,
    dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> berth::config::AgentConfig {
    config_as(dir, "inproc", None)
}

/// A node named `name`, its cluster (gossip UDP and join TCP) on `cluster` when given.
fn config_as(
    dir: &std::path::Path,
    name: &str,
    cluster: Option<std::net::SocketAddr>,
) -> berth::config::AgentConfig {
    let toml = dir.join("berth.toml");
    std::fs::write(
        &toml,
        "[agent]\nreconcile_interval = \"100ms\"\nversion_deadline = \"5s\"\n",
    )
    .expect("write config");
    berth::config::load_agent(&berth::config::AgentFlags {
        config: Some(toml),
        data_dir: Some(dir.join("data")),
        listen: Some("127.0.0.1:0".into()),
        node_name: Some(name.into()),
        cluster_bind: cluster.map(|c| c.to_string()),
        ..Default::default()
    })
    .expect("config")
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(FakeRuntime::new());
        engine.publish(&["nginx:1.27", "postgres:16"]);
        Node::start_on(dir, engine).await
    }

    /// A daemon over an existing data dir and engine (after a crash of the last one).
    async fn start_on(dir: tempfile::TempDir, engine: Arc<FakeRuntime>) -> Node {
        let cfg = config(dir.path());
        Node::start_with(dir, engine, cfg).await
    }

    async fn start_with(
        dir: tempfile::TempDir,
        engine: Arc<FakeRuntime>,
        cfg: berth::config::AgentConfig,
    ) -> Node {
        let daemon = Daemon::start(cfg, engine.clone())
            .await
            .expect("daemon starts");
        Node {
            daemon: Some(daemon),
            engine,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        let d = self.daemon.as_ref().expect("running");
        format!("http://{}{path}", d.api_addr())
    }

    /// One API call: (status, body).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, String) {
        let url = self.url(path);
        let token = self.daemon.as_ref().expect("running").token().to_string();
        let method = method.to_string();
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build(),
            );
            let auth = format!("Bearer {token}");
            let resp = match (method.as_str(), body) {
                ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
                ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
                (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
                (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
            };
            let mut resp = resp.expect("the API answers");
            let status = resp.status().as_u16();
            (status, resp.body_mut().read_to_string().unwrap_or_default())
        })
        .await
        .expect("call")
    }

    async fn deploy(&self, name: &str, template: &str) -> (u16, String) {
        self.call(
            "POST",
            "/v1/apps",
            Some(serde_json::json!({"name": name, "template": template})),
        )
        .await
    }

    fn running(&self, app: &str) -> usize {
        self.engine
            .instances()
            .iter()
            .filter(|i| i.app == app && i.state == InstanceState::Running)
            .count()
    }

    /// Stops the daemon as SIGTERM would.
    async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }

    /// Drops the daemon without stopping anything (as `kill -9` would leave the engine).
    fn crash(mut self) -> (tempfile::TempDir, Arc<FakeRuntime>) {
        if let Some(d) = self.daemon.take() {
            std::mem::forget(d);
        }
        (self.dir, self.engine)
    }
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WEB: &str = "services:\n  web:\n    image: nginx:1.27\n    deploy:\n      replicas: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_goes_through_the_executor_in_dependency_order() {
    let mut n = Node::start().await;
    let t = "services:\n  db:\n    image: postgres:16\n  web:\n    image: nginx:1.27\n    depends_on: [db]\n    deploy:\n      replicas: 2\n";
    let (status, body) = n.deploy("shop", t).await;
    assert_eq!(status, 201, "{body}");
    until("3 running", Duration::from_secs(10), || {
        n.running("shop") == 3
    })
    .await;
    let calls = n.engine.calls();
    let pos = |c: &str| {
        calls
            .iter()
            .position(|x| x.starts_with(c))
            .unwrap_or_else(|| panic!("no {c:?} in {calls:?}"))
    };
    // The network first, the images pulled, then db before web (web waits for db ready).
    assert!(
        pos("create_network shop") < pos("create shop_db_1"),
        "{calls:?}"
    );
    assert!(
        pos("pull postgres:16") < pos("create shop_db_1"),
        "{calls:?}"
    );
    assert!(
        pos("create shop_db_1") < pos("create shop_web_1"),
        "{calls:?}"
    );
    // Settled: later passes change nothing.
    let before = n.engine.calls().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<String> = n.engine.calls()[before..].to_vec();
    assert!(
        after.iter().all(|c| c == "info"),
        "a settled app was touched: {after:?}"
    );
    // A container that dies is started again.
    n.engine.kill("shop_web_2");
    until("web-2 back", Duration::from_secs(5), || {
        n.running("shop") == 3
    })
    .await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_template_is_refused_and_touches_nothing() {
    let mut n = Node::start().await;
    let (status, body) = n
        .deploy(
            "bad",
            "services:\n  web:\n    image: nginx\n    ports: [\"99999:80\"]\n",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("port"), "{body}");
    let (status, body) = n.deploy("bad", "services:\n  web: [\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line"), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let touched: Vec<String> = n
        .engine
        .calls()
        .into_iter()
        .filter(|c| c != "info")
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    let (_, apps) = n.call("GET", "/v1/apps", None).await;
    assert_eq!(apps.trim(), "[]", "{apps}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_backs_off_instead_of_hammering_the_engine() {
    let mut n = Node::start().await;
    n.engine.state.lock().expect("state").fail = vec!["start ".into()];
    let (status, body) = n.deploy("flaky", WEB).await;
    assert_eq!(status, 201, "{body}");
    // 100 ms passes for 3 s: without backoff, ~30 starts a slot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starts = n
        .engine
        .calls()
        .iter()
        .filter(|c| c.starts_with("start "))
        .count();
    assert!(
        (2..=12).contains(&starts),
        "{starts} starts in 3 s for 2 slots: the backoff does not hold"
    );
    // The engine recovers: the instances start.
    n.engine.state.lock().expect("state").fail.clear();
    until("both running", Duration::from_secs(30), || {
        n.running("flaky") == 2
    })
    .await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_new_daemon_adopts_what_runs_without_duplicates() {
    let n = Node::start().await;
    let (status, body) = n.deploy("keep", WEB).await;
    assert_eq!(status, 201, "{body}");
    until("2 running", Duration::from_secs(10), || {
        n.running("keep") == 2
    })
    .await;
    let (dir, engine) = n.crash();
    let before = engine.calls().len();
    let mut n = Node::start_on(dir, engine).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after: Vec<String> = n.engine.calls()[before..]
        .iter()
        .filter(|c| *c != "info")
        .cloned()
        .collect();
    assert!(
        after.is_empty(),
        "the new daemon changed running containers: {after:?}"
    );
    assert_eq!(n.engine.instances().len(), 2);
    // It still drives them: a scale to 3 adds exactly one.
    let (status, body) = n
        .call(
            "POST",
            "/v1/apps/keep/scale",
            Some(serde_json::json!({"services": {"web": 3}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until("3 running", Duration::from_secs(10), || {
        n.running("keep") == 3
    })
    .await;
    assert_eq!(n.engine.instances().len(), 3);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_app_removes_its_containers_and_network() {
    let mut n = Node::start().await;
    let (status, body) = n.deploy("gone", WEB).await;
    assert_eq!(status, 201, "{body}");
    until("2 running", Duration::from_secs(10), || {
        n.running("gone") == 2
    })
    .await;
    let (status, body) = n.call("DELETE", "/v1/apps/gone", None).await;
    assert_eq!(status, 200, "{body}");
    until("no containers", Duration::from_secs(10), || {
        n.engine.instances().is_empty()
    })
    .await;
    until("no network", Duration::from_secs(10), || {
        n.engine.state.lock().expect("state").networks.is_empty()
    })
    .await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_app_while_a_pass_creates_it_leaves_nothing_behind() {
    let mut n = Node::start().await;
    // A slow engine: each create takes 300 ms, so the removal arrives mid-pass.
    n.engine.state.lock().expect("state").create_delay_ms = 300;
    let t = "services:\n  web:\n    image: nginx:1.27\n    deploy:\n      replicas: 4\n";
    let (status, body) = n.deploy("racy", t).await;
    assert_eq!(status, 201, "{body}");
    until("a create under way", Duration::from_secs(10), || {
        n.engine
            .calls()
            .iter()
            .any(|c| c.starts_with("create racy_"))
    })
    .await;
    let (status, body) = n.call("DELETE", "/v1/apps/racy", None).await;
    assert_eq!(status, 200, "{body}");
    // The removal waited for the pass and ran one of its own: nothing of the app is left,
    // and nothing is created for it afterwards.
    let after_delete = n.engine.calls().len();
    until("no containers", Duration::from_secs(10), || {
        n.engine.instances().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        n.engine.instances().is_empty(),
        "{:?}",
        n.engine.instances()
    );
    assert!(
        n.engine.state.lock().expect("state").networks.is_empty(),
        "the app's network was left"
    );
    let late: Vec<String> = n.engine.calls()[after_delete..]
        .iter()
        .filter(|c| c.starts_with("create ") || c.starts_with("start "))
        .cloned()
        .collect();
    assert!(late.is_empty(), "created after the removal: {late:?}");
    n.stop().await;
}

/// A free loopback port for both UDP and TCP (the cluster binds both on one port).
fn free_cluster_addr() -> std::net::SocketAddr {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let a = u.local_addr().expect("addr");
        if std::net::TcpListener::bind(a).is_ok() {
            return a;
        }
    }
}

async fn cluster_node(name: &str) -> (Node, std::net::SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(FakeRuntime::new());
    engine.publish(&["nginx:1.27", "postgres:16"]);
    let addr = free_cluster_addr();
    let cfg = config_as(dir.path(), name, Some(addr));
    (Node::start_with(dir, engine, cfg).await, addr)
}

fn node_states(body: &str) -> Vec<(String, String)> {
    let v: Vec<serde_json::Value> = serde_json::from_str(body).expect("nodes JSON");
    let mut out: Vec<(String, String)> = v
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn wait_nodes(n: &Node, want: &[(&str, &str)], limit: Duration) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let start = Instant::now();
    loop {
        let (status, body) = n.call("GET", "/v1/nodes", None).await;
        if status == 200 && node_states(&body) == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "nodes never became {want:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn join(n: &Node, t: String) -> (u16, String) {
    n.call(
        "POST",
        "/v1/cluster/join",
        Some(serde_json::json!({ "token": t })),
    )
    .await
}

/// A TCP relay that keeps every byte both ways (what an eavesdropper on the wire sees).
async fn recording_relay(
    to: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relay");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut b) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut ar, mut aw) = a.split();
                let (mut br, mut bw) = b.split();
                let mut ba = [0u8; 4096];
                let mut bb = [0u8; 4096];
                loop {
                    tokio::select! {
                        n = ar.read(&mut ba) => match n { Ok(0) | Err(_) => break, Ok(n) => {
                            rec.lock().unwrap().extend_from_slice(&ba[..n]);
                            if bw.write_all(&ba[..n]).await.is_err() { break }
                        }},
                        n = br.read(&mut bb) => match n { Ok(0) | Err(_) => break, Ok(n) => {
                            rec.lock().unwrap().extend_from_slice(&bb[..n]);
                            if aw.write_all(&bb[..n]).await.is_err() { break }
                        }},
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Join by token through the API: the good token lets a host in (and the cluster secret is
/// on no byte of the join on the wire); wrong, altered, expired, used-up and foreign tokens
/// are refused with their reason and change nothing; two members see each other alive, and
/// one that leaves is `left`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_join_by_token_and_bad_tokens_change_nothing() {
    let (a, a_addr) = cluster_node("host-a").await;
    let (b, b_addr) = cluster_node("host-b").await;
    let (c, _) = cluster_node("host-c").await;
    // In no cluster yet: nodes says how to start one.
    let (status, body) = b.call("GET", "/v1/nodes", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cluster init"), "{body}");
    let (status, body) = a.call("POST", "/v1/cluster/init", None).await;
    assert_eq!(status, 200, "{body}");
    let cluster = serde_json::from_str::<serde_json::Value>(&body).unwrap()["cluster"]
        .as_str()
        .unwrap()
        .to_string();
    // Idempotent.
    let (_, again) = a.call("POST", "/v1/cluster/init", None).await;
    assert!(
        again.contains(&cluster) && again.contains("\"created\": false"),
        "{again}"
    );
    let key_file = a.dir.path().join("data/cluster.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ring = berth::cluster::keys::Keyring::load(&key_file)
        .unwrap()
        .unwrap();

    // Tokens made with the cluster's own keys, pointing at a relay that records the wire.
    let (relay, wire) = recording_relay(a_addr).await;
    let now = berth::clock::now_ms() / 1000;
    let token = |expires: i64, uses: u32, r: &berth::cluster::keys::Keyring| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&berth::cluster::keys::random_32().unwrap()[..16]);
        berth::cluster::token::Token::issue(r, vec![relay], expires, uses, id).to_text()
    };
    let good = token(now + 600, 1, &ring);
    let mut altered = good.clone();
    altered.replace_range(altered.len() - 3.., "000");
    let other = berth::cluster::keys::Keyring::create(1).unwrap();
    for (t, status, says) in [
        ("berth1-nonsense".to_string(), 400, "not a berth join token"),
        (altered, 403, "wrong or altered"),
        (token(now - 5, 1, &ring), 403, "expired"),
        (token(now + 600, 1, &other), 403, "cluster"),
    ] {
        let (s, body) = join(&b, t).await;
        assert_eq!(s, status, "{body}");
        assert!(body.contains(says), "{says}: {body}");
        assert!(
            !b.dir.path().join("data/cluster.key").exists(),
            "a refused join changed nothing"
        );
    }
    let (s, body) = join(&b, good.clone()).await;
    assert_eq!(s, 200, "{body}");
    // Used up: its one use went to b.
    let (s, body) = join(&c, good).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("used"), "{body}");
    assert!(!c.dir.path().join("data/cluster.key").exists());
    // The secrets never crossed the wire in clear (hex or raw).
    let seen = wire.lock().unwrap().clone();
    assert!(
        seen.len() > 200,
        "the relay saw the joins ({} bytes)",
        seen.len()
    );
    let key_json = std::fs::read_to_string(&key_file).unwrap();
    for hex_secret in key_json.split('"').filter(|w| w.len() == 64) {
        let raw = hex::decode(hex_secret).unwrap();
        assert!(
            !seen.windows(64).any(|w| w == hex_secret.as_bytes()),
            "secret in hex on the wire"
        );
        assert!(
            !seen.windows(32).any(|w| w == raw.as_slice()),
            "secret in raw bytes on the wire"
        );
    }
    // A host in a cluster refuses another cluster's token until it leaves.
    let (s, body) = join(&b, token(now + 600, 1, &other)).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("cluster leave"), "{body}");

    wait_nodes(
        &a,
        &[("host-a", "alive"), ("host-b", "alive")],
        Duration::from_secs(10),
    )
    .await;
    wait_nodes(
        &b,
        &[("host-a", "alive"), ("host-b", "alive")],
        Duration::from_secs(10),
    )
    .await;
    // A token from the API, then c joins with it and all three see each other.
    let (s, body) = a
        .call(
            "POST",
            "/v1/cluster/tokens",
            Some(serde_json::json!({"ttl_s": 600})),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let t = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = join(&c, t).await;
    assert_eq!(s, 200, "{body}");
    let three = [
        ("host-a", "alive"),
        ("host-b", "alive"),
        ("host-c", "alive"),
    ];
    for n in [&a, &b, &c] {
        wait_nodes(n, &three, Duration::from_secs(10)).await;
    }
    let (s, metrics) = a.call("GET", "/metrics", None).await;
    assert_eq!(s, 200);
    assert!(
        metrics.contains("berth_cluster_members{state=\"alive\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_gossip_packets_dropped_total{reason=\"auth\"} 0"),
        "{metrics}"
    );
    // c leaves: `left` on the others, and it may not be removed while... it is not alive,
    // so it may; an alive member may not.
    let (s, body) = c.call("POST", "/v1/cluster/leave", None).await;
    assert_eq!(s, 200, "{body}");
    wait_nodes(
        &a,
        &[("host-a", "alive"), ("host-b", "alive"), ("host-c", "left")],
        Duration::from_secs(10),
    )
    .await;
    let (s, body) = a.call("DELETE", "/v1/nodes/host-b", None).await;
    assert_eq!(s, 409, "{body}");
    let (s, body) = a.call("DELETE", "/v1/nodes/host-c", None).await;
    assert_eq!(s, 200, "{body}");
    wait_nodes(
        &a,
        &[("host-a", "alive"), ("host-b", "alive")],
        Duration::from_secs(5),
    )
    .await;
    let (s, events) = a.call("GET", "/v1/events?limit=200", None).await;
    assert_eq!(s, 200);
    for says in [
        "created",
        "node host-b",
        "joined",
        "left the cluster",
        "removed from the member list",
    ] {
        assert!(events.contains(says), "events lack {says:?}: {events}");
    }
    // The same token through another member (b) is used up too, once a's node record (with
    // its token counts) reached b.
    let id: [u8; 16] = [5; 16];
    let through = |m: std::net::SocketAddr| {
        berth::cluster::token::Token::issue(&ring, vec![m], now + 600, 1, id).to_text()
    };
    let (s, body) = join(&c, through(a_addr)).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = c.call("POST", "/v1/cluster/leave", None).await;
    assert_eq!(s, 200, "{body}");
    // a publishes its node record after its next pass (at most 2 s), b pulls it at once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s, body) = join(&c, through(b_addr)).await;
    assert_eq!(s, 403, "b let c in with a token a had used up: {body}");
    assert!(body.contains("used"), "{body}");
    assert!(!c.dir.path().join("data/cluster.key").exists());
}

async fn wait_body(
    n: &Node,
    path: &str,
    what: &str,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (status, body) = n.call("GET", path, None).await;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if ok(&v) {
                return v;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicated state: an app deployed on host A is listed, with its instances, on host B
/// (NODE host-a); with A gone, B still shows them, marked stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_sees_the_apps_and_instances_of_the_others() {
    let (mut a, _) = cluster_node("host-a").await;
    let (b, _) = cluster_node("host-b").await;
    let (s, body) = a.call("POST", "/v1/cluster/init", None).await;
    assert_eq!(s, 200, "{body}");
    let (_, body) = a.call("POST", "/v1/cluster/tokens", None).await;
    let t = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = join(&b, t).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = a.deploy("shop", WEB).await;
    assert_eq!(s, 201, "{body}");
    let started = Instant::now();
    let apps = wait_body(
        &b,
        "/v1/apps",
        "shop listed on b",
        Duration::from_secs(10),
        |v| {
            v.as_array()
                .is_some_and(|l| l.iter().any(|a| a["name"] == "shop" && a["running"] == 2))
        },
    )
    .await;
    eprintln!(
        "a deploy on a was visible on b after {:?}",
        started.elapsed()
    );
    let shop = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "shop")
        .unwrap();
    assert_eq!(shop["node"], "host-a", "{apps}");
    assert!(shop.get("stale").is_none(), "{apps}");
    let ps = wait_body(
        &b,
        "/v1/ps?app=shop",
        "shop's instances on b",
        Duration::from_secs(10),
        |v| v.as_array().is_some_and(|l| l.len() == 2),
    )
    .await;
    assert!(
        ps.as_array().unwrap().iter().all(|i| i["node"] == "host-a"),
        "{ps}"
    );
    // b's events show a's, merged by time, each with its node.
    let events = wait_body(
        &b,
        "/v1/events?limit=100",
        "a's deploy event on b",
        Duration::from_secs(10),
        |v| {
            v.as_array().is_some_and(|l| {
                l.iter()
                    .any(|e| e["node"] == "host-a" && e["kind"] == "deploy" && e["id"] == 0)
            })
        },
    )
    .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"] == "host-b" && e["kind"] == "cluster"),
        "b's own join is listed too: {events}"
    );
    // a's own listing names itself once it is in a cluster.
    let (_, own) = a.call("GET", "/v1/apps", None).await;
    assert!(own.contains("\"node\": \"host-a\""), "{own}");
    // A scale on a reaches b's listing; an app removed on a leaves it.
    let (s, body) = a
        .call(
            "POST",
            "/v1/apps/shop/scale",
            Some(serde_json::json!({"services": {"web": 3}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    wait_body(
        &b,
        "/v1/ps?app=shop",
        "three instances on b",
        Duration::from_secs(10),
        |v| v.as_array().is_some_and(|l| l.len() == 3),
    )
    .await;
    // a stops (its agent only): b keeps showing its rows, stale once a is suspected or lost.
    a.stop().await;
    let apps = wait_body(
        &b,
        "/v1/apps",
        "shop stale on b",
        Duration::from_secs(20),
        |v| {
            v.as_array().is_some_and(|l| {
                l.iter()
                    .any(|a| a["name"] == "shop" && a.get("stale").is_some())
            })
        },
    )
    .await;
    eprintln!("b after a stopped: {apps}");
}

/// Writes and one-app reads asked on a member that does not own the app are run by the owner
/// (and node changes by the node named); with the owner gone they are refused, naming it and
/// its state. A forwarded request sent twice (a replay) runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_hands_changes_to_the_owner_and_refuses_them_while_it_is_gone() {
    let (mut a, a_addr) = cluster_node("host-a").await;
    let (b, b_addr) = cluster_node("host-b").await;
    a.call("POST", "/v1/cluster/init", None).await;
    let (_, body) = a.call("POST", "/v1/cluster/tokens", None).await;
    let t = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(join(&b, t).await.0, 200);
    assert_eq!(a.deploy("shop", WEB).await.0, 201);
    wait_body(&b, "/v1/apps", "shop on b", Duration::from_secs(10), |v| {
        v.as_array()
            .is_some_and(|l| l.iter().any(|x| x["name"] == "shop"))
    })
    .await;
    // Scale on b: a (the owner) places it, over both members.
    let (s, body) = b
        .call(
            "POST",
            "/v1/apps/shop/scale",
            Some(serde_json::json!({"services": {"web": 3}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    until("3 running over a and b", Duration::from_secs(10), || {
        a.running("shop") + b.running("shop") == 3 && a.running("shop") >= 1
    })
    .await;
    let (s, body) = b
        .call("GET", "/v1/apps/shop/services/web/versions", None)
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("web-001"), "{body}");
    // Labels and drain of host-a, asked on b, are set on a.
    let (s, body) = b
        .call(
            "POST",
            "/v1/nodes/host-a/label",
            Some(serde_json::json!({"set": {"az": "2"}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = b.call("POST", "/v1/nodes/host-a/drain", None).await;
    assert_eq!(s, 200, "{body}");
    let nodes = wait_body(
        &b,
        "/v1/nodes",
        "host-a's labels on b",
        Duration::from_secs(10),
        |v| {
            v.as_array().is_some_and(|l| {
                l.iter().any(|n| {
                    n["name"] == "host-a" && n["labels"]["az"] == "2" && n["drain"] == true
                })
            })
        },
    )
    .await;
    assert!(nodes.to_string().contains("\"agent\""), "{nodes}");
    let (s, body) = b
        .call(
            "POST",
            "/v1/nodes/host-a/label",
            Some(serde_json::json!({"set": {"bad key": "x"}})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    // A forwarded request replayed: the second copy is refused.
    let ring = berth::cluster::keys::Keyring::load(&a.dir.path().join("data/cluster.key"))
        .unwrap()
        .unwrap();
    let f = berth::cluster::join::Forward {
        method: "POST".into(),
        url: "/v1/apps/shop/scale".into(),
        body: r#"{"services":{"web":1}}"#.into(),
        at_ms: berth::clock::now_ms(),
        from: "attacker".into(),
        proto: berth::cluster::PROTOCOL,
    };
    let send = || berth::cluster::join::forward(a_addr, &ring, 77, 5, &f, Duration::from_secs(10));
    assert_eq!(send().await.unwrap().status, 200);
    let again = send().await.unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("replay"), "{}", again.body);
    // a's agent stops: b refuses changes to a's app, naming a and its state, and still
    // shows the app.
    a.stop().await;
    let start = Instant::now();
    loop {
        let (s, body) = b
            .call(
                "POST",
                "/v1/apps/shop/scale",
                Some(serde_json::json!({"services": {"web": 2}})),
            )
            .await;
        if s == 503 {
            assert!(
                body.contains("host-a") && body.contains("app shop"),
                "{body}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never refused: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_body(
        &b,
        "/v1/apps",
        "shop shown stale on b",
        Duration::from_secs(20),
        |v| {
            v.as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["name"] == "shop" && x.get("stale").is_some())
            })
        },
    )
    .await;
    // Once a is suspected or lost, the refusal says so.
    let (s, body) = b
        .call(
            "POST",
            "/v1/apps/shop/scale",
            Some(serde_json::json!({"services": {"web": 2}})),
        )
        .await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body.contains("which is suspect") || body.contains("which is lost"),
        "{body}"
    );
    // b restarts while a is still away: it still counts a (lost, so b alone is no
    // majority), still shows a's app as stale, and still refuses changes to it.
    let mut b = b;
    b.stop().await;
    let (dir, engine) = b.crash();
    let cfg = config_as(dir.path(), "host-b", Some(b_addr));
    let b = Node::start_with(dir, engine, cfg).await;
    wait_nodes(
        &b,
        &[("host-a", "lost"), ("host-b", "alive")],
        Duration::from_secs(10),
    )
    .await;
    wait_body(
        &b,
        "/v1/apps",
        "shop still shown, stale, after b restarted",
        Duration::from_secs(10),
        |v| {
            v.as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["name"] == "shop" && x.get("stale").is_some())
            })
        },
    )
    .await;
    let (s, body) = b
        .call(
            "POST",
            "/v1/apps/shop/scale",
            Some(serde_json::json!({"services": {"web": 2}})),
        )
        .await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("host-a"), "{body}");
}

/// What reaches the cluster port's TCP side from anyone: an oversize length, garbage, a
/// silent connection, an unknown first byte, a pull sealed under another cluster's key are
/// all closed unanswered (a silent one within the 5 s bound); a malformed join is refused
/// with the reason; a pull sealed under the cluster's key gets the owner's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_channel_answers_only_what_opens_and_bounds_the_rest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, addr) = cluster_node("host-a").await;
    assert_eq!(a.call("POST", "/v1/cluster/init", None).await.0, 200);
    async fn answer(addr: std::net::SocketAddr, bytes: &[u8]) -> (Vec<u8>, Duration) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let t = Instant::now();
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
        (out, t.elapsed())
    }
    let mut huge = vec![b'P'];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut garbage = vec![b'P'];
    garbage.extend_from_slice(&100u32.to_be_bytes());
    garbage.extend_from_slice(&[0x42; 100]);
    let other = berth::cluster::keys::Keyring::create(1).unwrap();
    let req = br#"{"epoch":0,"since":0}"#;
    let foreign = berth::cluster::seal::seal(
        &other,
        berth::cluster::keys::Purpose::Peer,
        1,
        1,
        [0; 12],
        req,
    );
    let mut foreign_pull = vec![b'P'];
    foreign_pull.extend_from_slice(&(foreign.len() as u32).to_be_bytes());
    foreign_pull.extend_from_slice(&foreign);
    for (what, bytes) in [
        ("an oversize length", huge),
        ("garbage", garbage),
        ("an unknown first byte", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("a pull under another cluster's key", foreign_pull),
    ] {
        let (out, took) = answer(addr, &bytes).await;
        assert!(out.is_empty(), "{what}: answered {out:?}");
        assert!(took < Duration::from_secs(2), "{what}: held {took:?}");
    }
    let (out, took) = answer(addr, b"").await;
    assert!(out.is_empty());
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "a silent connection is closed at the bound: {took:?}"
    );
    let mut bad_join = vec![b'J'];
    bad_join.extend_from_slice(&7u32.to_be_bytes());
    bad_join.extend_from_slice(b"{nope}\n");
    let (out, _) = answer(addr, &bad_join).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("refused") && text.contains("wrong"), "{text}");
    // The positive control: a pull sealed under the cluster's key is answered.
    let ring = berth::cluster::keys::Keyring::load(&a.dir.path().join("data/cluster.key"))
        .unwrap()
        .unwrap();
    let d = berth::cluster::join::pull(
        addr,
        &ring,
        9,
        berth::cluster::join::PullRequest { epoch: 0, since: 0 },
    )
    .await
    .expect("a sealed pull is answered");
    assert!(d.full);
}

/// Key rotation with three hosts, one of them down during it: the two alive ones end with
/// the same single new key and keep seeing each other; the one that was down comes back
/// with the retired key only, stays apart, and says in its events how to rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_key_rotates_and_a_host_away_meanwhile_says_how_to_rejoin() {
    let (a, _) = cluster_node("host-a").await;
    let (b, _) = cluster_node("host-b").await;
    let (mut c, c_addr) = cluster_node("host-c").await;
    a.call("POST", "/v1/cluster/init", None).await;
    for n in [&b, &c] {
        let (_, body) = a.call("POST", "/v1/cluster/tokens", None).await;
        let t = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(join(n, t).await.0, 200);
    }
    let three = [
        ("host-a", "alive"),
        ("host-b", "alive"),
        ("host-c", "alive"),
    ];
    wait_nodes(&a, &three, Duration::from_secs(10)).await;
    let keys = |n: &Node| {
        berth::cluster::keys::Keyring::load(&n.dir.path().join("data/cluster.key"))
            .unwrap()
            .unwrap()
    };
    let old = keys(&a).sealing;
    c.stop().await;
    wait_nodes(
        &a,
        &[("host-a", "alive"), ("host-b", "alive"), ("host-c", "lost")],
        Duration::from_secs(15),
    )
    .await;
    let (s, body) = a.call("POST", "/v1/cluster/rotate-key", None).await;
    assert_eq!(s, 200, "{body}");
    let (ka, kb) = (keys(&a), keys(&b));
    assert_eq!(ka, kb, "a and b hold the same keys");
    assert_eq!(ka.keys.len(), 1, "the old key is retired");
    assert_ne!(ka.sealing, old);
    // They still hear each other (and only through the new key).
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_nodes(
        &b,
        &[("host-a", "alive"), ("host-b", "alive"), ("host-c", "lost")],
        Duration::from_secs(5),
    )
    .await;
    // c comes back with the retired key.
    let Node { dir, engine, .. } = c;
    let cfg = config_as(dir.path(), "host-c", Some(c_addr));
    let c = Node::start_with(dir, engine, cfg).await;
    assert_eq!(keys(&c).sealing, old);
    let start = Instant::now();
    loop {
        let (_, events) = c.call("GET", "/v1/events?limit=50", None).await;
        if events.contains("rotated while this host was away") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "c never said it is stranded: {events}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, nodes) = a.call("GET", "/v1/nodes", None).await;
    assert!(
        !node_states(&nodes).contains(&("host-c".to_string(), "alive".to_string())),
        "{nodes}"
    );
    let (_, metrics) = a.call("GET", "/metrics", None).await;
    assert!(
        !metrics.contains("berth_gossip_packets_dropped_total{reason=\"unknown_key\"} 0"),
        "a dropped c's packets: {metrics}"
    );
}

/// Jobs: the seed's batch shape (s1 over 3 containers, s2 over 2 after it) runs s2 only once
/// every s1 container exited 0, finishes, and removes the finished containers; a container
/// that keeps failing is retried `retry_count` times, then the job fails and s2 is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_tasks_in_order_retries_and_fails_as_the_seed_says() {
    let n = Node::start().await;
    n.engine.publish(&["busybox:1.36"]);
    let template = "labels:\n  aliyun.project_type: batch\nservices:\n  s1:\n    image: busybox:1.36\n    labels:\n      aliyun.scale: \"3\"\n      aliyun.retry_count: \"1\"\n  s2:\n    image: busybox:1.36\n    labels:\n      aliyun.scale: \"2\"\n      aliyun.depends: s1\n";
    let (s, body) = n.deploy("etl", template).await;
    assert_eq!(s, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["job_run"], 1, "{body}");
    let running = |n: &Node, prefix: &str| {
        n.engine
            .instances()
            .iter()
            .filter(|i| i.name.starts_with(prefix) && i.state == InstanceState::Running)
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
    };
    until("s1's three containers", Duration::from_secs(10), || {
        running(&n, "etl_s1_").len() == 3
    })
    .await;
    assert!(running(&n, "etl_s2_").is_empty(), "s2 waits for s1");
    n.engine.exit("etl_s1_1.1.1", 0);
    n.engine.exit("etl_s1_2.1.1", 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        running(&n, "etl_s2_").is_empty(),
        "s2 waits for every s1 container"
    );
    n.engine.exit("etl_s1_3.1.1", 0);
    until("s2's two containers", Duration::from_secs(10), || {
        running(&n, "etl_s2_").len() == 2
    })
    .await;
    n.engine.exit("etl_s2_1.1.1", 0);
    n.engine.exit("etl_s2_2.1.1", 0);
    let runs = wait_body(
        &n,
        "/v1/apps/etl/runs",
        "run 1 finished",
        Duration::from_secs(10),
        |v| v[0]["state"] == "finished",
    )
    .await;
    assert_eq!(runs[0]["tasks"]["s2"], "finished", "{runs}");
    assert_eq!(runs[0]["attempts"].as_array().map(Vec::len), Some(5));
    // remove-finished: every container of the run goes (their logs were read).
    until(
        "finished containers removed",
        Duration::from_secs(10),
        || !n.engine.instances().iter().any(|i| i.app == "etl"),
    )
    .await;
    // Run 2: slot 2 of s1 fails twice (retry_count 1): the task fails, s2 is skipped.
    let (s, body) = n.call("POST", "/v1/apps/etl/job/run", None).await;
    assert_eq!(s, 200, "{body}");
    until("run 2's s1", Duration::from_secs(10), || {
        running(&n, "etl_s1_").len() == 3
    })
    .await;
    n.engine.exit("etl_s1_1.2.1", 0);
    n.engine.exit("etl_s1_3.2.1", 0);
    n.engine.exit("etl_s1_2.2.1", 3);
    until(
        "the retry after its backoff",
        Duration::from_secs(10),
        || running(&n, "etl_s1_2.2.2").len() == 1,
    )
    .await;
    n.engine.exit("etl_s1_2.2.2", 4);
    let runs = wait_body(
        &n,
        "/v1/apps/etl/runs",
        "run 2 failed",
        Duration::from_secs(10),
        |v| v[0]["state"] == "failed",
    )
    .await;
    assert_eq!(runs[0]["run"], 2);
    assert_eq!(runs[0]["tasks"]["s1"], "failed", "{runs}");
    assert_eq!(runs[0]["tasks"]["s2"], "skipped", "{runs}");
    assert!(
        runs[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited 4")),
        "{runs}"
    );
    assert!(running(&n, "etl_s2_").is_empty());
    // The failed containers stay (remove-finished), the finished ones go.
    until(
        "only the failed containers left",
        Duration::from_secs(10),
        || {
            let mut left: Vec<String> = n
                .engine
                .instances()
                .iter()
                .filter(|i| i.app == "etl")
                .map(|i| i.name.clone())
                .collect();
            left.sort();
            left == ["etl_s1_2.2.1", "etl_s1_2.2.2"]
        },
    )
    .await;
    let (_, apps) = n.call("GET", "/v1/apps", None).await;
    assert!(apps.contains("run 2 failed"), "{apps}");
    let (_, events) = n.call("GET", "/v1/events?app=etl", None).await;
    for said in [
        "run 1 finished",
        "retrying s1 slot 2",
        "task s2 skipped",
        "run 2 failed",
    ] {
        assert!(events.contains(said), "{said}: {events}");
    }
    // Cancel: a run whose container hangs ends failed, reason cancelled.
    let (s, _) = n.call("POST", "/v1/apps/etl/job/run", None).await;
    assert_eq!(s, 200);
    until("run 3's s1", Duration::from_secs(10), || {
        running(&n, "etl_s1_").len() == 3
    })
    .await;
    let (s, body) = n.call("POST", "/v1/apps/etl/job/cancel", None).await;
    assert_eq!(s, 200, "{body}");
    let (_, runs) = n.call("GET", "/v1/apps/etl/runs", None).await;
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[0]["state"], "failed");
    assert_eq!(runs[0]["reason"], "cancelled");
    let (s, body) = n.call("POST", "/v1/apps/etl/job/suspend", None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("no schedule"), "{body}");
    // `berth stop` of a job cancels its running run and stops its containers.
    let (s, _) = n.call("POST", "/v1/apps/etl/job/run", None).await;
    assert_eq!(s, 200);
    until("run 4's s1", Duration::from_secs(10), || {
        running(&n, "etl_s1_").len() == 3
    })
    .await;
    let (s, body) = n.call("POST", "/v1/apps/etl/stop", None).await;
    assert_eq!(s, 200, "{body}");
    wait_body(
        &n,
        "/v1/apps/etl/runs",
        "run 4 cancelled by the stop",
        Duration::from_secs(10),
        |v| v[0]["run"] == 4 && v[0]["reason"] == "the job was stopped",
    )
    .await;
    assert!(running(&n, "etl_s1_").is_empty());
}
