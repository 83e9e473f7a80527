//! The flow map: an in-memory, time-bucketed aggregate of the flow
//! pipeline's finished records by edge, for the agent's network map
//! (`GET /v1/map` and its details).
//!
//! - **Keyed as the learner keys.** A record's edge is
//!   [`crate::edge::from_record`]'s ([`crate::edge::EdgeKey`]: workload
//!   `namespace/Kind/name` or external address, protocol, destination
//!   port; a Service connection goes to its backend), its workloads
//!   [`crate::edge::ends_of`]'s: one interpretation of a record's edge.
//! - **By verdict class** ([`VerdictClass`]): per edge and time bucket,
//!   counts per class (each connection once: the larger side), first and
//!   last seen, and the deciding policies per class ([`Cell`]).
//! - **Bounded.** Records fall into buckets of [`MapConfig::bucket`] by
//!   their end; buckets older than [`MapConfig::retention`] are dropped
//!   (expired), and beyond [`MapConfig::max_entries`] edge-bucket entries
//!   the oldest buckets are evicted whole (counted); a record that fits
//!   nowhere (its bucket is the oldest and the map is full, or it is older
//!   than the retention) is lost (counted).
//! - **Windows of whole buckets** ([`FlowMap::window`]): a query's `since`
//!   and `until` are widened to bucket boundaries; the answer is
//!   `partial` when it reaches before what the map still holds of what
//!   it once held (evicted or expired buckets).
//! - **Views** ([`view`]): the JSON the map UI reads (`bulkhead.map/v1`),
//!   with external addresses grouped by range ([`Groups`]), and the live
//!   increments of [`MapSink`] as follow lines ([`view::Follower`]).
//! - **Learning from it** ([`Cells::history`]): a window as a
//!   [`crate::History`], so `propose` runs on what the map shows.
//!
//! The agent feeds it through [`MapSink`], one more exporter of the flow
//! pipeline: a bounded lossy queue, merged every 250 ms, so the pipeline
//! never waits; readers take the map's lock only to copy a window out.

mod buckets;
pub mod class;
pub mod external;
pub mod proposal;
pub mod sink;
#[cfg(test)]
mod tests;
pub mod view;

use std::time::Duration;

pub use buckets::{Cells, FlowMap, MapBatch, MapStats, WindowInfo};
pub use class::{Cell, ClassStats, MAX_POLICIES, VerdictClass};
pub use external::Groups;
pub use sink::{Increments, MapExporter, MapSink, MapSubscription, SharedMap};

/// Finest time a batch keeps records apart by (ms): buckets are whole
/// multiples of it.
pub const GRAIN_MS: u64 = 1_000;

/// The map's time buckets and bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapConfig {
    /// Width of a time bucket (whole seconds, at least one).
    pub bucket: Duration,
    /// How long buckets are kept.
    pub retention: Duration,
    /// Most edge-bucket entries held; beyond, the oldest buckets go.
    pub max_entries: usize,
}

impl Default for MapConfig {
    /// One-minute buckets, six hours, 100,000 entries.
    fn default() -> Self {
        Self {
            bucket: Duration::from_secs(60),
            retention: Duration::from_secs(6 * 3600),
            max_entries: 100_000,
        }
    }
}

/// Why a [`MapConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapConfigError {
    /// The bucket is not a whole number of seconds, or is zero.
    #[error("the map bucket must be a whole number of seconds, at least 1s (got {0:?})")]
    Bucket(Duration),
    /// The retention is shorter than one bucket.
    #[error("the map retention ({retention:?}) must be at least one bucket ({bucket:?})")]
    Retention {
        /// The retention asked for.
        retention: Duration,
        /// The bucket.
        bucket: Duration,
    },
    /// No entries allowed.
    #[error("the map must hold at least one entry")]
    MaxEntries,
}

impl MapConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), MapConfigError> {
        let ms = self.bucket.as_millis();
        if ms == 0 || !ms.is_multiple_of(u128::from(GRAIN_MS)) {
            return Err(MapConfigError::Bucket(self.bucket));
        }
        if self.retention < self.bucket {
            return Err(MapConfigError::Retention {
                retention: self.retention,
                bucket: self.bucket,
            });
        }
        if self.max_entries == 0 {
            return Err(MapConfigError::MaxEntries);
        }
        Ok(())
    }

    /// The bucket width in milliseconds.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket.as_millis() as u64
    }

    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention.as_millis() as u64
    }
}
