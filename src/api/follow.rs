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
