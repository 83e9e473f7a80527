//! [`TimelineExporter`]: the flow pipeline's exporter into the timeline,
//! a [`BatchExporter`] as the history's is: records cross a bounded queue
//! to a writer thread that writes them in batches (by size or age), one
//! transaction each; a full queue or a failed write counts the records as
//! lost, and the pipeline never waits.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Event, Timeline};
use bulkhead_flows::record::FlowRecord;

use crate::exporter::{BatchExporter, BatchSink, HistoryExporterConfig, HistoryExporterError};

/// Feeds finished flow records into a [`Timeline`] (configured as the
/// history's exporter is).
pub type TimelineExporter = BatchExporter<TimelineSink>;

/// [`TimelineExporter`]'s sink: the timeline, appended to.
pub struct TimelineSink(Arc<Timeline>);

impl BatchSink for TimelineSink {
    const NAME: &'static str = "timeline";
    const THREAD: &'static str = "flows-timeline";
    type Batch = Vec<Event>;

    fn add(batch: &mut Vec<Event>, record: &FlowRecord) {
        batch.push(Event::of_flow(record));
    }

    fn write(&mut self, batch: Vec<Event>, _records: u64) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.0
            .append(&batch, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl TimelineExporter {
    /// Starts the writer thread. Keep an `Arc<Timeline>` to query it
    /// meanwhile.
    pub fn start(
        timeline: Arc<Timeline>,
        config: HistoryExporterConfig,
    ) -> Result<Self, HistoryExporterError> {
        Self::spawn(TimelineSink(timeline), config)
    }
}
