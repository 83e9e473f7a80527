//! The cluster-mode benchmark (issue 13; needs root): the real agent
//! binary reading a synthetic cluster from a Kubernetes list/watch API
//! server and enforcing it on a node of real network namespaces.
//!
//! - [`objects`]: the synthetic cluster ([`crate::cluster`]) as API objects;
//! - [`synth`]: one scale's objects, the node's local pods and policies, and
//!   the changes the benchmark makes;
//! - [`node`]: the node (namespaces, veths, private bpffs, echo servers, API
//!   server, agent), removed on drop;
//! - [`agent`]: the agent process; [`procfs`]: its memory and CPU;
//! - [`state_watch`]: waiting on the agent's state file by inotify;
//! - [`measure`]: initial sync, wire check, memory, idle CPU, latency;
//! - [`churn`]: pod churn with an allowed flow running ([`flow`]);
//! - [`logstats`]: compile and switch times from the agent's log;
//! - [`report`] and [`method`]: the report.
//!
//! Like every benchmark here it asserts nothing about absolute times: it
//! records them, with the command and the machine.

pub mod agent;
pub mod churn;
pub mod flow;
pub mod logstats;
pub mod measure;
pub mod method;
pub mod node;
pub mod objects;
pub mod procfs;
pub mod report;
pub mod state_watch;
pub mod synth;
