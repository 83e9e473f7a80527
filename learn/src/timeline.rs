//! The forensic timeline: every event that concerns a pod (its flows,
//! allowed and denied; alerts; quarantine changes; policy and mode changes
//! that affected it), durably, in time order, bounded by a retention of
//! age and count, queried per pod and time range.
//!
//! An embedded database (redb, as the history: one file, ACID, MVCC so a
//! reader sees the last commit while the writer goes on), two tables:
//! - `events`: (ms since the epoch, sequence) → the event as JSON;
//! - `events_by_pod`: (pod `namespace/name`, ms, sequence) → (), the index
//!   a query walks.
//!
//! Written by one process (the agent), read through it (its API) while it
//! runs; written in batches, one transaction each.

pub mod exporter;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::baseline::detect::Alert;
use bulkhead_flows::record::FlowRecord;

/// The schema name and version of a timeline's JSON form.
pub const SCHEMA: &str = "bulkhead.timeline/v1";

const EVENTS: TableDefinition<(u64, u64), &str> = TableDefinition::new("events");
const BY_POD: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("events_by_pod");

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A flow record or live notification (allowed, denied, quarantined).
    Flow {
        /// The record.
        record: Box<FlowRecord>,
    },
    /// A deviation from a baseline.
    Alert {
        /// The alert.
        alert: Box<Alert>,
    },
    /// The pod was quarantined.
    Quarantined {
        /// Why.
        reason: String,
        /// DNS still allowed.
        allow_dns: bool,
    },
    /// The pod's quarantine was lifted.
    Unquarantined,
    /// A policy change changed which policies select the pod.
    PolicyChange {
        /// The revision that took effect.
        revision: u64,
        /// Policies (`namespace/name`, `Kind/name`) that now select it and
        /// did not.
        added: Vec<String>,
        /// Policies that no longer select it.
        removed: Vec<String>,
        /// Policies that still select it and whose rules or selectors
        /// changed (absent in events written before it existed).
        #[serde(default)]
        changed: Vec<String>,
    },
    /// A policy selecting the pod changed mode (enforce, audit, learn).
    ModeChange {
        /// The revision that took effect.
        revision: u64,
        /// The policy.
        policy: String,
        /// Its mode before.
        from: String,
        /// Its mode now.
        to: String,
    },
}

/// One event of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the epoch.
    pub at_unix_ms: u64,
    /// The pods it concerns (`namespace/name`).
    pub pods: Vec<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event of a flow record: at its end, concerning the pods at
    /// either end and the backend of a Service connection.
    pub fn of_flow(r: &FlowRecord) -> Self {
        let mut pods: Vec<String> = pods_of(r).collect();
        pods.sort();
        pods.dedup();
        Event {
            at_unix_ms: r.end.unix_ms(),
            pods,
            kind: EventKind::Flow {
                record: Box::new(r.clone()),
            },
        }
    }

    /// The event of an alert raised at `at_unix_ms`, concerning the pods
    /// at either end of the connections that raised it.
    pub fn of_alert(alert: &Alert, at_unix_ms: u64) -> Self {
        let mut pods: Vec<String> = alert
            .src_pods
            .iter()
            .chain(&alert.dst_pods)
            .cloned()
            .collect();
        pods.sort();
        pods.dedup();
        Event {
            at_unix_ms,
            pods,
            kind: EventKind::Alert {
                alert: Box::new(alert.clone()),
            },
        }
    }
}

/// The pods (`namespace/name`) a flow record concerns: at either end, and
/// the backend of a Service connection (possibly repeated).
pub fn pods_of(r: &FlowRecord) -> impl Iterator<Item = String> + '_ {
    [r.src.pod.as_ref(), r.dst.pod.as_ref()]
        .into_iter()
        .chain([r.backend().and_then(|b| b.address.pod.as_ref())])
        .flatten()
        .map(|p| format!("{}/{}", p.namespace, p.pod))
}

/// One answer of a timeline query (`GET /v1/timeline`, `bulkhead
/// timeline --output json`): a pod's events in a time range, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// [`SCHEMA`].
    pub schema: String,
    /// The pod (`namespace/name`).
    pub pod: String,
    /// The range asked for (milliseconds since the epoch, inclusive).
    pub since_unix_ms: u64,
    /// Its end.
    pub until_unix_ms: u64,
    /// At most this many events.
    pub limit: usize,
    /// More events of the range are stored beyond `limit` (ask again from
    /// the last one's time).
    pub truncated: bool,
    /// The events, oldest first.
    pub events: Vec<Event>,
}

impl Timeline {
    /// The events of `pod` from `since` to `until` (inclusive), oldest
    /// first, at most `limit`, as a [`Page`].
    pub fn page(
        &self,
        pod: &str,
        since: u64,
        until: u64,
        limit: usize,
    ) -> Result<Page, TimelineError> {
        let mut events = self.query(pod, since, until, limit.saturating_add(1))?;
        let truncated = events.len() > limit;
        events.truncate(limit);
        Ok(Page {
            schema: SCHEMA.to_owned(),
            pod: pod.to_owned(),
            since_unix_ms: since,
            until_unix_ms: until,
            limit,
            truncated,
            events,
        })
    }
}

/// How much the timeline keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (milliseconds) are removed.
    pub max_age_ms: u64,
    /// Beyond this many events the oldest are removed.
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_ms: 7 * 24 * 3_600_000,
            max_events: 1_000_000,
        }
    }
}

/// Why the timeline failed.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The database failed (or another process has it open).
    #[error("timeline database {}: {source}", path.display())]
    Db {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored event does not decode.
    #[error("timeline database {}: corrupt event", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// The timeline, open for writing (`Sync`: queries beside appends read the
/// last commit).
pub struct Timeline {
    db: Database,
    path: PathBuf,
    retention: Retention,
    next_seq: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("path", &self.path)
            .finish()
    }
}

impl Timeline {
    /// Opens (or creates, owner-only) the timeline at `path`.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, TimelineError> {
        let err = db_err(path);
        let file = bulkhead_policy::private::open_rw(path).map_err(|e| err(e.into()))?;
        let backend = redb::backends::FileBackend::new(file).map_err(|e| err(e.into()))?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        let next = {
            let events = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            txn.open_table(BY_POD).map_err(|e| err(e.into()))?;
            let last = events.last().map_err(|e| err(e.into()))?;
            last.map_or(0, |(k, _)| k.value().1 + 1)
        };
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(Self {
            db,
            path: path.to_owned(),
            retention,
            next_seq: next.into(),
        })
    }

    /// Appends `events` in one transaction, then removes what the retention
    /// no longer keeps (as of `now_unix_ms`); how many were removed.
    pub fn append(&self, events: &[Event], now_unix_ms: u64) -> Result<u64, TimelineError> {
        let err = db_err(&self.path);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let removed = {
            let mut table = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            let mut by_pod = txn.open_table(BY_POD).map_err(|e| err(e.into()))?;
            for e in events {
                let seq = self
                    .next_seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let text = serde_json::to_string(e).expect("events serialize");
                table
                    .insert((e.at_unix_ms, seq), text.as_str())
                    .map_err(|e| err(e.into()))?;
                for pod in &e.pods {
                    by_pod
                        .insert((pod.as_str(), e.at_unix_ms, seq), ())
                        .map_err(|e| err(e.into()))?;
                }
            }
            self.expire(&mut table, &mut by_pod, now_unix_ms)?
        };
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(removed)
    }

    /// Removes the oldest events beyond the retention.
    fn expire(
        &self,
        table: &mut redb::Table<(u64, u64), &str>,
        by_pod: &mut redb::Table<(&str, u64, u64), ()>,
        now: u64,
    ) -> Result<u64, TimelineError> {
        let err = db_err(&self.path);
        let oldest_kept = now.saturating_sub(self.retention.max_age_ms);
        let mut removed = 0;
        loop {
            let len = table.len().map_err(|e| err(e.into()))?;
            let Some((key, text)) = table
                .first()
                .map_err(|e| err(e.into()))?
                .map(|(k, v)| (k.value(), v.value().to_owned()))
            else {
                break;
            };
            if key.0 >= oldest_kept && len <= self.retention.max_events {
                break;
            }
            let event: Event =
                serde_json::from_str(&text).map_err(|source| TimelineError::Corrupt {
                    path: self.path.clone(),
                    source,
                })?;
            for pod in &event.pods {
                by_pod
                    .remove((pod.as_str(), key.0, key.1))
                    .map_err(|e| err(e.into()))?;
            }
            table.remove(key).map_err(|e| err(e.into()))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The events of `pod` (`namespace/name`) from `since` to `until`
    /// (milliseconds, inclusive), oldest first, at most `limit`.
    pub fn query(
        &self,
        pod: &str,
        since: u64,
        until: u64,
        limit: usize,
    ) -> Result<Vec<Event>, TimelineError> {
        let err = db_err(&self.path);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
        let by_pod = txn.open_table(BY_POD).map_err(|e| err(e.into()))?;
        let range = by_pod
            .range((pod, since, 0)..=(pod, until, u64::MAX))
            .map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (key, _) = entry.map_err(|e| err(e.into()))?;
            let (_, at, seq) = key.value();
            let Some(text) = table.get((at, seq)).map_err(|e| err(e.into()))? else {
                continue;
            };
            let event =
                serde_json::from_str(text.value()).map_err(|source| TimelineError::Corrupt {
                    path: self.path.clone(),
                    source,
                })?;
            out.push(event);
        }
        Ok(out)
    }

    /// Events stored.
    pub fn len(&self) -> Result<u64, TimelineError> {
        let err = db_err(&self.path);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
        table.len().map_err(|e| err(e.into()))
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> Result<bool, TimelineError> {
        Ok(self.len()? == 0)
    }
}

fn db_err(path: &Path) -> impl Fn(redb::Error) -> TimelineError + '_ {
    move |e| TimelineError::Db {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests;
