//! The program cost with cluster-admin policies against the same cluster
//! without them: [`ADMIN_POLICIES`] ClusterNetworkPolicies of
//! [`RULES_PER_POLICY`] rules each (Admin and Baseline tiers, one priority
//! each), added to the model of one [`RuleShape`], both measured in one run
//! (`super::prog_cost::measure_admin`) with the same traffic.
//!
//! The compiler folds the tiers into the rule tables, so a packet's lookup
//! is the same (ENDPOINTS, CT, the peer's identity, one policy tree) with or
//! without them; what can differ is the size and depth of the trees and of
//! the IDENTITIES trie. (Until ABI v11 a pod's identity was an IDENTITIES
//! trie lookup, and the two wide `networks` prefixes over the pods made
//! every new flow ×1.14–1.38 slower; a pod's address is now one
//! IDENTITIES_EXACT hash lookup.) The target: every (program, path) within
//! [`ADMIN_LIMIT`] of the run without admin policies.
//!
//! The rules are a mix a cluster admin would write: namespace peers, pod
//! peers, `networks` CIDRs (one `0.0.0.0/0`, one the pod CIDR), single ports,
//! port ranges and all ports, actions Accept, Deny and Pass. Every fifth
//! policy selects namespace `bench`, so the subject's tables are tiered, and
//! its `Pass` rule matches the measured flows (the measured ports and the
//! peer pod): the measured verdicts are NetworkPolicy's after a `Pass`,
//! as without admin policies. The other rules never match the measured
//! flows (other peers, TCP, or UDP ports outside the measured list), which
//! the benchmark's verdict checks confirm.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use bulkhead_policy::model::{
    Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Labels, Model, NAMESPACE_NAME_LABEL,
    Namespace, PortMatch, PortSpec, Protocol, Requirement, Selector, Subject, Tier,
};
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Serialize;

use super::baseline::{BaselineRow, compare};
use super::prog_cost::{CaseCost, CostPlan};
use super::rules::{self, FIRST_PORT, PORT_STEP, RuleShape};
use crate::report::int;
use crate::synthetic::origin;

/// ClusterNetworkPolicies added.
pub const ADMIN_POLICIES: usize = 100;
/// Rules of each (half ingress, half egress).
pub const RULES_PER_POLICY: usize = 10;
/// Policies `0..ADMIN_TIER_POLICIES` are in the Admin tier, the rest in
/// the Baseline tier.
pub const ADMIN_TIER_POLICIES: usize = 70;
/// Every this many policies, one selects namespace `bench` (the subject's).
pub const SUBJECT_EVERY: usize = 5;
/// The cost with admin policies may exceed the cost without by this factor.
pub const ADMIN_LIMIT: f64 = 1.10;

/// The NetworkPolicy case both sides share: 1,000 rule segments.
pub const SHAPE: RuleShape = rules::SHAPES[1];

/// `key In (value)`.
fn is(key: &str, value: &str) -> Selector {
    Selector::new(vec![Requirement::In(key.into(), vec![value.into()])])
}

fn ports(protocol: Protocol, lo: u16, hi: u16) -> Option<Vec<PortSpec>> {
    Some(vec![PortSpec {
        protocol,
        port: PortMatch::Range(lo, hi),
    }])
}

fn net(a: u8, b: u8, c: u8, prefix: u8) -> IpNetwork {
    IpNetwork::V4(Ipv4Network::new(Ipv4Addr::new(a, b, c, 0), prefix).expect("valid prefix"))
}

/// Rule `k` (0..5) of one direction of policy `i`.
fn rule(i: usize, k: usize, shape: &RuleShape) -> AdminRule {
    let n = i as u16;
    let (action, peers, ports) = match k {
        // Quarantine: all ports of the background pods of one team.
        0 => (
            Action::Deny,
            vec![AdminPeer::Pods {
                namespaces: is("team", "bg"),
                pods: is("app", "bg"),
            }],
            None,
        ),
        // The peer pod, TCP service port range.
        1 => (
            Action::Accept,
            vec![AdminPeer::Pods {
                namespaces: is(NAMESPACE_NAME_LABEL, "bench"),
                pods: is("app", "peer"),
            }],
            ports(Protocol::Tcp, 8000 + n, 8010 + n),
        ),
        // Telnet from anywhere (the first policy), else a /24 each, DNS.
        2 if i == 0 => (
            Action::Deny,
            vec![AdminPeer::Networks(vec![net(0, 0, 0, 0)])],
            ports(Protocol::Tcp, 23, 23),
        ),
        2 => (
            Action::Deny,
            vec![AdminPeer::Networks(vec![net(100, 64, i as u8, 24)])],
            ports(Protocol::Udp, 53, 53),
        ),
        // Hand the measured flows to NetworkPolicy.
        3 => (
            Action::Pass,
            vec![AdminPeer::Pods {
                namespaces: is(NAMESPACE_NAME_LABEL, "bench"),
                pods: is("app", "peer"),
            }],
            ports(
                Protocol::Udp,
                FIRST_PORT,
                FIRST_PORT + PORT_STEP * shape.ports as u16,
            ),
        ),
        // Metrics scraping from the pod CIDR (every third), else HTTPS
        // from a private /20, and a namespace peer.
        _ if i.is_multiple_of(3) => (
            Action::Accept,
            vec![
                AdminPeer::Networks(vec![net(10, 244, 0, 16)]),
                AdminPeer::Pods {
                    namespaces: is("env", "prod"),
                    pods: Selector::everything(),
                },
            ],
            ports(Protocol::Tcp, 9100, 9100),
        ),
        _ => (
            Action::Accept,
            vec![AdminPeer::Networks(vec![net(
                172,
                16 + (i % 16) as u8,
                0,
                20,
            )])],
            ports(Protocol::Tcp, 443, 443),
        ),
    };
    AdminRule {
        name: Some(format!("p{i}-r{k}")),
        action,
        peers,
        ports,
    }
}

/// Policy `i` of [`admin_policies`].
fn policy(i: usize, shape: &RuleShape) -> AdminPolicy {
    let half = RULES_PER_POLICY / 2;
    let subject = if i.is_multiple_of(SUBJECT_EVERY) {
        Subject::selecting(is(NAMESPACE_NAME_LABEL, "bench"), Selector::everything())
    } else if i.is_multiple_of(2) {
        Subject::selecting(is("env", "prod"), is("app", "bg"))
    } else {
        Subject::selecting(is("team", "bg"), Selector::everything())
    };
    AdminPolicy {
        kind: AdminKind::ClusterNetworkPolicy,
        name: format!("cnp-{i:03}"),
        tier: if i < ADMIN_TIER_POLICIES {
            Tier::Admin
        } else {
            Tier::Baseline
        },
        priority: (i * 10) as u32,
        subject,
        ingress: (0..half).map(|k| rule(i, k, shape)).collect(),
        egress: (0..RULES_PER_POLICY - half)
            .map(|k| rule(i, k, shape))
            .collect(),
        origin: origin("dataplane-bench-admin", i),
        mode: None,
    }
}

/// The [`ADMIN_POLICIES`] policies for the model of `shape`.
pub fn admin_policies(shape: &RuleShape) -> Vec<AdminPolicy> {
    (0..ADMIN_POLICIES).map(|i| policy(i, shape)).collect()
}

/// The model of `shape` ([`rules::model`]) with namespace labels
/// (`env=prod` on both, `team=bench`/`team=bg`), and with `admin` the
/// [`admin_policies`].
pub fn model(shape: &RuleShape, admin: bool) -> Model {
    let mut m = rules::model(shape);
    for (name, team) in [("bench", "bench"), ("background", "bg")] {
        let ns = m
            .namespaces
            .entry(name.into())
            .or_insert_with(|| Namespace {
                name: name.into(),
                labels: Labels::new(),
                origin: None,
                mode: None,
            });
        ns.labels.insert("env".into(), "prod".into());
        ns.labels.insert("team".into(), team.into());
    }
    if admin {
        m.admin_policies = admin_policies(shape);
    }
    m.normalize();
    m
}

/// Both sides of the comparison and the rows judged.
#[derive(Clone, Debug, Serialize)]
pub struct AdminCost {
    /// Without cluster-admin policies.
    pub without: CaseCost,
    /// With the [`admin_policies`].
    pub with: CaseCost,
    /// Per (program, path): both medians and the per-round ratios, with /
    /// without.
    pub rows: Vec<BaselineRow>,
}

impl AdminCost {
    /// Pairs `with` against `without`.
    pub fn new(without: CaseCost, with: CaseCost) -> Self {
        let rows = compare(std::slice::from_ref(&with), std::slice::from_ref(&without));
        Self {
            without,
            with,
            rows,
        }
    }

    /// The rows over [`ADMIN_LIMIT`].
    pub fn missed(&self) -> Vec<&BaselineRow> {
        self.rows
            .iter()
            .filter(|r| r.measured() && r.ratio.median > ADMIN_LIMIT)
            .collect()
    }

    /// Whether the target is met: every row measured and none over the
    /// limit.
    pub fn met(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(BaselineRow::measured) && {
            self.missed().is_empty()
        }
    }

    /// The report's "Targets" bullet (newline ended).
    pub fn target_line(&self, s: &mut String) {
        let w = &self.with.facts;
        let worst = self
            .rows
            .iter()
            .filter(|r| r.measured())
            .max_by(|a, b| a.ratio.median.total_cmp(&b.ratio.median));
        let _ = writeln!(
            s,
            "- Program cost with {} cluster-admin rules in {} priorities within {:.0}% of no admin policy (same cluster and traffic, measured alternately; median of per-round ratios): {}{}; {} of {} program/path pairs over the limit. Compile {:.1} ms → {:.1} ms.",
            int(w.admin_rules),
            int(w.admin_policies),
            (ADMIN_LIMIT - 1.0) * 100.0,
            if self.met() { "**met**" } else { "**missed**" },
            match worst {
                Some(r) => format!(
                    "; largest ×{:.3} ({} {}, {:.0} → {:.0} ns; rounds {:.3}–{:.3})",
                    r.ratio.median,
                    r.prog.name(),
                    r.path.label(),
                    r.baseline_ns,
                    r.ns,
                    r.ratio.min,
                    r.ratio.max
                ),
                None => String::new(),
            },
            self.missed().len(),
            self.rows.len(),
            self.without.facts.compile_ms,
            w.compile_ms,
        );
    }

    /// The report's section (`plan`: how much was measured).
    pub fn markdown(&self, s: &mut String, plan: Option<&CostPlan>) {
        let w = &self.with.facts;
        let _ = writeln!(s, "## Cluster-admin tiers\n");
        let _ = writeln!(
            s,
            "The {}-rule case of the program-cost benchmark (`rules.rs`: same pods, NetworkPolicy and packets), once without cluster-admin policies and once with {} ClusterNetworkPolicies of {} rules each ({} rules; {} in the Admin tier, {} in the Baseline tier, priorities 0–{}; every {}th selects namespace `bench`, so the subject's tables are tiered; `bench/src/dataplane/admin.rs`): namespace and pod peers, `networks` CIDRs (`0.0.0.0/0` and the pod CIDR among them), single ports, ranges and all ports, Accept, Deny and Pass. The measured flows match a Pass rule and then NetworkPolicy decides, as without admin policies (the verdicts are checked). Both loaded from the same ELF, each with its own maps, measured alternately measurement by measurement on one pinned CPU; the ratio is the median over rounds of the per-round ratio with / without (min–max in brackets). Over ×{ADMIN_LIMIT:.2} misses the target.{}\n",
            int(SHAPE.nominal),
            int(w.admin_policies),
            RULES_PER_POLICY,
            int(w.admin_rules),
            ADMIN_TIER_POLICIES.min(w.admin_policies),
            w.admin_policies.saturating_sub(ADMIN_TIER_POLICIES),
            (w.admin_policies.max(1) - 1) * 10,
            SUBJECT_EVERY,
            plan.map_or(String::new(), |p| format!(
                " {} rounds, `repeat` = {}, {} pairs of single runs per round for TC new flows, FLOW_CONFIG flags {}.",
                p.rounds,
                int(p.repeat as usize),
                int(p.pairs),
                p.flow_flags
            )),
        );
        let _ = writeln!(
            s,
            "| program | path | no admin policy | {} admin rules | with / without |",
            int(w.admin_rules)
        );
        let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: |");
        for r in &self.rows {
            let cell = if r.measured() {
                let flag = if r.ratio.median > ADMIN_LIMIT {
                    format!(" **over ×{ADMIN_LIMIT:.2}**")
                } else {
                    String::new()
                };
                format!(
                    "×{:.3} ({:.3}–{:.3}){flag}",
                    r.ratio.median, r.ratio.min, r.ratio.max
                )
            } else {
                "–".to_owned()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ns | {:.0} ns | {cell} |",
                r.prog.name(),
                r.path.label(),
                r.baseline_ns,
                r.ns
            );
        }
        let _ = writeln!(s, "\n### What each side holds\n");
        let _ = writeln!(
            s,
            "| case | admin policies / rules | subject tables tiered | subject segments (ingress + egress) | of them deny | policy tree nodes | tree depth | IDENTITIES entries | identities | image (IDENTITIES + policy trees) | compile |"
        );
        let _ = writeln!(
            s,
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (name, c) in [
            ("no admin policy", &self.without),
            ("admin rules", &self.with),
        ] {
            let f = &c.facts;
            let _ = writeln!(
                s,
                "| {name} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {:.1} KiB | {:.1} ms |",
                int(f.admin_policies),
                int(f.admin_rules),
                if f.tiered { "yes" } else { "no" },
                int(f.segments),
                int(f.deny_segments),
                int(f.policy_entries),
                f.tree_depth,
                int(f.identity_entries),
                int(f.identities),
                f.image_bytes as f64 / 1024.0,
                f.compile_ms
            );
        }
        let _ = writeln!(
            s,
            "\nCompile is `compile()` of the whole model, once, timed in this process (`policy-compile.md` measures compile time at scale). Segments, nodes, depth and image are those of the compiled tables and `Compiled::map_image_for` (the two `bench` pods local); image bytes are the IDENTITIES and policy tree entries' keys and values.\n"
        );
    }
}

#[cfg(test)]
mod tests;
