//! The built-in router: the data plane on each host.
//!
//! Role: an HTTP reverse proxy by Host and path prefix (`routing.port_N` labels) and TCP
//! proxies by router port (`lb.port_N`), splitting traffic by version weight and then round
//! robin over ready instances, which are reached at their published host ports.
//!
//! Invariants: never blocks the agent loop (its own tasks; the table is swapped under a short
//! lock); only ready instances are backends; unknown host -> 404, no ready instance -> 503,
//! backend failure -> 502, each with a plain-text reason.
//!
//! Draining: every request (HTTP) or connection (TCP) holds a guard on its instance's
//! in-flight counter from the moment it is picked, and the pick happens under the table's read
//! lock, so once a new table is swapped in no request can still pick a removed instance;
//! [`Router::drain`] then waits for the counter to reach zero (or the grace period).

mod http;
pub mod table;
mod tcp;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use table::Table;

/// State shared by every proxy task.
pub struct Shared {
    table: RwLock<Arc<Table>>,
    /// Port of the HTTPS listener, where plain requests for https routes are redirected.
    https_port: std::sync::OnceLock<u16>,
    turn: AtomicUsize,
    rng: AtomicU64,
}

impl Shared {
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Round-robin counter.
    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// A number in 0..100 for the weighted version choice (xorshift: fast, not secret).
    fn roll(&self) -> u32 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x % 100) as u32
    }
}

pub struct Router {
    shared: Arc<Shared>,
    tcp_ip: IpAddr,
    tcp: Mutex<BTreeMap<u16, tokio::task::JoinHandle<()>>>,
    /// In-flight counters by short container id, kept across tables.
    inflight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// Holds one unit of an instance's in-flight count until dropped.
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> InflightGuard {
        counter.fetch_add(1, Ordering::AcqRel);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Router {
    pub fn new(tcp_ip: IpAddr) -> Router {
        let seed = crate::store::now_ms() as u64 | 1;
        Router {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                https_port: std::sync::OnceLock::new(),
                turn: AtomicUsize::new(0),
                rng: AtomicU64::new(seed),
            }),
            tcp_ip,
            tcp: Mutex::new(BTreeMap::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the HTTP listener. Must run inside the tokio runtime.
    pub async fn start_http(
        &self,
        addr: SocketAddr,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(http::serve(listener, self.shared.clone(), None, shutdown));
        Ok(())
    }

    /// Starts the HTTPS listener (TLS terminated here, certificates by SNI).
    pub async fn start_https(
        &self,
        addr: SocketAddr,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let _ = self.shared.https_port.set(listener.local_addr()?.port());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(http::serve(
            listener,
            self.shared.clone(),
            Some(acceptor),
            shutdown,
        ));
        Ok(())
    }

    pub fn table(&self) -> Arc<Table> {
        self.shared.table()
    }

    /// Swaps in a new table and opens/closes TCP listeners to match it. Returns errors for
    /// router ports that could not be bound (to be reported as events).
    pub fn update(&self, mut new: Table) -> Vec<String> {
        let wanted: Vec<u16> = new.tcp.keys().copied().collect();
        {
            let mut counters = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let backends = new
                .http
                .iter_mut()
                .map(|r| &mut r.backend)
                .chain(new.tcp.values_mut());
            let mut seen = std::collections::HashSet::new();
            for b in backends {
                for ep in b.pools.iter_mut().flat_map(|p| p.endpoints.iter_mut()) {
                    ep.inflight = counters.entry(ep.id.clone()).or_default().clone();
                    seen.insert(ep.id.clone());
                }
            }
            // Counters of instances that left stay while requests are in flight to them.
            counters.retain(|id, c| seen.contains(id) || c.load(Ordering::Acquire) > 0);
        }
        *self.shared.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        let mut errors = Vec::new();
        let mut tcp = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        tcp.retain(|port, task| {
            let keep = wanted.contains(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted {
            if tcp.contains_key(&port) {
                continue;
            }
            match std::net::TcpListener::bind((self.tcp_ip, port)).and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            }) {
                Ok(l) => {
                    tcp.insert(port, tokio::spawn(tcp::serve(port, l, self.shared.clone())));
                }
                Err(e) => errors.push(format!("router TCP port {port}: {e}")),
            }
        }
        errors
    }

    /// Waits until no request or connection is in flight to the instance `id` (which the
    /// current table no longer has), or `grace_s` seconds. Returns how long it waited.
    pub async fn drain(&self, id: &str, grace_s: u32) -> std::time::Duration {
        let short: String = id.chars().take(12).collect();
        let counter = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&short)
            .cloned();
        let started = std::time::Instant::now();
        let Some(counter) = counter else {
            return started.elapsed();
        };
        let deadline = started + std::time::Duration::from_secs(u64::from(grace_s));
        while counter.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let waited = started.elapsed();
        if waited.as_millis() > 0 {
            tracing::debug!(id = short, ms = waited.as_millis() as u64, "drained");
        }
        waited
    }
}
