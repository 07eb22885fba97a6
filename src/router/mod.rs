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
mod upstream;

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
    /// Domains the HTTPS listener has a certificate for (`*.x` for wildcards).
    tls_domains: Vec<String>,
    turn: AtomicUsize,
    rng: AtomicU64,
}

impl Shared {
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
    pub fn new(tcp_ip: IpAddr, tls_domains: Vec<String>) -> Router {
        let seed = crate::store::now_ms() as u64 | 1;
        Router {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                https_port: std::sync::OnceLock::new(),
                tls_domains,
                turn: AtomicUsize::new(0),
                rng: AtomicU64::new(seed),
            }),
            tcp_ip,
            tcp: Mutex::new(BTreeMap::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the HTTP listener.
    pub fn start_http(
        &self,
        addr: SocketAddr,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        self.start_workers("http", addr, None, shutdown).map(|_| ())
    }

    /// Starts the HTTPS listener (TLS terminated here, certificates by SNI).
    pub fn start_https(
        &self,
        addr: SocketAddr,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let port = self.start_workers("https", addr, Some(acceptor), shutdown)?;
        let _ = self.shared.https_port.set(port);
        Ok(())
    }

    /// The proxy runs like nginx's workers: one thread per CPU, each with its own
    /// single-threaded runtime and its own upstream connection pool, so a request is served
    /// start to end on one thread without cross-thread wake-ups. One listener (on the
    /// agent's runtime) deals the accepted connections to the workers in turn. Returns the
    /// port. Must be called on the agent's runtime.
    fn start_workers(
        &self,
        kind: &'static str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<u16> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16);
        let mut senders = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (shared, tls) = (self.shared.clone(), tls.clone());
            std::thread::Builder::new()
                .name(format!("berth-{kind}-{i}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(http::work(rx, shared, tls)),
                        Err(e) => tracing::error!(error = %e, "cannot start a router worker"),
                    }
                })?;
            senders.push(tx);
        }
        tokio::spawn(http::accept(listener, senders, shutdown));
        Ok(port)
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
                    ep.inflight = counters.entry(ep.id.to_string()).or_default().clone();
                    seen.insert(ep.id.to_string());
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
