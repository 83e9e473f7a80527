//! [`HistoryExporter`]: the flow pipeline's exporter into the durable
//! history. Records cross a bounded queue to a writer thread that merges
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

/// Feeds finished flow records into a [`HistoryStore`].
pub struct HistoryExporter {
    queued: Queued,
}

impl HistoryExporter {
    /// Starts the writer thread, which writes the store. Pass an
    /// `Arc<HistoryStore>` to keep reading it meanwhile (redb reads run
    /// beside the one writer).
    pub fn start(
        store: impl Into<Arc<HistoryStore>>,
        config: HistoryExporterConfig,
    ) -> Result<Self, HistoryExporterError> {
        let counters = Arc::new(ExportCounters::default());
        let writer = Writer {
            store: store.into(),
            counters: counters.clone(),
            limiter: LogLimiter::new(config.log_interval),
            batch_records: config.batch_records.max(1),
            batch_interval: config.batch_interval,
        };
        let queued = Queued::spawn(
            "history",
            "flows-history",
            config.queue,
            counters,
            config.log_interval,
            config.finish_timeout,
            move |rx| writer.run(rx),
        )
        .map_err(|source| HistoryExporterError::Spawn { source })?;
        Ok(Self { queued })
    }
}

impl Exporter for HistoryExporter {
    fn name(&self) -> &'static str {
        "history"
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

struct Writer {
    store: Arc<HistoryStore>,
    counters: Arc<ExportCounters>,
    limiter: LogLimiter,
    batch_records: u64,
    batch_interval: Duration,
}

impl Writer {
    fn run(mut self, rx: Receiver<Arc<FlowRecord>>) {
        let mut batch = History::default();
        let mut taken = 0u64;
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| {
                self.batch_interval.saturating_sub(t.elapsed())
            });
            let closed = match rx.recv_timeout(wait) {
                Ok(r) => {
                    batch.add_record(&r);
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

    fn write(&mut self, batch: History, records: u64) {
        match self.store.merge(&batch) {
            Ok(outcome) => {
                self.counters.exported(records);
                if outcome.evicted > 0 {
                    tracing::debug!(
                        evicted = outcome.evicted,
                        "flow history full: least recently seen edges evicted"
                    );
                }
            }
            Err(e) => {
                self.counters.lost(LossReason::WriteError, records);
                if let Some(more) = self.limiter.check() {
                    tracing::error!(error = %e, lost_batches_since_last_report = more, "writing the flow history failed; records lost");
                }
            }
        }
    }
}
