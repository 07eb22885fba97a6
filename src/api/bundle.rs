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

/// `POST /v1/images/load`: the request body goes to the engine as it is read, in 64 KiB
/// chunks through a bounded channel, so a bundle of any size costs the agent a few hundred
/// KiB. A body shorter than one tar block is refused before the engine sees it.
pub fn load(
    req: &mut tiny_http::Request,
    core: &std::sync::Arc<crate::agent::Core>,
    rt: &tokio::runtime::Handle,
) -> Result<Vec<String>, crate::agent::CoreError> {
    const BLOCK: usize = 512;
    let reader = req.as_reader();
    let mut first = vec![0u8; BLOCK];
    let mut got = 0;
    while got < BLOCK {
        match reader.read(&mut first[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(crate::agent::CoreError::BadRequest(format!(
                    "cannot read the request body: {e}"
                )));
            }
        }
    }
    if got < BLOCK {
        return Err(crate::agent::CoreError::BadRequest(
            "the body is not an image tarball (make one with `berth image save APP -o FILE.tar` or `docker save IMAGE -o FILE.tar`)"
                .into(),
        ));
    }
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let core2 = core.clone();
    let task = rt.spawn(async move { core2.load_images(Box::pin(stream)).await });
    let mut item = Ok(bytes::Bytes::from(first));
    loop {
        let last = item.is_err();
        // The engine stopped reading (it refused the tarball): its answer says why.
        if tx.blocking_send(item).is_err() || last {
            break;
        }
        let mut buf = vec![0u8; 64 << 10];
        item = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                Ok(bytes::Bytes::from(buf))
            }
            Err(e) => Err(e),
        };
    }
    drop(tx);
    rt.block_on(task).map_err(|e| {
        crate::agent::CoreError::Runtime(RuntimeError::Engine {
            op: "load images",
            object: "from the tarball".into(),
            detail: e.to_string(),
        })
    })?
}
