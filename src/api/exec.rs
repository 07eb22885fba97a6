//! `berth exec` and the console's terminal: `GET /v1/apps/A/services/S/exec?cmd=..` upgraded
//! to a WebSocket (RFC 6455) that carries the command's streams.
//!
//! Each binary message starts with its kind. From the client: `0` stdin bytes, `1` a
//! terminal size (cols, rows: big-endian u16 each), `2` the end of stdin. From the agent:
//! `1` stdout bytes, `2` stderr bytes, `3` the exit code (big-endian i32, then the agent
//! closes), `4` why the session ends without one (UTF-8).
//!
//! Bounded: a message is at most [`MAX_MESSAGE`] bytes, at most [`MAX_SESSIONS`] run at once,
//! and a session with no byte either way for [`IDLE`] is closed (as the seed's console does).
//! A browser's session must come from the console's own page (its Origin), as every change
//! must.

use super::route::ExecParams;
use crate::agent::{ExecWhere, Ops};
use crate::runtime::ExecSpec;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocketConfig};

/// The most bytes one message carries either way.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Exec sessions at once on this agent.
pub const MAX_SESSIONS: usize = 32;
/// A session closes after this long without a byte either way (`[agent] exec_idle`).
pub const IDLE: Duration = Duration::from_secs(15 * 60);

pub const IN_STDIN: u8 = 0;
pub const IN_RESIZE: u8 = 1;
pub const IN_EOF: u8 = 2;
pub const OUT_STDOUT: u8 = 1;
pub const OUT_STDERR: u8 = 2;
pub const OUT_EXIT: u8 = 3;
pub const OUT_ERROR: u8 = 4;

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

struct Slot;
impl Drop for Slot {
    fn drop(&mut self) {
        SESSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

fn take_slot() -> Option<Slot> {
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    if n >= MAX_SESSIONS {
        SESSIONS.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Slot)
}

/// The `Sec-WebSocket-Accept` for a request that asks for a WebSocket; None when it does not.
fn accept_key(req: &Request<Incoming>) -> Option<String> {
    let h = req.headers();
    let has = |name: hyper::header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(hyper::header::UPGRADE, "websocket") || !has(hyper::header::CONNECTION, "upgrade") {
        return None;
    }
    if h.get(hyper::header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return None;
    }
    let key = h.get(hyper::header::SEC_WEBSOCKET_KEY)?;
    Some(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answers an exec request: an HTTP error before anything runs, or 101 and the session.
pub async fn start(
    mut req: Request<Incoming>,
    ops: Ops,
    p: ExecParams,
    who: String,
    idle: Duration,
) -> Result<Response<super::server::Body>, super::Reply> {
    let Some(accept) = accept_key(&req) else {
        return Err(super::error(
            400,
            "exec is a WebSocket: send Upgrade: websocket (berth exec and the console's terminal do)",
        ));
    };
    let Some(slot) = take_slot() else {
        return Err(super::error(
            429,
            &format!("{MAX_SESSIONS} exec sessions are open on this agent: close one first"),
        ));
    };
    let err = |e: crate::agent::CoreError| super::error(super::status_of(&e), &e.to_string());
    let upgrade = hyper::upgrade::on(&mut req);
    match ops
        .exec_target(&p.app, &p.service, p.slot)
        .await
        .map_err(err)?
    {
        ExecWhere::Here(target) => {
            let (session, ops) = begin(&ops, &p.app, &p.service, &target, exec_spec(&p), &who)
                .await
                .map_err(err)?;
            let cmd0 = p.cmd[0].clone();
            tokio::spawn(async move {
                let _slot = slot;
                let Some(io) = upgraded(upgrade).await else {
                    return;
                };
                pump(serve_ws(io).await, session, ops, idle, cmd0).await;
            });
        }
        ExecWhere::Member { node, slot: n, .. } => {
            // The member runs the session; this agent carries its bytes.
            let open = crate::cluster::tunnel::ExecOpen {
                slot: Some(n),
                cmd: p.cmd.clone(),
                tty: p.tty,
                cols: p.cols,
                rows: p.rows,
                who,
            };
            let stream = ops
                .exec_on_member(&node, &p.app, &p.service, open)
                .await
                .map_err(err)?;
            tokio::spawn(async move {
                let _slot = slot;
                let Some(io) = upgraded(upgrade).await else {
                    return;
                };
                if let Err(e) = stream.carry(io).await {
                    tracing::debug!(error = %e, member = %node, "exec: the carried session ended");
                }
            });
        }
    }
    let mut r = Response::new(super::server::full(Vec::new()));
    *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

fn exec_spec(p: &ExecParams) -> ExecSpec {
    ExecSpec {
        cmd: p.cmd.clone(),
        tty: p.tty,
        stdin: true,
        cols: p.cols,
        rows: p.rows,
    }
}

/// Starts the command in `target` and gives its terminal its first size (engines before
/// API 1.42 take none at create).
async fn begin(
    ops: &Ops,
    app: &str,
    service: &str,
    target: &crate::agent::ExecTarget,
    spec: ExecSpec,
    who: &str,
) -> Result<(crate::runtime::ExecSession, Ops), crate::agent::CoreError> {
    let (tty, cols, rows) = (spec.tty, spec.cols, spec.rows);
    let session = ops.exec_start(app, service, target, spec, who).await?;
    if tty && cols > 0 && rows > 0 {
        let _ = ops
            .runtime()
            .exec_resize(&session.exec_id, cols, rows)
            .await;
    }
    Ok((session, ops.clone()))
}

async fn upgraded(
    upgrade: hyper::upgrade::OnUpgrade,
) -> Option<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    match upgrade.await {
        Ok(u) => Some(hyper_util::rt::TokioIo::new(u)),
        Err(e) => {
            tracing::debug!(error = %e, "exec: the client did not complete the upgrade");
            None
        }
    }
}

/// The agent's end of a session's WebSocket, bounded.
async fn serve_ws<S>(io: S) -> WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Runs the exec sessions other members open here (`berth exec` asked of another member's
/// API for a container of this one): the same session, its WebSocket bytes carried by the
/// peer channel. The opener's API checked the request and the caller's role.
/// Weak: the hub (held by the operations) must not keep them alive.
pub(super) fn member_hook(
    ctx: std::sync::Weak<super::Ctx>,
    idle: Duration,
) -> crate::cluster::tunnel::ExecHook {
    std::sync::Arc::new(move |app, service, e, from| {
        let ctx = ctx.upgrade();
        Box::pin(async move {
            let Some(ops) = ctx.map(|c| c.ops.clone()) else {
                return Err("the member's agent is stopping".to_string());
            };
            if e.cmd.is_empty() || e.cmd.len() > 256 || e.cmd.iter().any(|a| a.contains('\0')) {
                return Err("the exec command is empty or malformed".to_string());
            }
            let slot = take_slot().ok_or_else(|| {
                format!("{MAX_SESSIONS} exec sessions are open on that member: close one first")
            })?;
            let target = ops
                .exec_target_here(&app, &service, e.slot)
                .await
                .map_err(|e| e.to_string())?;
            let spec = ExecSpec {
                cmd: e.cmd.clone(),
                tty: e.tty,
                stdin: true,
                cols: e.cols.min(1000),
                rows: e.rows.min(1000),
            };
            let who = format!("{} through {from}", e.who);
            let (session, ops) = begin(&ops, &app, &service, &target, spec, &who)
                .await
                .map_err(|e| e.to_string())?;
            let (mine, theirs) = tokio::io::duplex(2 * MAX_MESSAGE);
            let cmd0 = e.cmd[0].clone();
            tokio::spawn(async move {
                let _slot = slot;
                pump(serve_ws(mine).await, session, ops, idle, cmd0).await;
            });
            Ok(theirs)
        })
    })
}

fn out(kind: u8, bytes: &[u8]) -> Message {
    let mut m = Vec::with_capacity(bytes.len() + 1);
    m.push(kind);
    m.extend_from_slice(bytes);
    Message::Binary(m.into())
}

/// Carries the streams both ways until the command ends, the client goes or the session
/// idles out.
async fn pump<S>(
    mut ws: WebSocketStream<S>,
    mut session: crate::runtime::ExecSession,
    ops: Ops,
    idle: Duration,
    cmd0: String,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exec_id = session.exec_id.clone();
    let mut printed = false;
    let mut last = tokio::time::Instant::now();
    loop {
        let deadline = last + idle;
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(m)) = m else { break };
                last = tokio::time::Instant::now();
                match m {
                    Message::Binary(b) if !b.is_empty() => match b[0] {
                        IN_STDIN => {
                            if session.input.write_all(&b[1..]).await.is_err() {
                                // The command closed its input; its output may go on.
                            }
                            let _ = session.input.flush().await;
                        }
                        IN_RESIZE if b.len() == 5 => {
                            let cols = u16::from_be_bytes([b[1], b[2]]);
                            let rows = u16::from_be_bytes([b[3], b[4]]);
                            if (1..=1000).contains(&cols) && (1..=1000).contains(&rows) {
                                let _ = ops.runtime().exec_resize(&exec_id, cols, rows).await;
                            }
                        }
                        IN_EOF => {
                            let _ = session.input.shutdown().await;
                        }
                        _ => {
                            let _ = ws.send(out(OUT_ERROR, b"unknown message kind: closing")).await;
                            break;
                        }
                    },
                    Message::Close(_) => break,
                    // Pings are answered by the protocol; text is not part of this one.
                    _ => {}
                }
            }
            f = session.output.next() => {
                match f {
                    Some(Ok(f)) => {
                        last = tokio::time::Instant::now();
                        printed = true;
                        let kind = if f.stderr { OUT_STDERR } else { OUT_STDOUT };
                        for chunk in f.bytes.chunks(MAX_MESSAGE - 1) {
                            if ws.send(out(kind, chunk)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(_)) | None => {
                        // The command ended: its exit code, once the engine has it.
                        let mut code = None;
                        for _ in 0..50 {
                            match ops.runtime().exec_exit(&exec_id).await {
                                Ok(Some(c)) => {
                                    code = Some(c);
                                    break;
                                }
                                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                                Err(_) => break,
                            }
                        }
                        // The engine says nothing when the command cannot start at all.
                        if matches!(code, Some(126 | 127)) && !printed {
                            let why = format!(
                                "berth: {:?} could not be run in the container (exit {}: not found or not executable there)\r\n",
                                cmd0,
                                code.unwrap_or_default()
                            );
                            let _ = ws.send(out(OUT_STDERR, why.as_bytes())).await;
                        }
                        let m = match code {
                            Some(c) => out(OUT_EXIT, &(c.clamp(i32::MIN.into(), i32::MAX.into()) as i32).to_be_bytes()),
                            None => out(OUT_ERROR, b"the command's exit code could not be read"),
                        };
                        let _ = ws.send(m).await;
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let msg = match idle.as_secs() {
                    s if s % 60 == 0 => format!("closed after {} minutes without input or output", s / 60),
                    s => format!("closed after {s} seconds without input or output"),
                };
                let _ = ws.send(out(OUT_ERROR, msg.as_bytes())).await;
                break;
            }
        }
    }
    // The closing handshake: what the client sent meanwhile (the EOF of its input, as a rule)
    // is read until its Close answers ours. A socket closed with unread bytes is reset, and a
    // reset can reach the client before it has read the exit code (it then saw "connection
    // reset" instead of the command's code).
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// How long a session waits for the client's Close after its own.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
