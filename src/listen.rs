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

/// Resolves once `last` (ms since the epoch, the last byte moved) is `idle` old: the error a
/// carried connection or stream ends with. Checked eight times per `idle`.
pub async fn idled(last: &std::sync::atomic::AtomicI64, idle: Duration) -> std::io::Error {
    let step = (idle / 8).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(step).await;
        let quiet = crate::clock::now_ms() - last.load(Ordering::Relaxed);
        if quiet >= idle.as_millis() as i64 {
            return std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing moved for {} s", idle.as_secs()),
            );
        }
    }
}

/// Carries bytes both ways between `a` and `b` until both directions ended (each end's
/// close is passed on as a half-close), one fails, or nothing moved either way for `idle`:
/// a connection a client opened and left does not hold its slot for ever.
pub async fn splice_idle(a: TcpStream, b: TcpStream, idle: Duration) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let last = std::sync::atomic::AtomicI64::new(crate::clock::now_ms());
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one_way = |mut from: tokio::net::tcp::OwnedReadHalf,
                   mut to: tokio::net::tcp::OwnedWriteHalf| {
        let last = &last;
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = from.read(&mut buf).await?;
                if n == 0 {
                    return to.shutdown().await;
                }
                to.write_all(&buf[..n]).await?;
                last.store(crate::clock::now_ms(), Ordering::Relaxed);
            }
        }
    };
    let up = one_way(ar, bw);
    let down = one_way(br, aw);
    let watch = idled(&last, idle);
    tokio::pin!(up, down, watch);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => { r?; up_done = true; }
            r = &mut down, if !down_done => { r?; down_done = true; }
            e = &mut watch => return Err(e),
        }
    }
    Ok(())
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

    /// Bytes go both ways with half-closes passed on; a connection left idle is ended.
    #[tokio::test]
    async fn splice_carries_both_ways_and_ends_an_idle_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pair = || async {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let c = TcpStream::connect(l.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (s, _) = l.accept().await.expect("accept");
            (c, s)
        };
        // client <-> (a | b) <-> server
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let spliced = tokio::spawn(splice_idle(a, b, Duration::from_millis(300)));
        client.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").await.expect("write");
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"pong");
        // The client's close reaches the server as end of stream; the other way still works.
        client.shutdown().await.expect("shutdown");
        assert_eq!(server.read(&mut got).await.expect("read"), 0);
        server.write_all(b"late").await.expect("write");
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"late");
        drop(server);
        spliced.await.expect("join").expect("both directions ended");
        // Left idle: ended after the bound, both ends closed.
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let t = std::time::Instant::now();
        let r = splice_idle(a, b, Duration::from_millis(300)).await;
        assert_eq!(r.expect_err("idle").kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(client.read(&mut got).await.unwrap_or(0), 0);
        assert_eq!(server.read(&mut got).await.unwrap_or(0), 0);
    }
}
