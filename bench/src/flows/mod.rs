//! The flow-record capacity benchmark (issue 4; needs root and the eBPF
//! ELF): the highest sustained rate of new flows per second that the
//! agent's flow pipeline exports to JSON Lines with zero loss, the
//! accounting identity exact at every rate.
//!
//! - [`policy`]: the compiled policy (the pod under test isolated, egress
//!   allowed to a UDP port range) and the never-repeating flow tuples;
//! - [`driver`]: `from_pod` by `BPF_PROG_TEST_RUN`, one datagram per new
//!   flow, paced to a rate;
//! - [`run`]: one run (fresh ELF instance, the real pipeline and JSON Lines
//!   exporter, drive, stop, check);
//! - [`verify`]: the flow log against the driven flows;
//! - [`cache`]: the flow cache's merge cost below and at its capacity (no
//!   kernel; where a run's collector time goes once the cache is full);
//! - [`cpu`]: CPU time per thread and CPU pinning;
//! - [`report`]: the report.
//!
//! Like every benchmark here it compares within one run and asserts
//! nothing about absolute times: the rate steps are measured side by side,
//! and a run's verdict is loss or no loss, counted exactly.

pub mod cache;
pub mod cpu;
pub mod driver;
pub mod policy;
pub mod report;
pub mod run;
pub mod verify;
