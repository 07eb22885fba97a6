//! Image tarballs through the API, both ways, never whole in memory.
//!
//! `GET /v1/apps/NAME/images`: the engine's tarball of an app's images, streamed to the client
//! as it comes; an engine error mid-way ends the body with an error, so the client sees a
//! broken transfer rather than a short tarball. `POST /v1/images/load`: the request body goes
//! to the engine as it arrives, through a bounded channel, each chunk within the server's
//! idle bound.

use super::server::Body;
use crate::agent::{CoreError, Ops};
use crate::runtime::RuntimeError;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use std::time::Duration;
use tokio::sync::mpsc;

/// The engine's tarball as a response body.
pub fn tarball(stream: BoxStream<'static, Result<Bytes, RuntimeError>>) -> Body {
    let frames = stream.map(|item| item.map(Frame::data).map_err(std::io::Error::other));
    BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames))
}

fn bad(msg: String) -> CoreError {
    CoreError::BadRequest(msg)
}

/// Loads the tarball in the request body into the engine. A body shorter than one tar block
/// is refused before the engine sees it; a client that stops sending for `idle` is cut off.
pub async fn load(
    req: hyper::Request<Incoming>,
    ops: Ops,
    idle: Duration,
) -> Result<Vec<String>, CoreError> {
    const BLOCK: usize = 512;
    let mut body = req.into_body();
    let mut next = async move || -> Result<Option<Bytes>, CoreError> {
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    return Err(bad(format!(
                        "the request body stalled for {}s: send the tarball without pauses",
                        idle.as_secs()
                    )));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(bad(format!("cannot read the request body: {e}"))),
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data()
                        && !d.is_empty()
                    {
                        return Ok(Some(d));
                    }
                }
            }
        }
    };
    let mut first = Vec::with_capacity(BLOCK);
    while first.len() < BLOCK {
        match next().await? {
            Some(d) => first.extend_from_slice(&d),
            None => break,
        }
    }
    if first.len() < BLOCK {
        return Err(bad(
            "the body is not an image tarball (make one with `berth image save APP -o FILE.tar` or `docker save IMAGE -o FILE.tar`)"
                .into(),
        ));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let task = tokio::spawn(async move { ops.load_images(Box::pin(stream)).await });
    let mut item = Ok(Bytes::from(first));
    loop {
        let last = item.is_err();
        // The engine stopped reading (it refused the tarball): its answer says why.
        if tx.send(item).await.is_err() || last {
            break;
        }
        item = match next().await {
            Ok(Some(d)) => Ok(d),
            Ok(None) => break,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
    }
    drop(tx);
    task.await.map_err(|e| {
        CoreError::Runtime(RuntimeError::Engine {
            op: "load images",
            object: "from the tarball".into(),
            detail: e.to_string(),
        })
    })?
}
