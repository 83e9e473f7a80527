//! `bulkhead-cni`: Bulkhead's chained CNI plugin, and the wire types it
//! shares with the agent.
//!
//! The plugin runs last in a node's CNI chain (after the plugin that made
//! the pod's interface, e.g. `ptp` or `bridge`). On ADD it reads the
//! previous result (the pod's interfaces, addresses and MAC), tells the
//! local agent over its API socket, and returns the previous result
//! unchanged only once the agent answers that it enforces the pod's policy
//! on the pod's veth: the runtime starts no container before ADD returns,
//! so no pod ever sends or receives a packet unenforced. After `timeout`
//! ADD fails (fail-closed) unless `failurePolicy` is `ignore`.
//!
//! - [`spec`]: the CNI protocol (environment, configuration, results,
//!   errors, versions).
//! - [`wire`]: the JSON the plugin and the agent's API exchange (the one
//!   definition both sides use).
//! - [`client`]: HTTP over the agent's Unix socket (hyper).
//! - [`plugin`]: the CNI commands.
//! - [`install`]: installing the binary and the chain entry on a node.

#![forbid(unsafe_code)]

pub mod client;
pub mod install;
pub mod plugin;
pub mod spec;
pub mod wire;
