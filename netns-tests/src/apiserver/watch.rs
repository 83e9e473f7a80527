//! Watch streams: newline-delimited JSON `{"type", "object"}` events in a
//! chunked response, one chunk per event, produced by a task per watch
//! from the store's history.
//!
//! As on the real server: without a resourceVersion (or with "0") the
//! stream starts with synthetic `ADDED` events of the current state; from
//! a resourceVersion it replays every later change, or, if that revision is
//! compacted away, sends one `ERROR` event (a `Status` 410 `Expired`) and
//! ends. With a selector, an object that stops matching is `DELETED` (its
//! previous state at the change's revision) and one that starts matching
//! is `ADDED`. `BOOKMARK` events carry only kind, apiVersion and
//! `metadata.resourceVersion`. `sendInitialEvents=true` ends the initial
//! events with a bookmark annotated `k8s.io/initial-events-end`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::Stream;

use super::Shared;
use super::error::ApiServerError;
use super::registry::{RESOURCES, ResId};
use super::selector::Selector;
use super::store::{Event, EventType};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Synthetic `ADDED` events of the current state first; with
    /// `end_bookmark`, then the `initial-events-end` bookmark.
    Initial { end_bookmark: bool },
    /// Changes from now on only.
    Now,
    /// Every change after this revision.
    From(u64),
}

/// A parsed watch request.
#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    pub res: ResId,
    pub ns: Option<String>,
    pub selector: Selector,
    pub start: Start,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

fn flag(q: &HashMap<String, String>, name: &str) -> Option<bool> {
    q.get(name).map(|v| v == "true" || v == "1")
}

/// Reads `resourceVersion`, `resourceVersionMatch`, `sendInitialEvents`,
/// `allowWatchBookmarks` and `timeoutSeconds` of a watch request.
pub(crate) fn parse_params(
    q: &HashMap<String, String>,
) -> Result<(Start, bool, Option<Duration>), ApiServerError> {
    let rv = q
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let rv_match = q.get("resourceVersionMatch").filter(|s| !s.is_empty());
    let bookmarks = flag(q, "allowWatchBookmarks").unwrap_or(false);
    let initial = flag(q, "sendInitialEvents");
    if initial.is_some() && rv_match.map(String::as_str) != Some("NotOlderThan") {
        return Err(ApiServerError::bad_request(
            "sendInitialEvents is allowed only with resourceVersionMatch set to NotOlderThan",
        ));
    }
    if initial.is_none() && rv_match.is_some() {
        return Err(ApiServerError::bad_request(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    if initial == Some(true) && !bookmarks {
        return Err(ApiServerError::bad_request(
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let from = match rv {
        None | Some("0") => None,
        Some(n) => Some(n.parse::<u64>().map_err(|_| {
            ApiServerError::bad_request(format!("invalid resource version: {n:?}"))
        })?),
    };
    let start = match (initial, from) {
        (Some(true), _) => Start::Initial { end_bookmark: true },
        (Some(false), None) => Start::Now,
        (None, None) => Start::Initial {
            end_bookmark: false,
        },
        (_, Some(n)) => Start::From(n),
    };
    let timeout = match q.get("timeoutSeconds") {
        None => None,
        Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
            ApiServerError::bad_request(format!("invalid timeoutSeconds: {s:?}"))
        })?)),
    };
    Ok((start, bookmarks, timeout))
}

/// Starts the task of one watch and returns the response body it feeds.
pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> Body {
    let (tx, rx) = mpsc::channel(64);
    let mut dropped = shared.drop_tx.subscribe();
    shared.stats.watches_opened.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        shared.stats.open_watches.fetch_add(1, Ordering::Relaxed);
        // The task ends when the stream does, or when the body is gone.
        let _ = Watch {
            shared: &shared,
            req,
            tx,
        }
        .run()
        .await;
        shared.stats.open_watches.fetch_sub(1, Ordering::Relaxed);
    });
    let dropped = Box::pin(async move {
        // Also fires when the server shuts down (the sender is gone).
        let _ = dropped.changed().await;
    });
    Body::from_stream(WatchBody { rx, dropped })
}

/// The body of a watch response: the task's chunks, until `drop_watches`
/// makes it fail, which aborts the connection (no final chunk).
struct WatchBody {
    rx: mpsc::Receiver<Bytes>,
    dropped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Stream for WatchBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.dropped.as_mut().poll(cx).is_ready() {
            let e = io::Error::new(io::ErrorKind::ConnectionAborted, "watch dropped");
            return Poll::Ready(Some(Err(e)));
        }
        self.rx.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// The consumer went away: stop.
struct Closed;

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

struct Watch<'a> {
    shared: &'a Shared,
    req: WatchRequest,
    tx: mpsc::Sender<Bytes>,
}

impl Watch<'_> {
    /// Sends one event as its own chunk (flushed as it comes).
    async fn send(&self, kind: &str, object: &Value) -> Result<(), Closed> {
        let mut line = Vec::new();
        push_line(&mut line, kind, object);
        self.tx.send(Bytes::from(line)).await.map_err(|_| Closed)
    }

    /// Sends the synthetic `ADDED` events of the current state, many to a
    /// chunk (they are all there at once; the client parses lines anyway).
    async fn send_initial(&self, objects: &[Arc<Value>]) -> Result<(), Closed> {
        const CHUNK: usize = 64 * 1024;
        let mut buf = Vec::new();
        for obj in objects.iter().filter(|o| self.req.selector.matches(o)) {
            push_line(&mut buf, "ADDED", obj);
            if buf.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                self.tx.send(chunk).await.map_err(|_| Closed)?;
            }
        }
        if !buf.is_empty() {
            self.tx.send(Bytes::from(buf)).await.map_err(|_| Closed)?;
        }
        Ok(())
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> Result<(), Closed> {
        let rt = &RESOURCES[self.req.res];
        let mut obj = json!({
            "kind": rt.kind,
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
        });
        if initial_end {
            obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.shared
            .stats
            .bookmarks_sent
            .fetch_add(1, Ordering::Relaxed);
        self.send("BOOKMARK", &obj).await
    }

    async fn gone(&self, pos: u64, compacted: u64) -> Result<(), Closed> {
        self.shared.stats.gone_sent.fetch_add(1, Ordering::Relaxed);
        let status = ApiServerError::Expired {
            message: format!("too old resource version: {pos} ({compacted})"),
            continue_token: None,
        }
        .to_status();
        self.send("ERROR", &status).await
    }

    /// Streams events until the timeout, a 410, or the consumer leaving.
    async fn run(self) -> Result<(), Closed> {
        let mut changed = self.shared.rv_tx.subscribe();
        let deadline = self.req.timeout.map(|t| Instant::now() + t);
        let mut pos = match self.req.start {
            Start::Initial { end_bookmark } => {
                let (rv, objects) = {
                    let store = self.shared.store();
                    (
                        store.rv(),
                        store.current(self.req.res, self.req.ns.as_deref()),
                    )
                };
                self.send_initial(&objects).await?;
                if end_bookmark {
                    self.bookmark(rv, true).await?;
                }
                rv
            }
            Start::Now => self.shared.store().rv(),
            Start::From(n) => n,
        };
        let every = self
            .shared
            .opts
            .bookmark_interval
            .max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            changed.borrow_and_update();
            pos = match self.catch_up(pos).await? {
                Some(pos) => pos,
                None => return Ok(()),
            };
            tokio::select! {
                () = self.tx.closed() => return Err(Closed),
                () = sleep_until(deadline) => return Ok(()),
                _ = ticker.tick(), if self.req.bookmarks => self.bookmark(pos, false).await?,
                r = changed.changed() => if r.is_err() { return Ok(()) },
            }
        }
    }

    /// Sends the events after `pos` that concern this watch; returns the
    /// new position, or `None` after a 410 (the stream ends).
    async fn catch_up(&self, mut pos: u64) -> Result<Option<u64>, Closed> {
        loop {
            let (batch, compacted) = {
                let store = self.shared.store();
                (store.events_after(pos, 512), store.compacted())
            };
            let Some(batch) = batch else {
                self.gone(pos, compacted).await?;
                return Ok(None);
            };
            if batch.is_empty() {
                return Ok(Some(pos));
            }
            for e in &batch {
                pos = e.rv;
                if let Some((kind, obj)) = self.convert(e) {
                    self.send(kind, &obj).await?;
                }
            }
        }
    }

    /// The event this watch sends for a change, if any.
    fn convert<'e>(&self, e: &'e Event) -> Option<(&'static str, Cow<'e, Value>)> {
        if e.res != self.req.res || self.req.ns.as_ref().is_some_and(|ns| *ns != e.key.0) {
            return None;
        }
        let sel = &self.req.selector;
        let now = e.kind != EventType::Deleted && (sel.is_empty() || sel.matches(&e.object));
        let before = e
            .prev
            .as_ref()
            .is_some_and(|p| sel.is_empty() || sel.matches(p));
        let obj = Cow::Borrowed(&*e.object);
        match (e.kind, before, now) {
            (EventType::Deleted, true, _) => Some(("DELETED", obj)),
            (_, false, true) => Some(("ADDED", obj)),
            (_, true, true) => Some(("MODIFIED", obj)),
            (EventType::Modified, true, false) => {
                // Left the selector: its previous state, at this revision.
                let mut prev = (**e.prev.as_ref().expect("before")).clone();
                prev["metadata"]["resourceVersion"] = json!(e.rv.to_string());
                Some(("DELETED", Cow::Owned(prev)))
            }
            _ => None,
        }
    }
}

/// Appends one event line (`{"type":..,"object":..}` and a newline).
fn push_line(buf: &mut Vec<u8>, kind: &str, object: &Value) {
    serde_json::to_writer(&mut *buf, &Line { kind, object }).expect("serializable");
    buf.push(b'\n');
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
