//! Bulkhead benchmarks.
