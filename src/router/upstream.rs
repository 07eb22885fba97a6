//! Keep-alive HTTP/1.1 connections from one router worker to the instances: a thread-local
//! pool by backend address (each worker runs a single-threaded runtime, so no lock and no
//! cross-thread hand-off per request). A connection goes back to the pool when its
//! response body has been read to the end; one that turns out closed when reused is
//! replaced and the request, not yet sent, goes over a fresh connection.

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Idle connections kept per backend address and worker.
const MAX_IDLE: usize = 256;

/// What goes to an instance: the client's body as it streams in, or nothing (a bodiless
/// request sent again to another instance after the first one failed).
pub type UpBody = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<SendRequest<UpBody>>>> =
        RefCell::new(HashMap::new());
}

/// A connection that served a request, to be returned once its response is complete.
pub struct Lease {
    addr: SocketAddr,
    sender: SendRequest<UpBody>,
}

impl Lease {
    /// Puts the connection back for the next request to this address.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        IDLE.with(|m| {
            let mut m = m.borrow_mut();
            let list = m.entry(self.addr).or_default();
            if list.len() < MAX_IDLE {
                list.push(self.sender);
            }
        });
    }
}

fn checkout(addr: SocketAddr) -> Option<SendRequest<UpBody>> {
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        let list = m.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    })
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<UpBody>, String> {
    let stream = super::connect_upstream(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk HTTP to {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Sends `req` to `addr` over a pooled connection (or a new one). The lease goes back with
/// [`Lease::release`] once the response body is done.
pub async fn send(
    addr: SocketAddr,
    mut req: Request<UpBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    // A pooled connection may have been closed by the instance meanwhile: then the request
    // comes back unsent and goes over a fresh connection.
    while let Some(mut sender) = checkout(addr) {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, Lease { addr, sender })),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(SendError::Failed(e.into_error().to_string())),
            },
        }
    }
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(error) => {
            return Err(SendError::Unsent {
                error,
                req: Box::new(req),
            });
        }
    };
    match sender.send_request(req).await {
        Ok(resp) => Ok((resp, Lease { addr, sender })),
        Err(e) => Err(SendError::Failed(e.to_string())),
    }
}

/// Why a request got no response.
pub enum SendError {
    /// No connection could be made: the request was not sent and comes back.
    Unsent {
        error: String,
        req: Box<Request<UpBody>>,
    },
    /// Sent (or partly), then the exchange failed.
    Failed(String),
}
