//! Connections carried to another member's instance over the peer channel (`S`): how a
//! service reaches another service's instances by name on another host, with no port
//! opened on the network and no overlay.
//!
//! The opener sends one sealed [`Open`] (app, service, port, a random stream id, a time);
//! the member checks it is fresh (not seen before, under 30 s old) and that the app's
//! service runs an instance here, connects to it on its app network, and answers one sealed
//! [`Opened`]. Then each side sends what its end reads as sealed frames (`Purpose::Tunnel`):
//! each frame carries the stream id, its direction and the next sequence number, so a frame
//! of another stream, a replayed, reordered or reflected frame ends the stream. An empty
//! frame is the end of one direction.
//!
//! Bounded: 32 KiB a frame, [`MAX_STREAMS`] streams a member serves at once, 5 s to open,
//! [`IDLE`] without a byte either way.

use super::keys::{Keyring, Purpose};
use super::seal;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TAG_STREAM: u8 = b'S';
/// The most bytes a frame carries.
pub const CHUNK: usize = 32 * 1024;
/// A stream ends after this long without a byte in either direction.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Streams a member serves at once; more are closed unanswered.
pub const MAX_STREAMS: usize = 1024;
const OPEN_MAX: usize = 4096;
const FRAME_MAX: usize = CHUNK + 17 + seal::OVERHEAD;

/// What the opener asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Open {
    pub app: String,
    pub service: String,
    pub port: u16,
    /// Random, hex: every frame of the stream carries it.
    pub stream: String,
    pub at_ms: i64,
    /// The member that opens it (for the log).
    pub from: String,
    /// A command to run in a container of (app, service) here, its streams carried as a
    /// WebSocket session (`berth exec` on another member), instead of a connection to
    /// `port`. A member of an older build ignores it and finds no port 0 to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecOpen>,
}

/// What `berth exec` asks a member to run (see `api/exec.rs` for the session's messages).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecOpen {
    /// The container's slot (the member that opens it chose it).
    pub slot: Option<u32>,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub cols: u16,
    pub rows: u16,
    /// Who asked, as the opening member's API knows them (for the event).
    pub who: String,
}

/// The member's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opened {
    /// Empty when the stream is open; else why not.
    pub error: String,
}

/// Finds where a stream for (app, service, port) goes on this member: an instance of it
/// running here (installed by the agent).
pub type Target = Arc<dyn Fn(&str, &str, u16) -> Option<SocketAddr> + Send + Sync>;

/// Starts an exec session here for (app, service, what the opener asked, the opener's
/// name): one end of the session's bytes, or why it cannot run (installed by the API).
pub type ExecHook = Arc<
    dyn Fn(
            String,
            String,
            ExecOpen,
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<tokio::io::DuplexStream, String>> + Send>,
        > + Send
        + Sync,
>;

fn nonce() -> std::io::Result<[u8; 12]> {
    let r = super::keys::random_32().map_err(std::io::Error::other)?;
    let mut n = [0u8; 12];
    n.copy_from_slice(&r[..12]);
    Ok(n)
}

/// A stream another member opened for this host: [`Stream::carry`] a connection over it.
pub struct Stream {
    s: TcpStream,
    ring: Keyring,
    sender: u64,
    id: [u8; 16],
}

impl Stream {
    /// Carries `local` over the stream until both ends closed (or the stream idled).
    pub async fn carry(self, local: impl AsyncRead + AsyncWrite + Send) -> std::io::Result<()> {
        pipe(
            local,
            self.s,
            &self.ring,
            self.sender,
            self.id,
            Side::Opener,
        )
        .await
    }
}

/// Opens a stream to (app, service, port) at member `addr`. `seq` is in the sender's
/// sequence of forwarded requests (the member keeps one replay window per sender).
pub async fn connect(
    addr: SocketAddr,
    ring: Keyring,
    (sender, seq): (u64, u64),
    open: Open,
) -> std::io::Result<Stream> {
    let mut s = tokio::time::timeout(super::join::CONN_TIME, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other(format!("{addr} did not answer in time")))??;
    let _ = s.set_nodelay(true);
    let id = stream_id(&open.stream)?;
    let body = serde_json::to_vec(&open).map_err(std::io::Error::other)?;
    let answer = tokio::time::timeout(super::join::CONN_TIME, async {
        s.write_u8(TAG_STREAM).await?;
        super::join::write_frame(
            &mut s,
            &seal::seal(&ring, Purpose::Tunnel, sender, seq, nonce()?, &body),
        )
        .await?;
        super::join::read_frame(&mut s, OPEN_MAX).await
    })
    .await
    .map_err(|_| std::io::Error::other(format!("{addr} did not open the stream in time")))??;
    let opened = seal::open(&ring, Purpose::Tunnel, &answer, OPEN_MAX)
        .map_err(|d| std::io::Error::other(format!("the answer did not open ({})", d.as_str())))?;
    let o: Opened = serde_json::from_slice(&opened.body).map_err(std::io::Error::other)?;
    if !o.error.is_empty() {
        return Err(std::io::Error::other(o.error));
    }
    Ok(Stream {
        s,
        ring,
        sender,
        id,
    })
}

fn stream_id(hex_id: &str) -> std::io::Result<[u8; 16]> {
    let b = hex::decode(hex_id).map_err(|_| std::io::Error::other("bad stream id"))?;
    b.try_into()
        .map_err(|_| std::io::Error::other("bad stream id"))
}

/// A new random stream id (hex).
pub fn new_stream_id() -> std::io::Result<String> {
    let r = super::keys::random_32().map_err(std::io::Error::other)?;
    Ok(hex::encode(&r[..16]))
}

/// The member's side: reads the sealed [`Open`] (what does not open is closed unanswered),
/// connects to the target and carries the stream.
pub async fn answer(
    mut s: TcpStream,
    ring: Keyring,
    sender: u64,
    fresh: impl Fn(u64, u64) -> bool,
    target: Option<Target>,
    exec: Option<ExecHook>,
) -> std::io::Result<()> {
    let frame = tokio::time::timeout(
        super::join::CONN_TIME,
        super::join::read_frame(&mut s, OPEN_MAX),
    )
    .await
    .map_err(|_| std::io::Error::other("the stream was not opened in time"))??;
    let Ok(opened) = seal::open(&ring, Purpose::Tunnel, &frame, OPEN_MAX) else {
        return Ok(());
    };
    let Ok(open) = serde_json::from_slice::<Open>(&opened.body) else {
        return Ok(());
    };
    let Ok(id) = stream_id(&open.stream) else {
        return Ok(());
    };
    let refuse = |e: String| Opened { error: e };
    let mut to = None;
    let mut session = None;
    let reply = if !fresh(opened.sender, opened.seq) {
        refuse("this stream's opening was seen before (a replay): refused".into())
    } else if (crate::clock::now_ms() - open.at_ms).abs() > super::join::FORWARD_MAX_AGE_MS {
        refuse("the stream's opening is older than 30 s (or the hosts' clocks differ by more): check the clocks".into())
    } else if let Some(e) = open.exec.clone() {
        match exec {
            None => refuse("this member does not run exec sessions yet: try again".into()),
            Some(hook) => {
                match hook(open.app.clone(), open.service.clone(), e, open.from.clone()).await {
                    Ok(d) => {
                        session = Some(d);
                        Opened {
                            error: String::new(),
                        }
                    }
                    Err(e) => refuse(e),
                }
            }
        }
    } else {
        match target
            .as_ref()
            .and_then(|t| t(&open.app, &open.service, open.port))
        {
            None => refuse(format!(
                "no instance of {}/{} runs on this host",
                open.app, open.service
            )),
            Some(addr) => {
                match tokio::time::timeout(super::join::CONN_TIME, TcpStream::connect(addr)).await {
                    Ok(Ok(c)) => {
                        to = Some(c);
                        Opened {
                            error: String::new(),
                        }
                    }
                    Ok(Err(e)) => refuse(format!(
                        "{}/{} at {addr} refused port {}: {e}",
                        open.app, open.service, open.port
                    )),
                    Err(_) => refuse(format!(
                        "{}/{} at {addr} did not accept port {} in time",
                        open.app, open.service, open.port
                    )),
                }
            }
        }
    };
    let body = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    let seq = crate::clock::now_ms().max(0) as u64;
    super::join::write_frame(
        &mut s,
        &seal::seal(&ring, Purpose::Tunnel, sender, seq, nonce()?, &body),
    )
    .await?;
    let _ = s.set_nodelay(true);
    match (to, session) {
        (Some(c), _) => {
            let _ = c.set_nodelay(true);
            pipe(c, s, &ring, sender, id, Side::Member).await
        }
        (None, Some(d)) => pipe(d, s, &ring, sender, id, Side::Member).await,
        (None, None) => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Opener,
    Member,
}

impl Side {
    fn byte(self) -> u8 {
        match self {
            Side::Opener => b'o',
            Side::Member => b'm',
        }
    }
    fn other(self) -> Side {
        match self {
            Side::Opener => Side::Member,
            Side::Member => Side::Opener,
        }
    }
}

/// Carries `local`'s bytes to `peer` sealed and `peer`'s sealed frames to `local`, until
/// both directions ended, one fails, or nothing moved for [`IDLE`].
async fn pipe(
    local: impl AsyncRead + AsyncWrite + Send,
    peer: TcpStream,
    ring: &Keyring,
    sender: u64,
    id: [u8; 16],
    side: Side,
) -> std::io::Result<()> {
    let (lr, lw) = tokio::io::split(local);
    let (pr, pw) = peer.into_split();
    let last = AtomicI64::new(crate::clock::now_ms());
    let up = send(lr, pw, ring, sender, id, side, &last);
    let down = receive(pr, lw, ring, id, side.other(), &last);
    let idle = crate::listen::idled(&last, IDLE);
    tokio::pin!(up, down, idle);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => { r?; up_done = true; }
            r = &mut down, if !down_done => { r?; down_done = true; }
            e = &mut idle => return Err(e),
        }
    }
    Ok(())
}

async fn send(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    ring: &Keyring,
    sender: u64,
    id: [u8; 16],
    side: Side,
    last: &AtomicI64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut seq: u64 = 1;
    loop {
        let n = from.read(&mut buf).await?;
        last.store(crate::clock::now_ms(), Ordering::Relaxed);
        let mut body = Vec::with_capacity(17 + n);
        body.extend_from_slice(&id);
        body.push(side.byte());
        body.extend_from_slice(&buf[..n]);
        let frame = seal::seal(ring, Purpose::Tunnel, sender, seq, nonce()?, &body);
        to.write_u32(frame.len() as u32).await?;
        to.write_all(&frame).await?;
        to.flush().await?;
        seq += 1;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Opens the peer's frames in order and writes their bytes to `to`; a frame that does not
/// open, belongs to another stream or direction, or is out of sequence ends the stream.
async fn receive(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    ring: &Keyring,
    id: [u8; 16],
    side: Side,
    last: &AtomicI64,
) -> std::io::Result<()> {
    let mut seq: u64 = 1;
    loop {
        let n = from.read_u32().await? as usize;
        if n > FRAME_MAX {
            return Err(std::io::Error::other(format!(
                "a tunnel frame of {n} bytes is over the {FRAME_MAX}-byte bound"
            )));
        }
        let mut frame = vec![0u8; n];
        from.read_exact(&mut frame).await?;
        last.store(crate::clock::now_ms(), Ordering::Relaxed);
        let opened = seal::open(ring, Purpose::Tunnel, &frame, FRAME_MAX).map_err(|d| {
            std::io::Error::other(format!("a tunnel frame dropped ({})", d.as_str()))
        })?;
        let body = &opened.body;
        if body.len() < 17 || body[..16] != id || body[16] != side.byte() || opened.seq != seq {
            return Err(std::io::Error::other(
                "a tunnel frame of another stream, direction or place in it: the stream ends",
            ));
        }
        seq += 1;
        let data = &body[17..];
        if data.is_empty() {
            return to.shutdown().await;
        }
        to.write_all(data).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    /// An echo server standing for an instance; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// A member serving streams under `ring` to `target` for shop/db; returns its address.
    async fn member(ring: Keyring, target: SocketAddr) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<seal::Replay>> = Arc::new(Mutex::new(seal::Replay::new(16)));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let ring = ring.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    if s.read_u8().await.ok() != Some(TAG_STREAM) {
                        return;
                    }
                    let fresh = move |sender, seq| seen.lock().unwrap().accept(sender, seq);
                    let t: Target = Arc::new(move |app: &str, service: &str, port: u16| {
                        (app == "shop" && service == "db")
                            .then(|| SocketAddr::new(target.ip(), port))
                    });
                    let _ = answer(s, ring, 7, fresh, Some(t), None).await;
                });
            }
        });
        addr
    }

    fn open_for(port: u16) -> Open {
        Open {
            app: "shop".into(),
            service: "db".into(),
            port,
            stream: new_stream_id().unwrap(),
            at_ms: crate::clock::now_ms(),
            from: "h1".into(),
            exec: None,
        }
    }

    /// A local connection pair: what the caller holds, and what the holder accepted.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn bytes_cross_a_stream_both_ways_and_an_end_closes_it() {
        let ring = Keyring::create(1).unwrap();
        let target = echo().await;
        let m = member(ring.clone(), target).await;
        let stream = connect(m, ring, (9, 1), open_for(target.port()))
            .await
            .expect("opens");
        let (mut caller, accepted) = pair().await;
        let carried = tokio::spawn(stream.carry(accepted));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        caller.write_all(&big).await.unwrap();
        caller.shutdown().await.unwrap();
        let mut back = Vec::new();
        caller.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, big);
        carried.await.unwrap().expect("ends cleanly");
    }

    #[tokio::test]
    async fn an_exec_open_is_carried_to_the_members_session_and_its_refusal_comes_back() {
        let ring = Keyring::create(1).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let m = l.local_addr().unwrap();
        let served = ring.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let ring = served.clone();
                tokio::spawn(async move {
                    assert_eq!(s.read_u8().await.ok(), Some(TAG_STREAM));
                    let hook: ExecHook = Arc::new(|app, service, e: ExecOpen, from| {
                        Box::pin(async move {
                            if e.cmd.is_empty() {
                                return Err(format!("no command for {app}/{service}"));
                            }
                            let (mine, theirs) = tokio::io::duplex(1024);
                            tokio::spawn(async move {
                                let (mut r, mut w) = tokio::io::split(mine);
                                let said = format!("{} by {} from {from}:", e.cmd[0], e.who);
                                w.write_all(said.as_bytes()).await.unwrap();
                                let _ = tokio::io::copy(&mut r, &mut w).await;
                                w.shutdown().await.unwrap();
                            });
                            Ok(theirs)
                        })
                    });
                    let _ = answer(s, ring, 7, |_, _| true, None, Some(hook)).await;
                });
            }
        });
        let mut open = open_for(0);
        open.exec = Some(ExecOpen {
            cmd: vec!["sh".into()],
            who: "alice".into(),
            ..ExecOpen::default()
        });
        let stream = connect(m, ring.clone(), (9, 1), open.clone())
            .await
            .expect("opens");
        let (mut caller, accepted) = pair().await;
        let carried = tokio::spawn(stream.carry(accepted));
        caller.write_all(b"typed").await.unwrap();
        caller.shutdown().await.unwrap();
        let mut back = String::new();
        caller.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, "sh by alice from h1:typed");
        carried.await.unwrap().expect("ends cleanly");
        open.stream = new_stream_id().unwrap();
        open.exec = Some(ExecOpen::default());
        let e = connect(m, ring, (9, 2), open).await.err().expect("refused");
        assert!(e.to_string().contains("no command for shop/db"), "{e}");
    }

    #[tokio::test]
    async fn an_open_under_another_clusters_key_is_closed_unanswered() {
        let ring = Keyring::create(1).unwrap();
        let target = echo().await;
        let m = member(ring, target).await;
        let stranger = Keyring::create(1).unwrap();
        let e = connect(m, stranger, (9, 1), open_for(target.port()))
            .await
            .err()
            .expect("refused");
        assert!(
            !e.to_string().contains("no instance"),
            "it must not be answered: {e}"
        );
    }

    #[tokio::test]
    async fn a_replayed_open_and_an_unknown_service_are_refused_with_the_reason() {
        let ring = Keyring::create(1).unwrap();
        let target = echo().await;
        let m = member(ring.clone(), target).await;
        connect(m, ring.clone(), (9, 5), open_for(target.port()))
            .await
            .expect("first");
        let e = connect(m, ring.clone(), (9, 5), open_for(target.port()))
            .await
            .err()
            .expect("replay");
        assert!(e.to_string().contains("replay"), "{e}");
        let mut other = open_for(target.port());
        other.service = "cache".into();
        let e = connect(m, ring, (9, 6), other)
            .await
            .err()
            .expect("unknown");
        assert!(e.to_string().contains("no instance of shop/cache"), "{e}");
    }

    #[tokio::test]
    async fn a_frame_claiming_a_gigabyte_ends_the_stream_before_anything_is_read() {
        let ring = Keyring::create(1).unwrap();
        let (mut peer_w, peer_r) = pair().await;
        let (_local_keep, local) = pair().await;
        peer_w.write_u32(1 << 30).await.unwrap();
        let (_lr, lw) = local.into_split();
        let last = AtomicI64::new(0);
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            receive(peer_r, lw, &ring, [1u8; 16], Side::Opener, &last),
        )
        .await
        .expect("refused at once, not waiting for a gigabyte");
        assert!(r.is_err_and(|e| e.to_string().contains("over the")));
    }

    #[tokio::test]
    async fn a_frame_of_another_stream_or_out_of_order_ends_the_stream() {
        let ring = Keyring::create(1).unwrap();
        let id = [1u8; 16];
        for (frame_id, side, seq) in [([2u8; 16], b'o', 1u64), (id, b'm', 1), (id, b'o', 2)] {
            let (mut peer_w, peer_r) = pair().await;
            let (_local_keep, local) = pair().await;
            let last = AtomicI64::new(0);
            let mut body = frame_id.to_vec();
            body.push(side);
            body.extend_from_slice(b"injected");
            let f = seal::seal(&ring, Purpose::Tunnel, 3, seq, [0u8; 12], &body);
            peer_w.write_u32(f.len() as u32).await.unwrap();
            peer_w.write_all(&f).await.unwrap();
            let (_lr, lw) = local.into_split();
            let r = receive(peer_r, lw, &ring, id, Side::Opener, &last).await;
            assert!(r.is_err(), "{frame_id:?} {side} {seq} was taken");
        }
    }
}
