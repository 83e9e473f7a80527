//! Learning (issue 5, userspace half): observed connections become edges
//! ([`edge`]), kept durably ([`store`], fed by [`HistoryExporter`] from the
//! agent's flow pipeline); `bulkhead propose` turns edges and the
//! manifests into NetworkPolicies ([`propose`], rendered by [`render`])
//! and proves them with the real compiler and reference evaluator
//! ([`coverage`]). See `docs/learn.md`.

pub mod coverage;
pub mod diff;
pub mod edge;
pub mod exporter;
pub mod labels;
pub mod propose;
pub mod read;
pub mod render;
pub mod store;
pub mod yaml;

#[cfg(test)]
pub(crate) mod tests;

pub use coverage::{Proof, prove};
pub use edge::{Edge, EdgeKey, EdgeStats, End, History, WorkloadId};
pub use exporter::{HistoryExporter, HistoryExporterConfig, HistoryExporterError};
pub use propose::{Proposal, propose};
pub use read::{ReadError, read_jsonl};
pub use store::{HistoryStore, StoreConfig, StoreError};
