//! [`HistoryExporter`]: the flow pipeline's exporter into the durable
//! history (a [`BatchExporter`], as the timeline's is). Records cross a bounded queue to a writer thread that merges
//! them into an in-memory batch and writes the batch in one transaction
//! when it is large enough or old enough. A full queue or a failed write
//! counts the records as lost (as the other exporters do); the pipeline
//! never waits.
//!
//! Readers of the store (the agent's `GET /v1/history`) see what is
//! committed: records still queued or in the current batch (at most
//! `batch_records`, or `batch_interval` old) are not in it yet.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::edge::History;
use super::store::HistoryStore;
use bulkhead_flows::export::queued::Queued;
use bulkhead_flows::export::{ExportCounters, ExportStats, Exporter, LogLimiter, LossReason};
use bulkhead_flows::record::FlowRecord;

/// Configuration of the history exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryExporterConfig {
    /// Records queued for the writer before new ones are lost.
    pub queue: usize,
    /// A batch is written when it holds this many records...
    pub batch_records: u64,
    /// ...or when its oldest record waited this long.
    pub batch_interval: Duration,
    /// Failures are logged at most once per interval.
    pub log_interval: Duration,
    /// How long [`Exporter::finish`] waits for the last batch.
    pub finish_timeout: Duration,
}

impl Default for HistoryExporterConfig {
    fn default() -> Self {
        Self {
            queue: 65_536,
            batch_records: 10_000,
            batch_interval: Duration::from_secs(1),
            log_interval: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the history exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum HistoryExporterError {
    /// The writer thread could not be started.
    #[error("starting the flow history writer")]
    Spawn {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What a [`BatchExporter`] writes into: records merged into a batch on
/// the writer thread, the batch written in one go.
pub trait BatchSink: Send + 'static {
    /// The exporter's name (metrics label `stage`, logs).
    const NAME: &'static str;
    /// The writer thread's name.
    const THREAD: &'static str;
    /// What records are merged into.
    type Batch: Default + Send;
    /// Merges one record into `batch`.
    fn add(batch: &mut Self::Batch, record: &FlowRecord);
    /// Writes a batch (of `records` records).
    fn write(&mut self, batch: Self::Batch, records: u64) -> Result<(), String>;
}

/// A flow pipeline exporter that merges records into batches on a writer
/// thread of its own and writes each batch when it is large enough or
/// old enough ([`HistoryExporterConfig`]); the pipeline never waits.
pub struct BatchExporter<S> {
    queued: Queued,
    _sink: std::marker::PhantomData<fn() -> S>,
}

/// Feeds finished flow records into a [`HistoryStore`].
pub type HistoryExporter = BatchExporter<HistorySink>;

/// [`HistoryExporter`]'s sink: the store, merged into.
pub struct HistorySink(Arc<HistoryStore>);

impl BatchSink for HistorySink {
    const NAME: &'static str = "history";
    const THREAD: &'static str = "flows-history";
    type Batch = History;

    fn add(batch: &mut History, record: &FlowRecord) {
        batch.add_record(record);
    }

    fn write(&mut self, batch: History, _records: u64) -> Result<(), String> {
        let outcome = self.0.merge(&batch).map_err(|e| e.to_string())?;
        if outcome.evicted > 0 {
            tracing::debug!(
                evicted = outcome.evicted,
                "flow history full: least recently seen edges evicted"
            );
        }
        if outcome.bucket_evicted > 0 {
            tracing::debug!(
                evicted = outcome.bucket_evicted,
                "flow history buckets full: the oldest evicted"
            );
        }
        Ok(())
    }
}

impl HistoryExporter {
    /// Starts the writer thread, which writes the store. Pass an
    /// `Arc<HistoryStore>` to keep reading it meanwhile (redb reads run
    /// beside the one writer).
    pub fn start(
        store: impl Into<Arc<HistoryStore>>,
        config: HistoryExporterConfig,
    ) -> Result<Self, HistoryExporterError> {
        Self::spawn(HistorySink(store.into()), config)
    }
}

impl<S: BatchSink> BatchExporter<S> {
    /// Starts the writer thread over `sink`.
    pub fn spawn(sink: S, config: HistoryExporterConfig) -> Result<Self, HistoryExporterError> {
        let counters = Arc::new(ExportCounters::default());
        let writer = Writer {
            sink,
            counters: counters.clone(),
            limiter: LogLimiter::new(config.log_interval),
            batch_records: config.batch_records.max(1),
            batch_interval: config.batch_interval,
        };
        let queued = Queued::spawn(
            S::NAME,
            S::THREAD,
            config.queue,
            counters,
            config.log_interval,
            config.finish_timeout,
            move |rx| writer.run(rx),
        )
        .map_err(|source| HistoryExporterError::Spawn { source })?;
        Ok(Self {
            queued,
            _sink: std::marker::PhantomData,
        })
    }
}

impl<S: BatchSink> Exporter for BatchExporter<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn export_waiting(&mut self, record: &Arc<FlowRecord>) {
        self.queued.export_waiting(record);
    }

    fn export(&mut self, record: &Arc<FlowRecord>) {
        self.queued.export(record);
    }

    fn flush(&mut self) {
        // The writer batches by size and age on its own.
    }

    fn stats(&self) -> ExportStats {
        self.queued.stats()
    }

    fn finish(self: Box<Self>) -> ExportStats {
        self.queued.finish()
    }
}

struct Writer<S> {
    sink: S,
    counters: Arc<ExportCounters>,
    limiter: LogLimiter,
    batch_records: u64,
    batch_interval: Duration,
}

impl<S: BatchSink> Writer<S> {
    fn run(mut self, rx: Receiver<Arc<FlowRecord>>) {
        let mut batch = S::Batch::default();
        let mut taken = 0u64;
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| {
                self.batch_interval.saturating_sub(t.elapsed())
            });
            let closed = match rx.recv_timeout(wait) {
                Ok(r) => {
                    S::add(&mut batch, &r);
                    taken += 1;
                    oldest.get_or_insert_with(Instant::now);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let due = taken >= self.batch_records
                || oldest.is_some_and(|t| t.elapsed() >= self.batch_interval);
            if taken > 0 && (due || closed) {
                self.write(std::mem::take(&mut batch), taken);
                taken = 0;
                oldest = None;
            }
            if closed {
                return;
            }
        }
    }

    fn write(&mut self, batch: S::Batch, records: u64) {
        match self.sink.write(batch, records) {
            Ok(()) => self.counters.exported(records),
            Err(e) => {
                self.counters.lost(LossReason::WriteError, records);
                if let Some(more) = self.limiter.check() {
                    tracing::error!(error = %e, lost_batches_since_last_report = more, "writing the flow {} failed; records lost", S::NAME);
                }
            }
        }
    }
}
