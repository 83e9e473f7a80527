//! The lossless accounting identity of the flow pipeline, stage by stage
//! (see `docs/flows.md`): what the kernel counted, what the agent
//! received, what the flow cache finished, what each exporter delivered or
//! lost.

use serde::{Deserialize, Serialize};

use super::export::ExportStats;

/// The kernel's side of the identity (FLOW_STATS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelAccounting {
    /// Flow table entries created.
    pub entries_created: u64,
    /// Records sent through the ring (table full).
    pub fallback_sent: u64,
    /// Records lost (neither table nor ring took them).
    pub fallback_lost: u64,
    /// Packets counted into flows.
    pub packets_accounted: u64,
    /// Packets in lost records.
    pub lost_packets: u64,
    /// Bytes counted into flows.
    pub bytes_accounted: u64,
    /// Bytes in lost records.
    pub lost_bytes: u64,
    /// Notifications sent.
    pub events_sent: u64,
    /// Notifications lost (their packets are still in the table).
    pub events_lost: u64,
}

/// What the agent received from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedAccounting {
    /// Drained table entries.
    pub entries_drained: u64,
    /// `FlowRecord` fallback events read.
    pub fallback_events: u64,
    /// Packets (passed and dropped) in both.
    pub packets: u64,
    /// Bytes in both.
    pub bytes: u64,
    /// Notifications (`NewFlow`, `Drop`) read.
    pub notifications: u64,
    /// Failed source operations (a failed drain leaves its entries in the
    /// kernel for the next one).
    pub source_errors: u64,
}

/// The flow cache's side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheAccounting {
    /// Flows cached now.
    pub flows: u64,
    /// Packets merged.
    pub packets_in: u64,
    /// Records finished (interim ones included).
    pub records: u64,
    /// Packets in finished records.
    pub packets_out: u64,
    /// Flows exported early because the cache was full.
    pub evicted: u64,
}

/// The lossless accounting identity, stage by stage:
///
/// 1. kernel records: `entries_created + fallback_sent + fallback_lost`
///    = `entries_drained + fallback_events + fallback_lost`;
/// 2. packets: `packets_accounted = received packets + lost_packets`
///    (bytes likewise);
/// 3. cache: packets received = packets in finished records + packets of
///    cached flows (none after stop);
/// 4. per exporter: records finished = submitted = exported + lost +
///    pending (pending is 0 after stop).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    /// The kernel's counters.
    pub kernel: KernelAccounting,
    /// What was received.
    pub received: ReceivedAccounting,
    /// The flow cache.
    pub cache: CacheAccounting,
    /// Each exporter's counters.
    pub exporters: Vec<ExportStats>,
    /// Records live subscribers lost (slow readers; not part of the
    /// identity: subscribers are best effort).
    pub subscriber_lost: u64,
    /// Whether the pipeline has stopped (the identity is then exact).
    pub stopped: bool,
}

impl Accounting {
    /// Records the kernel emitted: table entries, fallback events and lost
    /// records.
    pub fn kernel_records(&self) -> u64 {
        self.kernel.entries_created + self.kernel.fallback_sent + self.kernel.fallback_lost
    }

    /// Records received or counted lost.
    pub fn accounted_records(&self) -> u64 {
        self.received.entries_drained + self.received.fallback_events + self.kernel.fallback_lost
    }

    /// Identity 1 (records) and 2 (packets and bytes).
    pub fn kernel_holds(&self) -> bool {
        self.kernel_records() == self.accounted_records()
            && self.kernel.packets_accounted == self.received.packets + self.kernel.lost_packets
            && self.kernel.bytes_accounted == self.received.bytes + self.kernel.lost_bytes
    }

    /// Identity 3 with an empty cache, and 4.
    pub fn exporters_hold(&self) -> bool {
        self.exporters
            .iter()
            .all(|e| e.submitted == self.cache.records && e.holds())
    }

    /// Every identity, exactly (meaningful once stopped: before, entries
    /// still in the kernel or the cache are not yet received or finished).
    pub fn holds(&self) -> bool {
        self.kernel_holds()
            && self.cache.flows == 0
            && self.cache.packets_in == self.received.packets
            && self.cache.packets_out == self.cache.packets_in
            && self.exporters_hold()
    }
}
