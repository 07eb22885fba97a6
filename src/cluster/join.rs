//! The peer channel: TCP on the cluster's bind address, one request and one answer a
//! connection, its first byte saying which.
//!
//! - `J`, a join: one framed [`Hello`] (in clear: nothing in it is secret); the member answers
//!   one framed [`Answer`]: its keyring and members sealed under the token's key, or the
//!   reason it refuses.
//! - `P`, a pull of replicated state: a [`PullRequest`] in the sealed envelope (peer key);
//!   the answer is the owner's [`Delta`], sealed. What does not open is closed unanswered.
//! - `F`, a forwarded API request (a write to an app this host owns, asked on another
//!   member): a [`Forward`] sealed, refused when seen before or older than 30 s; the answer
//!   is the API's status and body, sealed.
//!
//! - `S`, a stream carried to an instance on this host (`tunnel`).
//!
//! Bounded: 16 KiB a request, 8 MiB an answer, 5 s a connection, 64 connections at once (more wait for a slot, up to 5 s);
//! any other first byte is closed unread.

use super::gossip::Id;
use super::keys::Keyring;
use super::token::{Hello, Refusal, Token};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TAG_JOIN: u8 = b'J';
pub const TAG_PULL: u8 = b'P';
pub const TAG_FORWARD: u8 = b'F';
/// How old a forwarded request may be when it arrives.
pub const FORWARD_MAX_AGE_MS: i64 = 30_000;
/// How long a forwarded request may run on the owner.
pub const FORWARD_TIME: Duration = Duration::from_secs(120);
/// The largest request.
pub const MAX_FRAME: usize = 16 * 1024;
/// The largest answer (a whole state).
pub const MAX_ANSWER: usize = 8 << 20;
pub const CONN_TIME: Duration = Duration::from_secs(5);
pub const MAX_CONNS: usize = 64;

/// A member's answer to a hello.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// [`Welcome`], sealed (hex).
    Sealed(String),
    Refused(Refusal),
}

/// What a joiner receives, sealed under the token's key.
#[derive(Debug, Serialize, Deserialize)]
pub struct Welcome {
    pub keyring: Keyring,
    /// The members the answering host knows alive (itself first).
    pub members: Vec<Id>,
    pub proto: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Token(#[from] super::token::TokenError),
    #[error("{member} refused the join: {refusal}")]
    Refused {
        member: SocketAddr,
        refusal: Refusal,
    },
    #[error(
        "no member named in the token could be reached ({0}): check the addresses and that port's UDP and TCP are open between the hosts"
    )]
    Unreachable(String),
    #[error("{member} answered something that is not a berth join answer: {detail}")]
    Protocol { member: SocketAddr, detail: String },
}

pub async fn read_frame(s: &mut TcpStream, max: usize) -> std::io::Result<Vec<u8>> {
    let n = s.read_u32().await? as usize;
    if n > max {
        return Err(std::io::Error::other(format!(
            "a frame of {n} bytes is over the {max}-byte bound"
        )));
    }
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

pub async fn write_frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    s.write_u32(body.len() as u32).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// Asks the members named in `token`, in turn, to take this host in.
pub async fn request(
    token: &Token,
    node_id: &str,
    name: &str,
    advertise: SocketAddr,
) -> Result<(Welcome, SocketAddr), JoinError> {
    let mut failures = Vec::new();
    for member in &token.claims.members {
        let nonce = super::keys::random_32().map_err(|e| JoinError::Unreachable(e.to_string()))?;
        let hello = token.hello(nonce, node_id, name, advertise);
        let attempt = tokio::time::timeout(CONN_TIME, async {
            let mut s = TcpStream::connect(member).await?;
            s.write_u8(TAG_JOIN).await?;
            let body = serde_json::to_vec(&hello).map_err(std::io::Error::other)?;
            write_frame(&mut s, &body).await?;
            read_frame(&mut s, MAX_FRAME).await
        })
        .await;
        let answer = match attempt {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                failures.push(format!("{member}: {e}"));
                continue;
            }
            Err(_) => {
                failures.push(format!("{member}: no answer within {CONN_TIME:?}"));
                continue;
            }
        };
        let protocol = |detail: String| JoinError::Protocol {
            member: *member,
            detail,
        };
        match serde_json::from_slice::<Answer>(&answer).map_err(|e| protocol(e.to_string()))? {
            Answer::Refused(refusal) => {
                return Err(JoinError::Refused {
                    member: *member,
                    refusal,
                });
            }
            Answer::Sealed(hex_body) => {
                let sealed = hex::decode(hex_body).map_err(|e| protocol(e.to_string()))?;
                let plain = token.open_reply(&hello, &sealed).ok_or_else(|| {
                    protocol("the reply does not open under the token's key".into())
                })?;
                let w: Welcome =
                    serde_json::from_slice(&plain).map_err(|e| protocol(e.to_string()))?;
                if w.keyring.cluster != token.claims.cluster || !w.keyring.valid() {
                    return Err(protocol(
                        "the reply is for another cluster, or its keyring has no sealing key"
                            .into(),
                    ));
                }
                return Ok((w, *member));
            }
        }
    }
    Err(JoinError::Unreachable(failures.join("; ")))
}

/// What a host asks an owner for.
#[derive(Debug, Serialize, Deserialize)]
pub struct PullRequest {
    pub epoch: u64,
    pub since: u64,
}

/// An API request asked on another member, for this one to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    pub method: String,
    pub url: String,
    pub body: String,
    /// When it was sent (ms): an old one is refused.
    pub at_ms: i64,
    /// The member that forwards it (for the event log).
    pub from: String,
    /// The cluster protocol the forwarding member speaks (absent: 1).
    #[serde(default = "protocol_one")]
    pub proto: u32,
}

fn protocol_one() -> u32 {
    1
}

/// The API's answer to a forwarded request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardReply {
    pub status: u16,
    pub body: String,
}

/// The member's side of the channel (the hub).
pub trait Serve: Send + Sync + 'static {
    /// Checks the hello and, when it is admitted, counts the token's use and returns the
    /// welcome and the key to seal it under.
    fn admit(&self, hello: &Hello) -> Result<(Welcome, super::token::ReplyKey), Refusal>;
    fn keyring(&self) -> Keyring;
    /// This host's sender id in the envelope.
    fn sender(&self) -> u64;
    /// This host's records after (`epoch`, `since`).
    fn delta(&self, epoch: u64, since: u64) -> super::state::Delta;
    /// Records (sender, seq) of a forwarded request; false when seen before.
    fn fresh(&self, sender: u64, seq: u64) -> bool;
    /// Where a tunnel to (app, service, port) goes on this host (see `tunnel`).
    fn tunnel_target(&self) -> Option<super::tunnel::Target>;
    /// What runs exec sessions other members open here (see `tunnel`).
    fn exec_hook(&self) -> Option<super::tunnel::ExecHook>;
    /// Runs a forwarded API request.
    fn forward(
        &self,
        f: Forward,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ForwardReply> + Send>>;
}

/// Asks the member at `addr` to run `f` (an API request) as its own.
pub async fn forward(
    addr: SocketAddr,
    ring: &Keyring,
    sender: u64,
    seq: u64,
    f: &Forward,
    limit: Duration,
) -> std::io::Result<ForwardReply> {
    let body = serde_json::to_vec(f).map_err(std::io::Error::other)?;
    let answer = sealed_request(addr, TAG_FORWARD, ring, sender, seq, &body, limit).await?;
    serde_json::from_slice(&answer).map_err(std::io::Error::other)
}

/// One sealed request on the peer channel (`tag`, then `body` sealed under the peer key) and
/// its sealed answer, opened, all within `limit`.
async fn sealed_request(
    addr: SocketAddr,
    tag: u8,
    ring: &Keyring,
    sender: u64,
    seq: u64,
    body: &[u8],
    limit: Duration,
) -> std::io::Result<Vec<u8>> {
    use super::keys::Purpose;
    if body.len() + super::seal::OVERHEAD > MAX_ANSWER {
        return Err(std::io::Error::other("the request is too large to send"));
    }
    tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_u8(tag).await?;
        write_frame(
            &mut s,
            &super::seal::seal(ring, Purpose::Peer, sender, seq, nonce()?, body),
        )
        .await?;
        let answer = read_frame(&mut s, MAX_ANSWER).await?;
        let opened = super::seal::open(ring, Purpose::Peer, &answer, MAX_ANSWER).map_err(|d| {
            std::io::Error::other(format!("the answer did not open ({})", d.as_str()))
        })?;
        Ok(opened.body)
    })
    .await
    .map_err(|_| std::io::Error::other(format!("{addr} did not answer within {limit:?}")))?
}

async fn answer_forward(s: &mut TcpStream, gate: &dyn Serve) -> std::io::Result<()> {
    use super::keys::Purpose;
    // A deploy's template can be large: the request bound is the answer bound here. The
    // request is read within the connection's time; only running it may take longer.
    let frame = tokio::time::timeout(CONN_TIME, read_frame(s, MAX_ANSWER))
        .await
        .map_err(|_| std::io::Error::other("the forwarded request was not sent in time"))??;
    let ring = gate.keyring();
    let Ok(opened) = super::seal::open(&ring, Purpose::Peer, &frame, MAX_ANSWER) else {
        return Ok(());
    };
    let reply = match serde_json::from_slice::<Forward>(&opened.body) {
        Err(_) => return Ok(()),
        Ok(f) if !gate.fresh(opened.sender, opened.seq) => {
            tracing::warn!(from = %f.from, "a forwarded request was seen before (a replay): refused");
            ForwardReply {
                status: 409,
                body: r#"{"error":"this forwarded request was seen before (a replay): refused"}"#.into(),
            }
        }
        Ok(f) if (crate::clock::now_ms() - f.at_ms).abs() > FORWARD_MAX_AGE_MS => ForwardReply {
            status: 409,
            body: r#"{"error":"the forwarded request is older than 30 s (or the hosts' clocks differ by more): send it again, and check the clocks"}"#.into(),
        },
        Ok(f) => gate.forward(f).await,
    };
    let body = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    let seq = crate::clock::now_ms().max(0) as u64;
    write_frame(
        s,
        &super::seal::seal(&ring, Purpose::Peer, gate.sender(), seq, nonce()?, &body),
    )
    .await
}

fn nonce() -> std::io::Result<[u8; 12]> {
    let r = super::keys::random_32().map_err(std::io::Error::other)?;
    let mut n = [0u8; 12];
    n.copy_from_slice(&r[..12]);
    Ok(n)
}

/// Asks the owner at `addr` for its records after (`epoch`, `since`).
pub async fn pull(
    addr: SocketAddr,
    ring: &Keyring,
    sender: u64,
    req: PullRequest,
) -> std::io::Result<super::state::Delta> {
    let body = serde_json::to_vec(&req).map_err(std::io::Error::other)?;
    let seq = crate::clock::now_ms().max(0) as u64;
    let answer = sealed_request(addr, TAG_PULL, ring, sender, seq, &body, CONN_TIME).await?;
    serde_json::from_slice(&answer).map_err(std::io::Error::other)
}

async fn answer_pull(s: &mut TcpStream, gate: &dyn Serve) -> std::io::Result<()> {
    use super::keys::Purpose;
    let frame = read_frame(s, MAX_FRAME).await?;
    let ring = gate.keyring();
    let Ok(opened) = super::seal::open(&ring, Purpose::Peer, &frame, MAX_FRAME) else {
        return Ok(());
    };
    let Ok(req) = serde_json::from_slice::<PullRequest>(&opened.body) else {
        return Ok(());
    };
    let delta = gate.delta(req.epoch, req.since);
    let body = serde_json::to_vec(&delta).map_err(std::io::Error::other)?;
    let seq = crate::clock::now_ms().max(0) as u64;
    let sealed = super::seal::seal(&ring, Purpose::Peer, gate.sender(), seq, nonce()?, &body);
    if sealed.len() > MAX_ANSWER {
        tracing::warn!(
            bytes = sealed.len(),
            "this host's replicated state is over the peer channel's 8 MiB bound: members cannot pull it"
        );
        return Ok(());
    }
    write_frame(s, &sealed).await
}

/// Serves the channel on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, admit: std::sync::Arc<dyn Serve>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    let streams = std::sync::Arc::new(tokio::sync::Semaphore::new(super::tunnel::MAX_STREAMS));
    loop {
        let Ok((mut s, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the bound, a connection waits (a burst of pulls after a change, with many
        // members) up to the connection time for a slot; then it is closed.
        let Ok(Ok(permit)) = tokio::time::timeout(CONN_TIME, slots.clone().acquire_owned()).await
        else {
            continue;
        };
        let admit = admit.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            let permit = permit;
            // The first byte within the connection's time; a forwarded request then has
            // as long as the API gives its longest request.
            let Ok(Ok(tag)) = tokio::time::timeout(CONN_TIME, s.read_u8()).await else {
                return;
            };
            if tag == super::tunnel::TAG_STREAM {
                // A stream lasts as long as its connection: it takes a stream's slot, not
                // one of the requests'; over the bound it is closed unanswered.
                drop(permit);
                let Ok(_stream) = streams.try_acquire_owned() else {
                    return;
                };
                let gate = admit.clone();
                let fresh = move |sender, seq| gate.fresh(sender, seq);
                let _ = super::tunnel::answer(
                    s,
                    admit.keyring(),
                    admit.sender(),
                    fresh,
                    admit.tunnel_target(),
                    admit.exec_hook(),
                )
                .await;
                return;
            }
            let _permit = permit;
            let limit = if tag == TAG_FORWARD {
                FORWARD_TIME
            } else {
                CONN_TIME
            };
            let _ = tokio::time::timeout(limit, async {
                match tag {
                    TAG_JOIN => {}
                    TAG_PULL => return answer_pull(&mut s, admit.as_ref()).await,
                    TAG_FORWARD => return answer_forward(&mut s, admit.as_ref()).await,
                    _ => return Ok::<_, std::io::Error>(()),
                }
                let body = read_frame(&mut s, MAX_FRAME).await?;
                let answer = match serde_json::from_slice::<Hello>(&body) {
                    Err(_) => Answer::Refused(Refusal::Wrong),
                    Ok(hello) => match admit.admit(&hello) {
                        Ok((welcome, key)) => {
                            let plain =
                                serde_json::to_vec(&welcome).map_err(std::io::Error::other)?;
                            let nonce = super::keys::random_32().map_err(std::io::Error::other)?;
                            let mut n = [0u8; 12];
                            n.copy_from_slice(&nonce[..12]);
                            tracing::info!(%from, joiner = %hello.name, "admitted a join");
                            Answer::Sealed(hex::encode(key.seal(&hello, n, &plain)))
                        }
                        Err(r) => {
                            tracing::warn!(%from, refusal = %r, "refused a join");
                            Answer::Refused(r)
                        }
                    },
                };
                let out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
                write_frame(&mut s, &out).await
            })
            .await;
        });
    }
}
