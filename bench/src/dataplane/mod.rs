//! The dataplane benchmarks (need root and the eBPF ELF):
//!
//! - [`prog_cost`]: per-packet cost of `from_pod`, `to_pod` and
//!   `xdp_prefilter` by `BPF_PROG_TEST_RUN` (established flow, new flow
//!   allowed, new flow denied) at 10, 1k, 10k and 100k rule segments
//!   ([`rules`] makes the policies);
//! - [`veth`]: packet rate through client → node → server veths with the
//!   programs attached (TC, TC + XDP) relative to the same veths bare, in
//!   private namespaces ([`netns`]) with a bounded UDP flood ([`flood`]).
//!
//! [`admin`] measures the program cost with 1,000 cluster-admin rules
//! against none, same cluster and traffic, in the same run.
//!
//! [`baseline`] compares the program cost with a baseline ELF's measured in
//! the same run (`--baseline-elf`). [`report`] renders both side by side. Like every benchmark here they
//! compare within one run and assert nothing about absolute times.

pub mod admin;
pub mod baseline;
pub mod flood;
pub mod netns;
pub mod prog_cost;
pub mod report;
pub mod rules;
pub mod stats;
pub mod veth;
