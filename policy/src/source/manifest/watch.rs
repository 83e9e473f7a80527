//! The manifest directory as a source: re-read when inotify (the `notify`
//! crate) reports a change, never on a timer.
//!
//! The path (a directory, searched recursively, or one file) is watched
//! recursively, and its parent directory too, so that replacing the path
//! itself (an editor's rename, a ConfigMap volume's symlink swap, a
//! directory deleted and made again) is seen; the recursive watch is set
//! again whenever the path's inode changes. Events are coalesced
//! ([`QUIET`], at most [`MAX_COALESCE`]), then the content hash ([`super::content_hash`]) decides
//! whether anything the loader reads changed; only then is the directory
//! loaded. Files reached through symbolic links that point outside the
//! path are read but not watched: a change there is seen with the next
//! event under the path.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{ManifestErrors, content_hash};
use crate::model::Model;
use crate::source::{Feed, SourceStatus};

/// How long events must stop before the directory is read: one read for a
/// burst of writes (a tool writing many files, an editor's save dance).
pub const QUIET: Duration = Duration::from_millis(5);

/// The longest a burst is coalesced: changes that never pause are still
/// read this often.
pub const MAX_COALESCE: Duration = Duration::from_millis(50);

/// Loads the model from the path (the CLI's loader, with its options).
pub type Loader = Arc<dyn Fn() -> Result<Model, ManifestErrors> + Send + Sync>;

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}")]
pub struct WatchError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: notify::Error,
}

/// Starts watching `path` on the current tokio runtime; the receiver sees
/// the first feed once the initial read is done.
pub fn spawn(path: PathBuf, load: Loader) -> Result<watch::Receiver<Feed>, WatchError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        // Any event, even an error (a queue overflow), means "read again".
        let _ = events_tx.send(());
    })
    .map_err(|source| WatchError {
        path: path.clone(),
        source,
    })?;
    let mut source = ManifestSource {
        watches: Watches::new(watcher, path.clone()),
        feed: Feed {
            status: SourceStatus {
                kind: "manifests".to_owned(),
                location: path.display().to_string(),
                ..SourceStatus::default()
            },
            ..Feed::default()
        },
        path,
        load,
    };
    let error = source.watches.refresh();
    source.feed.status.connected = error.is_none();
    source.feed.status.last_error = error;
    let (tx, rx) = watch::channel(Feed::default());
    tokio::spawn(async move { source.run(events, tx).await });
    Ok(rx)
}

/// The recursive watch on the path and the watch on its parent.
struct Watches {
    watcher: notify::RecommendedWatcher,
    path: PathBuf,
    /// (device, inode) of the path when it was last watched.
    watched: Option<(u64, u64)>,
    parent_watched: bool,
}

impl Watches {
    fn new(watcher: notify::RecommendedWatcher, path: PathBuf) -> Self {
        Self {
            watcher,
            path,
            watched: None,
            parent_watched: false,
        }
    }

    /// Watches the parent (once) and the path again if it is a new one.
    /// Returns the error of a watch that could not be set, if any.
    fn refresh(&mut self) -> Option<String> {
        let mut error = None;
        if !self.parent_watched
            && let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            match self.watcher.watch(parent, RecursiveMode::NonRecursive) {
                Ok(()) => self.parent_watched = true,
                Err(e) => error = Some(format!("watching {}: {e}", parent.display())),
            }
        }
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now != self.watched {
            if self.watched.is_some() {
                let _ = self.watcher.unwatch(&self.path);
            }
            self.watched = None;
            if now.is_some() {
                match self.watcher.watch(&self.path, RecursiveMode::Recursive) {
                    Ok(()) => self.watched = now,
                    Err(e) => error = Some(format!("watching {}: {e}", self.path.display())),
                }
            }
        }
        error
    }
}

struct ManifestSource {
    watches: Watches,
    path: PathBuf,
    load: Loader,
    feed: Feed,
}

impl ManifestSource {
    async fn run(&mut self, mut events: mpsc::UnboundedReceiver<()>, tx: watch::Sender<Feed>) {
        self.read(&tx).await;
        while events.recv().await.is_some() {
            // Coalesce the burst, within bounds.
            let until = tokio::time::Instant::now() + MAX_COALESCE;
            while tokio::time::Instant::now() < until
                && let Ok(Some(())) = tokio::time::timeout(QUIET, events.recv()).await
            {}
            let watch_error = self.watches.refresh();
            self.feed.status.connected = watch_error.is_none();
            self.feed.status.last_error = watch_error;
            self.read(&tx).await;
            if tx.is_closed() {
                return;
            }
        }
    }

    /// Hashes the path and, when it changed, loads it and publishes.
    async fn read(&mut self, tx: &watch::Sender<Feed>) {
        let path = self.path.clone();
        let hash = blocking(move || content_hash(&path)).await;
        if !self.feed.revision.is_empty() && hash == self.feed.revision {
            // Nothing the loader reads changed; the status may have.
            tx.send_if_modified(|feed| {
                let changed = feed.status != self.feed.status;
                feed.status.clone_from(&self.feed.status);
                changed
            });
            return;
        }
        let load = Arc::clone(&self.load);
        match blocking(move || load()).await {
            Ok(model) => {
                self.feed.status.warnings = model.warnings.len() as u64;
                self.feed.model = Some(Arc::new(model));
                self.feed.error = None;
            }
            Err(e) => {
                let text = crate::source::error_chain(&e);
                tracing::error!(error = %text, "invalid manifests; the policy in force stays");
                self.feed.error = Some(format!("invalid manifests: {text}"));
            }
        }
        self.feed.revision = hash;
        tx.send_replace(self.feed.clone());
    }
}

/// Runs blocking file work off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("manifest reads do not panic")
}

#[cfg(test)]
mod tests;
