//! Bulkhead: learns pod identities and flows, compiles Kubernetes
//! NetworkPolicy into eBPF map images, enforces them on veth pairs, and shows
//! every flow and verdict.
//!
//! This crate is the top layer: the command line ([`cli`]). The layers
//! below are crates of their own: `bulkhead-policy` (model, sources,
//! compiler, evaluator), `bulkhead-flows`, `bulkhead-dataplane`,
//! `bulkhead-learn`, `bulkhead-agent` and `bulkhead-lab`; see
//! `docs/architecture.md`.

pub mod cli;
