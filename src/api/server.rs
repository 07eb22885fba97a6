//! The API's HTTP/1.1 server (hyper on the agent's runtime), with every bound an untrusted
//! client needs: a connection cap, a deadline for the request head (also the idle time
//! between requests on a kept-alive connection), a head size cap, a body cap checked against
//! `Content-Length` before a byte of the body is read, a deadline for the body, a pause after
//! an accept error (EMFILE) and a handler whose panic answers 500 and leaves the server up.
//!
//! Why not tiny_http (what the API used first): tiny_http 0.12 drains an unread body on drop
//! with `vec![0; remaining]`, so `Content-Length: 4611686018427387904` on any request aborts
//! the process, and it has no header or body timeouts and no header size limit; fixing that
//! meant forking it. hyper (already the router's server) bounds all of it.

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The bounds the API holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// From connect (or the end of the last response) to the whole request head.
    pub head_timeout: Duration,
    /// Most bytes of a request head (hyper's read buffer: 8 KiB at least).
    pub max_head_bytes: usize,
    /// Most header lines in a request.
    pub max_headers: usize,
    /// A buffered (JSON) body must arrive whole within this.
    pub body_timeout: Duration,
    /// A streamed body (an image tarball) may pause at most this long between chunks.
    pub stream_idle: Duration,
    /// An exec session closes after this long with no byte either way.
    pub exec_idle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            head_timeout: Duration::from_secs(10),
            max_head_bytes: 64 << 10,
            max_headers: 100,
            body_timeout: Duration::from_secs(60),
            stream_idle: Duration::from_secs(60),
            exec_idle: super::exec::IDLE,
        }
    }
}

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(b: Vec<u8>) -> Body {
    http_body_util::Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What the server counts (connections refused at the cap are counted by its `Slots`).
#[derive(Debug, Default)]
pub struct Counters {
    pub handler_panics: AtomicU64,
}

/// Handles one request; the server adds nothing but the bounds around it.
pub type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

pub struct Listening {
    /// The bound address (a port of 0 asked for a free one).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    pub counters: Arc<Counters>,
}

/// Binds `addr` and serves `handler` on the current runtime until [`Listening::shutdown`].
/// A client's connection: plain TCP, or TLS over it.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

pub fn serve(
    addr: SocketAddr,
    limits: Limits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    handler: Handler,
    rt: &tokio::runtime::Handle,
    panic_reply: fn() -> Response<Body>,
) -> std::io::Result<Listening> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let done = rt.spawn(async move {
        match TcpListener::from_std(std_listener) {
            Ok(l) => {
                let tls = tls.map(tokio_rustls::TlsAcceptor::from);
                accept_loop(l, limits, tls, handler, stop_rx, c2, panic_reply).await
            }
            Err(e) => tracing::error!(error = %e, "API listener lost"),
        }
    });
    Ok(Listening {
        addr,
        stop,
        done,
        counters,
    })
}

impl Listening {
    /// Stops accepting, asks every connection to finish its request in flight and close,
    /// and waits for them (at most `within`).
    pub async fn shutdown(self, within: Duration) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(within, self.done).await;
    }
}

/// The client's address, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
    panic_reply: fn() -> Response<Body>,
) {
    let slots = Arc::new(crate::listen::Slots::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let http = Arc::new(http);
    loop {
        let (stream, peer) = tokio::select! {
            a = crate::listen::accept_paced(&listener, "API") => a,
            _ = stop.changed() => break,
        };
        let Some(slot) = slots.take(limits.max_connections) else {
            drop(stream);
            continue;
        };
        let (http, handler, counters) = (http.clone(), handler.clone(), counters.clone());
        let mut stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // With TLS, the handshake is part of the request head's time.
            let stream: Box<dyn Conn> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                // Who asked: for the events of calls made without a token (hooks).
                req.extensions_mut().insert(Peer(peer));
                let fut = handler(req);
                let counters = counters.clone();
                async move {
                    // A panic in a handler answers 500; the connection and server live on.
                    let resp = match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(r) => r,
                        Err(_) => {
                            counters.handler_panics.fetch_add(1, Ordering::Relaxed);
                            tracing::error!("API handler panicked; answered 500");
                            panic_reply()
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            // Upgrades: `berth exec` and the console's terminal are WebSockets.
            let conn = http
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    // Wait for the connections to finish what they hold (the caller bounds the wait).
    while slots.open() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The declared body length, when the client sent one.
pub fn declared_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body too large (limit {0} bytes)")]
    TooLarge(u64),
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// Reads a whole body of at most `cap` bytes within `within`: a declared length over the cap
/// is refused before any byte is read, an undeclared one as soon as it passes the cap.
pub async fn read_body(
    req: Request<Incoming>,
    cap: u64,
    within: Duration,
) -> Result<Vec<u8>, BodyError> {
    if declared_length(req.headers()).is_some_and(|n| n > cap) {
        return Err(BodyError::TooLarge(cap));
    }
    let limited = http_body_util::Limited::new(req.into_body(), cap as usize);
    match tokio::time::timeout(within, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout(within)),
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(cap)),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn ask(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(req).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn panics_answer_500_and_bodies_and_heads_are_bounded_in_time_and_size() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let limits = Limits {
            head_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let handler: Handler = Arc::new(move |req: Request<Incoming>| {
            Box::pin(async move {
                if req.uri().path() == "/boom" {
                    panic!("a bug in a handler");
                }
                let (status, text) = match read_body(req, 16, limits.body_timeout).await {
                    Ok(b) => (200, format!("got {}", b.len())),
                    Err(BodyError::TooLarge(_)) => (413, "too large".into()),
                    Err(BodyError::Timeout(_)) => (408, "slow".into()),
                    Err(BodyError::Read(e)) => (400, e),
                };
                let mut r = Response::new(full(text.into_bytes()));
                *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                r
            })
        });
        let l = serve(
            "127.0.0.1:0".parse().expect("addr"),
            limits,
            None,
            handler,
            rt.handle(),
            || {
                let mut r = Response::new(full(b"internal error".to_vec()));
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                r
            },
        )
        .expect("serve");
        let addr = l.addr;
        let boom = ask(
            addr,
            b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
        let ok = ask(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("got 3"),
            "{ok}"
        );
        assert_eq!(l.counters.handler_panics.load(Ordering::Relaxed), 1);
        // Declared too large: refused before a byte of the body is read.
        let big = ask(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4611686018427387904\r\n\r\n",
        );
        assert!(big.starts_with("HTTP/1.1 413"), "{big}");
        // Undeclared (chunked) and too large: refused once past the cap.
        let chunked = ask(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n",
        );
        assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
        // A body that never comes: 408 at the body deadline.
        let t = std::time::Instant::now();
        let slow = ask(
            addr,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        );
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // A head that never ends: the connection is closed at the head deadline.
        let t = std::time::Instant::now();
        let head = ask(addr, b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(!head.contains("200"), "{head}");
        assert!(t.elapsed() < Duration::from_secs(5));
        rt.block_on(l.shutdown(Duration::from_secs(2)));
    }
}
