//! Denied attempts kept apart: the part of an edge's counts from records
//! the dataplane dropped by policy (verdict `denied` or `quarantined`),
//! with their deciding policies.
//!
//! `allowed` and `revoked` records passed (a revoked connection was allowed
//! until a policy change stopped it), and so did records an audit-mode
//! policy *would* deny: they count as allowed. Learning calls *observed*
//! the allowed part ([`History::observed`]): a connection attempt the
//! policies in force refused is reported apart, never proposed unless asked
//! for.
//!
//! Merging stays order-independent: counts add up, times widen, and the
//! deciding policies are a sorted set bounded at [`MAX_DENIED_POLICIES`]
//! (the smallest names kept, `policies_truncated` set when more were seen),
//! which is the same whatever the order of the merges.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{EdgeStats, History, SideCounts};
use bulkhead_flows::record::{FlowRecord, FlowVerdict, Timestamp};

/// Deciding policies kept per edge.
pub const MAX_DENIED_POLICIES: usize = 8;

/// Whether a record's verdict makes it a denied attempt: `denied` or
/// `quarantined` (the flow did not pass). `allowed` and `revoked` passed.
pub fn is_denied(v: FlowVerdict) -> bool {
    matches!(v, FlowVerdict::Denied | FlowVerdict::Quarantined)
}

/// The denied part of an edge's stats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedStats {
    /// Start of the earliest denied record.
    pub first_seen: Timestamp,
    /// End of the latest denied record.
    pub last_seen: Timestamp,
    /// Denied records at the source (egress).
    #[serde(default)]
    pub at_src: SideCounts,
    /// Denied records at the destination (ingress).
    #[serde(default)]
    pub at_dst: SideCounts,
    /// The deciding policies' names (`namespace/name`, `Kind/name` for a
    /// cluster-admin policy), sorted, at most [`MAX_DENIED_POLICIES`].
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub policies: BTreeSet<String>,
    /// More deciding policies were seen than are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policies_truncated: bool,
    /// Start of the earliest allowed record of the edge (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_first: Option<Timestamp>,
    /// End of the latest allowed record of the edge (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_last: Option<Timestamp>,
}

impl DeniedStats {
    /// The denied part of one denied record's counts.
    pub(super) fn of(r: &FlowRecord, at_src: SideCounts, at_dst: SideCounts) -> Box<Self> {
        let mut d = DeniedStats {
            first_seen: r.start,
            last_seen: r.end,
            at_src,
            at_dst,
            policies: r.policies.iter().map(|p| p.name.to_string()).collect(),
            policies_truncated: false,
            allowed_first: None,
            allowed_last: None,
        };
        d.bound();
        Box::new(d)
    }

    /// Merges the denied part of another observation (the allowed span is
    /// the caller's: [`EdgeStats::merge`]).
    pub(super) fn merge(&mut self, o: &DeniedStats) {
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.at_src.add(&o.at_src);
        self.at_dst.add(&o.at_dst);
        self.policies.extend(o.policies.iter().cloned());
        self.policies_truncated |= o.policies_truncated;
        self.bound();
    }

    pub(super) fn set_allowed_span(&mut self, span: Option<(Timestamp, Timestamp)>) {
        (self.allowed_first, self.allowed_last) = (span.map(|s| s.0), span.map(|s| s.1));
    }

    /// Keeps the smallest [`MAX_DENIED_POLICIES`] names.
    fn bound(&mut self) {
        while self.policies.len() > MAX_DENIED_POLICIES {
            self.policies.pop_last();
            self.policies_truncated = true;
        }
    }

    /// Denied connections, each counted once (the larger side).
    pub fn flows(&self) -> u64 {
        self.at_src.flows.max(self.at_dst.flows)
    }
}

/// The union of two time spans.
pub(super) fn union(
    a: Option<(Timestamp, Timestamp)>,
    b: Option<(Timestamp, Timestamp)>,
) -> Option<(Timestamp, Timestamp)> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
        (a, b) => a.or(b),
    }
}

impl EdgeStats {
    /// First and last time of the allowed records (`None`: every record
    /// was denied).
    pub fn allowed_span(&self) -> Option<(Timestamp, Timestamp)> {
        match &self.denied {
            None => Some((self.first_seen, self.last_seen)),
            Some(d) => d.allowed_first.zip(d.allowed_last),
        }
    }

    /// Allowed connections, each counted once (the larger side).
    pub fn allowed_flows(&self) -> u64 {
        self.allowed().map_or(0, |a| a.flows())
    }

    /// Denied connections, each counted once (the larger side).
    pub fn denied_flows(&self) -> u64 {
        self.denied.as_ref().map_or(0, |d| d.flows())
    }

    /// The allowed part: counts less the denied ones, the allowed records'
    /// span; `None` when every record was denied.
    pub fn allowed(&self) -> Option<EdgeStats> {
        let Some(d) = &self.denied else {
            return Some(self.clone());
        };
        let (first_seen, last_seen) = self.allowed_span()?;
        Some(EdgeStats {
            first_seen,
            last_seen,
            at_src: self.at_src.minus(&d.at_src),
            at_dst: self.at_dst.minus(&d.at_dst),
            denied: None,
        })
    }
}

impl History {
    /// What learning calls observed: every edge's allowed part (edges
    /// with only denied records left out), or, with `include_denied`,
    /// every record counted as observed. Borrowed when no record was
    /// denied (nothing to leave out).
    pub fn observed(&self, include_denied: bool) -> Cow<'_, History> {
        if self.edges.values().all(|s| s.denied.is_none()) {
            return Cow::Borrowed(self);
        }
        let edges = self
            .edges
            .iter()
            .filter_map(|(k, s)| {
                let s = if include_denied {
                    EdgeStats {
                        denied: None,
                        ..s.clone()
                    }
                } else {
                    s.allowed()?
                };
                Some((k.clone(), s))
            })
            .collect();
        Cow::Owned(History {
            edges,
            workloads: self.workloads.clone(),
            records: self.records,
            skipped: self.skipped,
        })
    }
}
