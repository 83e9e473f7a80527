//! [`FlowMap`]: the buckets, their bounds, and windows of them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Cell, GRAIN_MS, MapConfig, MapConfigError, VerdictClass};
use crate::edge::{
    DeniedStats, EdgeKey, EdgeStats, End, FastMap, History, MAX_DENIED_POLICIES, SideCounts,
    WorkloadId, WorkloadInfo, ends_of, from_record,
};
use crate::window::Window;
use bulkhead_flows::record::{FlowRecord, Timestamp};

/// Records merged on the exporter's thread before they reach the map:
/// cells by (second of their end, edge), and the workloads they name.
#[derive(Debug, Default)]
pub struct MapBatch {
    cells: FastMap<(u64, EdgeKey), Cell>,
    workloads: FastMap<WorkloadId, WorkloadInfo>,
    /// Records taken.
    pub records: u64,
    /// Records that gave no edge (events, no pod identity, untranslated
    /// Service connections).
    pub skipped: u64,
}

impl MapBatch {
    /// Merges one record (finished flow records give edges; the others
    /// are counted as skipped).
    pub fn add_record(&mut self, r: &FlowRecord) {
        let (Ok(ends), Ok(edge)) = (ends_of(r), from_record(r)) else {
            self.skipped += 1;
            return;
        };
        self.records += 1;
        for (addr, is_local) in ends {
            let Some(p) = &addr.pod else { continue };
            let info = WorkloadInfo {
                labels: p.labels.clone(),
                local: is_local,
                last_seen: r.end,
            };
            match self.workloads.get_mut(&WorkloadId::of(p)) {
                Some(w) => w.merge(&info),
                None => {
                    self.workloads.insert(WorkloadId::of(p), info);
                }
            }
        }
        let cell = Cell::of(r, edge.stats.at_src, edge.stats.at_dst);
        let grain = r.end.0 / GRAIN_MS;
        match self.cells.get_mut(&(grain, edge.key.clone())) {
            Some(c) => c.merge(&cell),
            None => {
                self.cells.insert((grain, edge.key), cell);
            }
        }
    }

    /// Whether nothing was merged.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Edges (merged cells) and the workloads they name: a window of the map,
/// or the increments of one merge.
#[derive(Clone, Debug, Default)]
pub struct Cells {
    /// By edge.
    pub edges: FastMap<EdgeKey, Cell>,
    /// The workloads at either end of them.
    pub workloads: FastMap<WorkloadId, WorkloadInfo>,
}

impl Cells {
    fn add(&mut self, key: &EdgeKey, cell: &Cell, workloads: &FastMap<WorkloadId, WorkloadInfo>) {
        match self.edges.get_mut(key) {
            Some(c) => c.merge(cell),
            None => {
                self.edges.insert(key.clone(), cell.clone());
            }
        }
        for end in [&key.src, &key.dst] {
            let End::Workload(id) = end else { continue };
            let Some(info) = workloads.get(id) else {
                continue;
            };
            match self.workloads.get_mut(id) {
                Some(w) => w.merge(info),
                None => {
                    self.workloads.insert(id.clone(), info.clone());
                }
            }
        }
    }

    /// As the learner's [`History`] (what `propose` reads): each edge's
    /// counts of every class, the denied and quarantined part kept apart
    /// with its deciding policies, as [`History::add_record`] would have
    /// made of the same records.
    pub fn history(&self) -> History {
        let mut h = History::default();
        for (key, cell) in &self.edges {
            h.edges.insert(key.clone(), edge_stats(cell));
            h.records += cell.records();
        }
        h.workloads = self.workloads.clone();
        h
    }
}

/// The learner's stats of a cell.
fn edge_stats(cell: &Cell) -> EdgeStats {
    let (mut at_src, mut at_dst) = (SideCounts::default(), SideCounts::default());
    let mut denied: Option<DeniedStats> = None;
    let mut allowed_span: Option<(u64, u64)> = None;
    for (class, s) in &cell.classes {
        at_src.add(&s.at_src);
        at_dst.add(&s.at_dst);
        if matches!(class, VerdictClass::Denied | VerdictClass::Quarantined) {
            let d = denied.get_or_insert_with(|| DeniedStats {
                first_seen: Timestamp(s.first_seen),
                last_seen: Timestamp(s.last_seen),
                at_src: SideCounts::default(),
                at_dst: SideCounts::default(),
                policies: Default::default(),
                policies_truncated: false,
                allowed_first: None,
                allowed_last: None,
            });
            d.first_seen = d.first_seen.min(Timestamp(s.first_seen));
            d.last_seen = d.last_seen.max(Timestamp(s.last_seen));
            d.at_src.add(&s.at_src);
            d.at_dst.add(&s.at_dst);
            d.policies.extend(s.policies.iter().cloned());
            d.policies_truncated |= s.policies_truncated;
            while d.policies.len() > MAX_DENIED_POLICIES {
                d.policies.pop_last();
                d.policies_truncated = true;
            }
        } else {
            allowed_span = Some(match allowed_span {
                Some((a, b)) => (a.min(s.first_seen), b.max(s.last_seen)),
                None => (s.first_seen, s.last_seen),
            });
        }
    }
    if let Some(d) = &mut denied {
        d.allowed_first = allowed_span.map(|s| Timestamp(s.0));
        d.allowed_last = allowed_span.map(|s| Timestamp(s.1));
    }
    EdgeStats {
        first_seen: Timestamp(cell.first_seen()),
        last_seen: Timestamp(cell.last_seen()),
        at_src,
        at_dst,
        denied: denied.map(Box::new),
    }
}

/// One time bucket.
#[derive(Debug, Default)]
struct Bucket {
    edges: FastMap<EdgeKey, Cell>,
    workloads: FastMap<WorkloadId, WorkloadInfo>,
}

/// The time span a window answer covers (`GET /v1/map`'s `window`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WindowInfo {
    /// Start of the first bucket (ms since the epoch).
    pub since: u64,
    /// End of the last bucket.
    pub until: u64,
    /// Bucket width (ms).
    pub bucket_ms: u64,
    /// The window reaches before the oldest bucket held, and the map once
    /// held data there (evicted or expired): the answer misses some.
    pub partial: bool,
}

/// Counters of the map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MapStats {
    /// Buckets held.
    pub buckets: usize,
    /// Edge-bucket entries held.
    pub entries: usize,
    /// Buckets evicted whole to stay within `max_entries`.
    pub evicted_buckets: u64,
    /// Buckets dropped for age.
    pub expired_buckets: u64,
    /// Records that fit nowhere (counted at either side).
    pub lost_records: u64,
    /// Merges that changed the map.
    pub revision: u64,
}

/// The time-bucketed flow map (see the module doc of [`super`]).
#[derive(Debug)]
pub struct FlowMap {
    config: MapConfig,
    buckets: BTreeMap<u64, Bucket>,
    stats: MapStats,
    /// Data before this (ms) was held and dropped.
    dropped_before: u64,
}

impl FlowMap {
    /// An empty map.
    pub fn new(config: MapConfig) -> Result<Self, MapConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            buckets: BTreeMap::new(),
            stats: MapStats::default(),
            dropped_before: 0,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &MapConfig {
        &self.config
    }

    /// Its counters.
    pub fn stats(&self) -> MapStats {
        MapStats {
            buckets: self.buckets.len(),
            ..self.stats
        }
    }

    fn bucket_of(&self, ms: u64) -> u64 {
        ms - ms % self.config.bucket_ms()
    }

    /// Start of the oldest bucket kept at `now_ms`.
    fn horizon(&self, now_ms: u64) -> u64 {
        self.bucket_of(now_ms.saturating_sub(self.config.retention_ms()))
    }

    /// Drops the buckets older than the retention at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let horizon = self.horizon(now_ms);
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            let start = *entry.key();
            let b = entry.remove();
            self.stats.entries -= b.edges.len();
            self.stats.expired_buckets += 1;
            self.dropped_before = self.dropped_before.max(start + self.config.bucket_ms());
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((start, b)) = self.buckets.pop_first() {
            self.stats.entries -= b.edges.len();
            self.stats.evicted_buckets += 1;
            self.dropped_before = self.dropped_before.max(start + self.config.bucket_ms());
        }
    }

    /// Merges a batch at `now_ms` (expiring old buckets first); the
    /// increments it made (what was stored), by edge.
    pub fn merge(&mut self, batch: MapBatch, now_ms: u64) -> Cells {
        self.expire(now_ms);
        let horizon = self.horizon(now_ms);
        let mut delta = Cells::default();
        let mut cells: Vec<((u64, EdgeKey), Cell)> = batch.cells.into_iter().collect();
        // Oldest first: eviction never drops what this batch just stored
        // before an older part of it.
        cells.sort_unstable_by_key(|((grain, _), _)| *grain);
        for ((grain, key), cell) in cells {
            let start = self.bucket_of(grain * GRAIN_MS);
            if start < horizon {
                self.stats.lost_records += cell.records();
                continue;
            }
            let exists = self
                .buckets
                .get(&start)
                .is_some_and(|b| b.edges.contains_key(&key));
            if !exists {
                while self.stats.entries >= self.config.max_entries
                    && self
                        .buckets
                        .first_key_value()
                        .is_some_and(|(s, _)| *s < start)
                {
                    self.evict_oldest();
                }
                if self.stats.entries >= self.config.max_entries {
                    self.stats.lost_records += cell.records();
                    continue;
                }
                self.stats.entries += 1;
            }
            let bucket = self.buckets.entry(start).or_default();
            match bucket.edges.get_mut(&key) {
                Some(c) => c.merge(&cell),
                None => {
                    bucket.edges.insert(key.clone(), cell.clone());
                }
            }
            for end in [&key.src, &key.dst] {
                let End::Workload(id) = end else { continue };
                let Some(info) = batch.workloads.get(id) else {
                    continue;
                };
                match bucket.workloads.get_mut(id) {
                    Some(w) => w.merge(info),
                    None => {
                        bucket.workloads.insert(id.clone(), info.clone());
                    }
                }
            }
            delta.add(&key, &cell, &batch.workloads);
        }
        if !delta.edges.is_empty() {
            self.stats.revision += 1;
        }
        delta
    }

    /// The window `w` at `now_ms` in whole buckets (`since` rounded down,
    /// `until` up; without `since`, the whole retention; without `until`,
    /// up to now): the edges merged over it, and what it covers.
    pub fn window(&self, w: Window, now_ms: u64) -> (Cells, WindowInfo) {
        let width = self.config.bucket_ms();
        let since = self.bucket_of(w.since.map_or_else(|| self.horizon(now_ms), |t| t.0));
        let until_ms = w.until.map_or(now_ms, |t| t.0);
        let until = self.bucket_of(until_ms.saturating_add(width - 1));
        let until = until.max(since + width);
        let mut cells = Cells::default();
        for b in self.buckets.range(since..until).map(|(_, b)| b) {
            for (key, cell) in &b.edges {
                cells.add(key, cell, &b.workloads);
            }
        }
        let info = WindowInfo {
            since,
            until,
            bucket_ms: width,
            partial: since < self.dropped_before,
        };
        (cells, info)
    }
}
