//! The agent's flow pipeline (issue 4), a crate of its own below the
//! dataplane: kernel flow deltas and ring events in, enriched flow records out.
//!
//! - [`source`]: where deltas and events come from (the kernel, or a fake);
//! - [`aggregate`]: the flow cache, merging deltas into flows and deciding
//!   when a record is due;
//! - [`enrich`]: pod identities and policy names;
//! - [`record`]: the record and its versioned JSON schema
//!   (`bulkhead.flow/v1`, `docs/flows.md`);
//! - [`history`]: recent records and `--follow` subscriptions;
//! - [`filter`]: record filters and their URL query form;
//! - [`export`]: JSON Lines and IPFIX;
//! - [`metrics`]: Prometheus metrics;
//! - [`pipeline`]: the collector thread tying them together;
//! - [`accounting`]: the lossless accounting identity.

pub mod accounting;
pub mod aggregate;
pub mod clock;
pub mod enrich;
pub mod export;
pub mod filter;
pub mod history;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod source;

pub use aggregate::AggregateConfig;
pub use enrich::{Enricher, SharedEnricher};
pub use filter::Filter;
pub use history::{History, Subscription, SubscriptionId};
pub use metrics::Metrics;
pub use pipeline::{Accounting, Pipeline, PipelineConfig, PipelineError, PipelineHandle};
pub use record::FlowRecord;
pub use source::FlowSource;
