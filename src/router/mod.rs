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
//!
//! Bounds (every client may be hostile, [`Limits`] from `[router]`): each listener serves at
//! most `max_connections` at once (more are closed at accept), an accept error (EMFILE)
//! pauses the listener instead of spinning, a request head must arrive whole within
//! `header_timeout` (also the longest idle time between requests) and within
//! `max_header_bytes`, a TLS handshake within `tls_handshake_timeout`. The router is the
//! edge: it sets `X-Forwarded-For/-Proto/-Host` itself and drops a client's `Forwarded`,
//! unless the client is one of `trusted_proxies`.

pub mod cold;
mod http;
pub mod stats;
pub mod table;
mod tcp;
pub mod tls;
mod udp;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use table::Table;

/// The router's bounds (`[router]` in berth.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub tls_handshake_timeout: std::time::Duration,
    pub max_header_bytes: usize,
    pub trusted_proxies: Vec<Cidr>,
    /// Answered 200 while the router serves, for an outside load balancer's health check
    /// (HAProxy's `monitor-uri`, the seed proxy's `/haproxy-monitor`), on requests no route
    /// takes. Empty: none.
    pub health_uri: String,
    /// The page a 503 (no healthy instance) answers with, HTML; None: a line of text.
    pub error_page: Option<Arc<bytes::Bytes>>,
    /// A line per request into the log store (`berth logs --router`). Off by default, as in
    /// Traefik and Caddy: at tens of thousands of requests a second it is a disk's worth.
    pub access_log: bool,
    /// A UDP flow (`lb.port_N: udp://`) ends after this long without a datagram.
    pub udp_idle_timeout: std::time::Duration,
}

/// The largest `[router] error_page` file.
pub const MAX_ERROR_PAGE: u64 = 256 << 10;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            header_timeout: std::time::Duration::from_secs(10),
            tls_handshake_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            trusted_proxies: Vec::new(),
            health_uri: "/haproxy-monitor".into(),
            error_page: None,
            access_log: false,
            udp_idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl Limits {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// An address block, like `10.0.0.0/8` or `2001:db8::/32` (a bare address is /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let net: IpAddr = a.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b, max) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = max - u32::from(self.bits);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// State shared by every proxy task.
pub struct Shared {
    table: RwLock<Arc<Table>>,
    /// Port of the HTTPS listener, where plain requests for https routes are redirected.
    https_port: std::sync::OnceLock<u16>,
    /// Domains the HTTPS listener has a certificate for in berth.toml (`*.x` for wildcards).
    tls_domains: Vec<String>,
    /// The templates' certificates (`proxy.SSL_CERT`), which the HTTPS listener serves after
    /// berth.toml's.
    labels: tls::LabelHandle,
    turn: AtomicUsize,
    rng: AtomicU64,
    limits: Limits,
    /// Services at zero: held requests, last use.
    cold: cold::Cold,
    /// `POST /hooks/<id>?secret=` on a request no route takes: the agent's triggers.
    triggers: std::sync::OnceLock<TriggerHook>,
    /// Requests per route and version.
    stats: stats::Registry,
    /// Where access records go (`[router] access_log`), once started.
    access: std::sync::OnceLock<Arc<stats::AccessLog>>,
}

/// Answers a trigger call (id, secret, caller address) with (status, JSON body).
pub type TriggerHook = Arc<
    dyn Fn(String, String, String) -> futures_util::future::BoxFuture<'static, (u16, String)>
        + Send
        + Sync,
>;

impl Shared {
    /// Does the HTTPS listener have a certificate for `host` (berth.toml's or a
    /// template's)? Without the listener, none counts.
    fn tls_covers(&self, host: &str) -> bool {
        self.tls_domains.iter().any(|d| tls::covers(d, host))
            || (self.https_port.get().is_some()
                && self
                    .labels
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .covers(host))
    }

    /// Round-robin counter.
    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// A number for the weighted version choice, taken modulo the pools' total weight
    /// (100 for a service's versions, up to 10,000 on a route shared between services):
    /// 32 random bits, so the modulo's bias is below one in 400,000 (xorshift: fast, not
    /// secret).
    fn roll(&self) -> u32 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 32) as u32
    }
}

pub struct Router {
    shared: Arc<Shared>,
    tcp_ip: IpAddr,
    /// The `lb.port_N` router ports served, by port and kind.
    ports: Mutex<BTreeMap<(u16, PortKind), tokio::task::JoinHandle<()>>>,
    /// The HTTPS listener's certificates, for `lb.port_N: https://` ports.
    port_tls: std::sync::OnceLock<tokio_rustls::TlsAcceptor>,
    /// In-flight counters by short container id, kept across tables.
    /// Per instance id: requests in flight, and the passive check's mark (see `Endpoint`).
    inflight: Mutex<HashMap<String, Counters>>,
    /// The internal side's address (`start_internal`).
    internal: std::sync::OnceLock<SocketAddr>,
    /// The ports of the router's own HTTP and HTTPS listeners: an acs/proxy port that is
    /// one of them is served there already.
    own_ports: Mutex<std::collections::BTreeSet<u16>>,
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
    /// The address `lb.port_N` listeners bind.
    pub fn tcp_ip(&self) -> IpAddr {
        self.tcp_ip
    }

    pub fn new(tcp_ip: IpAddr, tls_domains: Vec<String>, limits: Limits) -> Router {
        let seed = crate::clock::now_ms() as u64 | 1;
        Router {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                https_port: std::sync::OnceLock::new(),
                tls_domains,
                labels: tls::LabelHandle::default(),
                turn: AtomicUsize::new(0),
                rng: AtomicU64::new(seed),
                limits,
                cold: cold::Cold::default(),
                triggers: std::sync::OnceLock::new(),
                stats: stats::Registry::default(),
                access: std::sync::OnceLock::new(),
            }),
            tcp_ip,
            ports: Mutex::new(BTreeMap::new()),
            port_tls: std::sync::OnceLock::new(),
            inflight: Mutex::new(HashMap::new()),
            internal: std::sync::OnceLock::new(),
            own_ports: Mutex::default(),
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

    /// Starts the router's internal side on a loopback port (`.local` routes included),
    /// where the service-name holders carry the app networks' connections to `.local` names.
    pub fn start_internal(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<SocketAddr> {
        let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(l)?;
        tokio::spawn(http::serve_internal(
            listener,
            self.shared.clone(),
            shutdown,
        ));
        let _ = self.internal.set(addr);
        Ok(addr)
    }

    /// The templates' certificates the HTTPS listener serves from now on.
    pub fn set_label_certs(&self, certs: tls::LabelCerts) {
        *self
            .shared
            .labels
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(certs);
    }

    /// Is the HTTPS listener started?
    pub fn https_listening(&self) -> bool {
        self.shared.https_port.get().is_some()
    }

    /// Where the internal side listens, once started.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.get().copied()
    }

    /// Starts the HTTPS listener (TLS terminated here, certificates by SNI: `tls`'s, then
    /// the templates' given to [`Router::set_label_certs`]).
    pub fn start_https(
        &self,
        addr: SocketAddr,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let tls = tls::with_labels(&tls, self.shared.labels.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let _ = self.port_tls.set(acceptor.clone());
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
        self.own_ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port);
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
        tokio::spawn(http::accept(
            listener,
            senders,
            shutdown,
            self.shared.limits.max_connections,
        ));
        Ok(port)
    }

    /// Swaps in a new table and opens/closes TCP listeners to match it. Returns errors for
    /// router ports that could not be bound (to be reported as events).
    pub fn update(&self, mut new: Table) -> Vec<String> {
        let wanted: Vec<(u16, PortKind)> = new
            .tcp
            .keys()
            .map(|p| (*p, PortKind::Tcp))
            .chain(new.http_ports.iter().map(|(p, (_, tls))| {
                (
                    *p,
                    if *tls {
                        PortKind::Https
                    } else {
                        PortKind::Http
                    },
                )
            }))
            .chain(new.udp.keys().map(|p| (*p, PortKind::Udp)))
            .collect();
        // Host-routed ports of acs/proxy templates, unless the router listens there already.
        let wanted: Vec<(u16, PortKind)> = {
            let own = self.own_ports.lock().unwrap_or_else(|p| p.into_inner());
            let extra: Vec<(u16, PortKind)> = new
                .vhost_ports
                .iter()
                .filter(|(p, _)| !own.contains(p) && !new.http_ports.contains_key(p))
                .map(|(p, v)| {
                    (
                        *p,
                        if v.tls {
                            PortKind::Https
                        } else {
                            PortKind::Http
                        },
                    )
                })
                .collect();
            wanted.into_iter().chain(extra).collect()
        };
        {
            let mut counters = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let backends = new.backends_mut();
            let mut seen = std::collections::HashSet::new();
            for b in backends {
                for ep in b.pools.iter_mut().flat_map(|p| p.endpoints.iter_mut()) {
                    let (inflight, down) = counters.entry(ep.id.to_string()).or_default().clone();
                    // A passive-check mark holds until its member reports the instance
                    // after it.
                    let until = down.load(Ordering::Relaxed);
                    let marked = until.saturating_sub(table::DOWN_MS) as i64;
                    if until > 0 && ep.reported_ms > marked {
                        down.store(0, Ordering::Relaxed);
                    }
                    ep.inflight = inflight;
                    ep.down_until = down;
                    seen.insert(ep.id.to_string());
                }
            }
            // Counters of instances that left stay while requests are in flight to them.
            counters.retain(|id, (c, _)| seen.contains(id) || c.load(Ordering::Acquire) > 0);
        }
        // Counters by route and version, the same across tables.
        let mut keys = std::collections::HashSet::new();
        let routes = new
            .http
            .iter_mut()
            .map(|r| {
                let path = if r.path.is_empty() { "/" } else { &r.path };
                (format!("{}{path}", r.host), &mut r.backend)
            })
            .chain(new.tcp.iter_mut().map(|(p, b)| (format!("tcp://:{p}"), b)))
            .chain(new.http_ports.iter_mut().map(|(p, (b, tls))| {
                (format!("{}://:{p}", if *tls { "https" } else { "http" }), b)
            }))
            .chain(new.udp.iter_mut().map(|(p, b)| (format!("udp://:{p}"), b)));
        for (route, b) in routes {
            let key = |version: &str| stats::StatKey {
                route: route.clone(),
                app: b.app.clone(),
                service: b.service.clone(),
                version: version.to_string(),
            };
            b.stats = self.shared.stats.of(key(""));
            keys.insert(key(""));
            for p in &mut b.pools {
                // A shared route's pools are of several services: each version's own.
                let mut k = key(&p.version);
                if let Some((service, _)) = p.version.rsplit_once('-') {
                    k.service = service.to_string();
                }
                let s = self.shared.stats.of(k.clone());
                keys.insert(k);
                for ep in &mut p.endpoints {
                    ep.stats = s.clone();
                }
            }
        }
        self.shared.stats.keep_only(&keys);
        let mut labels = std::collections::HashSet::new();
        for b in new.backends_mut() {
            b.used = self.shared.cold.used_of(&b.label);
            labels.insert(b.label.clone());
        }
        self.shared.cold.forget_except(&labels);
        *self.shared.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.shared.cold.table_changed();
        let mut errors = Vec::new();
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        ports.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted {
            if ports.contains_key(&key) {
                continue;
            }
            let (port, kind) = key;
            match self.open_port(port, kind) {
                Ok(task) => {
                    ports.insert(key, task);
                }
                Err(e) => errors.push(format!("router {} port {port}: {e}", kind.name())),
            }
        }
        errors
    }

    /// Turns the access log on: a record per request (`[router] access_log`) is written
    /// into the returned buffers, which the caller takes into the log store
    /// ([`stats::AccessLog::ready`], [`stats::AccessLog::take`]). A record that does not fit
    /// ([`stats::ACCESS_SHARD_BYTES`] a worker thread) is dropped and counted. Once per
    /// router; None when `[router] access_log` is off.
    pub fn start_access_log(&self) -> Option<Arc<stats::AccessLog>> {
        if !self.shared.limits.access_log {
            return None;
        }
        let log = Arc::new(stats::AccessLog::default());
        self.shared.access.set(log.clone()).ok()?;
        Some(log)
    }

    /// Access records written to the log store (counted by whoever drains the receiver).
    pub fn access_logged(&self, n: u64) {
        self.shared
            .stats
            .access_logged
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Requests and connections per route and version since start, for `/metrics`.
    pub fn figures(&self) -> stats::RouterFigures {
        self.shared.stats.figures()
    }

    /// Opens a router port of `kind` and starts serving it.
    fn open_port(&self, port: u16, kind: PortKind) -> std::io::Result<tokio::task::JoinHandle<()>> {
        if kind == PortKind::Udp {
            let s = std::net::UdpSocket::bind((self.tcp_ip, port))?;
            s.set_nonblocking(true)?;
            let s = tokio::net::UdpSocket::from_std(s)?;
            return Ok(tokio::spawn(udp::serve(port, s, self.shared.clone())));
        }
        let tls = match kind {
            PortKind::Https => Some(self.port_tls.get().cloned().ok_or_else(|| {
                std::io::Error::other(
                    "https:// needs the router's HTTPS listener and a certificate: set [router] https, and [[router.tls]] in berth.toml or a template's proxy.SSL_CERT",
                )
            })?),
            _ => None,
        };
        let l = std::net::TcpListener::bind((self.tcp_ip, port))?;
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        let shared = self.shared.clone();
        Ok(match kind {
            PortKind::Tcp => tokio::spawn(tcp::serve(port, l, shared)),
            _ => tokio::spawn(http::serve_port(l, shared, port, tls)),
        })
    }

    /// Serves triggers (`POST /hooks/<id>?secret=`) on the router's listeners, for requests
    /// no route takes (an app's own `/hooks/` paths stay the app's).
    pub fn set_trigger_hook(&self, hook: TriggerHook) {
        let _ = self.shared.triggers.set(hook);
    }

    /// Tells `hook` when a request waits for a service at zero, and when it went through.
    pub fn set_cold_start_hook(&self, hook: cold::Hook) {
        self.shared.cold.set_hook(hook);
    }

    /// Every `app/service` asked for through this router since start, with when (ms).
    pub fn last_requests(&self) -> Vec<(String, i64)> {
        self.shared.cold.last_requests()
    }

    /// When `app/service` was last asked for through the router (ms), since this start.
    pub fn last_request_ms(&self, app: &str, service: &str) -> Option<i64> {
        self.shared
            .cold
            .last_request_ms(&format!("{app}/{service}"))
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
        while counter.0.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let waited = started.elapsed();
        if waited.as_millis() > 0 {
            tracing::debug!(id = short, ms = waited.as_millis() as u64, "drained");
        }
        waited
    }
}

/// What an `lb.port_N` router port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PortKind {
    Tcp,
    Http,
    Https,
    Udp,
}

impl PortKind {
    fn name(self) -> &'static str {
        match self {
            PortKind::Tcp => "TCP",
            PortKind::Http => "HTTP",
            PortKind::Https => "HTTPS",
            PortKind::Udp => "UDP",
        }
    }
}

/// What the router keeps per instance across tables: requests in flight, and until when
/// the passive check keeps it out of rotation.
type Counters = (Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicU64>);

/// Tries per request or connection when instances on other members refuse it.
pub(crate) const CONNECT_TRIES: usize = 3;

/// The time for the passive check (ms since the epoch).
pub(crate) fn now_ms() -> u64 {
    crate::clock::now_ms().max(0) as u64
}

/// A connection to an instance, given up after 2 s (an instance on a member that went away
/// answers nothing; the OS would wait minutes).
pub(crate) async fn connect_upstream(
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer in 2 s",
        )),
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn cidrs_match_their_addresses_only() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().expect("ip")),
            "v4-mapped"
        );
        let one = Cidr::parse("192.168.1.5").expect("bare address");
        assert!(one.contains("192.168.1.5".parse().expect("ip")));
        assert!(!one.contains("192.168.1.6".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("all");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        let v6 = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains("2001:db8::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/", "::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }
}
