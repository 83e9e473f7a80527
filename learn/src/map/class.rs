//! Verdict classes of flow records, and an edge's counts per class
//! ([`Cell`]): what the map colours an edge by.
//!
//! A record's class is, from worst to best: `quarantined` (verdict
//! quarantined), `denied`, `revoked`, `would_deny` (verdict allowed, but
//! the audit view would deny it), `allowed`. Each class keeps its counts
//! per side of the connection (as [`EdgeStats`](crate::edge::EdgeStats)
//! does: a connection seen at both ends counts once, the larger side),
//! its time span, and its deciding policies: a sorted set of at most
//! [`MAX_POLICIES`] names (the smallest kept, `policies_truncated` set
//! beyond), the record's policies, or for `would_deny` the audit view's.
//! Merging adds counts, widens spans and unions the sets, so it is the same
//! in any order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::edge::SideCounts;
use bulkhead_flows::record::{AuditVerdict, FlowRecord, FlowVerdict, PolicyRef};

/// Deciding policies kept per class of an edge.
pub const MAX_POLICIES: usize = crate::edge::MAX_DENIED_POLICIES;

/// What became of a flow, worst last (`Ord`: the worst is the greatest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    /// Passed, and the audit view allows it too.
    Allowed,
    /// Passed, but an audit-mode policy would deny it.
    WouldDeny,
    /// Was allowed, then a policy change stopped it.
    Revoked,
    /// Dropped by policy.
    Denied,
    /// Dropped by a quarantine of an endpoint.
    Quarantined,
}

impl VerdictClass {
    /// Every class, best first.
    pub const ALL: [VerdictClass; 5] = [
        VerdictClass::Allowed,
        VerdictClass::WouldDeny,
        VerdictClass::Revoked,
        VerdictClass::Denied,
        VerdictClass::Quarantined,
    ];

    /// The class of a record.
    pub fn of(r: &FlowRecord) -> Self {
        match r.verdict {
            FlowVerdict::Quarantined => VerdictClass::Quarantined,
            FlowVerdict::Denied => VerdictClass::Denied,
            FlowVerdict::Revoked => VerdictClass::Revoked,
            FlowVerdict::Allowed => match &r.audit {
                Some(a) if a.verdict == AuditVerdict::WouldDeny => VerdictClass::WouldDeny,
                _ => VerdictClass::Allowed,
            },
        }
    }

    /// The policies that decided a record of this class: the audit view's
    /// for `would_deny`, else the record's.
    pub fn deciding(self, r: &FlowRecord) -> &[PolicyRef] {
        match (self, &r.audit) {
            (VerdictClass::WouldDeny, Some(a)) => &a.policies,
            _ => &r.policies,
        }
    }

    /// As in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictClass::Allowed => "allowed",
            VerdictClass::WouldDeny => "would_deny",
            VerdictClass::Revoked => "revoked",
            VerdictClass::Denied => "denied",
            VerdictClass::Quarantined => "quarantined",
        }
    }

    /// Parses the JSON spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An edge's records of one class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// Start of the earliest record (ms since the epoch).
    pub first_seen: u64,
    /// End of the latest record.
    pub last_seen: u64,
    /// Counted from records at the source (egress).
    pub at_src: SideCounts,
    /// Counted from records at the destination (ingress).
    pub at_dst: SideCounts,
    /// Deciding policies, sorted, at most [`MAX_POLICIES`].
    pub policies: BTreeSet<String>,
    /// More deciding policies were seen than are kept.
    pub policies_truncated: bool,
}

impl ClassStats {
    /// Merges another observation of the class.
    pub fn merge(&mut self, o: &ClassStats) {
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.at_src.add(&o.at_src);
        self.at_dst.add(&o.at_dst);
        self.policies.extend(o.policies.iter().cloned());
        self.policies_truncated |= o.policies_truncated;
        self.bound();
    }

    fn bound(&mut self) {
        while self.policies.len() > MAX_POLICIES {
            self.policies.pop_last();
            self.policies_truncated = true;
        }
    }

    /// Connections, each counted once (the larger side).
    pub fn flows(&self) -> u64 {
        self.at_src.flows.max(self.at_dst.flows)
    }

    /// Packets, the larger side.
    pub fn packets(&self) -> u64 {
        self.at_src.packets.max(self.at_dst.packets)
    }

    /// Bytes, the larger side.
    pub fn bytes(&self) -> u64 {
        self.at_src.bytes.max(self.at_dst.bytes)
    }

    /// Records counted, at either side.
    pub fn records(&self) -> u64 {
        self.at_src.flows + self.at_dst.flows
    }
}

/// One edge's records (in one time bucket, or merged over a window), by
/// class: sorted by class, at most one entry per class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// The classes seen, best first.
    pub classes: Vec<(VerdictClass, ClassStats)>,
}

impl Cell {
    /// The cell of one flow record whose edge counts `at_src`/`at_dst`
    /// (from [`crate::edge::from_record`]).
    pub fn of(r: &FlowRecord, at_src: SideCounts, at_dst: SideCounts) -> Self {
        let class = VerdictClass::of(r);
        let mut stats = ClassStats {
            first_seen: r.start.0,
            last_seen: r.end.0,
            at_src,
            at_dst,
            policies: class
                .deciding(r)
                .iter()
                .map(|p| p.name.to_string())
                .collect(),
            policies_truncated: false,
        };
        stats.bound();
        Cell {
            classes: vec![(class, stats)],
        }
    }

    /// Merges another cell of the same edge.
    pub fn merge(&mut self, o: &Cell) {
        for (class, stats) in &o.classes {
            match self.classes.binary_search_by(|(c, _)| c.cmp(class)) {
                Ok(i) => self.classes[i].1.merge(stats),
                Err(i) => self.classes.insert(i, (*class, stats.clone())),
            }
        }
    }

    /// The worst class present.
    pub fn worst(&self) -> Option<VerdictClass> {
        self.classes.last().map(|(c, _)| *c)
    }

    /// The stats of `class`, if seen.
    pub fn class(&self, class: VerdictClass) -> Option<&ClassStats> {
        self.classes
            .iter()
            .find_map(|(c, s)| (*c == class).then_some(s))
    }

    /// Start of the earliest record.
    pub fn first_seen(&self) -> u64 {
        self.classes
            .iter()
            .map(|(_, s)| s.first_seen)
            .min()
            .unwrap_or(0)
    }

    /// End of the latest record.
    pub fn last_seen(&self) -> u64 {
        self.classes
            .iter()
            .map(|(_, s)| s.last_seen)
            .max()
            .unwrap_or(0)
    }

    /// Records counted, at either side, all classes.
    pub fn records(&self) -> u64 {
        self.classes.iter().map(|(_, s)| s.records()).sum()
    }
}
