//! The routing table: which backends serve a host + path (HTTP) or a router port (TCP).
//!
//! Invariants: pure. Built from the desired state and the observed instances; only ready
//! (running and healthy) instances of live versions are backends, each version's pool
//! weighted by its share in [`splits`] (`release::effective_weights`: the stored weights,
//! or during a rolling update each version's part of the ready instances), which is also
//! what `berth versions` shows. Replaced wholesale after each reconcile pass, so a request
//! sees one consistent table.

use crate::model::{Instance, LbScheme, NetworkMode, Protocol, Route};
use crate::store::StoredApp;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One instance as a backend.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Short container id: the value of the stickiness cookie.
    pub id: Arc<str>,
    pub addr: SocketAddr,
    /// Requests (HTTP) or connections (TCP) in flight to it; the router keeps one counter
    /// per instance across tables, so a drain sees requests picked from any table.
    pub inflight: Arc<AtomicUsize>,
    /// An instance on another member: until this time (ms since the epoch) it is out of
    /// rotation, after it refused a connection (the passive check); kept across tables and
    /// cleared when its member reports it again.
    pub down_until: Arc<AtomicU64>,
    /// On another member (a table built from its records).
    pub remote: bool,
    /// When its member last reported it (ms; 0 for this host's).
    pub reported_ms: i64,
    /// The counters of its route and version (the router sets them).
    pub stats: Arc<super::stats::Stats>,
}

/// How long an instance on another member that refused a connection stays out of rotation
/// unless its member reports it again sooner.
pub const DOWN_MS: u64 = 10_000;

impl Endpoint {
    /// The passive check: a connection to it failed at `now_ms`.
    pub fn mark_down(&self, now_ms: u64) {
        if self.remote {
            self.down_until.store(now_ms + DOWN_MS, Ordering::Relaxed);
        }
    }
}

impl Endpoint {
    /// Where it runs, for an error message: this host, or another member at its address.
    pub fn place(&self) -> String {
        if self.remote {
            format!("on the member at {}", self.addr)
        } else {
            "on this host".to_string()
        }
    }

    fn usable(&self, now_ms: u64) -> bool {
        !self.remote || self.down_until.load(Ordering::Relaxed) <= now_ms
    }
}

/// An instance another member runs and reports ready, as the router reaches it: at its
/// member's address and its published host ports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteEndpoint {
    pub app: String,
    pub service: String,
    /// Its version's name (`web-002`).
    pub version: String,
    /// Short container id.
    pub id: String,
    pub ip: std::net::IpAddr,
    pub ports: Vec<crate::model::PublishedPort>,
    /// When its member's record said so (ms): a newer report clears a passive-check mark.
    pub reported_ms: i64,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.id == other.id && self.addr == other.addr
    }
}

/// The backends of one version, with its share of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub version: String,
    pub weight: u32,
    pub endpoints: Vec<Endpoint>,
    /// Instances of a version that lost its traffic, still serving until the versions that
    /// have it are ready: used only when no weighted pool has a ready instance.
    pub fallback: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub app: String,
    pub service: String,
    /// `app/service`, for messages (shared, not copied per request).
    pub label: Arc<str>,
    pub sticky: bool,
    pub pools: Vec<Pool>,
    /// A service that scales to zero: with no ready instance, a request is held this many
    /// seconds while one starts (`auto_scaling.cold_start_timeout`).
    pub cold_start: Option<u32>,
    /// When it was last asked for (kept across tables by the router).
    pub used: super::cold::Used,
    /// The counters of the router's own answers on the route (no ready instance, a
    /// redirect); the router sets them.
    pub stats: Arc<super::stats::Stats>,
    /// How an instance is picked within a version (`proxy.BALANCE`).
    pub balance: crate::model::Balance,
}

impl Backend {
    /// `roll` and `turn` for [`Backend::pick`]: a client address's own (`source`: the same
    /// address reaches the same instance), or the router's next.
    pub fn choice(
        &self,
        client: std::net::IpAddr,
        next: impl FnOnce() -> (u32, usize),
    ) -> (u32, usize) {
        if self.balance != crate::model::Balance::Source {
            return next();
        }
        // FNV-1a of the address: stable across tables and restarts.
        let bytes = match client {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        ((h >> 32) as u32, h as usize)
    }

    /// Picks a backend: a version by weight (`roll`, taken modulo the total), then round robin (`turn`)
    /// over its ready instances. A version without ready instances gives its share to the
    /// others; a sticky client keeps its instance while that is still a backend. An
    /// instance on another member marked down by the passive check (`now_ms`) is skipped.
    pub fn pick(
        &self,
        roll: u32,
        turn: usize,
        sticky_id: Option<&str>,
        now_ms: u64,
    ) -> Option<&Endpoint> {
        if let Some(id) = sticky_id.filter(|_| self.sticky)
            && let Some(e) = self
                .pools
                .iter()
                .filter(|p| p.weight > 0)
                .flat_map(|p| &p.endpoints)
                .find(|e| &*e.id == id && e.usable(now_ms))
        {
            return Some(e);
        }
        // No allocation here: this runs for every request.
        let usable = |p: &&Pool| p.endpoints.iter().any(|e| e.usable(now_ms));
        let live = || self.pools.iter().filter(|p| p.weight > 0).filter(usable);
        let total: u32 = live().map(|p| p.weight).sum();
        if total == 0 {
            let rest = || {
                self.pools
                    .iter()
                    .filter(|p| p.fallback)
                    .flat_map(|p| &p.endpoints)
                    .filter(|e| e.usable(now_ms))
            };
            let n = rest().count();
            return if n == 0 { None } else { rest().nth(turn % n) };
        }
        let mut r = roll % total;
        for p in live() {
            if r < p.weight {
                if self.balance == crate::model::Balance::Leastconn {
                    // The fewest in flight; among equals, the next in turn.
                    let n = p.endpoints.len().max(1);
                    return (0..n)
                        .map(|k| &p.endpoints[(turn + k) % n])
                        .filter(|e| e.usable(now_ms))
                        .min_by_key(|e| e.inflight.load(Ordering::Relaxed));
                }
                let n = p.endpoints.iter().filter(|e| e.usable(now_ms)).count();
                return p
                    .endpoints
                    .iter()
                    .filter(|e| e.usable(now_ms))
                    .nth(turn % n.max(1));
            }
            r -= p.weight;
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Lower-case host name, without port.
    pub host: String,
    /// Path prefix ("" = everything).
    pub path: String,
    pub https: bool,
    /// A `.local` route: served to the app networks through the router's internal side
    /// only, never on its public listeners.
    pub internal: bool,
    /// The router port it is served on (an acs/proxy `VIRTUAL_HOST` with a port); 0: the
    /// router's own listeners.
    pub port: u16,
    /// Rule order (`proxy.VIRTUAL_HOST_WEIGHT`): a higher weight wins first.
    pub weight: u32,
    pub backend: Backend,
}

/// A router port serving Host-routed HTTP besides the router's own listeners: one an
/// acs/proxy service published (every route), or one a `VIRTUAL_HOST` names (its routes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VhostPort {
    /// TLS terminated with the HTTPS listener's certificates (443, or https routes).
    pub tls: bool,
    /// Serves the routes of the router's own listeners too (an acs/proxy published port).
    pub all: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub http: Vec<HttpRoute>,
    /// Router TCP port -> backend.
    pub tcp: BTreeMap<u16, Backend>,
    /// Router port -> backend served as HTTP whatever the Host, or as HTTPS (`true`)
    /// (`lb.port_N: http://` and `https://`).
    pub http_ports: BTreeMap<u16, (Backend, bool)>,
    /// Router UDP port -> backend (`lb.port_N: udp://`).
    pub udp: BTreeMap<u16, Backend>,
    /// Extra Host-routed router ports (acs/proxy).
    pub vhost_ports: BTreeMap<u16, VhostPort>,
    /// The backend of requests no route takes (`proxy.required`).
    pub default_backend: Option<Backend>,
    /// Some route has a `VIRTUAL_HOST_WEIGHT` (the lookup then weighs every match).
    pub weighted: bool,
}

impl Table {
    /// Every backend: of the HTTP routes, the TCP, HTTP(S) and UDP router ports.
    pub fn backends_mut(&mut self) -> impl Iterator<Item = &mut Backend> {
        self.http
            .iter_mut()
            .map(|r| &mut r.backend)
            .chain(self.tcp.values_mut())
            .chain(self.http_ports.values_mut().map(|(b, _)| b))
            .chain(self.udp.values_mut())
            .chain(self.default_backend.iter_mut())
    }

    /// The route for a host and path: the host's own routes when it has any (exact wins),
    /// else those of the longest wildcard (`*.example.com` takes any name under
    /// example.com, at any depth, as nginx's `server_name` does); then the longest matching
    /// path prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<&HttpRoute> {
        self.route_in(host, path, false)
    }

    /// As [`Table::route`], from the router's internal side (`internal`: `.local` routes
    /// too) or a public listener (without them).
    pub fn route_in(&self, host: &str, path: &str, internal: bool) -> Option<&HttpRoute> {
        self.route_on(host, path, internal, 0)
    }

    /// As [`Table::route_in`], on router port `port` (0: the router's own listeners): the
    /// routes served there. With rule weights, the heaviest matching rule wins first.
    pub fn route_on(
        &self,
        host: &str,
        path: &str,
        internal: bool,
        port: u16,
    ) -> Option<&HttpRoute> {
        let host = host
            .split(':')
            .next()
            .unwrap_or(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let all = port != 0 && self.vhost_ports.get(&port).is_some_and(|v| v.all);
        let seen =
            |r: &&HttpRoute| (internal || !r.internal) && (r.port == port || (all && r.port == 0));
        let best = self.most_specific(&host, path, seen);
        if !self.weighted {
            return best;
        }
        let heaviest = self
            .http
            .iter()
            .filter(seen)
            .filter(|r| r.weight > 0)
            .filter(|r| r.host == host || wildcard_covers(&r.host, &host))
            .filter(|r| path_matches(&r.path, path))
            .max_by_key(|r| (r.weight, r.host == host, r.host.len(), r.path.len()));
        match (heaviest, best) {
            (Some(h), Some(b)) if h.weight > b.weight => Some(h),
            (Some(h), None) => Some(h),
            (_, b) => b,
        }
    }

    fn most_specific(
        &self,
        host: &str,
        path: &str,
        seen: impl Fn(&&HttpRoute) -> bool + Copy,
    ) -> Option<&HttpRoute> {
        if self.http.iter().filter(seen).any(|r| r.host == host) {
            return self
                .http
                .iter()
                .filter(seen)
                .filter(|r| r.host == host && path_matches(&r.path, path))
                .max_by_key(|r| r.path.len());
        }
        let wild = self
            .http
            .iter()
            .filter(seen)
            .filter(|r| wildcard_covers(&r.host, host))
            .map(|r| r.host.len())
            .max()?;
        self.http
            .iter()
            .filter(seen)
            .filter(|r| r.host.len() == wild && wildcard_covers(&r.host, host))
            .filter(|r| path_matches(&r.path, path))
            .max_by_key(|r| r.path.len())
    }
}

/// A `.local` domain written in a label is the apps' own (the seed's routing container): not
/// one under the router's domain, which a LAN may well name `apps.local`.
fn internal_domain(r: &Route, router_domain: &str) -> bool {
    let d = router_domain.trim_matches('.');
    !r.prefix
        && r.domain.ends_with(".local")
        && (d.is_empty() || !(r.domain == d || r.domain.ends_with(&format!(".{d}"))))
}

/// Whether wildcard route host `pattern` (`*.example.com`) covers `host`: one or more
/// labels before its suffix (`example.com` itself is not covered).
fn wildcard_covers(pattern: &str, host: &str) -> bool {
    pattern.strip_prefix("*.").is_some_and(|suffix| {
        host.len() > suffix.len() + 1
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
    })
}

/// `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`.
fn path_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

/// The HTTP routes of a service, by container port: its `routing.port_N` labels; a service
/// without any, in bridge mode with a published TCP port, answers when the router has a
/// domain at its default `<service>.<app>.<domain>` on its first such port, as the seed
/// consoles give every service an address.
pub fn service_routes(
    app: &str,
    name: &str,
    svc: &crate::model::ServiceSpec,
    router_domain: &str,
) -> Vec<(u16, Route)> {
    if !svc.ext.routing.is_empty() {
        return svc
            .ext
            .routing
            .iter()
            .flat_map(|(port, routes)| routes.iter().map(|r| (*port, r.clone())))
            .collect();
    }
    let domain = router_domain.trim_matches('.');
    let first = svc
        .ports
        .iter()
        .find(|p| p.protocol == crate::model::Protocol::Tcp)
        .map(|p| p.container_port);
    match first {
        Some(port)
            if !domain.is_empty()
                && svc.network_mode == NetworkMode::Bridge
                && !svc.ext.lb.contains_key(&port) =>
        {
            vec![(
                port,
                Route {
                    scheme: crate::model::Scheme::Http,
                    domain: format!("{name}.{app}.{domain}"),
                    prefix: false,
                    path: String::new(),
                    port: 0,
                    weight: 0,
                },
            )]
        }
        _ => Vec::new(),
    }
}

/// What a service is reached at from outside: a URL per HTTP route (its labels', or its
/// default domain) and `tcp://ADDRESS:PORT` per `lb.port_N`, for `berth ps` and the console.
pub fn service_endpoints(
    app: &str,
    name: &str,
    svc: &crate::model::ServiceSpec,
    router_domain: &str,
    tcp_ip: std::net::IpAddr,
) -> Vec<String> {
    let mut out: Vec<String> = service_routes(app, name, svc, router_domain)
        .into_iter()
        .filter_map(|(_, r)| {
            let host = route_host(&r, router_domain)?;
            let scheme = match r.scheme {
                crate::model::Scheme::Https => "https",
                crate::model::Scheme::Http => "http",
            };
            Some(format!("{scheme}://{host}{}", r.path))
        })
        .collect();
    out.extend(svc.ext.lb.iter().map(|(port, rp)| {
        let ip = if tcp_ip.is_unspecified() {
            "HOST".to_string()
        } else {
            tcp_ip.to_string()
        };
        format!("{}://{ip}:{rp}", svc.ext.lb_scheme(*port).as_str())
    }));
    out
}

/// The host a route answers to: a full domain, or `<prefix>.<router domain>`.
pub fn route_host(r: &Route, router_domain: &str) -> Option<String> {
    if !r.prefix {
        return Some(r.domain.clone());
    }
    let d = router_domain.trim_matches('.');
    (!d.is_empty()).then(|| format!("{}.{d}", r.domain))
}

fn endpoint_of(
    i: &Instance,
    (container_port, protocol): (u16, Protocol),
    mode: NetworkMode,
) -> Option<Endpoint> {
    let id: String = i.id.chars().take(12).collect();
    let id: Arc<str> = id.into();
    let addr = match mode {
        NetworkMode::Host => SocketAddr::from(([127, 0, 0, 1], container_port)),
        _ => {
            let p = i
                .ports
                .iter()
                .find(|p| p.container_port == container_port && p.protocol == protocol)?;
            // A port published on all interfaces is reached on loopback from this host.
            let ip = match p.host_ip.as_str() {
                "" | "0.0.0.0" | "::" => "127.0.0.1",
                ip => ip,
            };
            SocketAddr::new(ip.parse().ok()?, p.host_port)
        }
    };
    Some(Endpoint {
        id,
        addr,
        inflight: Arc::default(),
        down_until: Arc::default(),
        remote: false,
        reported_ms: 0,
        stats: Arc::default(),
    })
}

/// Another member's instance as an endpoint for `container_port`: its member's address and
/// the host port published for it (a port published on one address only is reached there;
/// on loopback it cannot be reached from here).
fn remote_endpoint_of(
    r: &RemoteEndpoint,
    (container_port, protocol): (u16, Protocol),
    mode: NetworkMode,
) -> Option<Endpoint> {
    let addr = match mode {
        NetworkMode::Host => SocketAddr::new(r.ip, container_port),
        _ => {
            let p = r
                .ports
                .iter()
                .find(|p| p.container_port == container_port && p.protocol == protocol)?;
            let ip = match p.host_ip.as_str() {
                "" | "0.0.0.0" | "::" => r.ip,
                ip => ip
                    .parse()
                    .ok()
                    .filter(|ip: &std::net::IpAddr| !ip.is_loopback())?,
            };
            SocketAddr::new(ip, p.host_port)
        }
    };
    Some(Endpoint {
        id: r.id.as_str().into(),
        addr,
        inflight: Arc::default(),
        down_until: Arc::default(),
        remote: true,
        reported_ms: r.reported_ms,
        stats: Arc::default(),
    })
}

fn backend(
    app: &StoredApp,
    service: &str,
    port: (u16, Protocol),
    (instances, remote): (&[Instance], &[RemoteEndpoint]),
    leaving: &BTreeSet<&str>,
    split: &[Share],
) -> Option<Backend> {
    let svc = app.spec.services.get(service)?;
    let live = app.live(service);
    let serving = |i: &&Instance| {
        i.app == app.spec.name
            && i.service == service
            && crate::plan::is_ready(i)
            && !leaving.contains(i.id.as_str())
    };
    let endpoints = |f: &dyn Fn(&Instance) -> bool| -> Vec<Endpoint> {
        instances
            .iter()
            .filter(serving)
            .filter(|i| f(i))
            .filter_map(|i| endpoint_of(i, port, svc.network_mode))
            .collect()
    };
    let mut pools = Vec::new();
    for l in live {
        let weight = split
            .iter()
            .find(|s| s.number == l.version.number)
            .map(|s| s.weight)
            .unwrap_or(0);
        let name = l.version.name();
        let mut eps = endpoints(&|i| l.runs(i));
        eps.extend(
            remote
                .iter()
                .filter(|r| r.app == app.spec.name && r.service == service && r.version == name)
                .filter_map(|r| remote_endpoint_of(r, port, svc.network_mode)),
        );
        pools.push(Pool {
            version: name,
            weight,
            endpoints: eps,
            fallback: false,
        });
    }
    pools.push(Pool {
        version: String::new(),
        weight: 0,
        endpoints: endpoints(&|i| !live.iter().any(|l| l.runs(i))),
        fallback: true,
    });
    if app.stopped {
        pools.clear();
    }
    Some(Backend {
        app: app.spec.name.clone(),
        service: service.to_string(),
        label: format!("{}/{service}", app.spec.name).into(),
        sticky: svc.ext.session_sticky,
        pools,
        cold_start: svc
            .ext
            .auto_scaling
            .as_ref()
            .filter(|a| a.min_instances == 0 && !app.stopped)
            .map(|a| a.cold_start_timeout),
        used: Default::default(),
        stats: Arc::default(),
        balance: svc.ext.balance,
    })
}

/// Each service's traffic split, `(app, service) -> [(version, percent)]` over its live
/// versions: what the router routes by and what `berth versions` shows.
pub type Splits = BTreeMap<(String, String), Vec<Share>>;

/// One live version's part of its service's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub number: u32,
    /// Percent of the requests (connections) the router sends it.
    pub weight: u32,
    /// Its ready instances the router may use.
    pub ready: u32,
}

/// Ready instances that stay (not `leaving`) of an app's service, by live version.
fn ready_by_version(
    app: &StoredApp,
    service: &str,
    instances: &[Instance],
    leaving: &BTreeSet<&str>,
) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for i in instances.iter().filter(|i| {
        i.app == app.spec.name
            && i.service == service
            && crate::plan::is_ready(i)
            && !leaving.contains(i.id.as_str())
    }) {
        if let Some(l) = app.live(service).iter().find(|l| l.runs(i)) {
            *out.entry(l.version.number).or_insert(0) += 1;
        }
    }
    out
}

/// The splits of every service (`release::effective_weights` over its ready instances; all
/// 0 for a stopped app). In a cluster, `elsewhere` adds the instances ready on the other
/// members, by (app, service, version name).
pub fn splits(
    apps: &[std::sync::Arc<StoredApp>],
    instances: &[Instance],
    leaving: &BTreeSet<&str>,
    elsewhere: &BTreeMap<(String, String, String), u32>,
) -> Splits {
    let mut out = Splits::new();
    for app in apps {
        for service in app.spec.services.keys() {
            let mut ready = ready_by_version(app, service, instances, leaving);
            for l in app.live(service) {
                let key = (app.spec.name.clone(), service.clone(), l.version.name());
                if let Some(n) = elsewhere.get(&key) {
                    *ready.entry(l.version.number).or_insert(0) += n;
                }
            }
            let live: Vec<&crate::model::Version> =
                app.live(service).iter().map(|l| &l.version).collect();
            let ready_of = |n: u32| ready.get(&n).copied().unwrap_or(0);
            let weights = if app.stopped {
                live.iter().map(|v| (v.number, 0)).collect()
            } else {
                crate::plan::release::effective_weights(&live, ready_of)
            };
            let split = weights
                .into_iter()
                .map(|(number, weight)| Share {
                    number,
                    weight,
                    ready: ready_of(number),
                })
                .collect();
            out.insert((app.spec.name.clone(), service.clone()), split);
        }
    }
    out
}

/// Builds the table from the stored apps and this node's instances, leaving out `leaving`
/// (ids of instances about to be stopped or removed: they drain instead), plus the instances
/// other members run and report ready (`remote`); each backend's versions get their share
/// from `splits`.
pub fn build(
    apps: &[std::sync::Arc<StoredApp>],
    (instances, remote): (&[Instance], &[RemoteEndpoint]),
    leaving: &BTreeSet<&str>,
    splits: &Splits,
    router_domain: &str,
) -> Table {
    let mut t = Table::default();
    for app in apps {
        let first_http = t.http.len();
        let mut keys = Vec::new();
        for (name, svc) in &app.spec.services {
            let split = splits
                .get(&(app.spec.name.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (port, r) in service_routes(&app.spec.name, name, svc, router_domain) {
                let (Some(host), Some(b)) = (
                    route_host(&r, router_domain),
                    backend(
                        app,
                        name,
                        (port, Protocol::Tcp),
                        (instances, remote),
                        leaving,
                        split,
                    ),
                ) else {
                    continue;
                };
                keys.push(crate::plan::routes::key(&r));
                if r.port != 0 {
                    let v = t.vhost_ports.entry(r.port).or_default();
                    v.tls |= r.scheme == crate::model::Scheme::Https;
                }
                t.weighted |= r.weight > 0;
                t.http.push(HttpRoute {
                    port: r.port,
                    weight: r.weight,
                    internal: !svc.ext.routing.is_empty() && internal_domain(&r, router_domain),
                    host,
                    path: r.path.clone(),
                    https: r.scheme == crate::model::Scheme::Https,
                    backend: b,
                });
            }
            for (port, router_port) in &svc.ext.lb {
                let scheme = svc.ext.lb_scheme(*port);
                let Some(b) = backend(
                    app,
                    name,
                    (*port, scheme.protocol()),
                    (instances, remote),
                    leaving,
                    split,
                ) else {
                    continue;
                };
                match scheme {
                    LbScheme::Tcp => {
                        t.tcp.insert(*router_port, b);
                    }
                    LbScheme::Http | LbScheme::Https => {
                        t.http_ports
                            .insert(*router_port, (b, scheme == LbScheme::Https));
                    }
                    LbScheme::Udp => {
                        t.udp.insert(*router_port, b);
                    }
                }
            }
        }
        let routes = t.http.split_off(first_http);
        t.http.extend(merge_shared(app, routes, keys));
        for p in &app.spec.proxy_ports {
            let v = t.vhost_ports.entry(*p).or_default();
            v.all = true;
            v.tls |= *p == 443;
        }
        if t.default_backend.is_none()
            && let Some((name, port)) = app
                .spec
                .services
                .iter()
                .find_map(|(n, s)| s.ext.default_backend.map(|p| (n, p)))
        {
            let split = splits
                .get(&(app.spec.name.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            t.default_backend = backend(
                app,
                name,
                (port, Protocol::Tcp),
                (instances, remote),
                leaving,
                split,
            );
        }
    }
    t.http
        .sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
    t
}

/// Merges the app's HTTP routes `routes` (keyed as [`crate::plan::routes::key`]) that
/// several of its services name into one backend per route: each service's versions keep
/// their split, scaled by the service's part of the route (`route_weights`, or equal
/// shares), so a pool's weight is service percent x version percent.
fn merge_shared(app: &StoredApp, routes: Vec<HttpRoute>, keys: Vec<String>) -> Vec<HttpRoute> {
    let mut out: Vec<(String, HttpRoute)> = Vec::with_capacity(routes.len());
    let mut groups: BTreeMap<(String, String, bool), Vec<(String, HttpRoute)>> = BTreeMap::new();
    for (k, r) in keys.into_iter().zip(routes) {
        groups
            .entry((r.host.clone(), r.path.clone(), r.internal))
            .or_default()
            .push((k, r));
    }
    for (_, mut group) in groups {
        group.sort_by(|a, b| a.1.backend.service.cmp(&b.1.backend.service));
        group.dedup_by(|a, b| a.1.backend.service == b.1.backend.service);
        if group.len() == 1 {
            out.extend(group);
            continue;
        }
        let services: Vec<String> = group
            .iter()
            .map(|(_, r)| r.backend.service.clone())
            .collect();
        let key = group[0].0.clone();
        let shares = crate::plan::routes::service_weights(&services, app.route_weights.get(&key));
        let mut merged = group[0].1.clone();
        merged.backend.service = services.join(",");
        merged.backend.label = format!("{}/{}", app.spec.name, merged.backend.service).into();
        // Waking a service from zero is per service; a shared route does not.
        merged.backend.cold_start = None;
        merged.backend.pools.clear();
        for ((_, r), share) in group.into_iter().zip(shares) {
            merged.https |= r.https;
            merged.backend.sticky |= r.backend.sticky;
            for mut p in r.backend.pools {
                p.weight *= share;
                merged.backend.pools.push(p);
            }
        }
        out.push((key, merged));
    }
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, port: u16) -> Endpoint {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Endpoint {
            id: id.into(),
            addr,
            inflight: Arc::default(),
            down_until: Arc::default(),
            remote: false,
            reported_ms: 0,
            stats: Arc::default(),
        }
    }

    fn backend(pools: Vec<(u32, Vec<Endpoint>)>) -> Backend {
        Backend {
            app: "a".into(),
            service: "web".into(),
            label: "a/web".into(),
            sticky: true,
            cold_start: None,
            used: Default::default(),
            stats: Arc::default(),
            pools: pools
                .into_iter()
                .enumerate()
                .map(|(i, (weight, endpoints))| Pool {
                    version: format!("web-{i:03}"),
                    weight,
                    endpoints,
                    fallback: weight == 0,
                })
                .collect(),
            balance: Default::default(),
        }
    }

    #[test]
    fn weights_split_then_round_robin() {
        let b = backend(vec![
            (90, vec![ep("a", 1), ep("b", 2)]),
            (10, vec![ep("c", 3)]),
        ]);
        let picks: Vec<&str> = (0..100)
            .map(|r| b.pick(r, r as usize, None, 0).map(|e| &*e.id).unwrap_or(""))
            .collect();
        assert_eq!(picks.iter().filter(|p| **p == "c").count(), 10);
        assert_eq!(picks.iter().filter(|p| **p == "a").count(), 45);
        // A version with no ready instance gives its share away; none at all -> no backend.
        let b = backend(vec![(90, vec![]), (10, vec![ep("c", 3)])]);
        assert!((0..100).all(|r| b.pick(r, 0, None, 0).map(|e| &*e.id) == Some("c")));
        assert_eq!(backend(vec![(100, vec![])]).pick(0, 0, None, 0), None);
        // Instances of a version that lost its traffic serve only while nothing else can.
        let b = backend(vec![(100, vec![]), (0, vec![ep("old", 4)])]);
        assert_eq!(b.pick(7, 0, None, 0).map(|e| &*e.id), Some("old"));
        let b = backend(vec![(100, vec![ep("new", 5)]), (0, vec![ep("old", 4)])]);
        assert_eq!(b.pick(7, 0, None, 0).map(|e| &*e.id), Some("new"));
    }

    fn route(service: &str, pools: Vec<(u32, Vec<Endpoint>)>) -> HttpRoute {
        let mut b = backend(pools);
        b.service = service.into();
        for p in &mut b.pools {
            p.version = p.version.replace("web", service);
        }
        HttpRoute {
            host: "nginx.apps.test".into(),
            path: String::new(),
            https: false,
            internal: false,
            backend: b,
            port: 0,
            weight: 0,
        }
    }

    #[test]
    fn services_sharing_a_route_split_it_by_their_weights_then_by_version() {
        let app = |weights: serde_json::Value| -> StoredApp {
            serde_json::from_value(serde_json::json!({
                "spec": {"name": "a", "services": {}},
                "template": "", "stopped": false, "redeploy_gen": 0, "scale": {},
                "versions": {}, "failed": {}, "created_ms": 0, "updated_ms": 0,
                "route_weights": weights,
            }))
            .expect("app")
        };
        let routes = || {
            vec![
                route("v1", vec![(100, vec![ep("a", 1)])]),
                route("v2", vec![(50, vec![ep("b", 2)]), (50, vec![ep("c", 3)])]),
                route("v2", vec![(100, vec![ep("b", 2)])]),
            ]
        };
        let keys = || vec!["nginx".to_string(); 3];
        let count = |r: &[HttpRoute]| {
            assert_eq!(r.len(), 1, "one route for both services");
            let b = &r[0].backend;
            assert_eq!(b.service, "v1,v2");
            let mut n = BTreeMap::new();
            for roll in 0..10_000 {
                let id = b.pick(roll, 0, None, 0).map(|e| e.id.to_string());
                *n.entry(id.unwrap_or_default()).or_insert(0) += 1;
            }
            n
        };
        // None set: equal shares; each service's versions keep their own split.
        let n = count(&merge_shared(&app(serde_json::json!({})), routes(), keys()));
        assert_eq!((n["a"], n["b"], n["c"]), (5_000, 2_500, 2_500));
        let w = serde_json::json!({"nginx": {"v1": 70, "v2": 30}});
        let n = count(&merge_shared(&app(w), routes(), keys()));
        assert_eq!((n["a"], n["b"], n["c"]), (7_000, 1_500, 1_500));
        // A service at 0% gets nothing, even with the other not ready.
        let w = serde_json::json!({"nginx": {"v1": 100, "v2": 0}});
        let mut r = routes();
        r[0] = route("v1", vec![(100, vec![])]);
        let merged = merge_shared(&app(w), r, keys());
        assert_eq!(merged[0].backend.pick(5, 0, None, 0), None);
    }

    #[test]
    fn sticky_clients_keep_their_instance_while_it_serves() {
        let b = backend(vec![(100, vec![ep("a", 1), ep("b", 2)])]);
        assert_eq!(b.pick(0, 0, Some("b"), 0).map(|e| &*e.id), Some("b"));
        assert_eq!(b.pick(0, 0, Some("gone"), 0).map(|e| &*e.id), Some("a"));
    }

    #[test]
    fn routes_match_host_and_longest_path_prefix() {
        let route = |host: &str, path: &str, id: &str| HttpRoute {
            host: host.into(),
            path: path.into(),
            https: false,
            internal: false,
            backend: backend(vec![(100, vec![ep(id, 1)])]),
            port: 0,
            weight: 0,
        };
        let t = Table {
            http: vec![
                route("shop.example.com", "", "root"),
                route("shop.example.com", "/api", "api"),
            ],
            ..Default::default()
        };
        let who = |h: &str, p: &str| {
            t.route(h, p)
                .map(|r| r.backend.pools[0].endpoints[0].id.to_string())
        };
        assert_eq!(who("shop.example.com", "/"), Some("root".into()));
        assert_eq!(
            who("SHOP.example.com:8080", "/api/items"),
            Some("api".into())
        );
        assert_eq!(who("shop.example.com", "/apix"), Some("root".into()));
        assert_eq!(who("other.example.com", "/"), None);
        assert!(t.route("shop.example.com:80", "/").is_some());
    }

    #[test]
    fn local_domains_are_internal_unless_under_the_routers_domain() {
        let r = |d: &str| Route {
            scheme: crate::model::Scheme::Http,
            domain: d.into(),
            prefix: false,
            path: String::new(),
            port: 0,
            weight: 0,
        };
        assert!(internal_domain(&r("restserver.local"), "test.local"));
        assert!(internal_domain(&r("restserver.local"), ""));
        assert!(!internal_domain(&r("web.test.local"), "test.local"));
        assert!(!internal_domain(&r("test.local"), "test.local"));
        assert!(!internal_domain(&r("shop.example.com"), "test.local"));
    }

    #[test]
    fn exact_hosts_win_then_the_longest_wildcard_suffix() {
        let route = |host: &str, path: &str, id: &str| HttpRoute {
            host: host.into(),
            path: path.into(),
            https: false,
            internal: false,
            backend: backend(vec![(100, vec![ep(id, 1)])]),
            port: 0,
            weight: 0,
        };
        let t = Table {
            http: vec![
                route("*.example.com", "", "wide"),
                route("*.shop.example.com", "", "shops"),
                route("*.shop.example.com", "/api", "shop-api"),
                route("api.example.com", "/v1", "exact"),
            ],
            ..Default::default()
        };
        let who = |h: &str, p: &str| {
            t.route(h, p)
                .map(|r| r.backend.pools[0].endpoints[0].id.to_string())
        };
        assert_eq!(who("api.example.com", "/v1/x"), Some("exact".into()));
        // The exact host has routes: a path none takes is not handed to a wildcard.
        assert_eq!(who("api.example.com", "/other"), None);
        assert_eq!(who("www.example.com", "/"), Some("wide".into()));
        assert_eq!(who("a.b.example.com", "/"), Some("wide".into()));
        assert_eq!(who("eu.shop.example.com", "/"), Some("shops".into()));
        assert_eq!(
            who("EU.shop.example.com:8080", "/api/1"),
            Some("shop-api".into())
        );
        assert_eq!(who("x.eu.shop.example.com", "/"), Some("shops".into()));
        assert_eq!(who("shop.example.com", "/"), Some("wide".into()));
        assert_eq!(who("example.com", "/"), None);
        assert_eq!(who("badexample.com", "/"), None);
        assert_eq!(who("x.notexample.com", "/"), None);
    }

    #[test]
    fn rule_weights_then_specificity_router_ports_and_the_default_backend() {
        let route = |host: &str, path: &str, id: &str, port: u16, weight: u32| HttpRoute {
            host: host.into(),
            path: path.into(),
            https: false,
            internal: false,
            backend: backend(vec![(100, vec![ep(id, 1)])]),
            port,
            weight,
        };
        let mut t = Table {
            http: vec![
                route("appone.example.com", "", "appone", 0, 0),
                route("*.example.com", "/api", "api", 0, 10),
                route("chat.example.com", "", "chat", 8080, 0),
            ],
            weighted: true,
            ..Default::default()
        };
        let who = |t: &Table, h: &str, p: &str, port: u16| {
            t.route_on(h, p, false, port)
                .map(|r| r.backend.pools[0].endpoints[0].id.to_string())
        };
        // The heavier rule wins over the exact host; where it does not match, specificity.
        assert_eq!(
            who(&t, "appone.example.com", "/api/x", 0),
            Some("api".into())
        );
        assert_eq!(who(&t, "appone.example.com", "/", 0), Some("appone".into()));
        // A route with a port is served there only; an acs/proxy port serves the rest too.
        assert_eq!(who(&t, "chat.example.com", "/", 0), None);
        assert_eq!(who(&t, "chat.example.com", "/", 8080), Some("chat".into()));
        assert_eq!(who(&t, "appone.example.com", "/", 8080), None);
        t.vhost_ports.insert(
            8080,
            VhostPort {
                tls: false,
                all: true,
            },
        );
        assert_eq!(
            who(&t, "appone.example.com", "/", 8080),
            Some("appone".into())
        );
        // Nothing matches: the table's default backend (the HTTP side's fallback).
        assert_eq!(who(&t, "unknown.test", "/", 0), None);
        t.default_backend = Some(backend(vec![(100, vec![ep("dflt", 2)])]));
        assert!(
            t.backends_mut()
                .any(|b| b.pools[0].endpoints[0].id.as_ref() == "dflt")
        );
    }

    #[test]
    fn source_balance_keeps_a_client_and_leastconn_takes_the_idlest() {
        let mut b = backend(vec![(100, vec![ep("a", 1), ep("b", 2), ep("c", 3)])]);
        b.sticky = false;
        b.balance = crate::model::Balance::Source;
        let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("ip") };
        let mut n = 0usize;
        let mut next = || {
            n += 1;
            (n as u32, n)
        };
        let first = b.choice(ip("192.0.2.7"), &mut next);
        for _ in 0..20 {
            let c = b.choice(ip("192.0.2.7"), &mut next);
            assert_eq!(c, first, "the same address, the same choice");
            assert_eq!(b.pick(c.0, c.1, None, 0), b.pick(first.0, first.1, None, 0));
        }
        let picked: std::collections::BTreeSet<String> = (0..64)
            .map(|i| {
                let (r, t) = b.choice(ip(&format!("198.51.100.{i}")), &mut next);
                b.pick(r, t, None, 0)
                    .map(|e| e.id.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(picked.len(), 3, "addresses spread over the instances");
        // Round robin asks the router for its next choice.
        b.balance = crate::model::Balance::Roundrobin;
        assert_ne!(b.choice(ip("192.0.2.7"), &mut next), first);

        b.balance = crate::model::Balance::Leastconn;
        let busy = |b: &Backend, id: &str, n: usize| {
            let e = b.pools[0]
                .endpoints
                .iter()
                .find(|e| &*e.id == id)
                .expect("ep");
            e.inflight.store(n, Ordering::Relaxed);
        };
        busy(&b, "a", 3);
        busy(&b, "b", 1);
        busy(&b, "c", 2);
        assert!((0..10).all(|t| b.pick(0, t, None, 0).map(|e| &*e.id) == Some("b")));
        busy(&b, "c", 1);
        let both: std::collections::BTreeSet<&str> = (0..10)
            .filter_map(|t| b.pick(0, t, None, 0).map(|e| &*e.id))
            .collect();
        assert_eq!(both, ["b", "c"].into(), "equals take turns");
    }
}
