//! Why a connection is allowed or denied: for the source's egress and the
//! destination's ingress, whether the pod is isolated, which policies select
//! it, which rules allow the traffic, and which rules came close (right peer,
//! wrong port; right port, wrong peer). A connection to a Service is
//! explained per backend ([`service`]).

pub mod service;
pub mod text;

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::Side;
use crate::compile::{Compiled, IdentityId, RuleId};
use crate::model::{Action, Direction, Mode, Model, Protocol, Tier};
pub use service::{Answer, BackendExplanation, FrontendInfo, ServiceExplanation};

/// A peer given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerArg {
    /// `namespace/name`.
    Pod(String),
    /// An address.
    Addr(IpAddr),
    /// `node`: the node's address (`Model::node_ips`) of the family.
    Node,
    /// `svc/NAMESPACE/NAME`: a Service (`namespace/name`), as a destination.
    Service(String),
}

impl std::fmt::Display for PeerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerArg::Pod(k) => f.write_str(k),
            PeerArg::Addr(a) => write!(f, "{a}"),
            PeerArg::Node => f.write_str("node"),
            PeerArg::Service(k) => write!(f, "svc/{k}"),
        }
    }
}

impl std::str::FromStr for PeerArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A pod is `namespace/name`: `svc/a/b` (two slashes) is no pod.
        if let Some(key) = s.strip_prefix("svc/").filter(|k| k.contains('/')) {
            return Ok(PeerArg::Service(key.to_string()));
        }
        Ok(match s.parse::<IpAddr>() {
            Ok(a) => PeerArg::Addr(a),
            Err(_) if s == "node" => PeerArg::Node,
            Err(_) => PeerArg::Pod(s.to_string()),
        })
    }
}

/// Why an explain query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No such pod.
    #[error("no pod {0} in the manifests (expected namespace/name, an IP address or node)")]
    UnknownPod(String),
    /// `node` without the node's addresses.
    #[error("`node` needs the node's addresses (--node-ip)")]
    NoNode,
    /// No such Service.
    #[error("no Service {0} in the manifests (expected svc/namespace/name)")]
    UnknownService(String),
    /// A Service where only an address or a pod can be.
    #[error("svc/{0} is a Service: only the destination (--to) can be one")]
    ServiceSource(String),
    /// The Service (or its address) has no such port.
    #[error("Service {service} has no port {port}/{protocol} (its ports: {ports})")]
    NoServicePort {
        /// `namespace/name`.
        service: String,
        /// Protocol asked for.
        protocol: Protocol,
        /// Port asked for.
        port: u16,
        /// Its ports, `port/protocol`, comma-separated.
        ports: String,
    },
    /// The two peers share no address family.
    #[error("{from} and {to} have no address family in common")]
    NoCommonFamily {
        /// Source as given.
        from: String,
        /// Destination as given.
        to: String,
    },
}

/// One end of the connection.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointInfo {
    /// The address used.
    pub addr: IpAddr,
    /// `namespace/name` if it is a pod's.
    pub pod: Option<String>,
    /// Whether it is one of the node's addresses.
    pub node: bool,
    /// Its identity number.
    pub identity: IdentityId,
}

/// A rule, named the way a user finds it in the YAML.
#[derive(Clone, Debug, Serialize)]
pub struct RuleRef {
    /// `namespace/name` of a NetworkPolicy, `Kind/name` of a cluster-admin
    /// policy.
    pub policy: String,
    /// The cluster-admin tier (`Admin`, `Baseline`); absent for
    /// NetworkPolicy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The cluster-admin policy's priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The cluster-admin rule's action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The cluster-admin rule's `name`, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Index in the policy's ingress or egress list.
    pub rule: usize,
    /// Index in the rule's from/to list (`None`: the rule has no peers, so
    /// matches all).
    pub peer: Option<usize>,
    /// Index in the rule's ports (`None`: all ports).
    pub port: Option<usize>,
    /// The peer, in words.
    pub peer_text: String,
    /// The port, in words.
    pub port_text: String,
}

/// One side's story.
#[derive(Clone, Debug, Serialize)]
pub struct SideExplanation {
    /// "egress" or "ingress".
    pub direction: Direction,
    /// The pod whose policy this side is, if the address is a pod's.
    pub pod: Option<String>,
    /// `allowed`, `denied`, `not-isolated` (no rule decides: allowed),
    /// `from-node` (ingress from the pod's own node, always allowed) or
    /// `not-a-pod`.
    pub verdict: &'static str,
    /// Whether some NetworkPolicy selects the pod for this direction.
    pub isolated: bool,
    /// The NetworkPolicies selecting it for this direction.
    pub policies: Vec<String>,
    /// The cluster-admin policies selecting it for this direction, in
    /// evaluation order (`Kind/name (Tier, priority N)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_policies: Vec<String>,
    /// `Pass` rules evaluation went through before the decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<RuleRef>,
    /// The cluster-admin `Deny` rule that denies the traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<RuleRef>,
    /// Rules that allow the traffic (the deciding Accept rule, or the
    /// allowing NetworkPolicy rules).
    pub allowed_by: Vec<RuleRef>,
    /// Rules that match the peer but not this protocol/port.
    pub peer_matches_port_does_not: Vec<RuleRef>,
    /// Rules that match this protocol/port but not the peer.
    pub port_matches_peer_does_not: Vec<RuleRef>,
    /// What the audit view says, when audit-mode policies select the pod
    /// for this direction (they never decide `verdict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<SideAudit>,
    /// Learn-mode policies selecting the pod for this direction: neither
    /// enforced nor audited.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub learning: Vec<String>,
}

/// The audit view of one side.
#[derive(Clone, Debug, Serialize)]
pub struct SideAudit {
    /// `allowed` or `would-deny`.
    pub verdict: &'static str,
    /// The audit-mode policies selecting the pod for this direction.
    pub policies: Vec<String>,
}

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// Source.
    pub src: EndpointInfo,
    /// Destination.
    pub dst: EndpointInfo,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
    /// The verdict: both sides allow.
    pub allowed: bool,
    /// Source egress.
    pub egress: SideExplanation,
    /// Destination ingress.
    pub ingress: SideExplanation,
}

/// Explains (from, to, protocol, port): per backend when `to` is a
/// Service (by name, or one of its frontends; `port` is then the Service
/// port, or the NodePort on the node's address), else as [`explain`].
pub fn answer(
    model: &Model,
    compiled: &Compiled,
    from: &PeerArg,
    to: &PeerArg,
    protocol: Protocol,
    port: u16,
) -> Result<Answer, ExplainError> {
    if let PeerArg::Service(k) = from {
        return Err(ExplainError::ServiceSource(k.clone()));
    }
    match service::target(model, to, protocol, port)? {
        Some(t) => {
            service::explain_service(model, compiled, from, &t, protocol).map(Answer::Service)
        }
        None => explain(model, compiled, from, to, protocol, port)
            .map(|e| Answer::Connection(Box::new(e))),
    }
}

/// Explains (from, to, protocol, port) between addresses (pods' or
/// others'), as sent: a Service frontend is no pod's address here (see
/// [`answer`]).
pub fn explain(
    model: &Model,
    compiled: &Compiled,
    from: &PeerArg,
    to: &PeerArg,
    protocol: Protocol,
    port: u16,
) -> Result<Explanation, ExplainError> {
    let candidates = |p: &PeerArg| -> Result<Vec<IpAddr>, ExplainError> {
        match p {
            PeerArg::Addr(a) => Ok(vec![*a]),
            PeerArg::Pod(k) => model
                .pod(k)
                .map(|(_, pod)| pod.ips.clone())
                .ok_or_else(|| ExplainError::UnknownPod(k.clone())),
            PeerArg::Node if model.node_ips.is_empty() => Err(ExplainError::NoNode),
            PeerArg::Node => Ok(model.node_ips.clone()),
            PeerArg::Service(k) => Err(ExplainError::ServiceSource(k.clone())),
        }
    };
    let (froms, tos) = (candidates(from)?, candidates(to)?);
    let (src, dst) = [true, false]
        .into_iter()
        .find_map(|v4| {
            let s = froms.iter().find(|a| a.is_ipv4() == v4)?;
            let d = tos.iter().find(|a| a.is_ipv4() == v4)?;
            Some((*s, *d))
        })
        .ok_or_else(|| ExplainError::NoCommonFamily {
            from: from.to_string(),
            to: to.to_string(),
        })?;
    let verdict = compiled.evaluate(src, dst, protocol.number(), port);
    let info = |a: IpAddr| EndpointInfo {
        addr: a,
        pod: compiled.pod_of(a).map(|p| model.pods[p].key()),
        node: compiled.identities.is_node(compiled.identity_of(a)),
        identity: compiled.identity_of(a),
    };
    let (src_info, dst_info) = (info(src), info(dst));
    let side = |d: Direction, me: IpAddr, peer: IdentityId, verdict: &Side| {
        side_explanation(
            model,
            compiled,
            d,
            compiled.pod_of(me),
            peer,
            protocol,
            port,
            verdict,
        )
    };
    Ok(Explanation {
        allowed: verdict.allowed(),
        egress: side(Direction::Egress, src, dst_info.identity, &verdict.egress),
        ingress: side(Direction::Ingress, dst, src_info.identity, &verdict.ingress),
        src: src_info,
        dst: dst_info,
        protocol,
        port,
    })
}

#[allow(clippy::too_many_arguments)]
fn side_explanation(
    model: &Model,
    compiled: &Compiled,
    direction: Direction,
    pod: Option<usize>,
    peer: IdentityId,
    protocol: Protocol,
    port: u16,
    verdict: &Side,
) -> SideExplanation {
    let mut out = SideExplanation {
        direction,
        pod: pod.map(|p| model.pods[p].key()),
        verdict: match verdict {
            Side::NotAPod => "not-a-pod",
            Side::NotIsolated => "not-isolated",
            Side::FromNode => "from-node",
            Side::Allowed(_) => "allowed",
            Side::Denied | Side::DeniedBy(_) => "denied",
        },
        isolated: false,
        policies: Vec::new(),
        admin_policies: Vec::new(),
        passed: Vec::new(),
        denied_by: None,
        allowed_by: Vec::new(),
        peer_matches_port_does_not: Vec::new(),
        port_matches_peer_does_not: Vec::new(),
        audit: None,
        learning: Vec::new(),
    };
    if let Some(p) = pod {
        out.audit = side_audit(model, compiled, direction, p, peer, protocol, port);
        out.learning = learning(model, compiled, direction, p);
    }
    let Some(table) = pod.and_then(|p| compiled.endpoints[p].table(direction)) else {
        return out;
    };
    let table = &compiled.tables[table as usize];
    out.isolated = table.isolated();
    out.policies = table
        .policies
        .iter()
        .map(|&p| model.policies[p].key())
        .collect();
    out.admin_policies = table
        .admin
        .iter()
        .map(|&a| {
            let p = &model.admin_policies[a];
            format!("{} ({}, priority {})", p.key(), p.tier, p.priority)
        })
        .collect();
    if table.tiered()
        && let Some(s) = table.lookup(peer, protocol.number(), port)
    {
        out.passed = s
            .passed
            .iter()
            .map(|&r| rule_ref(model, compiled, r))
            .collect();
    }
    if let Side::DeniedBy(r) = verdict {
        out.denied_by = Some(rule_ref(model, compiled, *r));
    }
    let allowed: BTreeSet<RuleId> = match verdict {
        Side::Allowed(r) => r.iter().copied().collect(),
        _ => BTreeSet::new(),
    };
    let proto = protocol.number();
    let mut peer_rules = BTreeSet::new();
    let mut port_rules = BTreeSet::new();
    for (&(p, pr), segs) in &table.groups {
        let peer_ok = p == peer || p == bulkhead_common::IDENTITY_ANY;
        let proto_ok = pr == proto || pr == bulkhead_common::PROTO_ANY;
        for s in segs {
            let port_ok = proto_ok && s.lo <= port && port <= s.hi;
            let target = match (peer_ok, port_ok) {
                (true, false) => &mut peer_rules,
                (false, true) => &mut port_rules,
                _ => continue,
            };
            target.extend(s.rules.iter().chain(&s.passed).copied().filter(|r| {
                !allowed.contains(r) && !matches!(verdict, Side::DeniedBy(d) if d == r)
            }));
        }
    }
    let describe =
        |ids: &BTreeSet<RuleId>| ids.iter().map(|&r| rule_ref(model, compiled, r)).collect();
    out.allowed_by = describe(&allowed);
    out.peer_matches_port_does_not = describe(&peer_rules);
    out.port_matches_peer_does_not = describe(&port_rules);
    out
}

/// The audit view of pod `pod`'s `direction` for `peer`, if it has one.
fn side_audit(
    model: &Model,
    compiled: &Compiled,
    direction: Direction,
    pod: usize,
    peer: IdentityId,
    protocol: Protocol,
    port: u16,
) -> Option<SideAudit> {
    let table = &compiled.tables[compiled.audit_endpoints[pod].table(direction)? as usize];
    let id = compiled.audit_endpoints[pod].table(direction)?;
    let allows = compiled.always_allowed(direction, peer)
        || compiled.table_allows(id, peer, protocol.number(), port);
    let admin = table
        .admin
        .iter()
        .filter(|&&a| compiled.admin_modes[a] == Mode::Audit)
        .map(|&a| model.admin_policies[a].key());
    Some(SideAudit {
        verdict: if allows { "allowed" } else { "would-deny" },
        policies: table
            .policies
            .iter()
            .filter(|&&p| compiled.modes[p] == Mode::Audit)
            .map(|&p| model.policies[p].key())
            .chain(admin)
            .collect(),
    })
}

/// Learn-mode policies selecting pod `pod` for `direction`.
fn learning(model: &Model, compiled: &Compiled, direction: Direction, pod: usize) -> Vec<String> {
    let me = &model.pods[pod];
    model
        .policies
        .iter()
        .enumerate()
        .filter(|&(i, p)| {
            compiled.modes[i] == Mode::Learn
                && p.namespace == me.namespace
                && p.rules(direction).is_some()
                && p.pod_selector.matches(&me.labels)
        })
        .map(|(_, p)| p.key())
        .collect()
}

/// Names a rule id.
pub fn rule_ref(model: &Model, compiled: &Compiled, id: RuleId) -> RuleRef {
    let o = &compiled.rules[id as usize];
    if o.tier.is_some() {
        return admin_rule_ref(model, compiled, id);
    }
    let policy = &model.policies[o.policy];
    let rule = &policy
        .rules(o.direction)
        .expect("rule of an isolating direction")[o.rule];
    RuleRef {
        policy: policy.key(),
        tier: None,
        priority: None,
        action: None,
        name: None,
        rule: o.rule,
        peer: o.peer,
        port: o.port,
        peer_text: match (o.peer, &rule.peers) {
            (Some(i), Some(peers)) => peers[i].to_string(),
            _ => "any peer".into(),
        },
        port_text: match (o.port, &rule.ports) {
            (Some(i), Some(ports)) => ports[i].to_string(),
            _ => "any protocol and port".into(),
        },
    }
}

/// Names the rule id of a cluster-admin rule.
fn admin_rule_ref(model: &Model, compiled: &Compiled, id: RuleId) -> RuleRef {
    let o = &compiled.rules[id as usize];
    let policy = &model.admin_policies[o.policy];
    let rule = &policy.rules(o.direction)[o.rule];
    RuleRef {
        policy: policy.key(),
        tier: Some(policy.tier),
        priority: Some(policy.priority),
        action: Some(rule.action),
        name: rule.name.clone(),
        rule: o.rule,
        peer: o.peer,
        port: o.port,
        peer_text: o
            .peer
            .map_or_else(|| "any peer".into(), |i| rule.peers[i].to_string()),
        port_text: match (o.port, &rule.ports) {
            (Some(i), Some(ports)) => ports[i].to_string(),
            _ => "any protocol and port".into(),
        },
    }
}
