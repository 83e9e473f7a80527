//! Folding the tiers into one rule table: the Admin tier's rules, the
//! NetworkPolicy rules and the Baseline tier's rules of one direction of
//! one class of endpoints become one decision per (peer, protocol, port),
//! written as the same groups of segments a NetworkPolicy-only table has.
//! The kernel then pays one lookup whatever the number of tiers,
//! priorities and rules.
//!
//! Every grant carries a rank: its place in evaluation order (Admin rules
//! in [`crate::model::AdminPolicy::order`] and rule order, then all
//! NetworkPolicy rules sharing one rank, then Baseline rules). At each
//! port the active grants are walked by rank, exactly as the API
//! documents evaluation (see `crate::model::admin`).
//!
//! A group `(peer, proto)` holds the complete decision of every grant that
//! applies to it (its own, the peer's any-protocol ones, any peer's for the
//! protocol and any peer's any-protocol ones); groups are emitted only
//! where `RuleTable::lookup`'s fallback order (peer's protocol, peer's any
//! protocol, any peer's protocol, any peer's any protocol) would otherwise
//! find a less specific decision, so that lookup stays exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulkhead_common::{IDENTITY_ANY, PROTO_ANY};

use super::tables::{GroupKey, Segment};
use super::{IdentityId, RuleId};

/// The place of a rank in evaluation and what a match there does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// An Admin tier rule.
    Admin(Verb),
    /// NetworkPolicy (one rank for all its rules: they only allow).
    NetworkPolicy,
    /// A Baseline tier rule.
    Baseline(Verb),
}

/// What a cluster-admin rule does on a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Allow, stop.
    Accept,
    /// Deny, stop.
    Deny,
    /// Skip the rest of the tier.
    Pass,
}

/// One grant: `lo..=hi` of `proto` with `peer`, matched by `rule` at `rank`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// Peer identity or `IDENTITY_ANY`.
    pub peer: IdentityId,
    /// Protocol or `PROTO_ANY`.
    pub proto: u8,
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
    /// Index into the steps.
    pub rank: u32,
    /// The rule.
    pub rule: RuleId,
}

impl Grant {
    /// `lo..=hi` of group `(peer, proto)`, matched by `rule` at `rank`.
    pub fn new((peer, proto): GroupKey, lo: u16, hi: u16, rank: u32, rule: RuleId) -> Self {
        Self {
            peer,
            proto,
            lo,
            hi,
            rank,
            rule,
        }
    }
}

/// Folds `grants` (ranks index `steps`) into segment groups; `isolated`:
/// NetworkPolicy selects the endpoints this way (it decides whatever the
/// Admin tier leaves, and the Baseline tier never applies).
pub fn fold(grants: &[Grant], steps: &[Step], isolated: bool) -> HashMap<GroupKey, Vec<Segment>> {
    let mut by_group: BTreeMap<GroupKey, Vec<Grant>> = BTreeMap::new();
    for g in grants {
        if !isolated && matches!(steps[g.rank as usize], Step::NetworkPolicy) {
            continue;
        }
        if isolated && matches!(steps[g.rank as usize], Step::Baseline(_)) {
            continue;
        }
        by_group.entry((g.peer, g.proto)).or_default().push(*g);
    }
    let peers: BTreeSet<IdentityId> = by_group.keys().map(|k| k.0).collect();
    let protos: BTreeSet<u8> = by_group.keys().map(|k| k.1).collect();
    let has = |k: GroupKey| by_group.contains_key(&k);
    let mut out = HashMap::new();
    for &peer in &peers {
        for &proto in &protos {
            let key = (peer, proto);
            let emit = has(key)
                || (peer != IDENTITY_ANY
                    && proto != PROTO_ANY
                    && has((peer, PROTO_ANY))
                    && has((IDENTITY_ANY, proto)));
            if !emit {
                continue;
            }
            let mut applicable: Vec<Grant> = Vec::new();
            for k in applicable_groups(key) {
                applicable.extend(by_group.get(&k).into_iter().flatten());
            }
            let segs = decide(&applicable, steps, isolated);
            if !segs.is_empty() {
                out.insert(key, segs);
            }
        }
    }
    out
}

/// The groups whose grants apply to `key`, without repeats.
fn applicable_groups((peer, proto): GroupKey) -> Vec<GroupKey> {
    let mut keys = vec![
        (peer, proto),
        (peer, PROTO_ANY),
        (IDENTITY_ANY, proto),
        (IDENTITY_ANY, PROTO_ANY),
    ];
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The decision segments of the grants that apply to one group: a sweep
/// over port boundaries, the active grants walked by rank at each.
fn decide(grants: &[Grant], steps: &[Step], isolated: bool) -> Vec<Segment> {
    let mut events: Vec<(u32, bool, u32, RuleId)> = Vec::with_capacity(grants.len() * 2);
    for g in grants {
        events.push((g.lo as u32, true, g.rank, g.rule));
        events.push((g.hi as u32 + 1, false, g.rank, g.rule));
    }
    events.sort_unstable();
    let mut active: BTreeMap<(u32, RuleId), u32> = BTreeMap::new();
    let mut out: Vec<Segment> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while i < events.len() && events[i].0 == pos {
            let (_, start, rank, rule) = events[i];
            let count = active.entry((rank, rule)).or_default();
            if start {
                *count += 1;
            } else {
                *count -= 1;
                if *count == 0 {
                    active.remove(&(rank, rule));
                }
            }
            i += 1;
        }
        let Some(&(next, ..)) = events.get(i) else {
            break;
        };
        let Some(seg) = decision(&active, steps, isolated, pos as u16, (next - 1) as u16) else {
            continue;
        };
        match out.last_mut() {
            Some(last) if last.hi as u32 + 1 == pos && last.same_decision(&seg) => last.hi = seg.hi,
            _ => out.push(seg),
        }
    }
    out
}

/// The decision at one port interval given the active (rank, rule)
/// pairs, or `None` where what the table's misses mean is the decision
/// (NetworkPolicy's isolation without a Pass before it; no rule at all).
fn decision(
    active: &BTreeMap<(u32, RuleId), u32>,
    steps: &[Step],
    isolated: bool,
    lo: u16,
    hi: u16,
) -> Option<Segment> {
    let mut passed: Vec<RuleId> = Vec::new();
    let mut np_rules: Vec<RuleId> = Vec::new();
    let mut skip_admin = false;
    let seg = |rules: Vec<RuleId>, deny: bool, passed: Vec<RuleId>| {
        Some(Segment {
            lo,
            hi,
            rules,
            deny,
            passed,
        })
    };
    for &(rank, rule) in active.keys() {
        let step = steps[rank as usize];
        // NetworkPolicy's rank ends where a later rank starts.
        if !np_rules.is_empty() && step != Step::NetworkPolicy {
            break;
        }
        match step {
            Step::Admin(_) if skip_admin => {}
            Step::Admin(Verb::Pass) => {
                passed.push(rule);
                skip_admin = true;
            }
            Step::Baseline(Verb::Pass) => {
                // Nothing after a Baseline Pass decides: allowed.
                passed.push(rule);
                return seg(Vec::new(), false, passed);
            }
            Step::Admin(verb) | Step::Baseline(verb) => {
                return seg(vec![rule], verb == Verb::Deny, passed);
            }
            Step::NetworkPolicy => np_rules.push(rule),
        }
    }
    if !np_rules.is_empty() {
        np_rules.sort_unstable();
        np_rules.dedup();
        return seg(np_rules, false, passed);
    }
    // No rule decided: the table's miss decides (isolation denies, else
    // allowed); a segment only to keep the passes on record.
    (!passed.is_empty()).then(|| Segment {
        lo,
        hi,
        rules: Vec::new(),
        deny: isolated,
        passed,
    })
}

#[cfg(test)]
mod tests;
