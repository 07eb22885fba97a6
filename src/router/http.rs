//! HTTP/1.1 reverse proxy: keep-alive both sides, streamed bodies, websocket upgrades.

use super::{InflightGuard, Shared};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

const STICKY_COOKIE: &str = "berth_sticky";

/// A connection accepted by the listener, handed to a worker with its slot.
pub(super) type Accepted = (std::net::TcpStream, SocketAddr, crate::listen::Slot);

/// Accepts connections and deals them to the workers in turn (an even spread, unlike
/// SO_REUSEPORT's hash: 64 connections are 32 + 32, not 40 + 24). At `max` open connections
/// a new one is closed at once; an accept error pauses the listener.
pub(super) async fn accept(
    listener: TcpListener,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Accepted>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    max: usize,
) {
    let slots = Arc::new(crate::listen::Slots::default());
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            a = crate::listen::accept_paced(&listener, "router") => a,
            _ = shutdown.changed() => return,
        };
        let Some(slot) = slots.take(max) else {
            continue; // over the cap: closed
        };
        let _ = stream.set_nodelay(true);
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        if workers.is_empty() {
            return;
        }
        next = (next + 1) % workers.len();
        if workers[next].send((std_stream, peer, slot)).is_err() {
            return;
        }
    }
}

/// One worker: serves the connections it is dealt, each start to end on this thread.
pub(super) async fn work(
    mut conns: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let builder = Arc::new(builder);
    while let Some((std_stream, peer, slot)) = conns.recv().await {
        let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
            continue;
        };
        let (shared, tls, builder) = (shared.clone(), tls.clone(), builder.clone());
        let slot = Arc::new(slot);
        tokio::spawn(async move {
            match tls {
                None => {
                    serve_conn(
                        TokioIo::new(stream),
                        shared,
                        peer,
                        Side::default(),
                        slot,
                        &builder,
                    )
                    .await
                }
                Some(acceptor) => {
                    let limit = shared.limits.tls_handshake_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            serve_conn(
                                TokioIo::new(s),
                                shared,
                                peer,
                                Side {
                                    tls: true,
                                    ..Side::default()
                                },
                                slot,
                                &builder,
                            )
                            .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// The router's internal side (`.local` routes too): served on the agent's runtime for the
/// connections the service-name holders carry from the app networks.
pub(super) async fn serve_internal(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let side = Side {
        internal: true,
        ..Side::default()
    };
    tokio::select! {
        _ = serve_here(listener, shared, side, None, "router (internal)") => {}
        _ = shutdown.changed() => {}
    }
}

/// An `lb.port_N: http://` or `https://` router port: every request to this service,
/// whatever its Host; served on the agent's runtime until its task is aborted.
pub(super) async fn serve_port(
    listener: TcpListener,
    shared: Arc<Shared>,
    port: u16,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let side = Side {
        tls: tls.is_some(),
        internal: false,
        port: Some(port),
    };
    serve_here(listener, shared, side, tls, "router port").await
}

/// Accepts and serves connections on the calling runtime, each a task.
async fn serve_here(
    listener: TcpListener,
    shared: Arc<Shared>,
    side: Side,
    tls: Option<tokio_rustls::TlsAcceptor>,
    what: &'static str,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(crate::listen::Slots::default());
    loop {
        let (stream, peer) = crate::listen::accept_paced(&listener, what).await;
        let Some(slot) = slots.take(shared.limits.max_connections) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, builder, tls) = (shared.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let slot = Arc::new(slot);
            match tls {
                None => serve_conn(TokioIo::new(stream), shared, peer, side, slot, &builder).await,
                Some(acceptor) => {
                    let limit = shared.limits.tls_handshake_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            serve_conn(TokioIo::new(s), shared, peer, side, slot, &builder).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Side {
    /// Over TLS.
    pub tls: bool,
    /// The internal side: `.local` routes too.
    pub internal: bool,
    /// An `lb.port_N` HTTP(S) router port: that service alone.
    pub port: Option<u16>,
}

async fn serve_conn<I>(
    io: I,
    shared: Arc<Shared>,
    peer: SocketAddr,
    side: Side,
    slot: Arc<crate::listen::Slot>,
    builder: &hyper::server::conn::http1::Builder,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        handle(req, shared.clone(), peer, side, slot.clone())
    });
    let _ = builder.serve_connection(io, svc).with_upgrades().await;
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(Body::Left(Full::new(Bytes::from(msg + "\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A 503: the configured page (`[router] error_page`), else `msg` as text.
fn unavailable(shared: &Shared, msg: String) -> Response<Body> {
    let Some(page) = &shared.limits.error_page else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, msg);
    };
    let mut r = Response::new(Body::Left(Full::new(Bytes::clone(page))));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_string)
        })
}

// Header names made once, not parsed from a string on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const HOP_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHORIZATION,
];

/// Headers that describe one hop, not the message (RFC 9110 7.6.1).
fn strip_hop_headers(h: &mut HeaderMap, keep_upgrade: bool) {
    // Usually absent from HTTP/1.1 keep-alive requests: no allocation then.
    if !h.contains_key(header::CONNECTION) && !h.contains_key(header::UPGRADE) {
        for n in HOP_HEADERS {
            h.remove(n);
        }
        return;
    }
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        if !(keep_upgrade && n == header::UPGRADE) {
            h.remove(n);
        }
    }
    for n in HOP_HEADERS {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

/// The router is the edge: the client's address, scheme and host are what the router saw.
/// A client's own `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are dropped (over plain HTTP,
/// `X-Forwarded-Proto: https` would pass apps' https-only checks, and `X-Forwarded-Host`
/// would poison their absolute links), unless the client is a trusted proxy, whose values
/// are kept and extended.
fn set_forwarded(
    h: &mut HeaderMap,
    peer: SocketAddr,
    tls: bool,
    host: Option<HeaderValue>,
    trusted: bool,
) {
    let ip = peer.ip().to_string();
    let xff = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted => format!("{prev}, {ip}"),
        _ => ip,
    };
    if !trusted {
        for n in [
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &header::FORWARDED,
            &X_REAL_IP,
        ] {
            h.remove(n);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !h.contains_key(X_FORWARDED_PROTO) {
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
    }
    if let Some(v) = host
        && !h.contains_key(X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST, v);
    }
}

/// Where a request went, as [`proxy`] leaves it: for the counters and the access log.
#[derive(Default)]
struct Outcome {
    /// The counters of the route and version that answered (of the route alone for the
    /// router's own answers on it); none when no route took the request.
    stats: Option<Arc<super::stats::Stats>>,
    upstream: Option<SocketAddr>,
    /// The access record's head, when the access log is on.
    head: Option<super::stats::Head>,
}

/// Serves one request and counts it (and writes its access record when the log is on).
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    side: Side,
    slot: Arc<crate::listen::Slot>,
) -> Result<Response<Body>, Infallible> {
    let started = std::time::Instant::now();
    let mut outcome = Outcome::default();
    let resp = proxy(req, &shared, peer, side, slot, &mut outcome).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    match &outcome.stats {
        Some(s) => s.answered(status, took),
        None => {
            shared.stats.unrouted.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let (Some(head), Some(log)) = (outcome.head, shared.access.get()) {
        let went = super::stats::Went {
            status,
            bytes: hyper::body::Body::size_hint(resp.body()).exact(),
            took,
            stats: outcome.stats.as_deref(),
            upstream: outcome.upstream,
        };
        if !log.push(&head, &went) {
            shared.stats.access_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(resp)
}

async fn proxy(
    mut req: Request<Incoming>,
    shared: &Shared,
    peer: SocketAddr,
    side: Side,
    slot: Arc<crate::listen::Slot>,
    outcome: &mut Outcome,
) -> Response<Body> {
    let tls = side.tls;
    // Cheap clones (shared bytes): this runs for every request.
    let host_value = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let host = host_value
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path_q = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if shared.access.get().is_some() {
        outcome.head = Some(super::stats::Head::new(&req, host_value.as_ref(), peer));
    }
    let picked = match shared.pick_http(host, req.uri().path(), req.headers(), side, peer.ip()) {
        // A service at zero: held while an instance starts.
        Err(NoBackend::Cold(c)) => {
            let path = req.uri().path();
            let headers = req.headers();
            let waited = shared
                .cold
                .hold(&c, || {
                    match shared.pick_http(host, path, headers, side, peer.ip()) {
                        Err(NoBackend::Cold(_)) => None,
                        other => Some(other),
                    }
                })
                .await;
            match waited {
                Ok(p) => p,
                Err(refusal) => {
                    outcome.stats = shared.route_stats(host, path, side);
                    let mut r = unavailable(shared, refusal.message(&c.label));
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return r;
                }
            }
        }
        other => other,
    };
    let Picked {
        ep,
        https,
        label,
        sticky,
        sticky_in,
        guard,
        route_stats,
    } = match picked {
        Ok(p) => p,
        Err(NoBackend::UnknownHost) => {
            // A trigger called on the router's public address (no body is read).
            if req.method() == hyper::Method::POST
                && let Some(hook) = shared.triggers.get()
                && let Some(id) = req
                    .uri()
                    .path()
                    .strip_prefix("/hooks/")
                    .filter(|i| !i.is_empty() && i.len() <= 64 && !i.contains('/'))
            {
                let secret = req
                    .uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("secret="))
                    .unwrap_or("")
                    .chars()
                    .take(256)
                    .collect();
                let (status, body) = hook(id.to_string(), secret, peer.to_string()).await;
                let mut r = Response::new(Body::Left(Full::new(Bytes::from(body))));
                *r.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return r;
            }
            // An outside load balancer's health check: the router serves.
            if !shared.limits.health_uri.is_empty()
                && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD)
                && req.uri().path() == shared.limits.health_uri
            {
                return plain(StatusCode::OK, "berth router: serving".into());
            }
            return plain(
                StatusCode::NOT_FOUND,
                format!("berth: no app is routed for {host}{path_q}"),
            );
        }
        Err(
            NoBackend::NoneReady(label) | NoBackend::Cold(super::cold::ColdTarget { label, .. }),
        ) => {
            outcome.stats = shared.route_stats(host, req.uri().path(), side);
            return unavailable(
                shared,
                format!("berth: no healthy instance of {label} right now"),
            );
        }
    };
    // An https route asked for over plain HTTP: send the client to the TLS listener (when a
    // certificate covers the host; without one the route is served over plain HTTP).
    if https && !tls && shared.tls_covers(host.split(':').next().unwrap_or(host)) {
        let name = host.split(':').next().unwrap_or(host);
        let port = match shared.https_port.get() {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        };
        let mut r = plain(
            StatusCode::PERMANENT_REDIRECT,
            format!("berth: {host} is served over https"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("https://{name}{port}{path_q}")) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        outcome.stats = Some(route_stats);
        return r;
    }
    let upgrade = req.headers().contains_key(header::UPGRADE);
    // Origin form (`/path?q`): the instance is talked to directly, not as a proxy.
    *req.uri_mut() = hyper::Uri::from(path_q);
    let h = req.headers_mut();
    strip_hop_headers(h, upgrade);
    set_forwarded(h, peer, tls, host_value, shared.limits.trusts(peer.ip()));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // What an instance may be sent again: a request whose method is idempotent and that has
    // no body (nginx's `proxy_next_upstream` rule). An instance on another member can be
    // stopped before that member's state reaches this router (a rolling update there): the
    // connection then closes with no answer, and the request goes to another instance
    // instead of turning into a 502.
    let replay = (!upgrade).then(|| Replay::of(&req)).flatten();
    let mut req = req.map(Either::Left);
    let (mut ep, mut guard) = (ep, guard);
    outcome.stats = Some(ep.stats.clone());
    outcome.upstream = Some(ep.addr);
    let mut tries = 1;
    let (mut resp, lease) = loop {
        let (error, back) = match super::upstream::send(ep.addr, req).await {
            Ok(r) => break r,
            Err(super::upstream::SendError::Unsent { error, req: back }) => (error, Some(*back)),
            Err(super::upstream::SendError::Failed(error)) => (error, None),
        };
        ep.mark_down(super::now_ms());
        // Nothing was sent (to an instance on another member: a local one that refuses is
        // already out of the table), or it can safely be sent again.
        let again = match back {
            Some(back) if ep.remote => Some(back),
            Some(_) => None,
            None => replay.as_ref().map(Replay::request),
        };
        let retry = again
            .filter(|_| tries < super::CONNECT_TRIES)
            .and_then(|again| {
                let host = again
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                let p = shared
                    .pick_http(host, again.uri().path(), again.headers(), side, peer.ip())
                    .ok()?;
                Some((again, p))
            });
        match retry {
            Some((again, p)) => {
                tries += 1;
                req = again;
                (ep, guard) = (p.ep, p.guard);
                outcome.stats = Some(ep.stats.clone());
                outcome.upstream = Some(ep.addr);
            }
            None => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "berth: {label} instance {} ({}) failed: {error}",
                        ep.id,
                        ep.place()
                    ),
                );
            }
        }
    };
    let mut lease = Some(lease);
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The connection now belongs to the upgraded stream: it never goes back to the pool.
        lease = None;
        if let Some(client_side) = client_upgrade {
            let upstream_side = hyper::upgrade::on(&mut resp);
            // The upgraded connection stays in flight until either side closes.
            let conn_guard = InflightGuard::new(&ep.inflight);
            tokio::spawn(async move {
                // The upgraded connection keeps its listener slot too.
                let (_conn_guard, _slot) = (conn_guard, slot);
                if let (Ok(a), Ok(b)) = (client_side.await, upstream_side.await) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b))
                            .await;
                }
            });
        }
    } else {
        strip_hop_headers(resp.headers_mut(), false);
    }
    if sticky
        && sticky_in.as_deref() != Some(&*ep.id)
        && let Ok(v) =
            HeaderValue::from_str(&format!("{STICKY_COOKIE}={}; Path=/; HttpOnly", ep.id))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    // The request stays in flight until its response body has been sent.
    resp.map(|b| {
        Body::Right(Tracked {
            inner: b,
            lease,
            _guard: guard,
        })
    })
}

/// A copy of a request that can be sent again: method, target, version and headers (the
/// body is known to be empty).
struct Replay {
    method: hyper::Method,
    uri: hyper::Uri,
    version: hyper::Version,
    headers: hyper::HeaderMap,
}

impl Replay {
    /// The copy, when `req` is idempotent (RFC 9110, 9.2.2) and carries no body.
    fn of<B>(req: &Request<B>) -> Option<Replay> {
        use hyper::Method;
        let m = req.method();
        let idempotent = [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ]
        .contains(m);
        let h = req.headers();
        let bodiless = !h.contains_key(header::TRANSFER_ENCODING)
            && h.get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        (idempotent && bodiless).then(|| Replay {
            method: m.clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: h.clone(),
        })
    }

    fn request(&self) -> Request<super::upstream::UpBody> {
        let mut r = Request::new(Either::Right(http_body_util::Empty::new()));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// What the router answers with: its own short message, or the instance's response
/// (no box: no allocation per request).
type Body = http_body_util::Either<Full<Bytes>, Tracked>;

/// A response body that holds its request's in-flight guard until it is done or dropped,
/// and gives its upstream connection back to the pool once read to the end.
pub(super) struct Tracked {
    inner: Incoming,
    lease: Option<super::upstream::Lease>,
    _guard: InflightGuard,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = r
            && let Some(l) = this.lease.take()
        {
            l.release();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A body hyper never had to poll (empty) is complete too; one dropped half-read is
        // not, and its connection closes with the lease.
        if hyper::body::Body::is_end_stream(&self.inner)
            && let Some(l) = self.lease.take()
        {
            l.release();
        }
    }
}

/// What a request was routed to.
struct Picked {
    ep: super::table::Endpoint,
    https: bool,
    /// `app/service`, for messages.
    label: Arc<str>,
    sticky: bool,
    /// The client's stickiness cookie (read only for sticky services).
    sticky_in: Option<String>,
    guard: InflightGuard,
    /// The counters of the router's own answers on the route.
    route_stats: Arc<super::stats::Stats>,
}

enum NoBackend {
    UnknownHost,
    NoneReady(Arc<str>),
    /// None ready, and the service starts from zero: the request waits.
    Cold(super::cold::ColdTarget),
}

impl Shared {
    /// Routes and picks under the table's read lock, taking the in-flight guard before the
    /// lock is released: a drain that starts after a table swap sees every request picked
    /// from the old table.
    fn pick_http(
        &self,
        host: &str,
        path: &str,
        headers: &HeaderMap,
        side: Side,
        client: std::net::IpAddr,
    ) -> Result<Picked, NoBackend> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let (b, https) = backend_of(&table, host, path, side).ok_or(NoBackend::UnknownHost)?;
        b.used.touch();
        let sticky_in = if b.sticky {
            cookie(headers, STICKY_COOKIE)
        } else {
            None
        };
        let (roll, turn) = b.choice(client, || (self.roll(), self.next_turn()));
        let ep = b
            .pick(roll, turn, sticky_in.as_deref(), super::now_ms())
            .ok_or_else(|| match super::cold::ColdTarget::of(b) {
                Some(c) => NoBackend::Cold(c),
                None => NoBackend::NoneReady(b.label.clone()),
            })?;
        Ok(Picked {
            guard: InflightGuard::new(&ep.inflight),
            ep: ep.clone(),
            https,
            label: b.label.clone(),
            sticky: b.sticky,
            sticky_in,
            route_stats: b.stats.clone(),
        })
    }

    /// The counters of the route a request would take (for the router's own answers).
    fn route_stats(&self, host: &str, path: &str, side: Side) -> Option<Arc<super::stats::Stats>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        backend_of(&table, host, path, side).map(|(b, _)| b.stats.clone())
    }
}

/// The backend a request goes to, and whether its route is an https one (redirected when
/// asked over plain HTTP): by Host and path on the router's listeners, the port's service on
/// an `lb.port_N` HTTP(S) port.
fn backend_of<'t>(
    table: &'t super::table::Table,
    host: &str,
    path: &str,
    side: Side,
) -> Option<(&'t super::table::Backend, bool)> {
    if let Some((b, _)) = side.port.and_then(|p| table.http_ports.get(&p)) {
        return Some((b, false));
    }
    table
        .route_on(host, path, side.internal, side.port.unwrap_or(0))
        .map(|r| (&r.backend, r.https))
        // Requests no route takes go to the default backend (`proxy.required`), if any.
        .or_else(|| {
            (!side.internal)
                .then_some(table.default_backend.as_ref())
                .flatten()
                .map(|b| (b, false))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn forwarded_headers_come_from_the_router_unless_the_client_is_trusted() {
        let spoofed = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4;proto=https"),
            ("x-real-ip", "1.2.3.4"),
        ];
        let peer: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
        let host = Some(HeaderValue::from_static("shop.test"));
        let mut h = headers(&spoofed);
        set_forwarded(&mut h, peer, false, host.clone(), false);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.test");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
        let mut h = headers(&spoofed);
        set_forwarded(&mut h, peer, false, host, true);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil.example");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 192.0.2.7");
        assert!(h.get("forwarded").is_some());
    }

    /// A member's instance stopped before that member's state reached this router: its
    /// published port still accepts (docker-proxy) and closes with no answer. Bodiless
    /// idempotent requests go to another instance; a POST with a body is never sent twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_an_instance_drops_unanswered_goes_to_another_unless_it_has_a_body() {
        use super::super::table::{Backend, Endpoint, HttpRoute, Pool, Table};
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicUsize;
        // Accepts, reads the request head, closes: what a stopped container's port does.
        let dropper = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let drop_addr = dropper.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in dropper.incoming().flatten() {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // Answers every request on its connection with 200 "ok" and the method it saw.
        let answer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let ok_addr = answer.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in answer.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let m = String::from_utf8_lossy(&buf[..n]);
                        let method = m.split(' ').next().unwrap_or("").to_string();
                        let r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{method}",
                            method.len()
                        );
                        if s.write_all(r.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let ep = |id: &str, addr, reported_ms| Endpoint {
            id: id.into(),
            addr,
            inflight: Arc::default(),
            down_until: Arc::default(),
            remote: true,
            reported_ms,
            stats: Arc::default(),
        };
        let router = super::super::Router::new(
            "127.0.0.1".parse().expect("ip"),
            Vec::new(),
            super::super::Limits::default(),
        );
        let table = |eps: Vec<Endpoint>| Table {
            http: vec![HttpRoute {
                host: "shop.test".into(),
                path: String::new(),
                https: false,
                internal: false,
                port: 0,
                weight: 0,
                backend: Backend {
                    app: "shop".into(),
                    service: "web".into(),
                    label: "shop/web".into(),
                    sticky: false,
                    cold_start: None,
                    used: Default::default(),
                    stats: Arc::default(),
                    pools: vec![Pool {
                        version: "web-001".into(),
                        weight: 100,
                        endpoints: eps,
                        fallback: false,
                    }],
                    balance: Default::default(),
                },
            }],
            ..Default::default()
        };
        router.update(table(vec![
            ep("gone", drop_addr, 0),
            ep("live", ok_addr, 0),
        ]));
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let at = free.local_addr().expect("addr");
        drop(free);
        let (_stop, rx) = tokio::sync::watch::channel(false);
        router.start_http(at, rx).expect("start");
        let ask = move |req: String| {
            tokio::task::spawn_blocking(move || {
                let mut c = std::net::TcpStream::connect(at).expect("connect");
                c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .expect("timeout");
                c.write_all(req.as_bytes()).expect("write");
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                String::from_utf8_lossy(&out).to_string()
            })
        };
        for i in 0..10 {
            let r = ask("GET / HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n".into())
                .await
                .expect("join");
            assert!(r.starts_with("HTTP/1.1 200"), "GET {i}: {r}");
            assert!(r.ends_with("GET"), "GET {i}: {r}");
        }
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the dropping instance was tried"
        );
        // A fresh table (its member reported it again) puts it back in rotation: a POST
        // with a body that lands on it is answered 502, never sent a second time.
        let before = dropped.load(std::sync::atomic::Ordering::SeqCst);
        router.update(table(vec![ep(
            "gone",
            drop_addr,
            crate::clock::now_ms() + 1_000,
        )]));
        let r = ask(
            "POST / HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
                .into(),
        )
        .await
        .expect("join");
        assert!(r.starts_with("HTTP/1.1 502"), "POST: {r}");
        assert_eq!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            before + 1,
            "the POST reached an instance once"
        );
    }
}
