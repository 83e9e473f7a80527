//! Bulkhead's policy core, free of the kernel: what it knows about a
//! cluster (`model`), where that comes from (`source`: a manifest
//! directory or the Kubernetes API), the compiler that turns it into
//! identities, rule tables and map images (`compile`), and the reference
//! evaluator that answers from those tables as the kernel does (`eval`).
//!
//! Data flows `source` → `model` → `compile` → `eval` (and the dataplane,
//! in `bulkhead-dataplane`). `private` makes the owner-only files every
//! crate above writes.

pub mod compile;
pub mod eval;
pub mod model;
pub mod private;
pub mod source;
#[cfg(test)]
mod testfs;
