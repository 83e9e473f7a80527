//! Waiting on the agent's state file by inotify (the `notify` crate), not
//! by polling: the agent writes the file atomically (a temporary file
//! renamed over it) right after each sync, so every rename into the state
//! directory wakes the waiter, which reads the file again. A change is
//! seen microseconds after the agent renames the file.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bulkhead_agent::AgentState;
use bulkhead_agent::state::STATE_DIR;
use notify::{RecursiveMode, Watcher as _};

/// A watch of one agent's state file.
pub struct StateWatch {
    pins: PathBuf,
    events: Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
}

/// The enforced revision as a resourceVersion, if the state has one.
pub fn enforced(s: &AgentState) -> Option<u64> {
    s.enforced_revision.as_deref()?.parse().ok()
}

/// The source revision (what the agent's view holds) as a resourceVersion.
pub fn seen(s: &AgentState) -> Option<u64> {
    s.source_revision.parse().ok()
}

impl StateWatch {
    /// Watches the state file of the agent pinning under `pins` (the state
    /// directory is made if it does not exist yet, as the agent makes it).
    pub fn new(pins: &Path) -> Result<Self> {
        let dir = Path::new(STATE_DIR);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (tx, events) = channel();
        let mut watcher = notify::recommended_watcher(tx).context("starting inotify")?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        Ok(Self {
            pins: pins.to_owned(),
            events,
            _watcher: watcher,
        })
    }

    /// The state file now.
    pub fn read(&self) -> Option<AgentState> {
        AgentState::read(&self.pins)
    }

    /// Waits until `ok` holds for the state file (checked now and after
    /// every write of it) or `timeout` passes; the state that satisfied it
    /// and when it was seen.
    pub fn wait(
        &self,
        timeout: Duration,
        mut ok: impl FnMut(&AgentState) -> bool,
    ) -> Option<(AgentState, Instant)> {
        let deadline = Instant::now() + timeout;
        // Events already queued are older than this check.
        while self.events.try_recv().is_ok() {}
        loop {
            if let Some(s) = self.read().filter(|s| ok(s)) {
                return Some((s, Instant::now()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            // Any event in the directory (the temporary file, the rename)
            // is a reason to read again: reading is cheap.
            match self.events.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
            // Drain what else is queued: one read covers it.
            while self.events.try_recv().is_ok() {}
        }
    }

    /// Waits until the agent enforces resourceVersion `rv`.
    pub fn until_enforced(&self, rv: u64, timeout: Duration) -> Option<(AgentState, Instant)> {
        self.wait(timeout, |s| enforced(s).is_some_and(|e| e >= rv))
    }
}
