//! [`MapSink`]: the flow pipeline's exporter into the [`FlowMap`] (a
//! [`BatchExporter`] merging every 250 ms), and the live subscriptions
//! to its increments.
//!
//! The map sits behind one lock ([`SharedMap`]). The writer holds it to
//! merge a batch and hand the increments to subscribers (`try_send` on
//! each subscriber's bounded queue: a full queue loses the increments for
//! that subscriber, counted, and never waits); readers hold it to copy a
//! window out (bounded by the map's entries), then build their answer
//! without it. So a slow reader delays the writer at most one copy, and the
//! writer's own queue (the exporter's) absorbs that; the pipeline never
//! waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Cells, FlowMap, MapBatch, MapConfig, MapConfigError, MapStats, WindowInfo};
use crate::exporter::{BatchExporter, BatchSink, HistoryExporterConfig, HistoryExporterError};
use crate::window::Window;
use bulkhead_flows::record::FlowRecord;

/// How often the map exporter merges what it took.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The map exporter: finished flow records into a [`SharedMap`].
pub type MapExporter = BatchExporter<MapSink>;

/// Milliseconds since the epoch now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One merge's increments and the map's revision after it.
pub type Increments = (u64, Arc<Cells>);

struct Subscriber {
    tx: SyncSender<Increments>,
    lost: Arc<AtomicU64>,
}

struct Inner {
    map: FlowMap,
    subscribers: Vec<Subscriber>,
}

/// The flow map shared by its exporter (the writer) and the API (readers).
pub struct SharedMap {
    inner: Mutex<Inner>,
}

/// A live feed of the map's increments (one [`Cells`] per merge, with
/// the revision that merge made: a reader that copied the map at revision
/// `r` takes only increments of a later revision, with no gap and nothing
/// counted twice).
pub struct MapSubscription {
    rx: Receiver<Increments>,
    lost: Arc<AtomicU64>,
}

impl MapSubscription {
    /// The next increments and their revision, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Increments, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Edges of increments this subscriber lost (its queue was full).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl SharedMap {
    /// An empty map.
    pub fn new(config: MapConfig) -> Result<Arc<Self>, MapConfigError> {
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                map: FlowMap::new(config)?,
                subscribers: Vec::new(),
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its configuration.
    pub fn config(&self) -> MapConfig {
        *self.lock().map.config()
    }

    /// Its counters.
    pub fn stats(&self) -> MapStats {
        self.lock().map.stats()
    }

    /// Merges a batch at `now_ms` and hands the increments to the
    /// subscribers (dropping, and counting, what a full queue cannot take).
    pub fn merge(&self, batch: MapBatch, now_ms: u64) {
        let mut inner = self.lock();
        let delta = inner.map.merge(batch, now_ms);
        if delta.edges.is_empty() {
            return;
        }
        let delta = Arc::new(delta);
        let revision = inner.map.stats().revision;
        inner
            .subscribers
            .retain(|s| match s.tx.try_send((revision, Arc::clone(&delta))) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.lost
                        .fetch_add(delta.edges.len() as u64, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// The window `w` at `now_ms` (see [`FlowMap::window`]), with the
    /// counters as of it.
    pub fn window(&self, w: Window, now_ms: u64) -> (Cells, WindowInfo, MapStats) {
        let mut inner = self.lock();
        inner.map.expire(now_ms);
        let (cells, info) = inner.map.window(w, now_ms);
        (cells, info, inner.map.stats())
    }

    /// Subscribes to the increments from now on, through a queue of
    /// `queue` merges; with `since`, also the window from it to now, taken
    /// under the same lock (no merge falls between the two, nor in both),
    /// with the map's revision then.
    pub fn subscribe(
        &self,
        queue: usize,
        since: Option<Window>,
        now_ms: u64,
    ) -> (MapSubscription, Option<(u64, Cells)>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        let mut inner = self.lock();
        inner.subscribers.push(Subscriber {
            tx,
            lost: Arc::clone(&lost),
        });
        let backlog = since.map(|w| {
            inner.map.expire(now_ms);
            let cells = inner.map.window(w, now_ms).0;
            (inner.map.stats().revision, cells)
        });
        (MapSubscription { rx, lost }, backlog)
    }

    /// Live subscriptions.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// [`MapExporter`]'s sink: the shared map, merged into.
pub struct MapSink(pub Arc<SharedMap>);

impl BatchSink for MapSink {
    const NAME: &'static str = "map";
    const THREAD: &'static str = "flows-map";
    type Batch = MapBatch;

    fn add(batch: &mut MapBatch, record: &FlowRecord) {
        batch.add_record(record);
    }

    fn write(&mut self, batch: MapBatch, _records: u64) -> Result<(), String> {
        self.0.merge(batch, now_ms());
        Ok(())
    }
}

impl MapExporter {
    /// Starts the map's writer thread: records merged every
    /// [`BATCH_INTERVAL`] (or 10,000 records) into `map`.
    pub fn start(map: Arc<SharedMap>) -> Result<Self, HistoryExporterError> {
        Self::spawn(
            MapSink(map),
            HistoryExporterConfig {
                batch_interval: BATCH_INTERVAL,
                ..HistoryExporterConfig::default()
            },
        )
    }
}
