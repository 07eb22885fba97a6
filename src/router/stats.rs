//! What the router counts and writes down: requests per route and version (by status
//! class, with their time to the response head) for `/metrics`, TCP connections per router
//! port and version, and the access log's records.
//!
//! Invariants: counting is a few relaxed atomic adds on the request path (no lock, no
//! allocation); the counters of a route and version live across tables (the router hands
//! the same [`Stats`] to every table that has them) and go when a table no longer has them.
//! The access log never holds a request up: a record that does not fit in its bounded queue
//! is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records the access log's queue holds before it drops them.
pub const ACCESS_QUEUE: usize = 16_384;
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
    /// Access records dropped because the queue was full.
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

/// One line of the router's access log.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub time_ns: i64,
    /// The app, service and version that answered (empty when no route took the request).
    pub app: String,
    pub service: String,
    pub version: String,
    pub message: String,
}

/// What an access record says about a request, taken before it is sent on.
pub(super) struct Head {
    pub time_ns: i64,
    pub client: SocketAddr,
    pub method: String,
    pub target: String,
    pub proto: &'static str,
    pub host: String,
    pub agent: String,
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

/// Keeps at most `max` bytes of `s` (on a character boundary), with no control characters
/// or quotes: a client writes these fields, and a line must stay one line.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() || c == '"' { '?' } else { c });
    }
    out
}

impl Head {
    pub fn new<B>(req: &hyper::Request<B>, host: &str, client: SocketAddr) -> Head {
        let agent = req
            .headers()
            .get(hyper::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        Head {
            time_ns: crate::timefmt::now_ns(),
            client,
            method: clean(req.method().as_str(), 32),
            target: clean(
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
                MAX_LOGGED,
            ),
            proto: match req.version() {
                hyper::Version::HTTP_10 => "HTTP/1.0",
                hyper::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            host: clean(host, 256),
            agent: clean(&agent, MAX_LOGGED),
        }
    }

    /// The record: `CLIENT "METHOD TARGET PROTO" STATUS BYTES SECONDS host=HOST
    /// to=APP/SERVICE VERSION UPSTREAM "AGENT"` (nginx's combined format's fields that
    /// matter here, plus where the request went and how long its answer took).
    pub fn record(self, went: Went<'_>) -> Access {
        let (app, service, version) = went
            .stats
            .map(|s| {
                (
                    s.key.app.clone(),
                    s.key.service.clone(),
                    s.key.version.clone(),
                )
            })
            .unwrap_or_default();
        let bytes = went
            .bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "-".into());
        let to = if app.is_empty() {
            "-".to_string()
        } else {
            let v = if version.is_empty() { "-" } else { &version };
            let up = went
                .upstream
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into());
            format!("{app}/{service} {v} {up}")
        };
        let message = format!(
            "{} \"{} {} {}\" {} {bytes} {:.3} host={} to={to} \"{}\"",
            client_ip(self.client),
            self.method,
            self.target,
            self.proto,
            went.status,
            went.took.as_secs_f64(),
            if self.host.is_empty() {
                "-"
            } else {
                &self.host
            },
            self.agent,
        );
        Access {
            time_ns: self.time_ns,
            app,
            service,
            version,
            message,
        }
    }
}

/// A client's address as logged: an IPv4 client on a dual-stack socket as IPv4.
fn client_ip(a: SocketAddr) -> String {
    match a.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
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

    #[test]
    fn an_access_record_stays_one_line_whatever_the_client_sends() {
        let req = hyper::Request::builder()
            .method("GET")
            .uri("/a?b=%22c")
            .header("user-agent", "evil\"agent\t")
            .body(())
            .expect("request");
        let head = Head::new(
            &req,
            "shop.test",
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
        let a = head.record(Went {
            status: 200,
            bytes: Some(12),
            took: Duration::from_millis(5),
            stats: Some(&stats),
            upstream: Some("127.0.0.1:32768".parse().expect("addr")),
        });
        assert_eq!(
            a.message,
            "10.1.2.3 \"GET /a?b=%22c HTTP/1.1\" 200 12 0.005 host=shop.test to=shop/web web-002 127.0.0.1:32768 \"evil?agent?\""
        );
        assert_eq!((a.app.as_str(), a.version.as_str()), ("shop", "web-002"));
        let long = "x".repeat(5000);
        let req = hyper::Request::builder()
            .uri(format!("/{long}"))
            .body(())
            .expect("request");
        let a = Head::new(&req, "", "127.0.0.1:1".parse().expect("addr")).record(Went {
            status: 404,
            bytes: None,
            took: Duration::ZERO,
            stats: None,
            upstream: None,
        });
        assert!(a.message.len() < 1200, "{}", a.message.len());
        assert!(
            a.message.contains("\" 404 - 0.000 host=- to=- \"\""),
            "{}",
            a.message
        );
    }
}
