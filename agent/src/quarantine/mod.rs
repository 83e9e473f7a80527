//! The agent's store of quarantined pods: what `bulkhead quarantine` (the
//! local API's `/v1/quarantine` routes) asked for, the one place the API
//! and the reconciler meet for it.
//!
//! - A change (set or remove) is written to the state directory
//!   atomically, bumps the store's generation and wakes the reconciler
//!   ([`QuarantineStore::changed`]), which applies the stored quarantines to
//!   the model it compiles (`Model::apply_quarantines`: a policy of the
//!   quarantine tier per pod, overriding every allow) and syncs.
//! - After each successful sync the reconciler publishes the generation
//!   now enforced and the quarantines in force
//!   ([`QuarantineStore::publish`]); a request waits on that publication,
//!   not on a timer ([`QuarantineStore::wait`]).
//! - A restarted agent reads the file back ([`QuarantineStore::open`]) before
//!   its first compile, so a quarantine survives restarts (and, being
//!   applied to every model compiled, policy changes and relabels).
//!
//! Pods quarantined by their label (`bulkhead.io/quarantine`) are not in
//! the store: the source applies them; they show in the published list
//! with [`QuarantineOrigin::Label`].

pub mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bulkhead_policy::model::Quarantine;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub use wire::{
    QuarantineList, QuarantineOrigin, QuarantineRequest, QuarantineState, RemoveAnswer,
    StoredQuarantine,
};

/// The reason recorded when none was given (as the policy model names it).
pub const NO_REASON: &str = "no reason given";

/// Longest reason accepted, in characters.
pub const MAX_REASON: usize = 256;

/// Setting, removing or persisting a quarantine failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// A field of the request is unusable (answered 400).
    #[error("invalid quarantine: {field} {value:?}: {reason}")]
    Invalid {
        /// The field (`namespace`, `pod` or `reason`).
        field: &'static str,
        /// Its value (cut to 80 characters).
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The store's file could not be written (the change is undone).
    #[error("writing the quarantines {}: {source}", path.display())]
    Persist {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What the reconciler last published: the store generation the
/// dataplane enforces, and the quarantines in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enforced {
    /// The store generation in force (`None` before the first sync).
    pub generation: Option<u64>,
    /// The stored quarantines the policy in force holds.
    pub applied: Vec<Quarantine>,
    /// The quarantines in force: the store's and the pods' labels'.
    pub quarantines: Vec<QuarantineState>,
}

/// The file's content.
#[derive(Default, Serialize, Deserialize)]
struct File {
    /// Bumped by every change (persisted so generations never repeat).
    generation: u64,
    quarantines: Vec<StoredQuarantine>,
}

#[derive(Default)]
struct Inner {
    /// By `namespace/pod`.
    entries: BTreeMap<String, StoredQuarantine>,
    generation: u64,
}

/// The store; shared (`Arc`) by the API and the reconciler.
pub struct QuarantineStore {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
    wake: Notify,
    enforced: watch::Sender<Arc<Enforced>>,
}

impl QuarantineStore {
    /// A store persisted at `path` (`None`: in memory, for tests), with
    /// what the file holds. An unreadable file is logged loudly and left in
    /// place (the next change replaces it): there is no other copy to
    /// adopt.
    pub fn open(path: Option<PathBuf>) -> Self {
        let mut inner = Inner::default();
        if let Some(p) = &path {
            match crate::persisted::read::<File>(p) {
                Ok(Some(f)) => {
                    inner.generation = f.generation;
                    for s in f.quarantines {
                        inner.entries.insert(s.quarantine.key(), s);
                    }
                    tracing::info!(
                        quarantines = inner.entries.len(),
                        file = %p.display(),
                        "adopted quarantines"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(file = %p.display(), error = %e, "ignoring the quarantines file")
                }
            }
        }
        Self {
            path,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            enforced: watch::Sender::new(Arc::new(Enforced::default())),
        }
    }

    /// The store file of the agent pinning under `pin_dir` (beside its
    /// state file).
    pub fn path_for(pin_dir: &Path) -> PathBuf {
        crate::state_path(pin_dir).with_extension("quarantine.json")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored quarantines, by `namespace/pod`.
    pub fn list(&self) -> Vec<StoredQuarantine> {
        self.lock().entries.values().cloned().collect()
    }

    /// The store's generation and its quarantines, read together.
    pub fn snapshot(&self) -> (u64, Vec<Quarantine>) {
        let inner = self.lock();
        let list = inner
            .entries
            .values()
            .map(|s| s.quarantine.clone())
            .collect();
        (inner.generation, list)
    }

    /// Quarantines a pod (replacing its earlier reason and `allow_dns`; it
    /// stays quarantined since it first was), persists and wakes the
    /// reconciler; the generation to [`Self::wait`] for.
    pub fn set(&self, request: QuarantineRequest) -> Result<u64, QuarantineError> {
        let quarantine = validate(request)?;
        let key = quarantine.key();
        let mut inner = self.lock();
        let since_unix_ms = inner
            .entries
            .get(&key)
            .map_or_else(bulkhead_policy::source::now_unix_ms, |s| s.since_unix_ms);
        let old = inner.entries.insert(
            key.clone(),
            StoredQuarantine {
                quarantine,
                since_unix_ms,
            },
        );
        inner.generation += 1;
        if let Err(e) = self.persist(&inner) {
            inner.generation -= 1;
            match old {
                Some(o) => inner.entries.insert(key, o),
                None => inner.entries.remove(&key),
            };
            return Err(e);
        }
        let generation = inner.generation;
        drop(inner);
        tracing::warn!(pod = %key, "quarantine set");
        self.wake.notify_one();
        Ok(generation)
    }

    /// Lifts the quarantine of `namespace/pod`: whether the store held it,
    /// and the generation to [`Self::wait`] for.
    pub fn remove(&self, namespace: &str, pod: &str) -> Result<(bool, u64), QuarantineError> {
        let key = format!("{namespace}/{pod}");
        let mut inner = self.lock();
        let Some(old) = inner.entries.remove(&key) else {
            return Ok((false, inner.generation));
        };
        inner.generation += 1;
        if let Err(e) = self.persist(&inner) {
            inner.generation -= 1;
            inner.entries.insert(key, old);
            return Err(e);
        }
        let generation = inner.generation;
        drop(inner);
        tracing::warn!(pod = %key, "quarantine lifted");
        self.wake.notify_one();
        Ok((true, generation))
    }

    /// Resolves when the store changed since the last call (a change made
    /// before the first call counts: nothing is missed).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// The reconciler's report after a successful sync.
    pub fn publish(&self, enforced: Enforced) {
        self.enforced.send_if_modified(|old| {
            let modified = **old != enforced;
            if modified {
                *old = Arc::new(enforced);
            }
            modified
        });
    }

    /// What the reconciler last published.
    pub fn enforced(&self) -> Arc<Enforced> {
        Arc::clone(&self.enforced.borrow())
    }

    /// The published quarantines in force, and the stored ones not in
    /// force yet (set or changed after the last sync).
    pub fn in_force(&self) -> QuarantineList {
        let enforced = self.enforced();
        let inner = self.lock();
        let pending = inner
            .entries
            .values()
            .filter(|s| !enforced.applied.contains(&s.quarantine))
            .cloned()
            .collect();
        QuarantineList {
            generation: inner.generation,
            enforced_generation: enforced.generation,
            quarantines: enforced.quarantines.clone(),
            pending,
        }
    }

    /// Waits until store generation `generation` is enforced, or
    /// `deadline`; whether it is, and what is in force then.
    pub async fn wait(&self, generation: u64, deadline: Instant) -> (bool, QuarantineList) {
        let mut rx = self.enforced.subscribe();
        loop {
            let reached = rx
                .borrow_and_update()
                .generation
                .is_some_and(|g| g >= generation);
            if reached {
                return (true, self.in_force());
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return (false, self.in_force()) },
                () = tokio::time::sleep_until(deadline) => return (false, self.in_force()),
            }
        }
    }

    fn persist(&self, inner: &Inner) -> Result<(), QuarantineError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File {
            generation: inner.generation,
            quarantines: inner.entries.values().cloned().collect(),
        };
        crate::persisted::write(path, &file).map_err(|source| QuarantineError::Persist {
            path: path.clone(),
            source,
        })
    }
}

/// The request as a [`Quarantine`], or which field is unusable.
fn validate(request: QuarantineRequest) -> Result<Quarantine, QuarantineError> {
    let invalid = |field, value: &str, reason| QuarantineError::Invalid {
        field,
        value: value.chars().take(80).collect(),
        reason,
    };
    if !is_dns_label(&request.namespace) {
        return Err(invalid(
            "namespace",
            &request.namespace,
            "must be a DNS-1123 label: 1 to 63 lowercase letters, digits or '-', \
             starting and ending with a letter or digit",
        ));
    }
    if !is_dns_subdomain(&request.pod) {
        return Err(invalid(
            "pod",
            &request.pod,
            "must be a DNS-1123 subdomain: 1 to 253 lowercase letters, digits, '-' or '.', \
             starting and ending with a letter or digit",
        ));
    }
    let reason = request.reason.unwrap_or_default();
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON {
        return Err(invalid("reason", reason, "is longer than 256 characters"));
    }
    if reason.chars().any(char::is_control) {
        return Err(invalid(
            "reason",
            reason,
            "must be one line of printable text (no control characters)",
        ));
    }
    Ok(Quarantine {
        namespace: request.namespace,
        pod: request.pod,
        reason: if reason.is_empty() {
            NO_REASON.to_owned()
        } else {
            reason.to_owned()
        },
        allow_dns: request.allow_dns,
    })
}

/// A DNS-1123 label (Kubernetes namespace names).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_subdomain(s) && !s.contains('.')
}

/// A DNS-1123 subdomain (Kubernetes pod names).
pub fn is_dns_subdomain(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            s.len() <= 253
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
