//! `GET /v1/apps/NAME/images`: the engine's tarball of an app's images, streamed through
//! to the client as it comes (never held whole in memory).
//!
//! A task on the runtime pulls the engine's stream into a small bounded channel; the
//! tiny_http worker reads from it. An engine error mid-way ends the body with an I/O error,
//! so the client sees a broken transfer rather than a short tarball.

use crate::runtime::RuntimeError;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::io::Read;
use tokio::sync::mpsc;

pub struct Tarball {
    rx: mpsc::Receiver<Result<bytes::Bytes, String>>,
    chunk: bytes::Bytes,
}

impl Tarball {
    pub fn start(
        mut stream: BoxStream<'static, Result<bytes::Bytes, RuntimeError>>,
        rt: &tokio::runtime::Handle,
    ) -> Tarball {
        let (tx, rx) = mpsc::channel(8);
        rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| e.to_string());
                let failed = item.is_err();
                // The client went away: stop reading from the engine.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Tarball {
            rx,
            chunk: bytes::Bytes::new(),
        }
    }
}

impl Read for Tarball {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
