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
        node_name: Some("inproc".into()),
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
        let daemon = Daemon::start(config(dir.path()), engine.clone())
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
        pos("create_network shop") < pos("create shop_db-001_1"),
        "{calls:?}"
    );
    assert!(
        pos("pull postgres:16") < pos("create shop_db-001_1"),
        "{calls:?}"
    );
    assert!(
        pos("create shop_db-001_1") < pos("create shop_web-001_1"),
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
    n.engine.kill("shop_web-001_2");
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
