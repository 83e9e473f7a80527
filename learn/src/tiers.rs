//! What the cluster-admin tiers (Admin and Baseline, see
//! `bulkhead_policy::model::admin`) say about observed edges, read from
//! the compiled tables by the reference evaluator: the learner never
//! interprets tier semantics itself.
//!
//! The learner plans for the guardrails as they will be enforced: a
//! cluster-admin policy in audit mode (staged) counts as enforced here
//! ([`planning_view`]), so a proposal never leans on the gap before its
//! promotion. Learn-mode ones make no verdicts and stay out.
//!
//! An edge is classified in the model with the proposal's policies in
//! place (their rules need not be known: which pods they select is enough,
//! and that makes the Baseline tier step aside for those pods, as it will
//! once they apply). Per edge:
//!
//! - **denied** when, for every pair of pods replayed, a cluster-admin
//!   `Deny` decides one side: an Admin Deny, or a Baseline Deny for a pod
//!   no NetworkPolicy (proposed or existing) selects. A NetworkPolicy allow
//!   cannot change that, so none is proposed;
//! - **accepted** on a side when, for every pair, an Admin `Accept` decides
//!   that side: a NetworkPolicy rule there would never be consulted.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::edge::{EdgeKey, End};
use super::propose::{Workloads, edge_text};
use bulkhead_policy::compile::{Compiled, RuleId};
use bulkhead_policy::eval::Side;
use bulkhead_policy::eval::explain::rule_ref;
use bulkhead_policy::model::{Action, Direction, Mode, Model, Tier};

/// An observed edge a cluster-admin rule decides on one side.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TierFinding {
    /// The edge (`src → dst PROTO/port`).
    pub edge: String,
    /// The deciding side: `egress` of the source, `ingress` of the
    /// destination.
    pub side: Direction,
    /// The rule's tier.
    pub tier: Tier,
    /// Its action (`Deny` or `Accept`).
    pub action: Action,
    /// `Kind/name` of its policy.
    pub policy: String,
    /// The rule's name, else its index in the policy's list for `side`.
    pub rule: String,
    /// The policy's own mode in the manifests (audit: staged, not enforced
    /// yet).
    pub mode: Mode,
}

impl TierFinding {
    /// What the finding means for the edge having been observed.
    fn note(&self) -> &'static str {
        match (self.action, self.mode) {
            (Action::Deny, Mode::Audit) => {
                "; the guardrail is in audit mode: enforced, it will drop this"
            }
            (Action::Deny, _) => {
                "; observed, so it happened before the guardrail was in force \
                 (or while it was in audit mode)"
            }
            (_, Mode::Audit) => "; the guardrail is in audit mode",
            _ => "",
        }
    }
}

impl fmt::Display for TierFinding {
    /// `EDGE: denied by the Admin tier: Kind/name rule R (egress of the
    /// source); NOTE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Deny => "denied",
            Action::Accept => "accepted",
            Action::Pass => "passed",
        };
        let side = match self.side {
            Direction::Egress => "egress of the source",
            Direction::Ingress => "ingress of the destination",
        };
        write!(
            f,
            "{}: {verb} by the {} tier: {} rule {} ({side}){}",
            self.edge,
            self.tier,
            self.policy,
            self.rule,
            self.note()
        )
    }
}

/// What the tiers decide about one edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classified {
    /// A cluster-admin Deny decides it (for every pair).
    pub denied: Option<TierFinding>,
    /// Per side (indexed by `Direction as usize`): an Admin Accept decides
    /// it (for every pair).
    pub accepted: [Option<TierFinding>; 2],
}

/// `model` with its audit-mode cluster-admin policies enforced: the
/// guardrails a proposal must live with once they are promoted.
pub fn planning_view(model: &mut Model) {
    let default = model.default_mode;
    for p in &mut model.admin_policies {
        if p.mode.unwrap_or(default) == Mode::Audit {
            p.mode = Some(Mode::Enforce);
        }
    }
}

/// Whether any cluster-admin policy of `model` makes verdicts (enforce or
/// audit mode): else there is nothing to classify.
pub fn any(model: &Model) -> bool {
    model
        .admin_policies
        .iter()
        .any(|p| model.admin_mode_of(p).audited())
}

/// Classifies an edge (any protocol: the tiers also decide ICMP) in
/// `compiled` (of `model`, the planning view with the proposed policies in
/// place). `None` when it cannot be replayed (an end not in the
/// manifests); `original` gives each finding the policy's mode in the
/// manifests.
pub fn classify(
    model: &Model,
    original: &Model,
    compiled: &Compiled,
    index: &Workloads,
    key: &EdgeKey,
) -> Option<Classified> {
    let pairs = replay_pairs(model, index, key).ok()?;
    let verdicts: Vec<_> = pairs
        .iter()
        .map(|&(s, d)| compiled.evaluate(s, d, key.protocol, key.port))
        .collect();
    let finding = |side: Direction, id: RuleId| {
        let r = rule_ref(model, compiled, id);
        let o = &compiled.rules[id as usize];
        TierFinding {
            edge: edge_text(key),
            side,
            tier: r.tier.expect("a cluster-admin rule"),
            action: r.action.expect("a cluster-admin rule"),
            policy: r.policy,
            rule: r.name.unwrap_or_else(|| r.rule.to_string()),
            mode: original
                .admin_policies
                .get(o.policy)
                .map_or(Mode::Enforce, |p| original.admin_mode_of(p)),
        }
    };
    let tier_deny = |s: &Side| tier_denies(compiled, s);
    let admin_accept = |s: &Side| admin_accepts(compiled, s);
    let mut out = Classified::default();
    let denied: Vec<Option<(Direction, RuleId)>> = verdicts
        .iter()
        .map(|v| {
            tier_deny(&v.egress)
                .map(|r| (Direction::Egress, r))
                .or_else(|| tier_deny(&v.ingress).map(|r| (Direction::Ingress, r)))
        })
        .collect();
    if denied.iter().all(Option::is_some) {
        out.denied = denied[0].map(|(side, r)| finding(side, r));
    }
    for side in Direction::ALL {
        let accepted: Vec<Option<RuleId>> = verdicts
            .iter()
            .map(|v| match side {
                Direction::Egress => admin_accept(&v.egress),
                Direction::Ingress => admin_accept(&v.ingress),
            })
            .collect();
        if let Some(Some(r)) = accepted.iter().all(Option::is_some).then(|| accepted[0]) {
            out.accepted[side as usize] = Some(finding(side, r));
        }
    }
    Some(out)
}

/// The cluster-admin Deny rule deciding a side, if one does.
pub fn tier_denies(compiled: &Compiled, side: &Side) -> Option<RuleId> {
    match side {
        Side::DeniedBy(r) if compiled.rules[*r as usize].tier.is_some() => Some(*r),
        _ => None,
    }
}

/// The Admin Accept rule deciding a side, if one does.
pub fn admin_accepts(compiled: &Compiled, side: &Side) -> Option<RuleId> {
    match side {
        Side::Allowed(rs) if compiled.rules[rs[0] as usize].tier == Some(Tier::Admin) => {
            Some(rs[0])
        }
        _ => None,
    }
}

/// The addresses to replay an edge between: every pod of one end against
/// one pod of the other, both ways, in the family both ends have.
pub fn replay_pairs(
    m: &Model,
    index: &Workloads,
    key: &EdgeKey,
) -> Result<Vec<(IpAddr, IpAddr)>, String> {
    let addrs = |e: &End, v4: bool| -> Result<Vec<IpAddr>, String> {
        match e {
            End::External(a) => Ok(vec![*a]),
            End::Workload(w) => {
                let pods = index
                    .pods
                    .get(w)
                    .ok_or_else(|| format!("{w} is not in the manifests"))?;
                let v: Vec<IpAddr> = pods
                    .iter()
                    .filter_map(|&i| m.pods[i].ips.iter().copied().find(|a| a.is_ipv4() == v4))
                    .collect();
                if v.is_empty() {
                    Err(format!(
                        "{w} has no {} address",
                        if v4 { "IPv4" } else { "IPv6" }
                    ))
                } else {
                    Ok(v)
                }
            }
        }
    };
    let v4 = match (&key.src, &key.dst) {
        (End::External(a), _) | (_, End::External(a)) => a.is_ipv4(),
        _ => addrs(&key.src, true).is_ok() && addrs(&key.dst, true).is_ok(),
    };
    let (s, d) = (addrs(&key.src, v4)?, addrs(&key.dst, v4)?);
    let mut pairs: Vec<(IpAddr, IpAddr)> = s.iter().map(|&a| (a, d[0])).collect();
    pairs.extend(d.iter().skip(1).map(|&b| (s[0], b)));
    Ok(pairs)
}
