//! Replaying one observed edge against the compiled proposal, and the
//! manifests as they were, for the Baseline Deny a proposal lifts.

use std::net::IpAddr;

use crate::edge::EdgeKey;
use crate::propose::Workloads;
use crate::tiers::{self, TierFinding, admin_accepts, tier_denies};
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::eval::Verdict;
use bulkhead_policy::model::{Model, Protocol, Tier};

/// How one edge replays.
pub(super) enum Replay {
    /// A cluster-admin Deny decides every pair.
    GuardrailDenied,
    /// Every pair is allowed, or denied by a cluster-admin Deny.
    Allowed {
        /// An Admin Accept decides a side of some pair.
        by_admin: bool,
    },
    /// This pair is denied otherwise: the proposal misses it.
    Denied {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
        /// The evaluator's verdict.
        verdict: Verdict,
    },
}

pub(super) fn replay(
    compiled: &Compiled,
    tiered: bool,
    pairs: &[(IpAddr, IpAddr)],
    proto: Protocol,
    port: u16,
) -> Replay {
    let n = proto.number();
    if !tiered && pairs.iter().all(|&(s, d)| compiled.allowed(s, d, n, port)) {
        // The fast path: no cluster-admin policy anywhere.
        return Replay::Allowed { by_admin: false };
    }
    let mut guardrail = 0;
    let mut by_admin = false;
    for &(src, dst) in pairs {
        let verdict = compiled.evaluate(src, dst, n, port);
        let sides = [&verdict.egress, &verdict.ingress];
        if sides.iter().any(|s| tier_denies(compiled, s).is_some()) {
            guardrail += 1;
        } else if verdict.allowed() {
            by_admin |= sides.iter().any(|s| admin_accepts(compiled, s).is_some());
        } else {
            return Replay::Denied { src, dst, verdict };
        }
    }
    if guardrail == pairs.len() {
        Replay::GuardrailDenied
    } else {
        Replay::Allowed { by_admin }
    }
}

/// The manifests as they are (staged guardrails enforced), for what the
/// Baseline tier denies before the proposal applies.
pub(super) struct Before {
    model: Model,
    compiled: Compiled,
    index: Workloads,
}

impl Before {
    /// `None` when no Baseline tier policy makes verdicts: nothing to lift.
    pub(super) fn new(model: &Model) -> Option<Self> {
        let baseline = model
            .admin_policies
            .iter()
            .any(|p| p.tier == Tier::Baseline && model.admin_mode_of(p).audited());
        if !baseline {
            return None;
        }
        let mut m = model.clone();
        tiers::planning_view(&mut m);
        Some(Before {
            compiled: compile(&m),
            index: Workloads::new(&m),
            model: m,
        })
    }

    /// The Baseline Deny deciding `key` before the proposal, if one does.
    pub(super) fn baseline_denied(&self, original: &Model, key: &EdgeKey) -> Option<TierFinding> {
        tiers::classify(&self.model, original, &self.compiled, &self.index, key)?
            .denied
            .filter(|f| f.tier == Tier::Baseline)
    }
}
