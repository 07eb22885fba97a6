//! Starts real `berth agent` processes against the real Docker engine, runs the real CLI,
//! and removes every container, network and volume an agent made when the test ends (also
//! when it fails: cleanup is in `Drop`).

use berth::wire::InstanceView;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "berth-test/busybox:latest";
/// Same busybox, but its default command keeps running (stands in for real server images).
pub const IDLE_IMAGE: &str = "berth-test/idle:latest";
/// Serves /www (index.html, license.txt) on port 80, like the web images the examples name.
pub const WEB_IMAGE: &str = "berth-test/web:latest";
/// busybox with socat: a UDP server (`scripts/lib.sh` build_udp_image).
pub const UDP_IMAGE: &str = "berth-test/udp:latest";
static SETUP: Once = Once::new();

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    docker_ok_on(None, args)
}

/// `docker` against `host` (a bed host's engine socket) or this machine's engine.
pub fn docker_ok_on(host: Option<&str>, args: &[&str]) -> String {
    let mut c = Command::new("docker");
    if let Some(h) = host {
        c.args(["-H", h]);
    }
    let o = c.args(args).output().expect("the docker CLI runs");
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The engine must answer and the test image must exist; both are what scripts/test sets up.
pub fn ensure_engine_and_image() {
    SETUP.call_once(|| {
        let ping = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
        assert!(
            ping.status.success(),
            "no Docker engine answers: run scripts/test (it installs and starts dockerd): {}",
            String::from_utf8_lossy(&ping.stderr)
        );
        if !docker(&["image", "inspect", IMAGE]).status.success()
            || !docker(&["image", "inspect", IDLE_IMAGE]).status.success()
            || !docker(&["image", "inspect", WEB_IMAGE]).status.success()
            || !docker(&["image", "inspect", UDP_IMAGE]).status.success()
        {
            let root = env!("CARGO_MANIFEST_DIR");
            let st = Command::new("bash")
                .args(["-c", &format!(". {root}/scripts/lib.sh && ensure_images")])
                .status()
                .expect("bash runs");
            assert!(st.success(), "cannot build the test image");
        }
    });
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

pub struct Agent {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub node_id: String,
    child: Option<Child>,
    /// A `/proc/stat` the agent sees instead of the host's (a later boot time), set by
    /// [`Agent::restart_as_after_reboot`].
    proc_stat: Option<PathBuf>,
    /// `--node-name` ("e2e" unless [`Agent::start_named`]).
    pub name: String,
    /// Where it runs when not on this host: a network namespace of the multi-host bed, with
    /// that host's own engine.
    pub place: Option<Place>,
}

/// A host of the multi-host bed (tests/bed/hosts.sh) an agent runs on.
#[derive(Clone, Debug)]
pub struct Place {
    /// `/run/netns/<netns>`.
    pub netns: String,
    /// `unix://.../d.sock`: that host's own dockerd.
    pub docker_host: String,
    /// Extra environment for the agent (a test switch).
    pub env: Vec<(String, String)>,
}

impl Place {
    /// `cmd` run inside the host's network namespace.
    fn wrap(&self, cmd: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns)).arg(cmd);
        c
    }
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with_config("")
    }

    /// Starts an agent with this `berth.toml` (empty: no config file).
    pub fn start_with_config(toml: &str) -> Agent {
        ensure_engine_and_image();
        Agent::start_in(tempfile::tempdir().expect("tempdir"), toml)
    }

    /// Starts an agent whose data dir is a tmpfs of `size_mib` (a small disk to fill).
    pub fn start_on_small_disk(toml: &str, size_mib: u32) -> Agent {
        ensure_engine_and_image();
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount")
            .success();
        assert!(ok, "cannot mount a tmpfs for the data dir");
        Agent::start_in(dir, toml)
    }

    /// Starts an agent named `name` (a cluster member) with this `berth.toml`.
    pub fn start_named(name: &str, toml: &str) -> Agent {
        ensure_engine_and_image();
        let dir = tempfile::tempdir().expect("tempdir");
        if !toml.is_empty() {
            std::fs::write(dir.path().join("berth.toml"), toml).expect("write config");
        }
        let mut a = Agent {
            dir,
            port: free_port(),
            node_id: String::new(),
            child: None,
            proc_stat: None,
            name: name.into(),
            place: None,
        };
        a.spawn_fresh();
        a
    }

    /// Starts an agent named `name` on a host of the multi-host bed: in its network
    /// namespace, over its engine, its API on that namespace's 127.0.0.1:7878.
    pub fn start_placed(name: &str, place: Place, toml: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("berth.toml"), toml).expect("write config");
        let mut a = Agent {
            dir,
            port: 7878,
            node_id: String::new(),
            child: None,
            proc_stat: None,
            name: name.into(),
            place: Some(place),
        };
        a.spawn();
        a
    }

    /// A command (`berth`, `curl`) as this agent's host runs it.
    fn command(&self, cmd: &str) -> Command {
        match &self.place {
            Some(p) => p.wrap(cmd),
            None => Command::new(cmd),
        }
    }

    /// Starts an agent on data dir `dir` with this `berth.toml` (empty: no config file).
    fn start_in(dir: tempfile::TempDir, toml: &str) -> Agent {
        if !toml.is_empty() {
            std::fs::write(dir.path().join("berth.toml"), toml).expect("write config");
        }
        let mut a = Agent {
            dir,
            port: free_port(),
            node_id: String::new(),
            child: None,
            proc_stat: None,
            name: "e2e".into(),
            place: None,
        };
        a.spawn_fresh();
        a
    }

    pub fn api(&self) -> String {
        match self.ca() {
            // The test certificate names localhost.
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The API's certificate when its berth.toml serves it over TLS (`tls_cert = "..."`).
    pub fn ca(&self) -> Option<PathBuf> {
        let toml = std::fs::read_to_string(self.dir.path().join("berth.toml")).ok()?;
        toml.lines()
            .find_map(|l| l.trim().strip_prefix("tls_cert"))
            .and_then(|v| v.split('"').nth(1))
            .map(PathBuf::from)
    }

    /// An HTTP client for this agent's API (trusting its certificate with TLS).
    fn http(&self) -> ureq::Agent {
        let Some(ca) = self.ca() else {
            return http_agent();
        };
        let pem = std::fs::read(&ca).expect("test certificate");
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            )
            .build()
            .into()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api.token"))
            .expect("token file")
            .trim()
            .to_string()
    }

    /// Starts a new agent on a port [`free_port`] found free. Another process may take that
    /// port between the probe and the agent's bind; the agent then exits with "Address already
    /// in use" and is started again on another port (a restart keeps its port: [`Agent::spawn`]).
    fn spawn_fresh(&mut self) {
        for _ in 0..4 {
            if self.spawn_once(true) {
                return;
            }
            self.port = free_port();
        }
        self.spawn();
    }

    fn spawn(&mut self) {
        self.spawn_once(false);
    }

    /// Starts the agent and waits for its health answer; `false` (with `retry_port`) when it
    /// exited because its API port was taken.
    fn spawn_once(&mut self, retry_port: bool) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log file");
        let mut cmd = match &self.proc_stat {
            // In a mount namespace of its own, over a /proc/stat with a later boot time.
            Some(stat) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg("mount --bind \"$1\" /proc/stat && shift && exec \"$@\"")
                    .arg("sh")
                    .arg(stat)
                    .arg(bin());
                c
            }
            None => self.command(bin()),
        };
        if let Some(p) = &self.place {
            cmd.envs(p.env.iter().map(|(k, v)| (k, v)));
        }
        let child = cmd
            .args(["agent", "--data-dir"])
            .arg(self.dir.path())
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--node-name",
                &self.name,
            ])
            .args(self.config_args())
            .args(
                self.place
                    .iter()
                    .flat_map(|p| ["--docker-host".to_string(), p.docker_host.clone()]),
            )
            .env("BERTH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = self.get_raw("/v1/health", false) {
                let h: berth::wire::Health = serde_json::from_str(&body).expect("health json");
                self.node_id = h.node_id;
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited && retry_port && self.log().contains("Address already in use") {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not answer; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn config_args(&self) -> Vec<String> {
        let p = self.dir.path().join("berth.toml");
        if p.exists() {
            vec!["--config".into(), p.display().to_string()]
        } else {
            Vec::new()
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// kill -9, as a crash or power loss would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// CPU seconds (user + system) the agent process has used.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.as_ref().map(|c| c.id()).expect("agent running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
        // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        ticks / 100.0
    }

    /// What the agent's open file descriptors point at (`/proc/<pid>/fd/*` links).
    pub fn open_files(&self) -> Vec<String> {
        let pid = self.child.as_ref().map(|c| c.id()).expect("agent running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .map(|l| l.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The agent's peak resident memory so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).expect("agent running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("proc status")
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Sends SIGTERM; returns whether the agent exited within `within`.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the running agent.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().map(|c| c.id()).expect("agent running");
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(st.success(), "kill -{sig} {pid}");
    }

    /// Starts the agent again on the same data dir (after `terminate`, or `kill9` first).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Kills the agent and starts it again as if the host had booted now: it reads a
    /// `/proc/stat` whose boot time is the present (in a mount namespace of its own). What a
    /// shutdown does to the containers is the caller's to do in between.
    pub fn restart_as_after_reboot(&mut self, between: impl FnOnce()) {
        self.kill9();
        between();
        std::thread::sleep(Duration::from_millis(1100));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let host = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let faked: String = host
            .lines()
            .map(|l| {
                if l.starts_with("btime ") {
                    format!("btime {now}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let path = self.dir.path().join("proc-stat-after-reboot");
        std::fs::write(&path, faked).expect("write the stat file");
        self.proc_stat = Some(path);
        self.spawn();
    }

    /// The CLI as a command not yet run (for one that keeps running, `logs -f`).
    pub fn follow_command(&self, args: &[&str]) -> Command {
        let mut c = self.command(bin());
        c.args(args)
            .env("BERTH_API", self.api())
            .env("BERTH_TOKEN_FILE", self.dir.path().join("api.token"))
            .env_remove("BERTH_TOKEN");
        if let Some(ca) = self.ca() {
            c.env("BERTH_CA_CERT", ca);
        }
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.follow_command(args).output().expect("cli runs")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({}):\n{}\n{}\nagent log:\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log(),
            self.where_it_runs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs the CLI and expects the exit code `code` (a command's own, through `exec`);
    /// returns its output.
    pub fn exits(&self, args: &[&str], code: i32) -> Output {
        let o = self.berth(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "berth {args:?}: stdout {:?}, stderr {:?}\nagent log:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log(),
            self.where_it_runs()
        );
        o
    }

    /// For a bed host, its namespace's addresses (what a failed bind saw), else nothing.
    fn where_it_runs(&self) -> String {
        let Some(p) = &self.place else {
            return String::new();
        };
        let addrs = self
            .command("ip")
            .args(["-4", "-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string());
        format!("\naddresses in /run/netns/{}:\n{addrs}", p.netns)
    }

    /// Runs the CLI and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            !o.status.success(),
            "berth {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn get_raw(&self, path: &str, auth: bool) -> Result<(u16, String), String> {
        if self.place.is_some() {
            return self.curl("GET", path, b"", auth);
        }
        let agent = self.http();
        let mut req = agent.get(format!("{}{path}", self.api()));
        if auth {
            req = req.header("Authorization", format!("Bearer {}", self.token()));
        }
        let mut r = req.call().map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    pub fn post_raw(&self, path: &str, body: &[u8], auth: bool) -> (u16, String) {
        if self.place.is_some() {
            return self.curl("POST", path, body, auth).expect("request sent");
        }
        let agent = self.http();
        let mut req = agent.post(format!("{}{path}", self.api()));
        if auth {
            req = req.header("Authorization", format!("Bearer {}", self.token()));
        }
        let mut r = req.send(body).expect("request sent");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    /// An HTTP request by curl inside the agent's namespace (a bed host's API is reachable
    /// only there).
    fn curl(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        auth: bool,
    ) -> Result<(u16, String), String> {
        use std::io::Write;
        let mut c = self.command("curl");
        c.args([
            "-sS",
            "-X",
            method,
            "--max-time",
            "30",
            "--data-binary",
            "@-",
        ])
        .args(["-w", "\n%{http_code}"]);
        if auth {
            c.args(["-H", &format!("Authorization: Bearer {}", self.token())]);
        }
        let mut child = c
            .arg(format!("{}{path}", self.api()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(body);
        }
        let o = child.wait_with_output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    pub fn ps(&self, app: &str) -> Vec<InstanceView> {
        serde_json::from_str(&self.ok(&["ps", app, "--json"])).expect("ps json")
    }

    pub fn running(&self, app: &str) -> Vec<InstanceView> {
        self.ps(app)
            .into_iter()
            .filter(|i| i.state == "running")
            .collect()
    }

    /// Writes a template into the agent's temp dir.
    pub fn template(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.yml"));
        std::fs::write(&p, yaml).expect("write template");
        p
    }

    pub fn deploy(&self, name: &str, yaml: &str) -> String {
        let p = self.template(name, yaml);
        self.ok(&[
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            name,
            "--timeout",
            "60",
        ])
    }

    /// Waits until `n` instances of `app` run; on timeout shows what the engine and the agent saw.
    pub fn wait_running(&self, app: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.running(app).len() != n {
            if Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "{app}: {n} running not reached in {timeout:?}\nengine: {:?}\nevents:\n{}\nagent log (newest first):\n{}",
                    self.engine_containers(app),
                    self.ok(&["events", app, "-n", "40"]),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker` against the engine this agent uses.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        docker_ok_on(self.place.as_ref().map(|p| p.docker_host.as_str()), args)
    }

    /// Containers of this node as the engine sees them (name -> state).
    pub fn engine_containers(&self, app: &str) -> Vec<(String, String)> {
        let out = self.docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=berth.node={}", self.node_id),
            "--filter",
            &format!("label=berth.app={app}"),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut v: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
        v.sort();
        v
    }

    /// The image ids of this node's running containers of `app`, sorted; empty when the
    /// engine's answer changed under the two calls (a container renamed or removed
    /// between them): callers poll.
    pub fn running_images(&self, app: &str) -> Vec<String> {
        let docker = || {
            let mut c = Command::new("docker");
            if let Some(p) = &self.place {
                c.args(["-H", &p.docker_host]);
            }
            c
        };
        let ids = self.docker_ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=berth.node={}", self.node_id),
            "--filter",
            &format!("label=berth.app={app}"),
            "--filter",
            "status=running",
        ]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let Ok(o) = docker()
            .args(["inspect", "-f", "{{.Image}}"])
            .args(&ids)
            .output()
        else {
            return Vec::new();
        };
        if !o.status.success() {
            return Vec::new();
        }
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

/// GET through the router with a Host header; returns (status, body, set-cookie).
pub fn router_get(
    router: u16,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, Option<String>) {
    router_get_at(&format!("127.0.0.1:{router}"), host, path, cookie)
}

/// GET through the router listening at `addr` (`ip:port`).
pub fn router_get_at(
    addr: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut req = http_agent()
        .get(format!("http://{addr}{path}"))
        .header("Host", host);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let mut r = req.call().expect("router answers");
    let status = r.status().as_u16();
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        r.body_mut().read_to_string().unwrap_or_default(),
        set_cookie,
    )
}

/// Where `n` requests for `host` + `path` through the router go: answer body -> count
/// (failures as `HTTP nnn`).
pub fn router_tally(
    router: u16,
    host: &str,
    path: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    router_tally_at(&format!("127.0.0.1:{router}"), host, path, n)
}

/// `router_tally` through the router listening at `addr` (`ip:port`).
pub fn router_tally_at(
    addr: &str,
    host: &str,
    path: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, body, _) = router_get_at(addr, host, path, None);
        let key = if status == 200 {
            body.trim().to_string()
        } else {
            format!("HTTP {status}")
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Containers a test made outside berth, removed when the test ends, also when it fails
/// (a leftover would keep its image "in use" for the prune test).
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.0.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// An HTTP client that returns error statuses instead of failing on them.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if self.node_id.is_empty() {
            return;
        }
        let label = format!("label=berth.node={}", self.node_id);
        // Twice: a create the engine was doing when the agent was killed lands a moment
        // later, and a leftover keeps its image "in use" for the prune test.
        for round in 0..2 {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            let ids = docker_ok(&["ps", "-aq", "--filter", &label]);
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.lines());
                let _ = docker(&args);
            }
        }
        for kind in ["network", "volume"] {
            let ids = docker_ok(&[kind, "ls", "-q", "--filter", &label]);
            for id in ids.lines() {
                let _ = docker(&[kind, "rm", id]);
            }
        }
        // Volumes the agent mounted on the host (their helpers end with the mount).
        unmount_under(self.dir.path());
    }
}

/// Unmounts everything mounted at or below `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let (exact, prefix) = (dir.display().to_string(), format!("{}/", dir.display()));
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix) || *p == exact)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

/// Reports a test (or part of one) as skipped, with the reason: on stderr and in
/// `target/tmp/skipped-tests.txt`, which scripts/test prints after the run.
pub fn skipped(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "SKIPPED {test}: {reason}");
    }
}

/// Requests in a loop on one keep-alive client until stopped; counts answers by tag and
/// every failure (non-200 or transport error).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(std::collections::BTreeMap<String, usize>, Vec<String>)>,
}

impl Load {
    /// Requests to `http://{addr}/v` with Host `host`.
    pub fn start_at(addr: String, host: &'static str) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let agent = http_agent();
            let (mut ok, mut failed) = (std::collections::BTreeMap::new(), Vec::new());
            while !s.load(Ordering::Relaxed) {
                let r = agent
                    .get(format!("http://{addr}/v"))
                    .header("Host", host)
                    .call();
                match r {
                    Ok(mut r) if r.status() == 200 => {
                        let body = r.body_mut().read_to_string().unwrap_or_default();
                        *ok.entry(body.trim().to_string()).or_insert(0) += 1;
                    }
                    Ok(mut r) => failed.push(format!(
                        "{}: {}",
                        r.status(),
                        r.body_mut().read_to_string().unwrap_or_default()
                    )),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        });
        Load { stop, handle }
    }

    pub fn finish(self) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("load thread")
    }
}
