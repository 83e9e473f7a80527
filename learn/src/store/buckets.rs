//! Time buckets of the store: each edge's stats per bucket of
//! [`StoreConfig::bucket_ms`], for a history of a time window
//! ([`HistoryStore::load_window`], `GET /v1/history?since=&until=`).
//!
//! - Table `edge_buckets`: (bucket start ms, edge key) → the edge's stats
//!   within the bucket, merged in the transaction that merges the edges.
//!   A batch's edge goes to the bucket of its last record (the agent
//!   writes a batch every second, so an edge's records of one batch are
//!   at most that far apart).
//! - Bounded by [`StoreConfig::max_bucket_entries`]: beyond it the oldest
//!   buckets are evicted whole (counted in `bucket_evicted`), and
//!   `buckets_from` (counters) remembers the start of the oldest bucket the
//!   store still holds whole. A window reaching before it is *partial*,
//!   and said so. A store made before buckets existed starts its buckets
//!   after its newest edge.
//! - The width is the store's: fixed when the table is made (`bucket_ms`
//!   in counters); a later `StoreConfig` does not change it.
//! - A window load rounds outward to whole buckets and says so
//!   ([`WindowFacts`]). Its workloads are those its edges name: `local`
//!   from the side that recorded the edge (counts at the source: the
//!   source is local; at the destination: the destination), labels from
//!   the workloads table (as last seen).

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{COUNTERS, StoreError, Stored, WORKLOADS, corrupt, db_err, json};
use crate::edge::{EdgeKey, EdgeStats, End, History, WorkloadId, WorkloadInfo};
use crate::window::{Window, WindowFacts};
use bulkhead_flows::record::Timestamp;

pub(super) const BUCKETS: TableDefinition<(u64, &str), &str> = TableDefinition::new("edge_buckets");

/// Counter: the bucket width in force (ms).
const WIDTH: &str = "bucket_ms";
/// Counter: the start of the oldest bucket held whole.
const FROM: &str = "buckets_from";
/// Counter: bucket entries evicted.
const EVICTED: &str = "bucket_evicted";

/// Makes the table and fixes the width on first use; returns the width in
/// force.
pub(super) fn init(
    txn: &WriteTransaction,
    path: &std::path::Path,
    width_ms: u64,
) -> Result<u64, StoreError> {
    let err = db_err(path);
    txn.open_table(BUCKETS).map_err(|e| err(e.into()))?;
    let mut counters = txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
    if let Some(w) = counters.get(WIDTH).map_err(|e| err(e.into()))? {
        return Ok(w.value());
    }
    let width = width_ms.max(1);
    counters.insert(WIDTH, width).map_err(|e| err(e.into()))?;
    // Edges from before buckets existed are in no bucket: whole buckets
    // start after the newest of them.
    let lru = txn
        .open_table(super::BY_LAST_SEEN)
        .map_err(|e| err(e.into()))?;
    let newest = lru
        .last()
        .map_err(|e| err(e.into()))?
        .map(|(k, _)| k.value().0);
    if let Some(t) = newest {
        let from = (t / width + 1).saturating_mul(width);
        counters.insert(FROM, from).map_err(|e| err(e.into()))?;
    }
    Ok(width)
}

/// Merges a batch's edges into their buckets, then evicts the oldest
/// buckets beyond `max_entries`; returns the entries evicted.
pub(super) fn merge(
    txn: &WriteTransaction,
    path: &std::path::Path,
    width: u64,
    max_entries: u64,
    batch: &History,
) -> Result<u64, StoreError> {
    let err = db_err(path);
    let mut buckets = txn.open_table(BUCKETS).map_err(|e| err(e.into()))?;
    for (key, stats) in &batch.edges {
        let b = stats.last_seen.0 - stats.last_seen.0 % width;
        let k = json(key);
        let merged = match buckets.get((b, k.as_str())).map_err(|e| err(e.into()))? {
            Some(v) => {
                let mut old: EdgeStats =
                    serde_json::from_str(v.value()).map_err(corrupt(path, "edge_buckets"))?;
                old.merge(stats);
                old
            }
            None => stats.clone(),
        };
        buckets
            .insert((b, k.as_str()), json(&merged).as_str())
            .map_err(|e| err(e.into()))?;
    }
    let mut evicted = 0;
    let mut from = None;
    while buckets.len().map_err(|e| err(e.into()))? > max_entries {
        let Some((k, _)) = buckets.pop_first().map_err(|e| err(e.into()))? else {
            break;
        };
        let b = k.value().0;
        drop(k);
        evicted += 1;
        // The rest of the bucket: buckets go whole.
        while buckets
            .first()
            .map_err(|e| err(e.into()))?
            .is_some_and(|(k, _)| k.value().0 == b)
        {
            buckets.pop_first().map_err(|e| err(e.into()))?;
            evicted += 1;
        }
        from = Some(b.saturating_add(width));
    }
    if evicted > 0 {
        let mut counters = txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
        let get = |c: &redb::Table<&str, u64>, name| -> Result<u64, StoreError> {
            Ok(c.get(name)
                .map_err(|e| err(e.into()))?
                .map_or(0, |v| v.value()))
        };
        let old_from = get(&counters, FROM)?;
        let old_evicted = get(&counters, EVICTED)?;
        counters
            .insert(FROM, old_from.max(from.unwrap_or(0)))
            .map_err(|e| err(e.into()))?;
        counters
            .insert(EVICTED, old_evicted + evicted)
            .map_err(|e| err(e.into()))?;
    }
    Ok(evicted)
}

/// The history of `window`, rounded outward to whole buckets.
pub(super) fn read(
    path: &std::path::Path,
    txn: &redb::ReadTransaction,
    window: Window,
) -> Result<Stored, StoreError> {
    let err = db_err(path);
    let counters = txn.open_table(COUNTERS).map_err(|e| err(e.into()))?;
    let get = |name: &str| -> Result<Option<u64>, StoreError> {
        Ok(counters
            .get(name)
            .map_err(|e| err(e.into()))?
            .map(|v| v.value()))
    };
    let evicted = get("evicted")?.unwrap_or(0);
    let width = get(WIDTH)?.unwrap_or(1);
    let from = get(FROM)?.unwrap_or(0);
    let effective = window.rounded(width);
    let lo = effective.since.map_or(0, |t| t.0);
    let hi = effective.until.map_or(u64::MAX, |t| t.0);
    let mut history = History::default();
    // A store older than buckets has no table (a read-only open cannot
    // make it): nothing of any window is held whole.
    let table = match txn.open_table(BUCKETS) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(err(e.into())),
    };
    if let Some(table) = &table {
        for entry in table.range((lo, "")..(hi, "")).map_err(|e| err(e.into()))? {
            let (k, v) = entry.map_err(|e| err(e.into()))?;
            let key: EdgeKey =
                serde_json::from_str(k.value().1).map_err(corrupt(path, "edge_buckets"))?;
            let stats: EdgeStats =
                serde_json::from_str(v.value()).map_err(corrupt(path, "edge_buckets"))?;
            history.add_edge(key, &stats);
        }
    }
    add_workloads(path, txn, &mut history)?;
    let mut facts = WindowFacts {
        since: effective.since,
        until: effective.until,
        requested: window,
        rounded: effective != window,
        ..WindowFacts::default()
    };
    let name = path.display();
    if facts.rounded {
        facts.notes.push(format!(
            "{name}: rounded outward to whole buckets of {}",
            humantime::format_duration(std::time::Duration::from_millis(width))
        ));
    }
    if table.is_none() || lo < from {
        facts.partial = true;
        facts.notes.push(match table {
            None => format!("{name}: keeps no time buckets (written by an older version)"),
            Some(_) => format!(
                "{name}: holds whole buckets only from {} (older ones evicted, or kept \
                 before buckets existed): the window's history before then is missing",
                Timestamp(from)
            ),
        });
    }
    Ok(Stored {
        history,
        evicted,
        window: Some(facts),
    })
}

/// The workloads the window's edges name: local by the side that
/// recorded them, labels as the workloads table last saw them.
fn add_workloads(
    path: &std::path::Path,
    txn: &redb::ReadTransaction,
    history: &mut History,
) -> Result<(), StoreError> {
    let err = db_err(path);
    let table = txn.open_table(WORKLOADS).map_err(|e| err(e.into()))?;
    let mut seen: BTreeMap<WorkloadId, (bool, Timestamp)> = BTreeMap::new();
    for (key, stats) in &history.edges {
        for (end, local) in [
            (&key.src, stats.at_src.flows > 0),
            (&key.dst, stats.at_dst.flows > 0),
        ] {
            if let End::Workload(id) = end {
                let e = seen.entry(id.clone()).or_insert((false, stats.last_seen));
                e.0 |= local;
                e.1 = e.1.max(stats.last_seen);
            }
        }
    }
    history.records = history
        .edges
        .values()
        .map(|s| s.at_src.flows + s.at_dst.flows)
        .sum();
    for (id, (local, last_seen)) in seen {
        let labels = match table.get(json(&id).as_str()).map_err(|e| err(e.into()))? {
            Some(v) => {
                serde_json::from_str::<WorkloadInfo>(v.value())
                    .map_err(corrupt(path, "workloads"))?
                    .labels
            }
            None => Default::default(),
        };
        // Labels as last seen in the store, whatever the window.
        history.add_workload(
            id,
            &WorkloadInfo {
                labels,
                local,
                last_seen,
            },
        );
    }
    Ok(())
}
