//! Logs: collectors with checkpoints, the writer into the log store, export, retention.
//!
//! Role: one follower task per container reads its stdout/stderr from the engine
//! ([`reader::Reader`] joins split lines and skips what was already stored); files inside
//! containers are polled through the container's root as a directory fd ([`files`],
//! [`crate::rootfd`]: no symlink leads out). Everything goes through one
//! bounded channel to one writer, which stores lines, checkpoints and export batches in one
//! transaction per batch.
//!
//! Invariants: a checkpoint is committed with (never before) the lines it covers, so a crash
//! or `kill -9` neither loses nor repeats a line; a follower that restarts resumes from the
//! newest position it reached, in memory or stored.

pub mod export;
pub mod files;
pub mod reader;

use crate::metrics::sink::{MAX_BATCH_LINES, Sink};
use crate::runtime::ContainerRuntime;
use crate::store::{LogBatch, LogLine, Packed, Store};
use futures_util::StreamExt;
use reader::{Position, Reader};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Lines per stored batch, and the longest a line waits before it is stored.
const BATCH_LINES: usize = 5000;
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// The source name of the standard streams' checkpoint.
const STD: &str = "std";

/// The app name the router's access log is stored under (`berth logs --router`): no app can
/// take it (an app's name starts with a letter or digit).
pub const ROUTER_APP: &str = "_router";

/// A container whose logs to collect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTarget {
    pub id: String,
    pub name: String,
    pub app: String,
    pub service: String,
    pub version: String,
    pub slot: u32,
    pub running: bool,
    /// Its first process (for files inside it).
    pub pid: Option<u32>,
    /// Log files inside it: source name -> path (file or directory).
    pub files: BTreeMap<String, String>,
}

impl LogTarget {
    fn line(&self, node: &str, time_ns: i64, stream: &str, message: String) -> LogLine {
        LogLine {
            id: 0,
            time_ns,
            app: self.app.clone(),
            service: self.service.clone(),
            version: self.version.clone(),
            slot: self.slot,
            node: node.to_string(),
            container: self.name.clone(),
            stream: stream.to_string(),
            message,
        }
    }
}

/// Lines and the positions that cover them, handed to the writer as one message: a batch
/// never holds lines without their checkpoint (a crash between the two would repeat them).
#[derive(Default)]
struct Msg {
    lines: Vec<LogLine>,
    packed: Option<Packed>,
    /// (container id, source, position).
    checkpoints: Vec<(String, String, String)>,
    /// Answered once everything sent before it is stored (shutdown).
    flushed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Where collected lines are exported to, besides the store.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// Outbox keys of InfluxDB sinks with `logs = true`.
    pub influx: Vec<String>,
    /// Syslog sinks (key, facility).
    pub syslog: Vec<(String, u8)>,
    pub outbox_max_bytes: i64,
}

impl Export {
    pub fn new(sinks: &[Sink], outbox_max_bytes: i64) -> Export {
        let mut e = Export {
            outbox_max_bytes,
            ..Default::default()
        };
        for s in sinks {
            match s {
                Sink::Influx(i) if i.logs => e.influx.push(i.key()),
                Sink::Influx(_) | Sink::Webhook(_) => {}
                Sink::Syslog(y) => e.syslog.push((y.key(), y.facility())),
            }
        }
        e
    }

    /// The export rows of a batch's lines, its packed lines included.
    fn batch_rows(&self, b: &LogBatch) -> Vec<(String, i64, Vec<u8>)> {
        let mut out = self.rows(&b.lines);
        if !self.influx.is_empty() || !self.syslog.is_empty() {
            for p in &b.packed {
                out.extend(self.rows(&p.to_lines()));
            }
        }
        out
    }

    fn rows(&self, lines: &[LogLine]) -> Vec<(String, i64, Vec<u8>)> {
        let mut out = Vec::new();
        if lines.is_empty() {
            return out;
        }
        if !self.influx.is_empty() {
            let points: Vec<_> = lines
                .iter()
                .map(|l| {
                    crate::pace::point();
                    export::point(l)
                })
                .collect();
            for (n, body) in crate::metrics::line::encode_batches(&points, MAX_BATCH_LINES) {
                for k in &self.influx {
                    out.push((k.clone(), n, body.clone()));
                }
            }
        }
        for (k, facility) in &self.syslog {
            let mut body = String::new();
            for l in lines {
                crate::pace::point();
                body.push_str(&export::syslog(l, *facility));
                body.push('\n');
            }
            out.push((k.clone(), lines.len() as i64, body.into_bytes()));
        }
        out
    }
}

#[derive(Default)]
struct State {
    /// Containers with a follower running.
    active: HashSet<String>,
    /// The newest position each follower reached (beats the stored one, which may lag).
    reached: HashMap<String, Position>,
    /// Stopped containers read to their end.
    drained: HashSet<String>,
    /// File positions per container, as last handed to the writer.
    file_cps: HashMap<String, HashMap<String, String>>,
    /// Each container's name now: a container renamed to its compose name while followed
    /// has its next lines stored under the new name.
    names: HashMap<String, String>,
}

pub struct Shipper {
    store: Arc<Store>,
    runtime: Arc<dyn ContainerRuntime>,
    node: String,
    tx: mpsc::Sender<Msg>,
    state: Arc<Mutex<State>>,
    /// Where lines are exported; swapped on a config reload.
    export: Arc<std::sync::RwLock<Arc<Export>>>,
    /// Set by [`Shipper::close`]: followers hand over what they hold and end.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Shipper {
    /// Starts the writer; call [`Shipper::sync`] with this node's containers to collect.
    /// `lines_total` counts the lines stored, `lines_dropped` those that could not be.
    pub fn start(
        store: Arc<Store>,
        runtime: Arc<dyn ContainerRuntime>,
        node: &str,
        export: Export,
        lines_total: Arc<AtomicU64>,
        lines_dropped: Arc<AtomicU64>,
    ) -> Arc<Shipper> {
        let (tx, rx) = mpsc::channel(64);
        let export = Arc::new(std::sync::RwLock::new(Arc::new(export)));
        tokio::spawn(write_loop(
            store.clone(),
            rx,
            export.clone(),
            lines_total,
            lines_dropped,
        ));
        Arc::new(Shipper {
            store,
            runtime,
            node: node.to_string(),
            tx,
            state: Arc::new(Mutex::new(State::default())),
            export,
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    /// Stores lines that no container wrote (the router's access log): through the same
    /// writer, batches and export as the containers' lines. Waits while the writer is busy.
    pub async fn store_lines(&self, lines: Vec<LogLine>) -> bool {
        self.tx
            .send(Msg {
                lines,
                ..Default::default()
            })
            .await
            .is_ok()
    }

    /// Stores lines packed by their writer (the router's access log: thousands a second,
    /// with no [`LogLine`] each); exported as lines when a sink wants them.
    pub async fn store_packed(&self, packed: Packed) -> bool {
        self.tx
            .send(Msg {
                packed: Some(packed),
                ..Default::default()
            })
            .await
            .is_ok()
    }

    /// Exports lines stored from now on to `export`'s sinks (after a config reload).
    pub fn set_export(&self, export: Export) {
        *self.export.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(export);
    }

    /// Ends collection cleanly: every follower hands over the lines it holds with their
    /// checkpoint, and returns once the writer has stored them (bounded by `limit`).
    pub async fn close(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.closing.send_replace(true);
        while !self.state().active.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (done, stored) = tokio::sync::oneshot::channel();
        let flush = Msg {
            flushed: Some(done),
            ..Default::default()
        };
        if self.tx.send(flush).await.is_ok() {
            let _ = tokio::time::timeout_at(deadline, stored).await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts followers for containers without one, polls files, forgets what is gone.
    /// Whether a stopped container's standard streams were read to their end.
    pub fn drained(&self, id: &str) -> bool {
        self.state().drained.contains(id)
    }

    pub async fn sync(self: &Arc<Self>, targets: &[LogTarget]) {
        let ids: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        {
            let mut st = self.state();
            st.reached.retain(|k, _| ids.contains(k.as_str()));
            st.drained.retain(|k| ids.contains(k.as_str()));
            st.file_cps.retain(|k, _| ids.contains(k.as_str()));
            st.names.clear();
            for t in targets {
                st.names.insert(t.id.clone(), t.name.clone());
            }
        }
        for t in targets {
            let start = {
                let mut st = self.state();
                if t.running {
                    st.drained.remove(&t.id);
                }
                let start =
                    !st.active.contains(&t.id) && (t.running || !st.drained.contains(&t.id));
                if start {
                    st.active.insert(t.id.clone());
                }
                start
            };
            if start {
                let me = self.clone();
                let t = t.clone();
                tokio::spawn(async move { me.follow(t).await });
            }
        }
        let with_files: Vec<LogTarget> = targets
            .iter()
            .filter(|t| t.running && t.pid.is_some() && !t.files.is_empty())
            .cloned()
            .collect();
        if !with_files.is_empty() {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.poll_files(&with_files)).await;
        }
    }

    /// Follows one container's standard streams until they end.
    async fn follow(self: Arc<Self>, t: LogTarget) {
        let stored = self
            .store
            .log_checkpoints(&t.id)
            .unwrap_or_default()
            .into_iter()
            .find(|(s, _)| s == STD)
            .and_then(|(_, p)| Position::parse(&p));
        let memory = self.state().reached.get(&t.id).copied();
        let resume = stored.max(memory);
        let mut reader = Reader::new(resume);
        let since = resume.map(|p| p.since_s()).unwrap_or(0);
        let mut stream = self.runtime.logs(&t.id, since, t.running);
        let mut pending: Vec<LogLine> = Vec::new();
        let mut last_cp = resume;
        let mut closing = self.closing.subscribe();
        loop {
            if *closing.borrow_and_update() {
                break;
            }
            // Hand lines over in chunks; a checkpoint goes with the lines before it.
            let next = if pending.is_empty() {
                // Lines held behind a piece that never ends are let go after a while.
                let quiet = if reader.holding() {
                    Duration::from_millis(500)
                } else {
                    Duration::from_secs(3600)
                };
                tokio::select! {
                    n = stream.next() => n,
                    _ = closing.changed() => continue,
                    _ = tokio::time::sleep(quiet) => {
                        for l in reader.flush_stale(crate::timefmt::now_ns()) {
                            let stream = if l.stderr { "stderr" } else { "stdout" };
                            pending.push(t.line(&self.node, l.time_ns, stream, l.text));
                        }
                        continue;
                    }
                }
            } else {
                match tokio::time::timeout(Duration::from_millis(20), stream.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        self.hand_over(&t, &mut pending, &reader, &mut last_cp)
                            .await;
                        continue;
                    }
                }
            };
            let Some(Ok(frame)) = next else { break };
            for l in reader.feed(frame.stderr, &frame.bytes) {
                let stream = if l.stderr { "stderr" } else { "stdout" };
                pending.push(t.line(&self.node, l.time_ns, stream, l.text));
            }
            if pending.len() >= 1000 {
                self.hand_over(&t, &mut pending, &reader, &mut last_cp)
                    .await;
            }
        }
        self.hand_over(&t, &mut pending, &reader, &mut last_cp)
            .await;
        if !t.running {
            // Drained means stored: a job container is removed once its lines can be read
            // back, so `berth logs` right after a run never misses its last lines.
            let (done, stored) = tokio::sync::oneshot::channel();
            let m = Msg {
                flushed: Some(done),
                ..Default::default()
            };
            if self.tx.send(m).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), stored).await;
            }
        }
        let mut st = self.state();
        st.active.remove(&t.id);
        if let Some(p) = last_cp {
            st.reached.insert(t.id.clone(), p);
        }
        if !t.running {
            st.drained.insert(t.id.clone());
        }
    }

    async fn hand_over(
        &self,
        t: &LogTarget,
        pending: &mut Vec<LogLine>,
        reader: &Reader,
        last_cp: &mut Option<Position>,
    ) {
        let renamed = self.state().names.get(&t.id).cloned();
        if let Some(name) = renamed.filter(|n| *n != t.name) {
            for l in pending.iter_mut() {
                l.container.clone_from(&name);
            }
        }
        // The reader returns lines only at a position that covers them, so the position now
        // covers everything pending.
        let mut m = Msg {
            lines: std::mem::take(pending),
            ..Default::default()
        };
        if let Some(cp) = reader.checkpoint().filter(|cp| Some(*cp) != *last_cp) {
            *last_cp = Some(cp);
            m.checkpoints.push((t.id.clone(), STD.into(), cp.encode()));
        }
        if !m.lines.is_empty() || !m.checkpoints.is_empty() {
            let _ = self.tx.send(m).await;
        }
    }

    fn poll_files(&self, targets: &[LogTarget]) {
        for t in targets {
            let Some(pid) = t.pid else { continue };
            // The container's root as a directory fd (its pid checked against its cgroup);
            // every log path is resolved inside it.
            let root = match crate::rootfd::Root::of_process(pid, &t.id) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(container = %t.name, error = %e, "log files not read");
                    continue;
                }
            };
            let mut cps = match self.state().file_cps.get(&t.id).cloned() {
                Some(c) => c,
                None => self
                    .store
                    .log_checkpoints(&t.id)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(s, _)| s.starts_with("file:"))
                    .collect(),
            };
            let now = crate::timefmt::now_ns();
            for (name, path) in &t.files {
                let (lines, new_cps) = files::poll(&root, name, path, &cps);
                let mut m = Msg {
                    lines: lines
                        .into_iter()
                        .map(|l| t.line(&self.node, now, &l.name, l.text))
                        .collect(),
                    ..Default::default()
                };
                for (k, v) in new_cps {
                    if cps.get(&k) != Some(&v) {
                        cps.insert(k.clone(), v.clone());
                        m.checkpoints.push((t.id.clone(), k, v));
                    }
                }
                if !m.lines.is_empty() || !m.checkpoints.is_empty() {
                    let _ = self.tx.blocking_send(m);
                }
            }
            self.state().file_cps.insert(t.id.clone(), cps);
        }
    }
}

/// Attempts at storing one batch when the failure is not a full disk (a busy database):
/// 100 ms, 200 ms ... apart, about 3 s in all; then the batch is dropped and counted.
const STORE_ATTEMPTS: u32 = 5;

/// The one writer: batches lines and checkpoints, stores each batch in one transaction.
///
/// It never blocks collection for long: a batch that cannot be stored (the disk is full) is
/// dropped at once, lines and checkpoints together, and counted; an event says how many went
/// once storing works again, which it does by itself when space returns (the next batch is
/// simply tried). Retention runs apart from it (`agent/logship.rs`) and never waits on it.
async fn write_loop(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Msg>,
    export: Arc<std::sync::RwLock<Arc<Export>>>,
    total: Arc<AtomicU64>,
    dropped_total: Arc<AtomicU64>,
) {
    // Lines dropped since storing last worked (reported when it works again).
    let mut dropping: u64 = 0;
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = LogBatch::default();
        let mut cps: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut flushed = Vec::new();
        let mut add = |m: Msg, batch: &mut LogBatch| {
            // The first message's lines are the batch's (no copy on the runtime's thread).
            if batch.lines.is_empty() {
                batch.lines = m.lines;
            } else {
                batch.lines.extend(m.lines);
            }
            batch.packed.extend(m.packed);
            for (id, src, pos) in m.checkpoints {
                cps.insert((id, src), pos);
            }
            flushed.extend(m.flushed);
        };
        add(first, &mut batch);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let lines =
            |b: &LogBatch| b.lines.len() + b.packed.iter().map(Packed::lines).sum::<usize>();
        while lines(&batch) < BATCH_LINES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => add(m, &mut batch),
                Ok(None) | Err(_) => break,
            }
        }
        batch.checkpoints = cps.into_iter().map(|((a, b), c)| (a, b, c)).collect();
        let n = lines(&batch) as u64;
        let export2 = export.read().unwrap_or_else(|p| p.into_inner()).clone();
        let store2 = store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            // Below the router's threads, in short turns: a batch of lines can wait a
            // moment, a request should not (see `pace`).
            let _bg = crate::pace::Background::enter();
            batch.export = export2.batch_rows(&batch);
            let mut wait = Duration::from_millis(100);
            let mut attempt = 1;
            loop {
                match store2.append_logs(&batch, export2.outbox_max_bytes) {
                    Ok(()) => {
                        // Thousands of lines freed: in turns too, not after them.
                        for l in batch.lines.drain(..) {
                            crate::pace::point();
                            drop(l);
                        }
                        return Ok(());
                    }
                    // No space: retrying only holds collection up.
                    Err(e) if e.is_disk_full() || attempt >= STORE_ATTEMPTS => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "cannot store log lines; retrying");
                        std::thread::sleep(wait);
                        wait *= 2;
                        attempt += 1;
                    }
                }
            }
        })
        .await;
        let stored = match stored {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the storing task failed: {e}")),
        };
        match stored {
            Ok(()) => {
                total.fetch_add(n, Ordering::Relaxed);
                if dropping > 0 {
                    let msg = format!(
                        "log lines are stored again; {dropping} line(s) were dropped because they could not be stored (disk full?)"
                    );
                    tracing::warn!("{msg}");
                    let _ = store.add_event("logs", "", "", &msg);
                    dropping = 0;
                }
            }
            Err(e) => {
                if dropping == 0 {
                    tracing::error!(error = %e, "cannot store log lines: dropping them (and counting) until storing works again");
                    let _ = store.add_event(
                        "logs",
                        "",
                        "",
                        &format!("log lines are being dropped: {e}"),
                    );
                }
                dropping += n;
                dropped_total.fetch_add(n, Ordering::Relaxed);
            }
        }
        for f in flushed {
            let _ = f.send(());
        }
    }
}

/// Deletes lines past retention (by age, then by size); returns how many went.
pub fn prune(store: &Store, retain_days: u64, max_bytes: i64) -> usize {
    let age = (retain_days.min(36_500) as i64).saturating_mul(86_400 * 1_000_000_000);
    let before = crate::timefmt::now_ns().saturating_sub(age);
    store.prune_logs(before, max_bytes).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot prune logs");
        0
    })
}
