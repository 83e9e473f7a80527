//! [`TimelineExporter`]: the flow pipeline's exporter into the timeline.
//! As the history's: records cross a bounded queue to a writer thread
//! that writes them in batches (by size or age), one transaction each; a
//! full queue or a failed write counts the records as lost, and the
//! pipeline never waits.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Event, Timeline};
use bulkhead_flows::export::queued::Queued;
use bulkhead_flows::export::{ExportCounters, ExportStats, Exporter, LogLimiter, LossReason};
use bulkhead_flows::record::FlowRecord;

use crate::exporter::{HistoryExporterConfig, HistoryExporterError};

/// Feeds finished flow records into a [`Timeline`] (configured as the
/// history's exporter is).
pub struct TimelineExporter {
    queued: Queued,
}

impl TimelineExporter {
    /// Starts the writer thread. Keep an `Arc<Timeline>` to query it
    /// meanwhile.
    pub fn start(
        timeline: Arc<Timeline>,
        config: HistoryExporterConfig,
    ) -> Result<Self, HistoryExporterError> {
        let counters = Arc::new(ExportCounters::default());
        let writer = Writer {
            timeline,
            counters: counters.clone(),
            limiter: LogLimiter::new(config.log_interval),
            batch_records: config.batch_records.max(1) as usize,
            batch_interval: config.batch_interval,
        };
        let queued = Queued::spawn(
            "timeline",
            "flows-timeline",
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

impl Exporter for TimelineExporter {
    fn name(&self) -> &'static str {
        "timeline"
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
    timeline: Arc<Timeline>,
    counters: Arc<ExportCounters>,
    limiter: LogLimiter,
    batch_records: usize,
    batch_interval: Duration,
}

impl Writer {
    fn run(mut self, rx: Receiver<Arc<FlowRecord>>) {
        let mut batch: Vec<Event> = Vec::new();
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| {
                self.batch_interval.saturating_sub(t.elapsed())
            });
            let closed = match rx.recv_timeout(wait) {
                Ok(r) => {
                    batch.push(Event::of_flow(&r));
                    oldest.get_or_insert_with(Instant::now);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let due = batch.len() >= self.batch_records
                || oldest.is_some_and(|t| t.elapsed() >= self.batch_interval);
            if !batch.is_empty() && (due || closed) {
                self.write(std::mem::take(&mut batch));
                oldest = None;
            }
            if closed {
                return;
            }
        }
    }

    fn write(&mut self, batch: Vec<Event>) {
        let n = batch.len() as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match self.timeline.append(&batch, now) {
            Ok(_) => self.counters.exported(n),
            Err(e) => {
                self.counters.lost(LossReason::WriteError, n);
                if let Some(more) = self.limiter.check() {
                    tracing::error!(error = %e, lost_batches_since_last_report = more, "writing the timeline failed; records lost");
                }
            }
        }
    }
}
