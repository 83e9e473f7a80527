//! Learning (issue 5, userspace half): observed connections become edges
//! ([`edge`]), kept durably ([`store`], fed by [`HistoryExporter`] from the
//! agent's flow pipeline); `bulkhead propose` turns edges and the
//! manifests into NetworkPolicies ([`propose`], rendered by [`render`])
//! and proves them with the real compiler and reference evaluator
//! ([`coverage`]). See `docs/learn.md`.
//!
//! Beside the learner, the two tools that read what it reads: [`audit`]
//! (what audit-mode policies would have dropped, from flow logs) and
//! [`promote`] (a policy's mode changed in its manifest, verified).

pub mod audit;
pub mod baseline;
pub mod coverage;
pub mod diff;
pub mod edge;
pub mod exporter;
pub mod labels;
pub mod map;
pub mod promote;
pub mod propose;
pub mod read;
pub mod render;
pub mod store;
pub mod tiers;
pub mod timeline;
pub mod window;
pub mod yaml;

pub use coverage::{Proof, prove};
pub use edge::{Edge, EdgeKey, EdgeStats, End, History, WorkloadId, key_of};
pub use exporter::{HistoryExporter, HistoryExporterConfig, HistoryExporterError};
pub use propose::{
    DnsServerSpec, InfraOptions, Options, Proposal, Thresholds, propose, propose_with,
};
pub use read::{ReadError, read_jsonl, read_jsonl_window};
pub use store::{HistoryStore, StoreConfig, StoreError};
pub use tiers::TierFinding;
pub use window::{Window, WindowFacts};
