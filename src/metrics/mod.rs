//! Metrics: cgroup and host readers, line-protocol and Prometheus encoders, sinks with a
//! durable queue.
//!
//! Role: `collect` reads a [`collect::Snapshot`] per interval (cgroup files and /proc, never
//! the engine's stats API); `line` and `prom` encode it; `sink` delivers outbox batches; the
//! [`Hub`] holds what the API serves between cycles (latest snapshot, the last hour, counters
//! fed by engine events) and the running senders.
//!
//! Invariants: everything bound for InfluxDB or syslog goes through the store's outbox and is
//! deleted only once the sink accepted (or refused as bad data) it.

pub mod cgroup;
pub mod collect;
pub mod custom;
pub mod fsusage;
pub mod history;
pub mod host;
pub mod line;
pub mod netlink;
pub mod node;
pub mod procfile;
pub mod prom;
pub mod sink;
pub mod sysclass;

use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// `[metrics]` after validation.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub interval_ms: u64,
    pub prometheus_public: bool,
    pub influxdb: Vec<sink::InfluxSink>,
    pub outbox_max_bytes: i64,
    pub alarms: Vec<history::AlarmRule>,
    /// Node and job events sent to notifiers (`[metrics.notify]`).
    pub notify: history::EventNotify,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval_ms: 10_000,
            prometheus_public: false,
            influxdb: Vec::new(),
            outbox_max_bytes: 256 << 20,
            alarms: Vec::new(),
            notify: history::EventNotify::default(),
        }
    }
}

/// What the agent shares between the collector, the senders and the API.
#[derive(Default)]
pub struct Hub {
    latest: RwLock<Option<Arc<collect::Snapshot>>>,
    pub history: Mutex<history::History>,
    /// container id -> (restarts seen, OOM kills seen), from engine events.
    counters: Mutex<HashMap<String, (u64, bool)>>,
    /// f64 bits of the last reconcile pass / collection cycle, in seconds.
    reconcile_seconds: AtomicU64,
    collect_seconds: AtomicU64,
    /// Collection ticks skipped because a cycle ran over the interval.
    cycles_skipped: AtomicU64,
    /// Log lines stored since start (the log shipper counts).
    pub log_lines: Arc<AtomicU64>,
    /// Log lines dropped since start because they could not be stored (disk full).
    pub log_lines_dropped: Arc<AtomicU64>,
    senders: Mutex<BTreeMap<String, Sender>>,
    /// The custom metrics of the last cycle (`monitoring.script`/`http`), tagged.
    custom: Mutex<Arc<Vec<line::Point>>>,
}

/// A running sender thread and the mode it is told to run in.
struct Sender {
    mode: Arc<sink::Mode>,
    thread: std::thread::JoinHandle<()>,
}

impl Hub {
    /// Keeps the custom points of the last cycle (for the services' own Prometheus paths).
    pub fn set_custom(&self, points: Vec<line::Point>) {
        *self.custom.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(points);
    }

    pub fn custom(&self) -> Arc<Vec<line::Point>> {
        self.custom
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn latest(&self) -> Option<Arc<collect::Snapshot>> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_latest(&self, s: collect::Snapshot, took: std::time::Duration) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&s);
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
        self.collect_seconds
            .store(took.as_secs_f64().to_bits(), Ordering::Relaxed);
    }

    pub fn note_skipped_cycles(&self, n: u64) {
        self.cycles_skipped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_reconcile_time(&self, took: std::time::Duration) {
        self.reconcile_seconds
            .store(took.as_secs_f64().to_bits(), Ordering::Relaxed);
    }

    /// An engine event about one of our containers.
    pub fn note_engine_event(&self, id: &str, action: &str) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let e = c.entry(id.to_string()).or_default();
        match action {
            "restart" => e.0 += 1,
            "oom" => e.1 = true,
            _ => {}
        }
    }

    pub fn counters(&self, id: &str) -> (u64, bool) {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or_default()
    }

    /// Forgets counters of containers that are gone.
    pub fn retain_counters(&self, ids: &std::collections::HashSet<&str>) {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| ids.contains(k.as_str()));
    }

    pub fn own(&self, store: &Store) -> prom::Own {
        prom::Own {
            outbox: store
                .outbox_stats()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.sink, s.lines, s.dropped))
                .collect(),
            reconcile_seconds: f64::from_bits(self.reconcile_seconds.load(Ordering::Relaxed)),
            collect_seconds: f64::from_bits(self.collect_seconds.load(Ordering::Relaxed)),
            log_lines_total: self.log_lines.load(Ordering::Relaxed),
            log_lines_dropped_total: self.log_lines_dropped.load(Ordering::Relaxed),
            cycles_skipped_total: self.cycles_skipped.load(Ordering::Relaxed),
            process: node::ProcessSelf::read(),
        }
    }

    /// Starts a sender thread for every sink that has none yet.
    pub fn ensure_senders(&self, store: &Arc<Store>, sinks: &[sink::Sink], report: &sink::Report) {
        let mut running = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, s| !s.thread.is_finished());
        for s in sinks {
            let key = s.key();
            if running.contains_key(&key) {
                continue;
            }
            let mode = Arc::new(sink::Mode::default());
            let (store, s, report, m) = (store.clone(), s.clone(), report.clone(), mode.clone());
            match std::thread::Builder::new()
                .name("berth-sink".into())
                .spawn(move || sink::run_sender(store, s, report, m))
            {
                Ok(thread) => {
                    running.insert(key, Sender { mode, thread });
                }
                Err(e) => tracing::warn!(sink = %key, error = %e, "cannot start a sender thread"),
            }
        }
    }

    /// Stops the senders of sinks whose key is not in `keep` (after a reload).
    pub fn stop_senders_except(&self, keep: &std::collections::HashSet<String>) {
        let mut running = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|key, s| {
            let kept = keep.contains(key);
            if !kept {
                s.mode.set(sink::Mode::STOP);
            }
            kept
        });
    }

    /// At shutdown: every sender delivers what its queue holds until it is empty, a send
    /// fails or `limit` passes; then all stop. What is not delivered stays in the outbox.
    pub fn drain_senders(&self, limit: std::time::Duration) {
        let senders: Vec<Sender> =
            std::mem::take(&mut *self.senders.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        for s in &senders {
            s.mode.set(sink::Mode::DRAIN);
        }
        let deadline = std::time::Instant::now() + limit;
        while senders.iter().any(|s| !s.thread.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for s in senders {
            s.mode.set(sink::Mode::STOP);
            if s.thread.is_finished() {
                let _ = s.thread.join();
            }
        }
    }
}
