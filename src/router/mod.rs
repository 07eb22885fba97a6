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
//! Limits (open work): TLS termination for `https://` routes, draining of in-flight requests
//! before an instance stops, and weights other than all-or-nothing per version.

mod http;
pub mod table;
mod tcp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use table::Table;

/// State shared by every proxy task.
pub struct Shared {
    table: RwLock<Arc<Table>>,
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
}

impl Router {
    pub fn new(tcp_ip: IpAddr) -> Router {
        let seed = crate::store::now_ms() as u64 | 1;
        Router {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                turn: AtomicUsize::new(0),
                rng: AtomicU64::new(seed),
            }),
            tcp_ip,
            tcp: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts the HTTP listener. Must run inside the tokio runtime.
    pub async fn start_http(
        &self,
        addr: SocketAddr,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tokio::spawn(http::serve(listener, self.shared.clone(), shutdown));
        Ok(())
    }

    pub fn table(&self) -> Arc<Table> {
        self.shared.table()
    }

    /// Swaps in a new table and opens/closes TCP listeners to match it. Returns errors for
    /// router ports that could not be bound (to be reported as events).
    pub fn update(&self, new: Table) -> Vec<String> {
        let wanted: Vec<u16> = new.tcp.keys().copied().collect();
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
}
