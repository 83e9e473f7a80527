//! Bulkhead: learns pod identities and flows, compiles Kubernetes
//! NetworkPolicy into eBPF map images, enforces them on veth pairs, and shows
//! every flow and verdict.
//!
//! Data flows `source` → `model` → `compile` → (dataplane, `eval`).

pub mod cli;
pub mod lab;
