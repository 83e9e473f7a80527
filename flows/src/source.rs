//! Where flow data comes from: the kernel's flow tables, EVENTS ring and
//! Service translations (`bulkhead_dataplane::flowtap::FlowTap`), or a
//! fake in tests.

use std::time::Duration;

use bulkhead_common::{CtKey, FLOW_STATS_MAX, FlowEvent, FlowKey, FlowValue, ServiceBackend};

/// Errors of a flow source.
#[derive(Debug, thiserror::Error)]
pub enum FlowSourceError {
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Kernel flow counters summed over CPUs, indexed by `FlowStat as usize`.
pub type KernelFlowStats = [u64; FLOW_STATS_MAX as usize];

/// A source of flow deltas and events. One thread owns it (the collector).
pub trait FlowSource: Send {
    /// Switches the programs to the other flow table, waits until no program
    /// still writes the old one, and returns (removing them) every entry of
    /// the old one: each flow's delta since the previous drain.
    fn drain(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError>;
    /// Drains both tables (at shutdown, or to reach quiescence for the
    /// accounting identity): after it, nothing accounted so far is left in
    /// the kernel.
    fn drain_all(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError>;
    /// Appends the ring buffer's events to `out`, waiting at most `timeout`
    /// for the first one when none is ready.
    fn events(
        &mut self,
        timeout: Duration,
        out: &mut Vec<FlowEvent>,
    ) -> Result<(), FlowSourceError>;
    /// The kernel's flow counters.
    fn stats(&mut self) -> Result<KernelFlowStats, FlowSourceError>;
    /// The backend the node translated the Service connection with
    /// original tuple `orig` (client to frontend) to, as the dataplane
    /// recorded it (SERVICE_CT); `None` if it recorded none.
    fn service_backend(&mut self, orig: &CtKey) -> Result<Option<ServiceBackend>, FlowSourceError>;
}
