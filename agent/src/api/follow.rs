//! `GET /v1/flows?follow=1`: a subscription streamed as chunked JSON Lines.
//!
//! A follower's subscription is synchronous (the pipeline's thread feeds
//! it), so it is read on a blocking-pool thread (the pump), which gathers
//! what is queued into a chunk and hands it to the connection over a
//! bounded channel; the response body is that channel, and hyper writes
//! and flushes each chunk as it arrives.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::routes::{error, response};
use super::server::Shared;
use super::{ApiBackend, FlowStream, JSON_LINES, LOST_TYPE, Next};

/// Longest the pump waits on its subscription before checking the client
/// and the stop flag.
const TICK: Duration = Duration::from_millis(250);

/// Bytes of records gathered into one chunk at most.
const BATCH: usize = 64 * 1024;

/// Chunks queued to the connection; beyond them the pump waits (and the
/// subscription, not the pipeline, drops records).
const CHUNKS: usize = 4;

/// Subscribes to `filter` (the newest `last` records first) and answers
/// with the stream, or 400 with the backend's reason.
pub(super) async fn follow(shared: Arc<Shared>, filter: String, last: usize) -> Response {
    stream(shared, move |b| {
        b.follow(&filter, last)
            .map_err(|msg| (StatusCode::BAD_REQUEST, msg))
    })
    .await
}

/// Opens a stream with `open` (on the blocking pool) and answers with it
/// as chunked JSON Lines, or with `open`'s error status and message.
pub(super) async fn stream(
    shared: Arc<Shared>,
    open: impl FnOnce(&dyn ApiBackend) -> Result<Box<dyn FlowStream>, (StatusCode, String)>
    + Send
    + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS);
    let (started_tx, started_rx) = oneshot::channel();
    let pump_shared = Arc::clone(&shared);
    tokio::task::spawn_blocking(move || match open(&*pump_shared.backend) {
        Ok(stream) => {
            let _ = started_tx.send(Ok(()));
            pump(&pump_shared, stream, &tx);
        }
        Err(e) => {
            let _ = started_tx.send(Err(e));
        }
    });
    match started_rx.await {
        Ok(Ok(())) => {
            let chunks = ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>);
            let mut r = response(StatusCode::OK, JSON_LINES, Body::from_stream(chunks));
            r.headers_mut()
                .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            r
        }
        Ok(Err((status, msg))) => error(status, &msg),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the agent's API backend failed to subscribe",
        ),
    }
}

/// Counts an open follow stream while it lives.
struct Following<'a>(&'a Shared);

impl<'a> Following<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.follows.fetch_add(1, Ordering::SeqCst);
        Following(shared)
    }
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.0.follows.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Feeds `stream` to `tx` until the client goes away (the connection
/// drops the receiver), the subscription closes, or the API stops; then
/// dropping `tx` ends the body cleanly. A heartbeat (an empty line)
/// follows every `heartbeat` without records, so a dead client is noticed
/// by the write failing.
fn pump(shared: &Shared, mut stream: Box<dyn FlowStream>, tx: &mpsc::Sender<Bytes>) {
    let _following = Following::new(shared);
    let heartbeat = shared.config.heartbeat;
    let tick = heartbeat.min(TICK);
    let mut last_write = Instant::now();
    let mut buf = Vec::new();
    while !shared.stop.is_cancelled() && !tx.is_closed() {
        let closed = gather(&mut *stream, &mut buf, tick);
        let chunk = if !buf.is_empty() {
            Bytes::from(std::mem::take(&mut buf))
        } else if last_write.elapsed() >= heartbeat {
            Bytes::from_static(b"\n")
        } else if closed {
            return;
        } else {
            continue;
        };
        // Waits while the client reads slowly; the connection's write
        // timeout drops one that stops, which closes the channel.
        if tx.blocking_send(chunk).is_err() {
            return;
        }
        last_write = Instant::now();
        if closed {
            return;
        }
    }
}

/// Appends to `buf` what `stream` yields within `wait`, then what is
/// queued, up to [`BATCH`] bytes; whether the subscription closed.
fn gather(stream: &mut dyn FlowStream, buf: &mut Vec<u8>, mut wait: Duration) -> bool {
    while buf.len() < BATCH {
        match stream.next(wait) {
            Next::Record(r) => {
                buf.extend_from_slice(r.as_bytes());
                buf.push(b'\n');
            }
            Next::Lost(n) => {
                let line = serde_json::json!({ "type": LOST_TYPE, "lost": n });
                if serde_json::to_writer(&mut *buf, &line).is_ok() {
                    buf.push(b'\n');
                }
            }
            Next::Idle => return false,
            Next::Closed => return true,
        }
        wait = Duration::ZERO;
    }
    false
}
