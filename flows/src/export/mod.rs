//! Exporters of finished flow records: JSON Lines (`jsonl`) and IPFIX
//! (`ipfix`). An exporter never blocks the pipeline: what it cannot take or
//! deliver is counted as lost, by reason, and logged at most once per
//! interval. Per exporter, records submitted = exported + lost + pending.

pub mod ipfix;
pub mod jsonl;
pub mod queued;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::record::FlowRecord;

pub use ipfix::{IpfixConfig, IpfixError, IpfixExporter};
pub use jsonl::{JsonlConfig, JsonlError, JsonlExporter, JsonlTarget};

/// A sink of finished flow records.
pub trait Exporter: Send {
    /// A short stable name (metrics label `stage`).
    fn name(&self) -> &'static str;
    /// Hands over a record. Never blocks; a record it cannot take is
    /// counted as lost.
    fn export(&mut self, record: &Arc<FlowRecord>);
    /// Hands over a record while the agent stops, waiting for room in the
    /// queue rather than losing it (nothing waits on the pipeline then; a
    /// stop flushes the whole flow cache at once). Default: [`Exporter::export`].
    fn export_waiting(&mut self, record: &Arc<FlowRecord>) {
        self.export(record);
    }
    /// End of a batch: send what is buffered (never blocks).
    fn flush(&mut self);
    /// The counters now.
    fn stats(&self) -> ExportStats;
    /// Delivers what is queued (waiting for it, bounded), stops, and
    /// returns the final counters (`pending` is then 0).
    fn finish(self: Box<Self>) -> ExportStats;
}

/// Why an exporter lost a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossReason {
    /// Its queue was full (a slow disk or reader).
    QueueFull,
    /// Writing failed (disk full, closed pipe).
    WriteError,
    /// Sending failed (socket buffer full, no route).
    SendError,
    /// Encoding failed.
    EncodeError,
}

impl LossReason {
    /// Every reason.
    pub const ALL: [LossReason; 4] = [
        LossReason::QueueFull,
        LossReason::WriteError,
        LossReason::SendError,
        LossReason::EncodeError,
    ];

    /// Stable snake_case name (metrics label `reason`).
    pub fn name(self) -> &'static str {
        match self {
            LossReason::QueueFull => "queue_full",
            LossReason::WriteError => "write_error",
            LossReason::SendError => "send_error",
            LossReason::EncodeError => "encode_error",
        }
    }
}

/// Counters shared between an exporter and its thread.
#[derive(Debug, Default)]
pub struct ExportCounters {
    submitted: AtomicU64,
    exported: AtomicU64,
    lost: [AtomicU64; LossReason::ALL.len()],
}

impl ExportCounters {
    /// A record was handed over.
    pub fn submitted(&self, n: u64) {
        self.submitted.fetch_add(n, Ordering::Relaxed);
    }

    /// Records were delivered.
    pub fn exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
    }

    /// Records were lost.
    pub fn lost(&self, reason: LossReason, n: u64) {
        self.lost[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn stats(&self, exporter: &'static str) -> ExportStats {
        // Read in this order: a record moves from pending to exported or
        // lost, so pending never goes negative.
        let exported = self.exported.load(Ordering::Acquire);
        let lost: BTreeMap<String, u64> = LossReason::ALL
            .iter()
            .map(|r| {
                (
                    r.name().to_string(),
                    self.lost[*r as usize].load(Ordering::Acquire),
                )
            })
            .collect();
        let submitted = self.submitted.load(Ordering::Acquire);
        let done = exported + lost.values().sum::<u64>();
        ExportStats {
            exporter: exporter.to_string(),
            submitted,
            exported,
            lost,
            pending: submitted.saturating_sub(done),
        }
    }
}

/// An exporter's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStats {
    /// The exporter.
    pub exporter: String,
    /// Records handed over.
    pub submitted: u64,
    /// Records delivered (written, sent).
    pub exported: u64,
    /// Records lost, by reason.
    pub lost: BTreeMap<String, u64>,
    /// Records queued, not yet delivered or lost.
    pub pending: u64,
}

impl ExportStats {
    /// All records lost.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Whether submitted = exported + lost + pending.
    pub fn holds(&self) -> bool {
        self.submitted == self.exported + self.lost_total() + self.pending
    }
}

/// Logs a recurring failure at most once per interval, with the number of
/// occurrences not logged since.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter logging at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(occurrences not logged before this one)` when this occurrence
    /// should be logged, `None` when it is suppressed.
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_limiter() {
        let c = ExportCounters::default();
        c.submitted(10);
        c.exported(6);
        c.lost(LossReason::QueueFull, 3);
        let s = c.stats("x");
        assert_eq!(s.pending, 1);
        assert_eq!(s.lost["queue_full"], 3);
        assert!(s.holds());
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        let mut l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
    }
}
