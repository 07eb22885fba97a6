//! Sinks: InfluxDB (v1 `/write`, v2 `/api/v2/write`) and syslog (RFC 5424 over UDP/TCP),
//! each fed from the durable outbox by a sender thread of its own.
//!
//! Delivery rules: 2xx deletes the batch; 400/422 (the data's fault) drops it and records
//! why; 401/403/404 keeps it and raises an event; 429, 5xx and connection errors keep it and
//! retry with exponential backoff, waiting at least what `Retry-After` asks.

use crate::store::Store;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Largest batch sent at once.
pub const MAX_BATCH_LINES: i64 = 5000;

/// `[[metrics.influxdb]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSink {
    pub url: String,
    /// "v1" (default) or "v2".
    #[serde(default)]
    pub api: Option<String>,
    /// v1: database (default "telegraf") and retention policy, user and password.
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (read at load and on reload), so berth.toml holds no secret.
    pub password_file: Option<std::path::PathBuf>,
    /// v2: organisation, bucket and token.
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<String>,
    /// A file holding the token (read at load and on reload).
    pub token_file: Option<std::path::PathBuf>,
    /// Also forward collected log lines (measurement `berth_log`). Default false.
    #[serde(default)]
    pub logs: bool,
}

impl InfluxSink {
    /// A per-service add-on (`monitoring.addon.influxdb: URL`): v1, database `telegraf`.
    pub fn addon(url: &str) -> InfluxSink {
        InfluxSink {
            url: url.trim_end_matches('/').to_string(),
            api: None,
            database: None,
            retention_policy: None,
            username: None,
            password: None,
            password_file: None,
            org: None,
            bucket: None,
            token: None,
            token_file: None,
            logs: false,
        }
    }

    pub fn v2(&self) -> bool {
        self.api.as_deref() == Some("v2")
    }

    /// Reads `password_file` and `token_file` into `password` and `token` (one trailing
    /// newline dropped). Giving both a value and its file is refused.
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        let url = self.url.clone();
        for (what, value, file) in [
            ("password", &mut self.password, &self.password_file),
            ("token", &mut self.token, &self.token_file),
        ] {
            let Some(path) = file else { continue };
            if value.is_some() {
                return Err(format!(
                    "[[metrics.influxdb]] {url}: give {what} or {what}_file, not both"
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "[[metrics.influxdb]] {url}: cannot read {what}_file {}: {e}",
                    path.display()
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err(format!(
                    "[[metrics.influxdb]] {url}: {what}_file {} is empty",
                    path.display()
                ));
            }
            *value = Some(text.to_string());
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "[[metrics.influxdb]] url {:?}: write http://HOST:PORT",
                self.url
            ));
        }
        match self.api.as_deref() {
            None | Some("v1") => {}
            Some("v2") => {
                if self.org.is_none() || self.bucket.is_none() || self.token.is_none() {
                    return Err(format!(
                        "[[metrics.influxdb]] {}: api = \"v2\" needs org, bucket and token",
                        self.url
                    ));
                }
            }
            Some(other) => {
                return Err(format!(
                    "[[metrics.influxdb]] {}: api {other:?} is unknown: write \"v1\" or \"v2\"",
                    self.url
                ));
            }
        }
        Ok(())
    }

    /// The outbox key: where the lines go (no secrets in it).
    pub fn key(&self) -> String {
        match self.v2() {
            true => format!(
                "influxdb-v2 {} {}/{}",
                self.url,
                self.org.as_deref().unwrap_or(""),
                self.bucket.as_deref().unwrap_or("")
            ),
            false => format!("influxdb {} {}", self.url, self.database()),
        }
    }

    fn database(&self) -> &str {
        self.database.as_deref().unwrap_or("telegraf")
    }
}

/// `[[logs.syslog]]`: `address = "udp://HOST:PORT"` or `"tcp://HOST:PORT"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    pub address: String,
    /// Facility number (default 1, user-level messages).
    #[serde(default)]
    pub facility: Option<u8>,
}

impl SyslogSink {
    pub fn validate(&self) -> Result<(), String> {
        let (proto, addr) = self.address.split_once("://").unwrap_or(("", ""));
        if !matches!(proto, "udp" | "tcp") || addr.is_empty() {
            return Err(format!(
                "[[logs.syslog]] address {:?}: write udp://HOST:PORT or tcp://HOST:PORT",
                self.address
            ));
        }
        if self.facility.is_some_and(|f| f > 23) {
            return Err("[[logs.syslog]] facility: 0-23".into());
        }
        Ok(())
    }

    pub fn key(&self) -> String {
        format!("syslog {}", self.address)
    }

    pub fn facility(&self) -> u8 {
        self.facility.unwrap_or(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
// A handful of sinks exist at a time: their size does not matter, boxing would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Sink {
    Influx(InfluxSink),
    Syslog(SyslogSink),
    /// An alarm rule's `notify = webhook:URL`: each queued row is one JSON notice, POSTed
    /// alone.
    Webhook(String),
}

impl Sink {
    pub fn key(&self) -> String {
        match self {
            Sink::Influx(s) => s.key(),
            Sink::Syslog(s) => s.key(),
            Sink::Webhook(url) => format!("webhook {url}"),
        }
    }
}

/// POSTs one JSON notice to a webhook. A 4xx other than 408/429 is the receiver refusing
/// it (dropped, said); anything else is retried.
pub fn send_webhook(agent: &ureq::Agent, url: &str, body: &[u8]) -> Outcome {
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("berth/", env!("CARGO_PKG_VERSION")))
        .send(body)
    {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            match status {
                200..=299 => Outcome::Delivered,
                408 | 429 => Outcome::Retry(format!("HTTP {status}"), None),
                400..=499 => Outcome::Refused(format!(
                    "HTTP {status}: {}",
                    text.trim().chars().take(300).collect::<String>()
                )),
                _ => Outcome::Retry(format!("HTTP {status}"), None),
            }
        }
        Err(e) => Outcome::Retry(format!("cannot reach {url}: {e}"), None),
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// The sink refused the data itself (400/422): drop it, say why.
    Refused(String),
    /// Configuration is wrong (401/403/404): keep the data, tell the operator.
    Hold(String),
    /// Try again later, no sooner than the given wait.
    Retry(String, Option<Duration>),
}

/// Maps an HTTP answer to an outcome.
pub fn classify(status: u16, body: &str, retry_after: Option<&str>) -> Outcome {
    let detail = || {
        format!(
            "HTTP {status}: {}",
            body.trim().chars().take(300).collect::<String>()
        )
    };
    match status {
        200..=299 => Outcome::Delivered,
        400 | 413 | 422 => Outcome::Refused(detail()),
        401 | 403 | 404 => Outcome::Hold(detail()),
        _ => Outcome::Retry(
            detail(),
            retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        ),
    }
}

/// Exponential backoff from 1 s to 5 min.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    pub fn wait(&mut self, at_least: Option<Duration>) -> Duration {
        let w = self.next.max(at_least.unwrap_or_default());
        self.next = (self.next * 2).min(Duration::from_secs(300));
        w
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// Sends one batch to InfluxDB.
pub fn send_influx(agent: &ureq::Agent, s: &InfluxSink, body: &[u8]) -> Outcome {
    let base = s.url.trim_end_matches('/');
    let req = if s.v2() {
        agent
            .post(format!("{base}/api/v2/write"))
            .query("org", s.org.as_deref().unwrap_or(""))
            .query("bucket", s.bucket.as_deref().unwrap_or(""))
            .query("precision", "ns")
            .header(
                "Authorization",
                format!("Token {}", s.token.as_deref().unwrap_or("")),
            )
    } else {
        let mut r = agent
            .post(format!("{base}/write"))
            .query("db", s.database())
            .query("precision", "ns");
        if let Some(rp) = &s.retention_policy {
            r = r.query("rp", rp);
        }
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            use base64_lite::encode;
            r = r.header(
                "Authorization",
                format!("Basic {}", encode(&format!("{u}:{p}"))),
            );
        }
        r
    };
    let resp = req
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Encoding", "gzip")
        .send(&gzip(body)[..]);
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = r.body_mut().read_to_string().unwrap_or_default();
            classify(status, &text, retry.as_deref())
        }
        Err(e) => Outcome::Retry(format!("cannot reach {base}: {e}"), None),
    }
}

/// Sends one batch of RFC 5424 messages (one per line of `body`).
pub fn send_syslog(s: &SyslogSink, body: &[u8]) -> Outcome {
    let (proto, addr) = s.address.split_once("://").unwrap_or(("", ""));
    let fail = |e: std::io::Error| Outcome::Retry(format!("syslog {}: {e}", s.address), None);
    let msgs = body.split(|b| *b == b'\n').filter(|m| !m.is_empty());
    if proto == "udp" {
        let sock = match std::net::UdpSocket::bind(("0.0.0.0", 0)) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        for m in msgs {
            if let Err(e) = sock.send_to(&m[..m.len().min(65_000)], addr) {
                return fail(e);
            }
        }
        return Outcome::Delivered;
    }
    let mut conn = match std::net::TcpStream::connect(addr) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    // Octet counting (RFC 6587): "LEN SP MSG".
    let mut framed = Vec::with_capacity(body.len() + 1024);
    for m in msgs {
        framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
        framed.extend_from_slice(m);
    }
    match conn.write_all(&framed).and_then(|_| conn.flush()) {
        Ok(()) => Outcome::Delivered,
        Err(e) => fail(e),
    }
}

/// Tiny standard base64 (for HTTP basic auth only).
mod base64_lite {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Reports a sink's state changes as events: (kind, message).
pub type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// What a sender is told to do: run, drain (deliver what is queued, then end) or stop.
#[derive(Debug, Default)]
pub struct Mode(AtomicU8);

impl Mode {
    pub const RUN: u8 = 0;
    pub const DRAIN: u8 = 1;
    pub const STOP: u8 = 2;

    pub fn set(&self, m: u8) {
        self.0.store(m, Ordering::Relaxed);
    }

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs a sink's sender until told to stop: peek, send, settle, back off. Told to drain, it
/// sends at once (no back-off wait) until the queue is empty or a send does not deliver.
pub fn run_sender(store: Arc<Store>, sink: Sink, report: Report, mode: Arc<Mode>) {
    let key = sink.key();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut backoff = Backoff::default();
    let mut failing: Option<String> = None;
    let sleep = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until && mode.get() == Mode::RUN {
            std::thread::sleep(Duration::from_millis(100).min(d));
        }
    };
    while mode.get() != Mode::STOP {
        let draining = mode.get() == Mode::DRAIN;
        let rows = match store.outbox_peek(&key, MAX_BATCH_LINES) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(sink = %key, error = %e, "cannot read the outbox");
                sleep(Duration::from_secs(5));
                continue;
            }
        };
        if rows.is_empty() {
            if draining {
                return;
            }
            sleep(Duration::from_millis(500));
            continue;
        }
        // A webhook takes one notice per request.
        let rows = match &sink {
            Sink::Webhook(_) => &rows[..1],
            _ => &rows[..],
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let body: Vec<u8> = rows.iter().flat_map(|r| r.body.iter().copied()).collect();
        let outcome = match &sink {
            Sink::Influx(s) => send_influx(&agent, s, &body),
            Sink::Syslog(s) => send_syslog(s, &body),
            Sink::Webhook(url) => send_webhook(&agent, url, &body),
        };
        if draining && outcome != Outcome::Delivered {
            // Kept in the outbox for the next start.
            return;
        }
        match outcome {
            Outcome::Delivered => {
                if let Err(e) = store.outbox_done(&key, &ids, None) {
                    tracing::warn!(sink = %key, error = %e, "cannot clear the outbox");
                }
                backoff.reset();
                if failing.take().is_some() {
                    report(&format!("{key}: delivering again"));
                }
            }
            Outcome::Refused(why) => {
                let n: i64 = rows.iter().map(|r| r.lines).sum();
                report(&format!("{key} refused {n} lines, dropped: {why}"));
                if let Err(e) = store.outbox_done(&key, &ids, Some(&why)) {
                    tracing::warn!(sink = %key, error = %e, "cannot clear the outbox");
                }
            }
            Outcome::Hold(why) | Outcome::Retry(why, _)
                if failing.as_deref() != Some(why.as_str()) =>
            {
                report(&format!("{key}: {why}; lines kept in the outbox, retrying"));
                failing = Some(why);
                sleep(backoff.wait(None));
            }
            Outcome::Retry(_, after) => sleep(backoff.wait(after)),
            Outcome::Hold(_) => sleep(backoff.wait(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        assert_eq!(classify(204, "", None), Outcome::Delivered);
        assert!(
            matches!(classify(400, "partial write", None), Outcome::Refused(w) if w.contains("partial write"))
        );
        assert!(matches!(classify(401, "", None), Outcome::Hold(_)));
        assert!(matches!(
            classify(404, "database not found", None),
            Outcome::Hold(_)
        ));
        assert_eq!(
            classify(429, "", Some("7")),
            Outcome::Retry("HTTP 429: ".into(), Some(Duration::from_secs(7)))
        );
        assert!(matches!(classify(503, "", None), Outcome::Retry(_, None)));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_honours_retry_after() {
        let mut b = Backoff::default();
        assert_eq!(b.wait(None), Duration::from_secs(1));
        assert_eq!(b.wait(None), Duration::from_secs(2));
        assert_eq!(
            b.wait(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        for _ in 0..20 {
            b.wait(None);
        }
        assert_eq!(b.wait(None), Duration::from_secs(300));
        b.reset();
        assert_eq!(b.wait(None), Duration::from_secs(1));
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let (pw, tok) = (dir.path().join("pw"), dir.path().join("tok"));
        std::fs::write(&pw, "s3cret\n").expect("write");
        std::fs::write(&tok, "t0ken").expect("write");
        let mut s = InfluxSink::addon("http://127.0.0.1:8086");
        s.password_file = Some(pw.clone());
        s.token_file = Some(tok);
        s.read_secret_files().expect("read");
        assert_eq!(
            (s.password.as_deref(), s.token.as_deref()),
            (Some("s3cret"), Some("t0ken"))
        );
        // Both a value and its file: refused.
        let mut both = InfluxSink::addon("http://127.0.0.1:8086");
        both.password = Some("x".into());
        both.password_file = Some(pw);
        assert!(both.read_secret_files().unwrap_err().contains("not both"));
        let mut missing = InfluxSink::addon("http://127.0.0.1:8086");
        missing.token_file = Some(dir.path().join("nope"));
        assert!(
            missing
                .read_secret_files()
                .unwrap_err()
                .contains("cannot read token_file")
        );
    }

    #[test]
    fn validates_sinks() {
        let mut s = InfluxSink::addon("http://127.0.0.1:8086/");
        assert!(s.validate().is_ok());
        assert_eq!(s.key(), "influxdb http://127.0.0.1:8086 telegraf");
        s.api = Some("v2".into());
        assert!(s.validate().unwrap_err().contains("org, bucket and token"));
        s.api = Some("v3".into());
        assert!(s.validate().is_err());
        s.url = "127.0.0.1:8086".into();
        assert!(s.validate().is_err());
        let y = SyslogSink {
            address: "udp://127.0.0.1:514".into(),
            facility: None,
        };
        assert!(y.validate().is_ok());
        assert!(
            SyslogSink {
                address: "127.0.0.1:514".into(),
                facility: None
            }
            .validate()
            .is_err()
        );
        assert_eq!(base64_lite::encode("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_lite::encode("ab"), "YWI=");
    }
}
