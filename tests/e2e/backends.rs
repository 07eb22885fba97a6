//! Real metric back ends for the tests: InfluxDB 1.6 and Prometheus from Debian (installed by
//! scripts/test), each in a temp dir on free ports.

use super::harness::{free_port, http_agent, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn need(bin: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "{bin} is not installed: scripts/test installs it (apt-get install influxdb prometheus)"
    );
}

pub struct Influx {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Influx {
    pub fn start() -> Influx {
        need("influxd");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("influxdb.conf"),
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n",
                free_port()
            ),
        )
        .expect("influx config");
        let mut i = Influx {
            dir,
            port,
            child: None,
        };
        i.spawn();
        i.query("CREATE DATABASE telegraf");
        i
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("influxd.log")).expect("log");
        self.child = Some(
            Command::new("influxd")
                .arg("-config")
                .arg(self.dir.path().join("influxdb.conf"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("influxd starts"),
        );
        let ping = format!("{}/ping", self.url());
        wait_until("influxd answers", Duration::from_secs(30), || {
            http_agent()
                .get(&ping)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 204)
        });
    }

    /// Stops the server (SIGKILL: as an outage would), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs an InfluxQL statement against `telegraf`; returns the first result.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let mut r = http_agent()
            .post(format!("{}/query", self.url()))
            .query("db", "telegraf")
            .query("epoch", "ns")
            .send_form([("q", q)])
            .expect("influx query");
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
        v["results"][0].clone()
    }

    /// The rows of a SELECT: each row's values.
    pub fn rows(&self, q: &str) -> Vec<Vec<serde_json::Value>> {
        let r = self.query(q);
        r["series"]
            .as_array()
            .map(|s| {
                s.iter()
                    .flat_map(|x| x["values"].as_array().cloned().unwrap_or_default())
                    .map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Prometheus {
    /// Config and storage; removed with the server.
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Prometheus {
    /// Scrapes `target` (HOST:PORT) at /metrics every second.
    pub fn start(target: &str) -> Prometheus {
        Prometheus::start_path(target, "/metrics")
    }

    /// Scrapes `target` (HOST:PORT) at `path` every second.
    pub fn start_path(target: &str, path: &str) -> Prometheus {
        need("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: berth\n    metrics_path: {path}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            _dir: dir,
            port,
            child,
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_until("prometheus is ready", Duration::from_secs(30), || {
            http_agent()
                .get(&ready)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
        });
        p
    }

    /// `/api/v1/query` -> the result vector.
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let Ok(mut r) = http_agent()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query("query", q)
            .call()
        else {
            return Vec::new();
        };
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                .unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local S3 API server (`moto_server` from PyPI, installed by scripts/test into a venv)
/// with one bucket.
pub struct S3 {
    pub ip: String,
    pub port: u16,
    pub bucket: String,
    child: Child,
}

/// Where scripts/test puts moto's venv (`BERTH_MOTO` overrides).
pub fn moto_server() -> String {
    std::env::var("BERTH_MOTO").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/berth-test/moto/bin/moto_server")
    })
}

impl S3 {
    pub fn start(bucket: &str) -> S3 {
        S3::start_on("127.0.0.1", bucket)
    }

    /// Listening on `ip` (the multi-host bed's hosts reach this machine at its bridge end).
    pub fn start_on(ip: &str, bucket: &str) -> S3 {
        let bin = moto_server();
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: scripts/test installs it (python3 -m venv ~/.cache/berth-test/moto && pip install 'moto[server]')"
        );
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", ip, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s3 = S3 {
            ip: ip.to_string(),
            port,
            bucket: bucket.to_string(),
            child,
        };
        wait_until("moto_server answers", Duration::from_secs(30), || {
            http_agent()
                .put(format!("{}/{bucket}", s3.url()))
                .send_empty()
                .is_ok_and(|r| r.status().is_success())
        });
        s3
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    /// An object's body, None when there is none.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut r = http_agent()
            .get(format!("{}/{}/{key}", self.url(), self.bucket))
            .call()
            .ok()?;
        r.status()
            .is_success()
            .then(|| r.body_mut().read_to_string().unwrap_or_default())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A userspace NFS server (Debian's nfs-ganesha with its VFS backend, installed by scripts/test)
/// exporting a fresh directory as `/export` (NFSv4 pseudo path) on a port of its own. It
/// registers with rpcbind, which it starts when none runs.
pub struct Nfs {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Nfs {
    /// The server, or why there can be none here.
    pub fn start() -> Result<Nfs, String> {
        for bin in ["ganesha.nfsd", "rpcbind"] {
            if !on_path(bin) {
                return Err(format!(
                    "{bin} is not installed: scripts/test installs nfs-ganesha-vfs and rpcbind"
                ));
            }
        }
        if !Command::new("pgrep")
            .args(["-x", "rpcbind"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("rpcbind").arg("-w").status();
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let export = dir.path().join("export");
        std::fs::create_dir(&export).map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = format!(
            "NFS_CORE_PARAM {{ NFS_Port = {port}; MNT_Port = {mnt}; NLM_Port = {nlm}; Rquota_Port = {rq}; \
             Bind_Addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Protocols = 4; }}\n\
             NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = {root}/recovery; }}\n\
             EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Access_Type = RW; \
             Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP; FSAL {{ Name = VFS; }} }}\n",
            mnt = free_port(),
            nlm = free_port(),
            rq = free_port(),
            root = dir.path().display(),
            export = export.display(),
        );
        let conf_path = dir.path().join("ganesha.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let log = dir.path().join("ganesha.log");
        let child = Command::new("ganesha.nfsd")
            .args(["-F", "-N", "NIV_EVENT", "-f"])
            .arg(&conf_path)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(dir.path().join("ganesha.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ganesha.nfsd: {e}"))?;
        let nfs = Nfs { port, dir, child };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("ganesha.nfsd did not listen within 60 s:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(nfs)
    }

    /// The exported directory on this host.
    pub fn export(&self) -> std::path::PathBuf {
        self.dir.path().join("export")
    }

    /// Names in the export's root as an NFSv4 client sees them (libnfs's userspace `nfs-ls`,
    /// so the server is checked even where the kernel has no NFS client).
    pub fn ls(&self) -> Result<String, String> {
        let out = Command::new("nfs-ls")
            .arg(format!(
                "nfs://127.0.0.1/export?version=4&nfsport={}",
                self.port
            ))
            .output()
            .map_err(|e| format!("nfs-ls: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|d| std::path::Path::new(d).join(bin).is_file())
}

impl Drop for Nfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private registry: Debian's `docker-registry` (distribution) with htpasswd basic auth,
/// plain HTTP on 127.0.0.1 (which the engine takes as an insecure registry by default), its
/// storage in a temporary directory. `push` puts a local image into it under a temporary
/// docker client config, so this machine's own logins are neither used nor changed.
pub struct Registry {
    pub ip: String,
    /// The engine pushes go through (None: this machine's).
    via: Option<String>,
    pub port: u16,
    pub user: String,
    pub password: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_at("127.0.0.1", None)
    }

    /// A registry listening on `ip` (a bed's bridge address), pushed to through the engine
    /// at `via` (a bed host's, which takes the bed's range as insecure registries).
    pub fn start_at(ip: &str, via: Option<&str>) -> Registry {
        for bin in ["docker-registry", "htpasswd"] {
            assert!(
                on_path(bin),
                "{bin} is missing: scripts/test installs docker-registry and apache2-utils"
            );
        }
        let dir = tempfile::tempdir().expect("dir");
        let (user, password) = ("ci-pusher".to_string(), "s3cret-Registry-Pw".to_string());
        let htpasswd = dir.path().join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbc", htpasswd.to_str().expect("path"), &user, &password])
            .output()
            .expect("htpasswd");
        assert!(made.status.success(), "htpasswd: {made:?}");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().expect("path")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let r = Registry {
            ip: ip.to_string(),
            via: via.map(str::to_string),
            port,
            user,
            password,
            dir,
            child,
        };
        wait_until("the registry answers", Duration::from_secs(30), || {
            matches!(
                http_agent()
                    .get(format!("http://{ip}:{port}/v2/"))
                    .call()
                    .map(|r| r.status().as_u16()),
                Ok(401)
            )
        });
        r
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn docker(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut c = Command::new("docker");
        if let Some(h) = &self.via {
            c.args(["-H", h]);
        }
        let mut child = c
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("docker")
    }

    /// Pushes local image `from` as `repo:tag` on this registry and removes the local copy
    /// of that name (so a deploy must pull it); returns the pushed reference.
    pub fn push(&self, from: &str, repo_tag: &str) -> String {
        let target = format!("{}/{repo_tag}", self.host());
        let login = self.docker(
            &["login", &self.host(), "-u", &self.user, "--password-stdin"],
            Some(&self.password),
        );
        assert!(login.status.success(), "docker login: {login:?}");
        for args in [
            vec!["tag", from, &target],
            vec!["push", &target],
            vec!["rmi", &target],
        ] {
            let out = self.docker(&args, None);
            assert!(out.status.success(), "docker {args:?}: {out:?}");
        }
        target
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
