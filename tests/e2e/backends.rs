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
        need("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['{target}']\n"
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
        let bin = moto_server();
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: scripts/test installs it (python3 -m venv ~/.cache/berth-test/moto && pip install 'moto[server]')"
        );
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s3 = S3 {
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
        format!("http://127.0.0.1:{}", self.port)
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
