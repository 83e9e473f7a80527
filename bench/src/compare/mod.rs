//! Side-by-side benchmark against iptables, ipset and nftables (issue 6):
//! the same client → node → server topology for every contender, the same
//! allow-list at N entries, interleaved rounds. See `model` for what is
//! measured.

pub mod allowlist;
pub mod contender;
pub mod measure;
pub mod model;
pub mod plot;
pub mod progcost;
pub mod report;
pub mod run;
pub mod summary;
pub mod targets;
