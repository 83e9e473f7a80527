//! Rule tables: for one direction of one class of endpoints, which peer
//! identity may use which protocol and ports, and by which rule.
//!
//! A table is keyed by (peer identity or ANY, protocol or ANY) and holds
//! disjoint, sorted port segments, each with the rules that allow it. The
//! kernel's policy map is this table written as LPM entries (see `maps`).

use std::collections::{BTreeMap, HashMap};

use bulkhead_common::{IDENTITY_ANY, PROTO_ANY};

use super::{IdentityId, RuleId};
use crate::model::{Direction, Tier};

/// Port segment `lo..=hi` and what decides it.
///
/// In a NetworkPolicy-only table every segment allows, by `rules` (all the
/// allowing rules, ascending; never empty). In a tiered table (cluster-admin
/// policies fold into it, see `fold`) a segment is the decision of the
/// tiers: `deny` or allow, by `rules` (one Admin or Baseline rule, or the
/// allowing NetworkPolicy rules) after the `Pass` rules in `passed`; where
/// no rule decides after a `Pass`, `rules` is empty (NetworkPolicy's
/// isolation denies, or nothing does). `rules` and `passed` are never both
/// empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
    /// Deciding rules, ascending.
    pub rules: Vec<RuleId>,
    /// Whether the decision is to deny.
    pub deny: bool,
    /// `Pass` rules evaluation went through before the decision, in order.
    pub passed: Vec<RuleId>,
}

impl Segment {
    /// An allowing segment of a NetworkPolicy-only table.
    pub fn allow(lo: u16, hi: u16, rules: Vec<RuleId>) -> Self {
        Self {
            lo,
            hi,
            rules,
            deny: false,
            passed: Vec::new(),
        }
    }

    /// The rule the kernel reports for this segment: the first deciding
    /// rule, else the last `Pass` rule. Rule ids are in content order
    /// ([`super::RuleId`]), so the first is chosen by content, not by the
    /// order the compiler met the rules in.
    pub fn reported_rule(&self) -> RuleId {
        match self.rules.first() {
            Some(&r) => r,
            None => *self.passed.last().expect("a segment has a rule or a pass"),
        }
    }

    /// The target of the kernel's policy tree for this segment, in the
    /// compiler's rule numbers: the reported rule, with `RULE_F_DENY` if it
    /// denies. The map image holds it renumbered to the kernel's
    /// ([`super::KernelIds::target`]).
    pub fn kernel_rule(&self) -> u32 {
        let rule = self.reported_rule();
        debug_assert!(
            rule < bulkhead_common::RULE_F_DENY,
            "rule ids fit below the deny bit"
        );
        if self.deny {
            rule | bulkhead_common::RULE_F_DENY
        } else {
            rule
        }
    }

    /// Whether the decision is equal (ports aside).
    pub(crate) fn same_decision(&self, other: &Segment) -> bool {
        self.rules == other.rules && self.deny == other.deny && self.passed == other.passed
    }
}

/// Where a rule came from, for explain and flow logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleOrigin {
    /// Index of the policy in the model: its `policies` for a
    /// NetworkPolicy rule (`tier` None), its `admin_policies` for a
    /// cluster-admin rule.
    pub policy: usize,
    /// The cluster-admin tier of the rule; `None` for NetworkPolicy.
    pub tier: Option<Tier>,
    /// Ingress or egress.
    pub direction: Direction,
    /// Index of the rule in the policy's list for `direction`.
    pub rule: usize,
    /// Index of the peer in the rule, `None` when the rule has no peers (all).
    pub peer: Option<usize>,
    /// Index of the port entry, `None` when the rule has no ports (all).
    pub port: Option<usize>,
}

/// Key of a table group: (peer identity or `IDENTITY_ANY`, protocol or
/// `PROTO_ANY`).
pub type GroupKey = (IdentityId, u8);

/// One rule table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTable {
    /// Direction it filters.
    pub direction: Direction,
    /// Indices of the NetworkPolicies selecting the endpoints that use it
    /// (none: NetworkPolicy does not isolate them that way).
    pub policies: Vec<usize>,
    /// Indices (into the model's `admin_policies`, evaluation order) of the
    /// cluster-admin policies selecting them; when there are any, the
    /// table is tiered: its segments are decisions (see [`Segment`]) and a
    /// lookup that finds none allows unless `policies` isolate.
    pub admin: Vec<usize>,
    /// Segments per group.
    pub groups: HashMap<GroupKey, Vec<Segment>>,
}

impl RuleTable {
    /// Whether NetworkPolicy isolates the endpoints: a lookup that finds no
    /// segment denies.
    pub fn isolated(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Whether cluster-admin policies fold into the table.
    pub fn tiered(&self) -> bool {
        !self.admin.is_empty()
    }

    /// The segment allowing `port` in one group.
    fn find(&self, key: GroupKey, port: u16) -> Option<&Segment> {
        let segs = self.groups.get(&key)?;
        let i = segs.partition_point(|s| s.hi < port);
        segs.get(i).filter(|s| s.lo <= port)
    }

    /// The first segment allowing (peer, proto, port), most specific group
    /// first: exact peer and protocol, exact peer any protocol, any peer
    /// exact protocol, any peer any protocol.
    pub fn lookup(&self, peer: IdentityId, proto: u8, port: u16) -> Option<&Segment> {
        [
            (peer, proto),
            (peer, PROTO_ANY),
            (IDENTITY_ANY, proto),
            (IDENTITY_ANY, PROTO_ANY),
        ]
        .into_iter()
        .find_map(|k| self.find(k, port))
    }

    /// Every rule allowing (peer, proto, port), ascending (a
    /// NetworkPolicy-only table: a tiered table's decision is the one
    /// segment [`Self::lookup`] finds).
    pub fn allowing_rules(&self, peer: IdentityId, proto: u8, port: u16) -> Vec<RuleId> {
        let mut out: Vec<RuleId> = [
            (peer, proto),
            (peer, PROTO_ANY),
            (IDENTITY_ANY, proto),
            (IDENTITY_ANY, PROTO_ANY),
        ]
        .into_iter()
        .filter_map(|k| self.find(k, port))
        .flat_map(|s| s.rules.iter().copied())
        .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Groups sorted by key, for deterministic output.
    pub fn sorted_groups(&self) -> Vec<(&GroupKey, &Vec<Segment>)> {
        let mut v: Vec<_> = self.groups.iter().collect();
        v.sort_by_key(|(k, _)| **k);
        v
    }

    /// Number of segments in the table.
    pub fn segment_count(&self) -> usize {
        self.groups.values().map(Vec::len).sum()
    }
}

/// Collects raw (key, lo, hi, rule) grants and merges them into a table.
#[derive(Default)]
pub struct TableBuilder {
    raw: Vec<(GroupKey, u16, u16, RuleId)>,
}

impl TableBuilder {
    /// Grants `lo..=hi` of `proto` from/to `peer` by `rule`.
    pub fn grant(&mut self, peer: IdentityId, proto: u8, lo: u16, hi: u16, rule: RuleId) {
        self.raw.push(((peer, proto), lo, hi, rule));
    }

    /// The table: each group's grants cut into disjoint segments (a sweep
    /// over range ends), neighbours with equal rule sets merged.
    pub fn build(mut self, direction: Direction, policies: Vec<usize>) -> RuleTable {
        self.raw.sort_unstable();
        self.raw.dedup();
        let mut groups = HashMap::new();
        for chunk in self.raw.chunk_by(|a, b| a.0 == b.0) {
            let grants: Vec<(u16, u16, RuleId)> =
                chunk.iter().map(|&(_, lo, hi, r)| (lo, hi, r)).collect();
            groups.insert(chunk[0].0, sweep(grants));
        }
        RuleTable {
            direction,
            policies,
            admin: Vec::new(),
            groups,
        }
    }
}

/// Disjoint segments of sorted, deduplicated grants.
fn sweep(grants: Vec<(u16, u16, RuleId)>) -> Vec<Segment> {
    // Fast path, the common case: no two grants overlap.
    if grants.windows(2).all(|w| w[0].1 < w[1].0) {
        let mut out: Vec<Segment> = Vec::with_capacity(grants.len());
        for (lo, hi, rule) in grants {
            match out.last_mut() {
                Some(last) if last.hi as u32 + 1 == lo as u32 && last.rules == [rule] => {
                    last.hi = hi
                }
                _ => out.push(Segment::allow(lo, hi, vec![rule])),
            }
        }
        return out;
    }
    sweep_overlapping(grants)
}

fn sweep_overlapping(grants: Vec<(u16, u16, RuleId)>) -> Vec<Segment> {
    // Events at u32 positions so hi + 1 never overflows.
    let mut events: Vec<(u32, bool, RuleId)> = Vec::with_capacity(grants.len() * 2);
    for &(lo, hi, rule) in &grants {
        events.push((lo as u32, true, rule));
        events.push((hi as u32 + 1, false, rule));
    }
    events.sort_unstable();
    let mut active: BTreeMap<RuleId, u32> = BTreeMap::new();
    let mut out: Vec<Segment> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while i < events.len() && events[i].0 == pos {
            let (_, start, rule) = events[i];
            if start {
                *active.entry(rule).or_default() += 1;
            } else if let Some(c) = active.get_mut(&rule) {
                *c -= 1;
                if *c == 0 {
                    active.remove(&rule);
                }
            }
            i += 1;
        }
        let Some(&(next, _, _)) = events.get(i) else {
            break;
        };
        if active.is_empty() {
            continue;
        }
        let rules: Vec<RuleId> = active.keys().copied().collect();
        let (lo, hi) = (pos as u16, (next - 1) as u16);
        match out.last_mut() {
            Some(last) if last.hi as u32 + 1 == pos && last.rules == rules => last.hi = hi,
            _ => out.push(Segment::allow(lo, hi, rules)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_splits_overlaps_and_merges_neighbours() {
        let segs = sweep(vec![
            (80, 90, 1),
            (85, 100, 2),
            (101, 110, 2),
            (200, 200, 3),
        ]);
        assert_eq!(
            segs,
            vec![
                Segment::allow(80, 84, vec![1]),
                Segment::allow(85, 90, vec![1, 2]),
                Segment::allow(91, 110, vec![2]),
                Segment::allow(200, 200, vec![3]),
            ]
        );
        let disjoint = sweep(vec![(1, 5, 1), (6, 9, 1), (10, 10, 2), (20, 30, 2)]);
        assert_eq!(
            disjoint,
            vec![
                Segment::allow(1, 9, vec![1]),
                Segment::allow(10, 10, vec![2]),
                Segment::allow(20, 30, vec![2]),
            ]
        );
        let full = sweep(vec![(0, 65535, 7), (65535, 65535, 8)]);
        assert_eq!(
            full.last().unwrap(),
            &Segment::allow(65535, 65535, vec![7, 8])
        );
    }
}
