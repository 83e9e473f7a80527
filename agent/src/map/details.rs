//! The details of one edge (`bulkhead.map.edge/v1`: its recent flow
//! records and what policy says of it now) and of one workload
//! (`bulkhead.map.workload/v1`: pods, selecting policies, quarantine, and
//! its proposed policy with the diff against the one in force).

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::{Context, MapSource, PolicyNow, with_schema};
use crate::api::{EdgeQuery, MapError, WorkloadQuery};
use bulkhead_learn::map::Cells;
use bulkhead_learn::map::proposal::{WorkloadProposal, for_workload};
use bulkhead_learn::map::view::{EdgeView, Parts, edge_id, protocol_name, workload_view};
use bulkhead_learn::{EdgeKey, End, key_of};
use bulkhead_policy::eval::explain::{
    Answer, Explanation, PeerArg, RuleRef, SideAudit, SideExplanation, answer, text,
};

/// Flow records an edge's details list at most.
pub const EDGE_FLOWS: usize = 50;

/// `schema` of `GET /v1/map/edge`.
pub const EDGE_SCHEMA: &str = "bulkhead.map.edge/v1";

/// `schema` of `GET /v1/map/workload`.
pub const WORKLOAD_SCHEMA: &str = "bulkhead.map.workload/v1";

#[derive(Serialize)]
struct EdgeDetails {
    edge: EdgeView,
    /// Newest first.
    flows: Vec<Value>,
    explain: Option<ExplainJson>,
    explain_unavailable: Option<String>,
}

/// What policy says of an edge now, per side.
#[derive(Serialize)]
struct ExplainJson {
    egress: SideJson,
    ingress: SideJson,
    verdict: &'static str,
    text: String,
    example: Example,
}

#[derive(Serialize)]
struct Example {
    from: String,
    to: String,
}

/// One side of an explanation.
#[derive(Serialize)]
struct SideJson {
    /// `allow`, `deny` or `not_isolated`.
    verdict: &'static str,
    /// explain's own word (`allowed`, `denied`, `not-isolated`,
    /// `from-node`, `not-a-pod`).
    reason: &'static str,
    /// The policies selecting the pod for this direction.
    policies: Vec<String>,
    /// The deciding rules: the denying one, or the allowing ones.
    rules: Vec<RuleJson>,
    /// Rules that came close: the right peer on another port, or the
    /// right port for another peer.
    near_misses: Vec<RuleJson>,
    /// The audit view, when audit-mode policies select the pod.
    audit: Option<SideAudit>,
}

/// A deciding rule: its policy, its index in the direction's rules, and
/// the rule as `bulkhead explain` names it.
#[derive(Serialize)]
struct RuleJson {
    policy: String,
    rule: usize,
    text: String,
}

/// One side of explain's answer as the map shows it.
fn side(s: &SideExplanation) -> SideJson {
    let d = s.direction.as_str();
    let rule = |r: &RuleRef| RuleJson {
        policy: r.policy.clone(),
        rule: r.rule,
        text: text::rule_line(r, d),
    };
    SideJson {
        verdict: match s.verdict {
            "denied" => "deny",
            "not-isolated" | "not-a-pod" => "not_isolated",
            _ => "allow",
        },
        reason: s.verdict,
        policies: s
            .policies
            .iter()
            .chain(&s.admin_policies)
            .cloned()
            .collect(),
        rules: s.denied_by.iter().chain(&s.allowed_by).map(rule).collect(),
        near_misses: s
            .peer_matches_port_does_not
            .iter()
            .chain(&s.port_matches_peer_does_not)
            .map(rule)
            .collect(),
        audit: s.audit.clone(),
    }
}

/// `GET /v1/map/edge`.
pub(super) fn edge(src: &MapSource, q: &EdgeQuery) -> Result<String, MapError> {
    let now = crate::flows::unix_ms();
    let (cells, _, _) = src.map.window(q.window, now);
    let groups = src.policy().map(|p| p.groups.clone()).unwrap_or_default();
    let want = format!(
        "{}>{}:{}/{}",
        q.src,
        q.dst,
        protocol_name(q.protocol),
        q.port
    );
    let mut members = Cells::default();
    for (k, c) in &cells.edges {
        if edge_id(k, &groups) == want {
            members.edges.insert(k.clone(), c.clone());
            for end in [&k.src, &k.dst] {
                if let End::Workload(w) = end
                    && let Some(info) = cells.workloads.get(w)
                {
                    members.workloads.insert(w.clone(), info.clone());
                }
            }
        }
    }
    let ctx = src.context(&members);
    let Some(view) = Parts::of(&members, &ctx).edges.into_iter().next() else {
        return Err(MapError::NotFound(format!(
            "no edge {want} in this time window"
        )));
    };
    let flows = match &src.recent {
        Some(ring) => ring
            .query_by(
                |r| key_of(r).is_ok_and(|k| edge_id(&k, &groups) == want),
                EDGE_FLOWS,
            )
            .iter()
            .filter_map(|r| serde_json::to_value(&**r).ok())
            .collect(),
        None => Vec::new(),
    };
    let example = members
        .edges
        .keys()
        .max_by_key(|k| members.edges[*k].last_seen())
        .expect("an edge has members");
    let (explain, explain_unavailable) = match explain(ctx.policy.as_deref(), example) {
        Ok(e) => (Some(e), None),
        Err(why) => (None, Some(why.to_string())),
    };
    let details = EdgeDetails {
        edge: view,
        flows,
        explain,
        explain_unavailable,
    };
    Ok(with_schema(EDGE_SCHEMA, &details))
}

/// Why an edge has no explanation (`explain_unavailable`).
#[derive(Debug, thiserror::Error)]
enum Unexplained {
    /// The agent has not enforced a policy yet.
    #[error("no policy is in force on this agent yet")]
    NoPolicy,
    /// Not TCP, UDP or SCTP.
    #[error("NetworkPolicy cannot name {0}: explain covers TCP, UDP and SCTP")]
    Protocol(String),
    /// The workload has no pod with an address now.
    #[error("no pod of {0} exists now")]
    Gone(String),
    /// The destination is a Service frontend without backends.
    #[error("{0} is a Service address without backends")]
    NoBackends(String),
    /// explain refused the query.
    #[error(transparent)]
    Explain(#[from] bulkhead_policy::eval::explain::ExplainError),
}

/// One current end of an edge for explain: a pod of the workload (one with
/// an address), or the external address itself.
fn peer(policy: &PolicyNow, end: &End) -> Result<(PeerArg, String), Unexplained> {
    match end {
        End::External(ip) => Ok((PeerArg::Addr(*ip), ip.to_string())),
        End::Workload(id) => {
            let model = &policy.model;
            let pods = policy.pods_of(id);
            let pod = pods
                .iter()
                .map(|&i| &model.pods[i])
                .find(|p| !p.ips.is_empty())
                .ok_or_else(|| Unexplained::Gone(id.to_string()))?;
            Ok((PeerArg::Pod(pod.key()), pod.key()))
        }
    }
}

/// What policy says now of the edge `key`.
fn explain(policy: Option<&PolicyNow>, key: &EdgeKey) -> Result<ExplainJson, Unexplained> {
    let policy = policy.ok_or(Unexplained::NoPolicy)?;
    let protocol = key
        .policy_protocol()
        .ok_or_else(|| Unexplained::Protocol(protocol_name(key.protocol)))?;
    let (from, from_name) = peer(policy, &key.src)?;
    let (to, to_name) = peer(policy, &key.dst)?;
    let a = answer(
        &policy.model,
        &policy.compiled,
        &from,
        &to,
        protocol,
        key.port,
    )?;
    let (e, text): (&Explanation, String) = match &a {
        Answer::Connection(e) => (e, text::connection(e)),
        Answer::Service(s) => {
            let b = s
                .backends
                .first()
                .ok_or_else(|| Unexplained::NoBackends(to_name.clone()))?;
            (&b.explanation, text::service(s))
        }
    };
    Ok(ExplainJson {
        egress: side(&e.egress),
        ingress: side(&e.ingress),
        verdict: if e.allowed { "allowed" } else { "denied" },
        text,
        example: Example {
            from: from_name,
            to: to_name,
        },
    })
}

#[derive(Serialize)]
struct PodJson {
    name: String,
    ips: Vec<IpAddr>,
    local: bool,
}

#[derive(Serialize)]
struct WorkloadDetails {
    workload: bulkhead_learn::map::view::WorkloadView,
    pods: Vec<PodJson>,
    policies: Vec<super::policy::SelectingPolicy>,
    quarantine: Option<Vec<crate::quarantine::QuarantineState>>,
    proposal: Option<WorkloadProposal>,
    proposal_unavailable: Option<String>,
}

/// `GET /v1/map/workload`.
pub(super) fn workload(src: &MapSource, q: &WorkloadQuery) -> Result<String, MapError> {
    let now = crate::flows::unix_ms();
    let (cells, _, _) = src.map.window(q.window, now);
    let ctx: Context = src.context(&Cells::default());
    let id = &q.id;
    let seen = cells.workloads.get(id);
    let pods = ctx.policy.as_ref().map_or(&[][..], |p| p.pods_of(id));
    if seen.is_none() && pods.is_empty() {
        return Err(MapError::NotFound(format!(
            "no workload {id} in this time window nor in the policy in force"
        )));
    }
    let quarantined = src
        .quarantines
        .as_ref()
        .map(|s| s.in_force().quarantines)
        .unwrap_or_default();
    let (mut pod_list, mut mine) = (Vec::new(), Vec::new());
    if let Some(p) = &ctx.policy {
        for &i in pods {
            let pod = &p.model.pods[i];
            pod_list.push(PodJson {
                name: pod.name.clone(),
                ips: pod.ips.clone(),
                local: p.local.contains(&i),
            });
            mine.extend(
                quarantined
                    .iter()
                    .filter(|s| s.namespace == pod.namespace && s.pod == pod.name)
                    .cloned(),
            );
        }
    }
    let (proposal, proposal_unavailable) = match &ctx.policy {
        None => (
            None,
            Some("no policy is in force on this agent yet".to_owned()),
        ),
        Some(p) => match for_workload(&cells.history(), &p.model, id) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    let mut workload = workload_view(id, seen, &ctx);
    workload.quarantined = !mine.is_empty();
    let details = WorkloadDetails {
        workload,
        pods: pod_list,
        policies: ctx
            .policy
            .as_ref()
            .map(|p| p.selecting(id))
            .unwrap_or_default(),
        quarantine: (!mine.is_empty()).then_some(mine),
        proposal,
        proposal_unavailable,
    };
    Ok(with_schema(WORKLOAD_SCHEMA, &details))
}
