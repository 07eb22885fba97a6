//! Accepting connections from untrusted clients, for the API and the router: an accept error
//! (out of descriptors, EMFILE) pauses the listener instead of spinning it, and a listener's
//! open connections are capped, each holding a [`Slot`] for its whole life.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long a listener waits after an accept error before accepting again: the error would
/// come back at once and spin the thread.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The next connection on `l`; accept errors are logged (as `what`'s) and paused over.
pub async fn accept_paced(l: &TcpListener, what: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match l.accept().await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; pausing");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// One listener's open connections.
#[derive(Default)]
pub struct Slots {
    open: AtomicUsize,
    refused: AtomicU64,
}

/// One open connection's place; given back when dropped.
pub struct Slot(Arc<Slots>);

impl Slots {
    /// A slot, or None (counted as refused) when `max` are in use.
    pub fn take(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let mut n = self.open.load(Ordering::Relaxed);
        loop {
            if n >= max {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self
                .open
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused at the cap so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_connections() {
        let s = Arc::new(Slots::default());
        let a = s.take(2).expect("1");
        let _b = s.take(2).expect("2");
        assert!(s.take(2).is_none());
        assert_eq!(s.open(), 2);
        drop(a);
        assert!(s.take(2).is_some());
        assert_eq!(s.refused(), 1);
    }
}
