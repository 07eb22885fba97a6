//! What the router counts and writes down: requests per route and version (by status
//! class, with their time to the response head) for `/metrics`, TCP connections per router
//! port and version, and the access log's records.
//!
//! Invariants: counting is a few relaxed atomic adds on the request path (no lock, no
//! allocation); the counters of a route and version live across tables (the router hands
//! the same [`Stats`] to every table that has them) and go when a table no longer has them.
//! The access log never holds a request up: a record that does not fit in its thread's
//! bounded buffer ([`AccessLog`]) is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest path (and user agent) an access record keeps.
const MAX_LOGGED: usize = 1024;

/// What the figures of one route and version are filed under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatKey {
    /// `host/path` of an HTTP route (`*.example.com/` for a wildcard), `SCHEME://:PORT`
    /// for an `lb.port_N` router port (tcp, http, https, udp).
    pub route: String,
    pub app: String,
    pub service: String,
    /// The version's name (`web-002`); empty for the router's own answers on the route
    /// (no ready instance, a redirect to https).
    pub version: String,
}

/// The counters of one route and version.
#[derive(Debug, Default)]
pub struct Stats {
    pub key: StatKey,
    /// Answers by status class, 1xx to 5xx.
    classes: [AtomicU64; 5],
    /// Time to the response head, summed, in microseconds.
    micros: AtomicU64,
    /// TCP connections or UDP flows taken.
    connections: AtomicU64,
}

/// Counters are the same when they count the same route and version (tables compare).
impl PartialEq for Stats {
    fn eq(&self, other: &Stats) -> bool {
        self.key == other.key
    }
}

impl Stats {
    /// An HTTP answer with `status`, its head `took` after the request arrived.
    pub fn answered(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(us, Ordering::Relaxed);
    }

    /// A TCP connection taken.
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of one route and version's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub key: StatKey,
    /// Answers by status class, 1xx to 5xx.
    pub classes: [u64; 5],
    /// Time to the response head, summed.
    pub seconds: f64,
    pub connections: u64,
}

/// The router's figures for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterFigures {
    /// By route and version, sorted.
    pub routes: Vec<Figures>,
    /// Requests no route took (404s, the health URI, triggers).
    pub unrouted: u64,
    /// Access records dropped because their buffer was full.
    pub access_dropped: u64,
    /// Access records written.
    pub access_logged: u64,
}

/// The counters by route and version, kept across tables.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<StatKey, Arc<Stats>>>,
    pub(super) unrouted: AtomicU64,
    pub(super) access_dropped: AtomicU64,
    pub(super) access_logged: AtomicU64,
}

impl Registry {
    /// The counters of `key`, the same ones every table gets.
    pub(super) fn of(&self, key: StatKey) -> Arc<Stats> {
        self.lock()
            .entry(key)
            .or_insert_with_key(|k| {
                Arc::new(Stats {
                    key: k.clone(),
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Forgets the counters of routes and versions no longer in the table.
    pub(super) fn keep_only(&self, keys: &std::collections::HashSet<StatKey>) {
        self.lock().retain(|k, _| keys.contains(k));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StatKey, Arc<Stats>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn figures(&self) -> RouterFigures {
        let mut routes: Vec<Figures> = self
            .lock()
            .values()
            .map(|s| Figures {
                key: s.key.clone(),
                classes: std::array::from_fn(|i| s.classes[i].load(Ordering::Relaxed)),
                seconds: s.micros.load(Ordering::Relaxed) as f64 / 1e6,
                connections: s.connections.load(Ordering::Relaxed),
            })
            .collect();
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        RouterFigures {
            routes,
            unrouted: self.unrouted.load(Ordering::Relaxed),
            access_dropped: self.access_dropped.load(Ordering::Relaxed),
            access_logged: self.access_logged.load(Ordering::Relaxed),
        }
    }
}

/// The access log's records waiting for the writer: formatted lines in byte buffers, one
/// per router worker thread (each thread picks its own once), each taken whole by the
/// writer. A request's record is written straight into its thread's buffer: no allocation
/// per request, nothing allocated on a worker and freed on the writer's thread, and no
/// wake-up of the writer while it gathers (the first record after it parked wakes it).
pub struct AccessLog {
    shards: Box<[Mutex<Vec<u8>>]>,
    /// Set while the writer waits for a record: the request that clears it rings.
    armed: AtomicBool,
    bell: tokio::sync::Notify,
    /// Rung when a buffer passes [`ACCESS_FILLED_BYTES`]: the writer's gathering ends early.
    filled: tokio::sync::Notify,
}

/// A record in a buffer: its time (i64, little-endian), its line's length (u32), the line.
const RECORD_HEAD: usize = 12;

/// Worker threads numbered in the order they first wrote a record.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            shards: (0..ACCESS_SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            armed: AtomicBool::new(false),
            bell: tokio::sync::Notify::new(),
            filled: tokio::sync::Notify::new(),
        }
    }
}

impl AccessLog {
    /// Writes a request's record; false when its thread's buffer is full (the record is
    /// dropped).
    pub(super) fn push(&self, head: &Head, went: &Went<'_>) -> bool {
        let shard = SHARD.with(|s| *s) % self.shards.len();
        let filled = {
            let mut buf = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
            if buf.len() >= ACCESS_SHARD_BYTES {
                return false;
            }
            let start = buf.len();
            buf.extend_from_slice(&head.time_ns.to_le_bytes());
            buf.extend_from_slice(&[0; 4]);
            head.write(went, &mut buf);
            let len = u32::try_from(buf.len() - start - RECORD_HEAD).unwrap_or(u32::MAX);
            buf[start + 8..start + RECORD_HEAD].copy_from_slice(&len.to_le_bytes());
            start < ACCESS_FILLED_BYTES && buf.len() >= ACCESS_FILLED_BYTES
        };
        if filled {
            self.filled.notify_one();
        }
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            self.bell.notify_one();
        }
        true
    }

    /// Returns once a record waits (at once when one does).
    pub async fn ready(&self) {
        self.armed.store(true, Ordering::SeqCst);
        if self
            .shards
            .iter()
            .any(|s| !s.lock().unwrap_or_else(|p| p.into_inner()).is_empty())
        {
            return;
        }
        // A record written since the arming rang (or rings): notify_one keeps the permit.
        self.bell.notified().await;
    }

    /// Returns once a buffer has passed [`ACCESS_FILLED_BYTES`] (at once when one did since
    /// the last call, even if it was taken since: then the round is only shorter).
    pub async fn filled(&self) {
        self.filled.notified().await;
    }

    /// Hands every waiting record to `each`, oldest first: (time in ns, line); returns how
    /// many. `spares` keeps emptied buffers for the threads' next records (their capacity
    /// kept across rounds).
    pub fn take(&self, spares: &mut Vec<Vec<u8>>, mut each: impl FnMut(i64, &[u8])) -> usize {
        let mut taken = Vec::new();
        for shard in self.shards.iter() {
            let mut buf = shard.lock().unwrap_or_else(|p| p.into_inner());
            if !buf.is_empty() {
                let fresh = spares.pop().unwrap_or_default();
                taken.push(std::mem::replace(&mut *buf, fresh));
            }
        }
        // Each thread's records are in order; the threads' are merged by time.
        let mut order = Vec::new();
        for (b, buf) in taken.iter().enumerate() {
            read_records(buf, |time_ns, at, len| order.push((time_ns, b, at, len)));
        }
        if taken.len() > 1 {
            order.sort_by_key(|r| r.0);
        }
        for &(time_ns, b, at, len) in &order {
            crate::pace::point();
            each(time_ns, &taken[b][at..at + len]);
        }
        for mut buf in taken {
            buf.clear();
            // A burst's buffer is not kept whole for the quiet that follows.
            buf.shrink_to(KEEP_SPARE);
            spares.push(buf);
        }
        order.len()
    }
}

/// Access log buffers (the router's worker threads share them when there are more).
const ACCESS_SHARDS: usize = 8;
/// Bytes one buffer holds before its records are dropped: 4 MiB, about 20,000 records. The
/// writer takes the buffers once a second, or as soon as one holds half of this
/// ([`ACCESS_FILLED_BYTES`]), so a thread can serve 100,000 requests a second for the other
/// half's 200 ms before one is dropped.
pub const ACCESS_SHARD_BYTES: usize = 4 << 20;
/// A buffer this full rings the writer ([`AccessLog::filled`]).
pub const ACCESS_FILLED_BYTES: usize = ACCESS_SHARD_BYTES / 2;
/// The capacity the writer keeps of a buffer it took.
const KEEP_SPARE: usize = 64 << 10;

/// The records of a buffer: (time in ns, where its line starts, its length).
fn read_records(buf: &[u8], mut each: impl FnMut(i64, usize, usize)) {
    let mut at = 0;
    while buf.len() - at >= RECORD_HEAD {
        crate::pace::point();
        let mut t = [0u8; 8];
        t.copy_from_slice(&buf[at..at + 8]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&buf[at + 8..at + RECORD_HEAD]);
        let len = u32::from_le_bytes(l) as usize;
        if buf.len() - at - RECORD_HEAD < len {
            break;
        }
        each(i64::from_le_bytes(t), at + RECORD_HEAD, len);
        at += RECORD_HEAD + len;
    }
}

/// What an access record says about a request, taken before it is sent on: the request's
/// own shared bytes (no copy).
pub(super) struct Head {
    pub time_ns: i64,
    pub client: SocketAddr,
    pub method: hyper::Method,
    pub target: Option<hyper::http::uri::PathAndQuery>,
    pub proto: &'static str,
    pub host: Option<hyper::header::HeaderValue>,
    pub agent: Option<hyper::header::HeaderValue>,
}

/// Where a request went, for its access record.
pub(super) struct Went<'a> {
    pub status: u16,
    /// The answer's length when its head says it.
    pub bytes: Option<u64>,
    pub took: Duration,
    /// The route's counters (naming app, service and version), when a route took it.
    pub stats: Option<&'a Stats>,
    /// The instance that answered.
    pub upstream: Option<SocketAddr>,
}

/// Writes at most `max` bytes of `s` (on a character boundary), with no control characters
/// or quotes: a client writes these fields, and a line must stay one line.
fn clean(out: &mut Vec<u8>, s: &[u8], max: usize) {
    // What clients send: printable ASCII, copied as it is (this runs for every request).
    if s.len() <= max && s.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"') {
        out.extend_from_slice(s);
        return;
    }
    clean_chars(out, s, max);
}

/// [`clean`] a character at a time.
fn clean_chars(out: &mut Vec<u8>, s: &[u8], max: usize) {
    let s = String::from_utf8_lossy(s);
    let mut n = 0;
    let mut b = [0u8; 4];
    for c in s.chars() {
        if n + c.len_utf8() > max {
            out.extend_from_slice("…".as_bytes());
            break;
        }
        n += c.len_utf8();
        let c = if c.is_control() || c == '"' { '?' } else { c };
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
}

impl Head {
    pub fn new<B>(
        req: &hyper::Request<B>,
        host: Option<&hyper::header::HeaderValue>,
        client: SocketAddr,
    ) -> Head {
        Head {
            time_ns: crate::timefmt::now_ns(),
            client,
            method: req.method().clone(),
            target: req.uri().path_and_query().cloned(),
            proto: match req.version() {
                hyper::Version::HTTP_10 => "HTTP/1.0",
                hyper::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            host: host.cloned(),
            agent: req.headers().get(hyper::header::USER_AGENT).cloned(),
        }
    }

    /// The record: `CLIENT "METHOD TARGET PROTO" STATUS BYTES SECONDS host=HOST
    /// to=APP/SERVICE VERSION UPSTREAM "AGENT"` (nginx's combined format's fields that
    /// matter here, plus where the request went and how long its answer took).
    pub fn write(&self, went: &Went<'_>, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Integers by `itoa` and no float: this runs on the request's thread. Writes into a
        // Vec do not fail.
        let mut n = itoa::Buffer::new();
        put_ip(out, client_ip(self.client));
        out.extend_from_slice(b" \"");
        clean(out, self.method.as_str().as_bytes(), 32);
        out.push(b' ');
        clean(
            out,
            self.target.as_ref().map_or("/", |p| p.as_str()).as_bytes(),
            MAX_LOGGED,
        );
        out.push(b' ');
        out.extend_from_slice(self.proto.as_bytes());
        out.extend_from_slice(b"\" ");
        out.extend_from_slice(n.format(went.status).as_bytes());
        out.push(b' ');
        match went.bytes {
            Some(b) => out.extend_from_slice(n.format(b).as_bytes()),
            None => out.push(b'-'),
        }
        // Seconds to the millisecond, rounded.
        let ms = (went.took.as_nanos() + 500_000) / 1_000_000;
        out.push(b' ');
        out.extend_from_slice(n.format(ms / 1000).as_bytes());
        out.push(b'.');
        let frac = n.format(ms % 1000 + 1000);
        out.extend_from_slice(&frac.as_bytes()[1..]);
        out.extend_from_slice(b" host=");
        match self.host.as_ref().filter(|h| !h.is_empty()) {
            Some(h) => clean(out, h.as_bytes(), 256),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" to=");
        match went.stats.filter(|s| !s.key.app.is_empty()) {
            Some(s) => {
                out.extend_from_slice(s.key.app.as_bytes());
                out.push(b'/');
                out.extend_from_slice(s.key.service.as_bytes());
                out.push(b' ');
                if s.key.version.is_empty() {
                    out.push(b'-');
                } else {
                    out.extend_from_slice(s.key.version.as_bytes());
                }
                out.push(b' ');
                match went.upstream {
                    Some(SocketAddr::V4(a)) => {
                        put_ip(out, std::net::IpAddr::V4(*a.ip()));
                        out.push(b':');
                        out.extend_from_slice(n.format(a.port()).as_bytes());
                    }
                    Some(a) => {
                        let _ = write!(out, "{a}");
                    }
                    None => out.push(b'-'),
                }
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" \"");
        if let Some(a) = &self.agent {
            clean(out, a.as_bytes(), MAX_LOGGED);
        }
        out.push(b'"');
    }
}

/// An address as `Display` writes it, IPv4 without the formatting machinery.
fn put_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    use std::io::Write as _;
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(o).as_bytes());
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A client's address as logged: an IPv4 client on a dual-stack socket as IPv4.
fn client_ip(a: SocketAddr) -> std::net::IpAddr {
    match a.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_a_route_and_version_live_across_tables_until_it_goes() {
        let r = Registry::default();
        let key = |v: &str| StatKey {
            route: "shop.test/".into(),
            app: "shop".into(),
            service: "web".into(),
            version: v.into(),
        };
        let a = r.of(key("web-001"));
        a.answered(200, Duration::from_millis(3));
        a.answered(503, Duration::from_millis(1));
        a.answered(999, Duration::ZERO);
        // The next table gets the same counters.
        assert!(Arc::ptr_eq(&a, &r.of(key("web-001"))));
        r.of(key("web-002")).connected();
        let f = r.figures();
        assert_eq!(f.routes.len(), 2);
        assert_eq!(f.routes[0].classes, [0, 1, 0, 0, 2]);
        assert!((f.routes[0].seconds - 0.004).abs() < 1e-9);
        assert_eq!(f.routes[1].connections, 1);
        r.keep_only(&[key("web-002")].into_iter().collect());
        assert_eq!(r.figures().routes.len(), 1);
    }

    /// Every waiting record of `log`, as (time, line).
    fn taken(log: &AccessLog, spares: &mut Vec<Vec<u8>>) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let n = log.take(spares, |t, l| {
            out.push((t, String::from_utf8_lossy(l).into_owned()));
        });
        assert_eq!(n, out.len());
        out
    }

    /// One record through an access log's buffer, back as (time, line).
    fn one_line(head: &Head, went: &Went<'_>) -> String {
        let log = AccessLog::default();
        assert!(log.push(head, went));
        let mut got = taken(&log, &mut Vec::new());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, head.time_ns);
        got.remove(0).1
    }

    #[test]
    fn an_access_record_stays_one_line_whatever_the_client_sends() {
        let req = hyper::Request::builder()
            .method("GET")
            .uri("/a?b=%22c")
            .header("user-agent", "evil\"agent\t\u{e9}")
            .body(())
            .expect("request");
        let host = hyper::header::HeaderValue::from_static("shop.test");
        let head = Head::new(
            &req,
            Some(&host),
            "[::ffff:10.1.2.3]:5000".parse().expect("addr"),
        );
        let stats = Stats {
            key: StatKey {
                route: "shop.test/".into(),
                app: "shop".into(),
                service: "web".into(),
                version: "web-002".into(),
            },
            ..Default::default()
        };
        let line = one_line(
            &head,
            &Went {
                status: 200,
                bytes: Some(12),
                took: Duration::from_millis(5),
                stats: Some(&stats),
                upstream: Some("127.0.0.1:32768".parse().expect("addr")),
            },
        );
        assert_eq!(
            line,
            "10.1.2.3 \"GET /a?b=%22c HTTP/1.1\" 200 12 0.005 host=shop.test to=shop/web web-002 127.0.0.1:32768 \"evil?agent?\u{e9}\""
        );
        // An IPv6 client and instance; the time rounded to the millisecond.
        let head6 = Head::new(
            &req,
            Some(&host),
            "[2001:db8::7]:5000".parse().expect("addr"),
        );
        let line = one_line(
            &head6,
            &Went {
                status: 502,
                bytes: None,
                took: Duration::from_micros(61_234_600),
                stats: Some(&stats),
                upstream: Some("[fd00::2]:8080".parse().expect("addr")),
            },
        );
        assert!(
            line.starts_with("2001:db8::7 \"GET /a?b=%22c HTTP/1.1\" 502 - 61.235 host=shop.test to=shop/web web-002 [fd00::2]:8080 \""),
            "{line}"
        );
        // A header's bytes that are not UTF-8 stay one line of valid text.
        let req = hyper::Request::builder()
            .uri(format!("/{}", "x".repeat(5000)))
            .header(
                "user-agent",
                hyper::header::HeaderValue::from_bytes(b"a\xff\xfe\"\t").expect("value"),
            )
            .body(())
            .expect("request");
        let line = one_line(
            &Head::new(&req, None, "127.0.0.1:1".parse().expect("addr")),
            &Went {
                status: 404,
                bytes: None,
                took: Duration::ZERO,
                stats: None,
                upstream: None,
            },
        );
        assert!(line.len() < 1200, "{}", line.len());
        assert!(line.starts_with("127.0.0.1 \"GET /xxx"), "{line}");
        assert!(
            line.ends_with("\" 404 - 0.000 host=- to=- \"a\u{fffd}\u{fffd}??\""),
            "{line}"
        );
    }

    proptest::proptest! {
        #[test]
        fn cleaning_whole_printable_fields_at_once_is_cleaning_them_by_character(
            s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            max in 0usize..100,
        ) {
            // Mostly printable ASCII (the fast path), with quotes, controls and high bytes.
            let s: Vec<u8> = s.into_iter().map(|b| if b < 200 { 0x20 + b % 0x60 } else { b }).collect();
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            clean(&mut fast, &s, max);
            clean_chars(&mut slow, &s, max);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    fn head_at(time_ns: i64) -> Head {
        let req = hyper::Request::builder()
            .uri("/")
            .body(())
            .expect("request");
        let mut h = Head::new(&req, None, "127.0.0.1:1".parse().expect("addr"));
        h.time_ns = time_ns;
        h
    }

    const WENT: Went<'static> = Went {
        status: 200,
        bytes: None,
        took: Duration::ZERO,
        stats: None,
        upstream: None,
    };

    #[test]
    fn records_of_several_threads_come_out_merged_by_time_and_a_full_buffer_drops() {
        let log = Arc::new(AccessLog::default());
        let threads: Vec<_> = (0..4i64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..100i64 {
                        assert!(log.push(&head_at(i * 4 + t), &WENT));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let mut spare = Vec::new();
        let got = taken(&log, &mut spare);
        let times: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert_eq!(times, (0..400).collect::<Vec<i64>>());
        assert!(taken(&log, &mut spare).is_empty(), "taken once");
        // One thread fills its buffer: the next records are refused until the writer takes.
        let mut n = 0usize;
        while log.push(&head_at(0), &WENT) {
            n += 1;
            assert!(n < ACCESS_SHARD_BYTES, "never full");
        }
        assert!(n > 10_000, "{n} records fit");
        assert_eq!(taken(&log, &mut spare).len(), n);
        assert!(log.push(&head_at(0), &WENT), "room again");
        assert!(
            spare
                .iter()
                .all(|b| b.is_empty() && b.capacity() <= KEEP_SPARE),
            "{:?}",
            spare.iter().map(Vec::capacity).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_buffer_filled_half_ends_the_writers_gathering() {
        let log = Arc::new(AccessLog::default());
        let gathering = {
            let log = log.clone();
            tokio::spawn(async move { log.filled().await })
        };
        let held = |log: &AccessLog| {
            log.shards
                .iter()
                .map(|s| s.lock().expect("shard").len())
                .sum::<usize>()
        };
        // One thread (one buffer) fills it to just under half, then waits to go on.
        let (go_on, wait) = std::sync::mpsc::channel::<()>();
        let pusher = {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while held(&log) < ACCESS_FILLED_BYTES - 1024 {
                    assert!(log.push(&head_at(n), &WENT));
                    n += 1;
                }
                wait.recv().expect("go on");
                for i in 0..100 {
                    assert!(log.push(&head_at(n + i), &WENT));
                }
            })
        };
        while held(&log) < ACCESS_FILLED_BYTES - 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !gathering.is_finished(),
            "under half: the writer gathers on"
        );
        go_on.send(()).expect("pusher");
        tokio::time::timeout(Duration::from_secs(5), gathering)
            .await
            .expect("a buffer past half rings the writer")
            .expect("task");
        pusher.join().expect("pusher");
        assert!(held(&log) >= ACCESS_FILLED_BYTES, "nothing dropped");
    }

    #[tokio::test]
    async fn the_writer_waits_without_records_and_wakes_on_the_first() {
        let log = Arc::new(AccessLog::default());
        let waiting = tokio::time::timeout(Duration::from_millis(50), log.ready()).await;
        assert!(waiting.is_err(), "no record: it waits");
        let writer = {
            let log = log.clone();
            tokio::spawn(async move { log.ready().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(log.push(&head_at(1), &WENT));
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("woken by the record")
            .expect("task");
        // A record waiting already: no wait at all.
        tokio::time::timeout(Duration::from_millis(50), log.ready())
            .await
            .expect("at once");
    }
}
