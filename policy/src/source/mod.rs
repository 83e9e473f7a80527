//! Where the model comes from, behind one seam: a source is a task that
//! publishes [`Feed`]s on a `tokio::sync::watch` channel, and the agent
//! reconciles on each change. Two sources:
//!
//! - [`manifest::watch`]: a directory of manifests, re-read on inotify
//!   events; its revision is the content hash.
//! - [`kubernetes`]: the Kubernetes API (list/watch of Namespaces, Pods,
//!   NetworkPolicies and Services); its revision is the highest
//!   resourceVersion in the view.
//!
//! A source publishes a model only when it is complete (never a partial
//! view of a cluster), and keeps publishing its last complete model while
//! it cannot read (fail-static); [`Feed::error`] and [`SourceStatus`] say
//! why. The watch channel keeps only the latest feed: a burst of changes
//! is one reconcile.

pub mod kubernetes;
pub mod manifest;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// What a source says now.
#[derive(Clone, Debug, Default)]
pub struct Feed {
    /// The revision of what the source last read (the "done" token).
    pub revision: String,
    /// The latest complete model (`None` before the first).
    pub model: Option<Arc<Model>>,
    /// Why the content at `revision` could not be used (the model is then
    /// the one before, still in force).
    pub error: Option<String>,
    /// How the source is doing.
    pub status: SourceStatus,
}

/// Which source, and its connection and view, for `status`, `/healthz`
/// and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `manifests` or `kubernetes`.
    pub kind: String,
    /// The directory, or the API server's URL.
    pub location: String,
    /// Whether the source is reachable now (the API answers; the directory
    /// is watched).
    pub connected: bool,
    /// Since when the view may be stale (the source stopped answering), in
    /// milliseconds since the epoch: the view's age counts from it. `None`
    /// while the source is current.
    pub stale_since_unix_ms: Option<u64>,
    /// The last error reading the source, while it persists.
    pub last_error: Option<String>,
    /// Objects skipped or partly ignored (warnings), counted.
    #[serde(default)]
    pub warnings: u64,
}

/// Milliseconds since the epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An error and its sources, on one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
