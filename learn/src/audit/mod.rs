//! Audit reports: what the policies in audit mode (`bulkhead.io/mode:
//! audit`) would deny if they were enforced, from the flow records' `audit`
//! field (`bulkhead.flow/v1`, see `docs/flows.md`). `bulkhead audit report`
//! is the command line over it.
//!
//! Records are read ([`read`]), filtered ([`Filter`]), and grouped
//! ([`Report`]) by audit-mode policy, then by [`GroupKey`]: the audit
//! verdict, the subject (the endpoint's workload), the direction, the peer
//! (a workload, or an address for an external peer), the protocol and the
//! destination port. [`render`] writes the result for people or as JSON
//! Lines.
//!
//! **Cluster-admin policies.** A guardrail (ClusterNetworkPolicy,
//! AdminNetworkPolicy, BaselineAdminNetworkPolicy) staged with
//! `bulkhead.io/mode: audit` is reported like a NetworkPolicy, under its
//! `Kind/name` (the agent compiles the audit view with it and names it in
//! the records it audits): its would-deny groups are the live traffic its
//! enforcement would drop.
//!
//! **What counts.** Only `type: "flow"` records: `type: "event"`
//! notifications repeat what flow records count. A group's `flows` are its
//! flow records (a connection longer than the active timeout writes an
//! interim record each time), its `packets` are `packets.orig +
//! packets.reply` (audit never drops). A record read from several sources
//! (a lab's flow log and its agent's history overlap) counts once. Counts
//! are per side: a connection whose two ends one policy audits (egress at
//! the client, ingress at the server) gives a group at each end, since each
//! end would deny it on its own.
//!
//! **JSON Lines** (`--output json`), one object per line, told apart by
//! `type`, each with `schema: "bulkhead.audit/v1"` and `policy`
//! (`namespace/name`; `Kind/name` for a staged cluster-admin policy):
//!
//! - `"type": "summary"`, first for each policy: `audited_flows`,
//!   `would_deny_flows`, `would_deny_groups`, `allowed_groups`, `first`,
//!   `last` (of the audited flows), `last_would_deny` (RFC 3339 UTC, `null`
//!   when there is none), and `readiness`: `ready` (no would-deny),
//!   `would_break` (some would-deny) or `no_data` (nothing audited, e.g. a
//!   `--policy` no record names).
//! - `"type": "group"`, then, would-deny groups first (most flows first),
//!   then allowed ones: `verdict` (`would_deny` or `allowed`), `direction`
//!   (`egress`: the subject opened the connection; `ingress`: the peer
//!   did), `subject` and `peer` (`{"namespace", "workload"}` for a pod,
//!   `workload` being `Kind/name` or `Pod/<name>`; `{"ip"}` otherwise),
//!   `protocol`, `port` (destination port; `null` for protocols without
//!   ports), `flows`, `packets`, `first`, `last`.
//!
//! Policies come in name order; every order is deterministic.

pub mod filter;
pub mod read;
pub mod render;
pub mod report;

#[cfg(test)]
mod tests;

pub use filter::{Filter, FilterError, Since};
pub use read::{ReadError, read_file, read_lines};
pub use report::{
    Group, GroupKey, Party, PolicyReport, Readiness, RecordCounts, Report, Stats, Summary,
};

/// The `schema` of every line of the JSON output.
pub const SCHEMA: &str = "bulkhead.audit/v1";
