//! Bulkhead benchmarks: a deterministic synthetic cluster generator
//! ([`cluster`]), query sets for the evaluator ([`queries`]), the policy
//! compile benchmark ([`measure`]) and its report ([`report`]), the
//! dataplane benchmarks ([`dataplane`]: program cost by
//! `BPF_PROG_TEST_RUN`, veth packet rate; root only), the flow-record
//! capacity benchmark ([`flows`]: new flows/s exported to JSON Lines with
//! zero loss; root only), the cluster-mode benchmark ([`cluster_mode`]:
//! the agent against a Kubernetes list/watch API server; root only), the
//! alerting benchmark ([`alerts`]: baseline-deviation alerting's cost to
//! the flow pipeline at 100k new flows/s; root only) and the map UI
//! benchmark ([`ui`]: a synthetic 500-workload map served by the agent's
//! API, loaded in headless Chromium).
//!
//! Benchmarks measure and compare side by side in one run; they never assert
//! on absolute times.

pub mod alerts;
pub mod cluster;
pub mod cluster_mode;
pub mod compare;
pub mod dataplane;
pub mod elf;
pub mod flows;
pub mod incremental;
pub mod machine;
pub mod measure;
pub mod queries;
pub mod report;
pub mod run_info;
pub mod synthetic;
pub mod ui;
