//! Bulkhead benchmarks: a deterministic synthetic cluster generator
//! ([`cluster`]), query sets for the evaluator ([`queries`]), the policy
//! compile benchmark ([`measure`]) and its report ([`report`]).
//!
//! Benchmarks measure and compare side by side in one run; they never assert
//! on absolute times.

pub mod cluster;
pub mod machine;
pub mod measure;
pub mod queries;
pub mod report;
