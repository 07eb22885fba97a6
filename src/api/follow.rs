//! `GET /v1/logs?follow=1`: a chunked NDJSON stream of log lines as they are stored.
//!
//! The reader first sends what the query matches now (honouring `tail`), then polls the store
//! for lines after the last one sent. Every few seconds without lines it sends an empty line,
//! so a client that went away is noticed (the channel to its connection is closed and the
//! reading thread ends). It ends cleanly (final chunk) when the app is removed or the agent
//! stops.

use super::route::LogsParams;
use crate::agent::{CoreError, Ops};
use crate::store::LogQuery;
use std::io::Read;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_secs(5);

pub struct Follow {
    ops: Ops,
    /// Resolved once: relative times count from the start of the stream.
    query: LogQuery,
    last_id: i64,
    buf: Vec<u8>,
    pos: usize,
    last_write: Instant,
}

pub fn start(ops: Ops, params: LogsParams) -> Result<Follow, CoreError> {
    let query = ops.log_query(&params)?;
    let first = ops.query_logs(&query)?;
    let mut f = Follow {
        ops,
        query,
        last_id: 0,
        buf: Vec::new(),
        pos: 0,
        last_write: Instant::now(),
    };
    if first.is_empty() {
        // Nothing yet: follow from the newest line stored now.
        f.last_id = f.ops.last_log_id().unwrap_or(0);
    }
    f.fill(first);
    Ok(f)
}

/// The stream as a response body: a blocking thread reads it (the store is polled) into a
/// small bounded channel that the connection drains.
pub fn body(mut f: Follow) -> super::server::Body {
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let item = match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(bytes::Bytes::copy_from_slice(&buf[..n])),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (item.map(hyper::body::Frame::data), rx))
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

impl Follow {
    fn fill(&mut self, lines: Vec<crate::store::LogLine>) {
        for l in lines {
            self.last_id = self.last_id.max(l.id);
            if serde_json::to_writer(&mut self.buf, &crate::wire::LogLine::from(l)).is_ok() {
                self.buf.push(b'\n');
            }
        }
    }
}

impl Read for Follow {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                self.last_write = Instant::now();
                return Ok(n);
            }
            self.buf.clear();
            self.pos = 0;
            if self.ops.stopping() {
                return Ok(0);
            }
            // Whether the app still exists is checked once per heartbeat, not every poll.
            let heartbeat_due = self.last_write.elapsed() >= HEARTBEAT;
            match self
                .ops
                .logs_after(&self.query, self.last_id, heartbeat_due)
            {
                Ok(lines) if !lines.is_empty() => {
                    self.fill(lines);
                    continue;
                }
                Ok(_) => {}
                // The app is gone (or the store failed): end the stream.
                Err(_) => return Ok(0),
            }
            if heartbeat_due {
                self.buf.push(b'\n');
                continue;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// How often a follow of another member's app asks the owner for new lines.
const REMOTE_POLL: Duration = Duration::from_millis(500);

/// `logs -f` for an app another member owns: the owner's store is polled over the peer
/// channel (a forwarded `GET /v1/logs?...&after=ID`, at most a page per answer), and lines are
/// sent as they arrive, with the same heartbeat as a local follow. A member that is away for a
/// while only pauses the stream; the stream ends when the owner answers that the app is gone,
/// or this agent stops.
pub fn remote(ops: Ops, owner: String, params: &LogsParams, url: &str) -> super::server::Body {
    use http_body_util::BodyExt;
    let s = Remote {
        ops,
        owner,
        base: base_query(url),
        tail: params.tail,
        cursor: None,
        last_write: Instant::now(),
    };
    let frames = futures_util::stream::unfold(s, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), s))
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// Lines as NDJSON, one object a line.
fn ndjson(lines: &[crate::wire::LogLine]) -> bytes::Bytes {
    let mut buf = Vec::new();
    for l in lines {
        if serde_json::to_writer(&mut buf, l).is_ok() {
            buf.push(b'\n');
        }
    }
    buf.into()
}

/// The request's query without the parameters the poller sets itself.
fn base_query(url: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            !k.is_empty() && !matches!(k, "follow" | "tail" | "after")
        })
        .collect::<Vec<_>>()
        .join("&")
}

struct Remote {
    ops: Ops,
    owner: String,
    base: String,
    tail: Option<usize>,
    /// The owner's id of the last line sent; `None` before the first answer.
    cursor: Option<i64>,
    last_write: Instant,
}

impl Remote {
    async fn next(&mut self) -> Option<bytes::Bytes> {
        loop {
            if self.ops.stopping() {
                return None;
            }
            // First the last `tail` lines (none asked: everything, a page at a time); with
            // `--tail 0` one line is read only to learn where the stream starts.
            let url = match (self.cursor, self.tail) {
                (Some(id), _) => format!("/v1/logs?{}&after={id}", self.base),
                (None, None) => format!("/v1/logs?{}&after=0", self.base),
                (None, Some(t)) => format!("/v1/logs?{}&tail={}", self.base, t.max(1)),
            };
            let first = self.cursor.is_none();
            match self
                .ops
                .cluster()
                .forward(&self.owner, "GET", &url, b"")
                .await
            {
                Ok(r) if r.status == 200 => {
                    let lines: Vec<crate::wire::LogLine> =
                        serde_json::from_str(&r.body).unwrap_or_default();
                    let newest = lines.iter().map(|l| l.id).max();
                    self.cursor = Some(newest.unwrap_or(0).max(self.cursor.unwrap_or(0)));
                    // With `--tail 0` the first line only tells where to start.
                    let skip = first && self.tail == Some(0);
                    if !skip && !lines.is_empty() {
                        self.last_write = Instant::now();
                        return Some(ndjson(&lines));
                    }
                }
                // The owner says the app is gone: the stream ends as a local one does.
                Ok(r) if r.status == 404 => return None,
                // The owner is away or failing: the stream waits for it.
                Ok(r) => {
                    tracing::debug!(owner = %self.owner, status = r.status, "a remote follow's poll failed")
                }
                Err(e) => {
                    tracing::debug!(owner = %self.owner, error = %e, "a remote follow's poll failed")
                }
            }
            if self.last_write.elapsed() >= HEARTBEAT {
                self.last_write = Instant::now();
                return Some(bytes::Bytes::from_static(b"\n"));
            }
            tokio::time::sleep(REMOTE_POLL).await;
        }
    }
}

/// `logs -f` in a cluster: an app's instances run on several members, and each stores the
/// lines of its own. This host's store and every alive member's (a forwarded `GET
/// /v1/logs?...&local=1&after=ID`, each member with its own cursor) are polled together,
/// each round's lines merged by time; `tail` takes the last lines of the merge. A member
/// that joins or comes back is polled from then on; the stream ends when the app is known
/// nowhere any more, or this agent stops.
pub fn cluster(ops: Ops, params: &LogsParams, _url: &str) -> super::server::Body {
    use http_body_util::BodyExt;
    let s = Cluster {
        ops,
        params: LogsParams {
            follow: false,
            after: None,
            local: true,
            ..params.clone()
        },
        local: None,
        peers: std::collections::BTreeMap::new(),
        first: true,
        last_write: Instant::now(),
    };
    let frames = futures_util::stream::unfold(s, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), s))
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

struct Cluster {
    ops: Ops,
    /// The filters, as a `local` query of one store.
    params: LogsParams,
    /// This store's id of the last line sent.
    local: Option<i64>,
    /// Each member's id of the last line sent from its store.
    peers: std::collections::BTreeMap<String, i64>,
    first: bool,
    last_write: Instant,
}

impl Cluster {
    /// A source's next query: after its cursor; the first time the last `tail` lines (at
    /// least one, to learn where it stands), or everything a page at a time.
    fn params_after(&self, cursor: Option<i64>) -> LogsParams {
        match (cursor, self.params.tail) {
            (Some(id), _) => LogsParams {
                after: Some(id),
                tail: None,
                ..self.params.clone()
            },
            (None, None) => LogsParams {
                after: Some(0),
                ..self.params.clone()
            },
            (None, Some(t)) => LogsParams {
                tail: Some(t.max(1)),
                ..self.params.clone()
            },
        }
    }

    async fn round(&mut self) -> Vec<crate::wire::LogLine> {
        let mut lines: Vec<crate::wire::LogLine> = Vec::new();
        let mine = self.params_after(self.local);
        if let Ok(l) = self.ops.logs(&mine) {
            let l: Vec<crate::wire::LogLine> = crate::wire::list(l);
            self.local = Some(
                l.iter()
                    .map(|x| x.id)
                    .max()
                    .unwrap_or(0)
                    .max(self.local.unwrap_or(0)),
            );
            lines.extend(l);
        }
        let members = self.ops.cluster().nodes().await.unwrap_or_default();
        let mut asks = Vec::new();
        for m in members.into_iter().filter(|m| !m.me && m.state == "alive") {
            if self.ops.member_protocol(&m.node_id) < crate::cluster::PLACEMENT_PROTOCOL {
                continue;
            }
            let q = self.params_after(self.peers.get(&m.node_id).copied());
            // With `after`, params_after has dropped `tail` already.
            let after = q.after.map(|a| format!("&after={a}")).unwrap_or_default();
            let url = format!("/v1/logs?{}&local=1{after}", q.filters());
            let hub = self.ops.cluster();
            asks.push(async move {
                (
                    m.node_id.clone(),
                    hub.forward(&m.node_id, "GET", &url, b"").await,
                )
            });
        }
        for (node, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(r) if r.status == 200 => {
                    let l: Vec<crate::wire::LogLine> =
                        serde_json::from_str(&r.body).unwrap_or_default();
                    let newest = l.iter().map(|x| x.id).max().unwrap_or(0);
                    let c = self.peers.entry(node).or_insert(0);
                    *c = (*c).max(newest);
                    lines.extend(l);
                }
                Ok(r) => tracing::debug!(status = r.status, "a member's logs poll failed"),
                Err(e) => tracing::debug!(error = %e, "a member's logs poll failed"),
            }
        }
        lines.sort_by(|a, b| (a.time_ns, &a.node, a.id).cmp(&(b.time_ns, &b.node, b.id)));
        if std::mem::take(&mut self.first)
            && let Some(t) = self.params.tail
        {
            let from = lines.len().saturating_sub(t);
            lines.drain(..from);
        }
        lines
    }

    async fn next(&mut self) -> Option<bytes::Bytes> {
        loop {
            if self.ops.stopping() {
                return None;
            }
            let lines = self.round().await;
            if !lines.is_empty() {
                self.last_write = Instant::now();
                return Some(ndjson(&lines));
            }
            if self.last_write.elapsed() >= HEARTBEAT {
                // The app removed everywhere: the stream ends as a local one does.
                if self.ops.app_known(&self.params.app).is_err() {
                    return None;
                }
                self.last_write = Instant::now();
                return Some(bytes::Bytes::from_static(b"\n"));
            }
            tokio::time::sleep(REMOTE_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_poller_keeps_the_filters_and_drops_what_it_sets_itself() {
        assert_eq!(
            super::base_query("/v1/logs?app=shop&follow=1&tail=5&grep=a%20b&after=9&slot=2"),
            "app=shop&grep=a%20b&slot=2"
        );
        assert_eq!(super::base_query("/v1/logs"), "");
    }
}
