//! The durable flow history: edges and workloads in an embedded database
//! (redb, a single file with ACID transactions), merged on insert, bounded
//! by a maximum number of edges (the least recently seen are evicted and
//! counted), surviving restarts.
//!
//! Tables (keys and values are JSON of the [`super::edge`] types, so the
//! file is self-describing and keys sort deterministically):
//! - `edges`: [`EdgeKey`] → [`EdgeStats`];
//! - `edges_by_last_seen`: (last seen ms, edge key) → (), the eviction order;
//! - `workloads`: [`WorkloadId`] → [`WorkloadInfo`];
//! - `counters`: name → u64 (`records`, `events`, `unknown_endpoint`,
//!   `untranslated_service`, `evicted`, and the buckets' `bucket_ms`,
//!   `buckets_from`, `bucket_evicted`);
//! - `edge_buckets`: (bucket start ms, edge key) → [`EdgeStats`] within the
//!   bucket, for windows ([`buckets`]).
//!
//! One process at a time: redb locks the file, and a second open fails with
//! [`StoreError::Locked`]. Within the process, share one [`HistoryStore`]
//! (an `Arc`): redb runs any number of read transactions beside the one
//! write transaction (MVCC), each reading the last commit. The agent's
//! history exporter writes while its API reads (`GET /v1/history`, whose
//! JSON form is [`Stored`]'s, schema [`SCHEMA`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::edge::{Edge, EdgeKey, EdgeStats, History, Skipped, WorkloadId, WorkloadInfo};
use super::window::{Window, WindowFacts};
use bulkhead_flows::record::Timestamp;

mod buckets;

/// The schema name and version of [`Stored`]'s JSON form.
pub const SCHEMA: &str = "bulkhead.history/v1";

const EDGES: TableDefinition<&str, &str> = TableDefinition::new("edges");
const BY_LAST_SEEN: TableDefinition<(u64, &str), ()> = TableDefinition::new("edges_by_last_seen");
const WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Why the history store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or handle) has the database open.
    #[error(
        "history database {path} is open in another process (one writer at a time: \
         stop the agent or copy the file to read it)"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file does not exist (opening read-only).
    #[error("history database {path} does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The database failed.
    #[error("history database {path}")]
    Db {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored entry does not decode (written by an incompatible version?).
    #[error("history database {path}: corrupt entry in table {table}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// Limits of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Edges kept; beyond it the least recently seen are evicted.
    pub max_edges: u64,
    /// Width of the time buckets windows are read from, in milliseconds
    /// (a new store's; an existing store keeps its own).
    pub bucket_ms: u64,
    /// Bucket entries (edge, bucket) kept; beyond it the oldest buckets
    /// are evicted whole.
    pub max_bucket_entries: u64,
}

/// The default [`StoreConfig::bucket_ms`]: ten minutes.
pub const DEFAULT_BUCKET_MS: u64 = 10 * 60 * 1000;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_edges: 1_000_000,
            bucket_ms: DEFAULT_BUCKET_MS,
            max_bucket_entries: 4_000_000,
        }
    }
}

/// What one merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Edges not in the store before.
    pub new_edges: u64,
    /// Edges evicted to stay within the bound.
    pub evicted: u64,
    /// Bucket entries evicted to stay within their bound.
    pub bucket_evicted: u64,
}

/// The store, open for writing. `Sync`: [`HistoryStore::merge`] and
/// [`HistoryStore::load`] take `&self`, and a load beside a merge reads the
/// last committed state.
pub struct HistoryStore {
    db: Database,
    path: PathBuf,
    config: StoreConfig,
    /// The bucket width in force (the store's own).
    bucket_ms: u64,
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStore")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish()
    }
}

fn db_err(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        e => StoreError::Db {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    }
}

fn corrupt<'a>(
    path: &'a Path,
    table: &'static str,
) -> impl Fn(serde_json::Error) -> StoreError + 'a {
    move |source| StoreError::Corrupt {
        path: path.to_path_buf(),
        table,
        source,
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("history types serialize")
}

impl HistoryStore {
    /// Opens the database at `path`, creating it if needed: owner-only
    /// (0600; an existing file is tightened, see [`bulkhead_policy::private`]), as
    /// it records who talks to whom.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let err = db_err(path);
        let file = bulkhead_policy::private::open_rw(path).map_err(|e| err(e.into()))?;
        let backend = redb::backends::FileBackend::new(file).map_err(|e| err(e.into()))?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| err(e.into()))?;
        // Create the tables so that read-only opens find them.
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            txn.open_table(EDGES).map_err(|e| err(e.into()))?;
            txn.open_table(BY_LAST_SEEN).map_err(|e| err(e.into()))?;
            txn.open_table(WORKLOADS).map_err(|e| err(e.into()))?;
            txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
        }
        let bucket_ms = buckets::init(&txn, path, config.bucket_ms)?;
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            config,
            bucket_ms,
        })
    }

    /// The width of the store's time buckets, in milliseconds.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Merges a batch in one transaction: edge counts add up, first/last
    /// seen widen, workload labels of the latest observation win; then
    /// evicts the least recently seen edges beyond the bound.
    pub fn merge(&self, batch: &History) -> Result<MergeOutcome, StoreError> {
        let path = self.path.as_path();
        let err = db_err(path);
        let mut out = MergeOutcome::default();
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut edges = txn.open_table(EDGES).map_err(|e| err(e.into()))?;
            let mut lru = txn.open_table(BY_LAST_SEEN).map_err(|e| err(e.into()))?;
            for (key, stats) in &batch.edges {
                let k = json(key);
                let old: Option<EdgeStats> =
                    match edges.get(k.as_str()).map_err(|e| err(e.into()))? {
                        Some(v) => {
                            Some(serde_json::from_str(v.value()).map_err(corrupt(path, "edges"))?)
                        }
                        None => None,
                    };
                let merged = match old {
                    Some(mut o) => {
                        lru.remove((o.last_seen.0, k.as_str()))
                            .map_err(|e| err(e.into()))?;
                        o.merge(stats);
                        o
                    }
                    None => {
                        out.new_edges += 1;
                        stats.clone()
                    }
                };
                edges
                    .insert(k.as_str(), json(&merged).as_str())
                    .map_err(|e| err(e.into()))?;
                lru.insert((merged.last_seen.0, k.as_str()), ())
                    .map_err(|e| err(e.into()))?;
            }
            while edges.len().map_err(|e| err(e.into()))? > self.config.max_edges {
                let Some((k, _)) = lru.pop_first().map_err(|e| err(e.into()))? else {
                    break;
                };
                let (_, key) = k.value();
                edges.remove(key).map_err(|e| err(e.into()))?;
                out.evicted += 1;
            }
            out.bucket_evicted = buckets::merge(
                &txn,
                path,
                self.bucket_ms,
                self.config.max_bucket_entries,
                batch,
            )?;
            let mut workloads = txn.open_table(WORKLOADS).map_err(|e| err(e.into()))?;
            for (id, info) in &batch.workloads {
                let k = json(id);
                let mut merged = info.clone();
                if let Some(v) = workloads.get(k.as_str()).map_err(|e| err(e.into()))? {
                    let mut old: WorkloadInfo =
                        serde_json::from_str(v.value()).map_err(corrupt(path, "workloads"))?;
                    old.merge(info);
                    merged = old;
                }
                workloads
                    .insert(k.as_str(), json(&merged).as_str())
                    .map_err(|e| err(e.into()))?;
            }
            let mut counters = txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
            for (name, n) in [
                ("records", batch.records),
                ("events", batch.skipped.events),
                ("unknown_endpoint", batch.skipped.unknown_endpoint),
                ("untranslated_service", batch.skipped.untranslated_service),
                ("evicted", out.evicted),
            ] {
                if n == 0 {
                    continue;
                }
                let old = counters
                    .get(name)
                    .map_err(|e| err(e.into()))?
                    .map_or(0, |v| v.value());
                counters.insert(name, old + n).map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(out)
    }

    /// Everything stored, as a [`History`], and the eviction count.
    pub fn load(&self) -> Result<Stored, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_err(&self.path)(e.into()))?;
        read_all(&self.path, &txn)
    }

    /// The history of a time window (everything for [`Window::ALL`]),
    /// rounded outward to whole buckets: [`Stored::window`] says what it
    /// covers, and whether it is partial.
    pub fn load_window(&self, window: Window) -> Result<Stored, StoreError> {
        if window.is_all() {
            return self.load();
        }
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_err(&self.path)(e.into()))?;
        buckets::read(&self.path, &txn, window)
    }

    /// Time from the newest edge's first sighting to `now` (stability).
    pub fn since_last_new_edge(
        &self,
        now: Timestamp,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(self
            .load()?
            .history
            .last_new_edge()
            .map(|t| std::time::Duration::from_millis(now.0.saturating_sub(t.0))))
    }
}

/// The stored history and what was evicted from it.
///
/// Its JSON form (schema [`SCHEMA`], what `GET /v1/history` serves)
/// round-trips exactly; edges and workloads are sorted, so one content
/// gives one text:
///
/// ```json
/// {"schema": "bulkhead.history/v1", "records": 12, "evicted": 0,
///  "skipped": {"events": 0, "unknown_endpoint": 1, "untranslated_service": 0},
///  "edges": [{"key": {"src": {"workload": {"namespace": "shop", "workload": "Deployment/api"}},
///                     "dst": {"external": "203.0.113.7"}, "protocol": 6, "port": 443},
///             "stats": {"first_seen": "…Z", "last_seen": "…Z",
///                       "at_src": {"flows": 2, "packets": 9, "bytes": 900},
///                       "at_dst": {"flows": 0, "packets": 0, "bytes": 0}}}],
///  "workloads": [{"id": {"namespace": "shop", "workload": "Deployment/api"},
///                 "info": {"labels": {"app": "api"}, "local": true, "last_seen": "…Z"}}]}
/// ```
///
/// An edge with denied or quarantined records has `stats.denied` (its
/// denied part and deciding policies: [`crate::edge::DeniedStats`]); a
/// window's history has `window` ([`WindowFacts`]) after `skipped`. Both
/// are absent otherwise, and a reader of this version takes documents
/// without them.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Edges, workloads and record counts.
    pub history: History,
    /// Edges evicted over the store's life.
    pub evicted: u64,
    /// The time window read, when one was asked for (`None`: everything;
    /// absent from the JSON then).
    pub window: Option<WindowFacts>,
}

/// [`Stored`]'s JSON form, borrowed for writing.
#[derive(Serialize)]
struct WireOut<'a> {
    schema: &'static str,
    records: u64,
    evicted: u64,
    skipped: Skipped,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<&'a WindowFacts>,
    edges: Vec<EdgeOut<'a>>,
    workloads: Vec<WorkloadOut<'a>>,
}

#[derive(Serialize)]
struct EdgeOut<'a> {
    key: &'a EdgeKey,
    stats: &'a EdgeStats,
}

#[derive(Serialize)]
struct WorkloadOut<'a> {
    id: &'a WorkloadId,
    info: &'a WorkloadInfo,
}

/// [`Stored`]'s JSON form, owned for reading. Unknown fields are ignored
/// (a compatible addition); an incompatible change renames [`SCHEMA`].
#[derive(Deserialize)]
struct WireIn {
    #[serde(rename = "schema")]
    _schema: SchemaIn,
    records: u64,
    evicted: u64,
    skipped: Skipped,
    #[serde(default)]
    window: Option<WindowFacts>,
    edges: Vec<Edge>,
    workloads: Vec<WorkloadIn>,
}

/// Accepts [`SCHEMA`] only, failing at the field (the server writes it
/// first), so another version is named as such rather than as a missing
/// field.
struct SchemaIn;

impl<'de> Deserialize<'de> for SchemaIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s == SCHEMA {
            Ok(SchemaIn)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported schema {s:?} (expected {SCHEMA:?})"
            )))
        }
    }
}

#[derive(Deserialize)]
struct WorkloadIn {
    id: WorkloadId,
    info: WorkloadInfo,
}

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = &self.history;
        // Sorted through borrowed maps: no copy of the history.
        let edges: BTreeMap<_, _> = h.edges.iter().collect();
        let workloads: BTreeMap<_, _> = h.workloads.iter().collect();
        WireOut {
            schema: SCHEMA,
            records: h.records,
            evicted: self.evicted,
            skipped: h.skipped,
            window: self.window.as_ref(),
            edges: edges
                .into_iter()
                .map(|(key, stats)| EdgeOut { key, stats })
                .collect(),
            workloads: workloads
                .into_iter()
                .map(|(id, info)| WorkloadOut { id, info })
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stored {
    /// Fails on another schema. A key listed twice is merged (as the store
    /// would merge it), though a store never lists one twice.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let mut history = History {
            records: w.records,
            skipped: w.skipped,
            ..History::default()
        };
        history.edges.reserve(w.edges.len());
        for e in w.edges {
            history.add_edge(e.key, &e.stats);
        }
        history.workloads.reserve(w.workloads.len());
        for wl in w.workloads {
            history.add_workload(wl.id, &wl.info);
        }
        Ok(Stored {
            history,
            evicted: w.evicted,
            window: w.window,
        })
    }
}

/// Reads a store without writing to it (fails with
/// [`StoreError::Locked`] while another process has it open for writing).
pub fn read(path: &Path) -> Result<Stored, StoreError> {
    read_window(path, Window::ALL)
}

/// [`read`] of a time window ([`HistoryStore::load_window`]).
pub fn read_window(path: &Path, window: Window) -> Result<Stored, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    let err = db_err(path);
    let db = ReadOnlyDatabase::open(path).map_err(|e| err(e.into()))?;
    let txn = db.begin_read().map_err(|e| err(e.into()))?;
    if window.is_all() {
        read_all(path, &txn)
    } else {
        buckets::read(path, &txn, window)
    }
}

fn read_all(path: &Path, txn: &redb::ReadTransaction) -> Result<Stored, StoreError> {
    let err = db_err(path);
    let mut out = Stored::default();
    let edges = txn.open_table(EDGES).map_err(|e| err(e.into()))?;
    for entry in edges.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        let key: EdgeKey = serde_json::from_str(k.value()).map_err(corrupt(path, "edges"))?;
        let stats: EdgeStats = serde_json::from_str(v.value()).map_err(corrupt(path, "edges"))?;
        out.history.edges.insert(key, stats);
    }
    let workloads = txn.open_table(WORKLOADS).map_err(|e| err(e.into()))?;
    for entry in workloads.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        let id: WorkloadId = serde_json::from_str(k.value()).map_err(corrupt(path, "workloads"))?;
        let info: WorkloadInfo =
            serde_json::from_str(v.value()).map_err(corrupt(path, "workloads"))?;
        out.history.workloads.insert(id, info);
    }
    let counters = txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
    let get = |name: &str| -> Result<u64, StoreError> {
        Ok(counters
            .get(name)
            .map_err(|e| err(e.into()))?
            .map_or(0, |v| v.value()))
    };
    out.history.records = get("records")?;
    out.history.skipped.events = get("events")?;
    out.history.skipped.unknown_endpoint = get("unknown_endpoint")?;
    out.history.skipped.untranslated_service = get("untranslated_service")?;
    out.evicted = get("evicted")?;
    Ok(out)
}
