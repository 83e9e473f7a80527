//! The UI benchmark's synthetic cluster and traffic: `namespaces`
//! namespaces of `per_namespace` workloads (a Deployment with one pod
//! each, `app`/`tier` labels, one declared TCP port), and flow records
//! that make exactly `edges` distinct edges (source workload, destination
//! workload, TCP, port), deterministic.
//!
//! The shape is a plausible cluster, not a worst case: every workload
//! calls the DNS workload (the first namespace's first workload), mostly
//! peers of its own namespace, and a few in its neighbouring namespaces,
//! so the all-namespaces view has a few hundred namespace-to-namespace
//! edges. Most edges are allowed; a few are denied (naming a policy),
//! would-deny in audit, or revoked, so every colour is drawn.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use bulkhead_flows::record::{
    Address, Audit, AuditVerdict, Counts, Dropped, EndReason, FlowDirection, FlowRecord,
    FlowVerdict, IpProtocol, PodInfo, PolicyRef, RecordKind, Schema, Timestamp,
};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{ContainerPort, Model, Origin, Pod, Protocol, Workload};

/// The cluster's size and traffic.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Namespaces.
    pub namespaces: usize,
    /// Workloads in each.
    pub per_namespace: usize,
    /// Distinct edges the records make.
    pub edges: usize,
}

impl Shape {
    /// Workloads in all.
    pub fn workloads(&self) -> usize {
        self.namespaces * self.per_namespace
    }
}

/// A workload's pod as records show it, and its address.
pub struct Peer {
    /// Its pod identity.
    pub info: Arc<PodInfo>,
    /// Its address.
    pub ip: IpAddr,
    /// Its declared port.
    pub port: u16,
}

/// The model (every workload's pod, addresses assigned) and each
/// workload's [`Peer`], in the model's pod order.
pub fn cluster(shape: Shape) -> (Model, Vec<Peer>) {
    let mut m = Model::default();
    for i in 0..shape.workloads() {
        let name = format!("app-{i:03}");
        m.pods.push(Pod {
            namespace: namespace(shape, i),
            name: name.clone(),
            source: Workload {
                kind: "Deployment".into(),
                name: name.clone(),
            },
            owner: None,
            labels: [
                ("app".to_string(), name.clone()),
                (
                    "tier".to_string(),
                    ["web", "api", "data"][i % 3].to_string(),
                ),
            ]
            .into(),
            ports: vec![ContainerPort {
                name: Some("svc".into()),
                port: port_of(i),
                protocol: Protocol::Tcp,
            }],
            ips: vec![],
            claim: Default::default(),
            node: None,
            off_network: None,
            origin: Origin::default(),
        });
    }
    m.normalize();
    AddressPlan::default()
        .assign(&mut m.pods)
        .expect("addresses");
    let peers = m
        .pods
        .iter()
        .map(|p| Peer {
            info: Arc::new(PodInfo {
                namespace: p.namespace.as_str().into(),
                pod: format!("{}-5d8f9c-x1y2z", p.name).into(),
                workload: Some(format!("Deployment/{}", p.name).into()),
                labels: p.labels.clone(),
            }),
            ip: p.ips[0],
            port: p.ports[0].port,
        })
        .collect();
    (m, peers)
}

fn namespace(shape: Shape, i: usize) -> String {
    format!("team-{:02}", i / shape.per_namespace)
}

fn port_of(i: usize) -> u16 {
    8000 + (i % 50) as u16
}

/// Distinct `(src, dst)` workload indices, `shape.edges` of them: each
/// workload calls the DNS workload (0), then, round by round, one more
/// peer ([`callee`]) until the count is reached.
pub fn edges(shape: Shape) -> Vec<(usize, usize)> {
    let n = shape.workloads();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(shape.edges);
    let mut push = |s: usize, d: usize, out: &mut Vec<(usize, usize)>| {
        if s != d && out.len() < shape.edges && seen.insert((s, d)) {
            out.push((s, d));
        }
    };
    for s in 1..n {
        push(s, 0, &mut out);
    }
    let rounds = shape.per_namespace - 1 + 3 * shape.per_namespace;
    for round in 0..rounds {
        for s in 0..n {
            push(s, callee(shape, s, round), &mut out);
        }
    }
    assert_eq!(out.len(), shape.edges, "too many edges for {shape:?}");
    out
}

/// The peer workload `s` calls in round `round`: first seven peers of its
/// own namespace, then one in each of the next, next but one and fifth
/// namespaces, then its namespace's other peers, then more of the
/// neighbouring namespaces' workloads.
fn callee(shape: Shape, s: usize, round: usize) -> usize {
    let per = shape.per_namespace;
    let ns = s / per;
    let at = |dns: usize, k: usize| ((ns + dns) % shape.namespaces) * per + k % per;
    let intra = per - 1;
    let first = intra.min(7);
    match round {
        r if r < first => at(0, s + 1 + r),
        r if r < first + 3 => at([1, 2, 5][r - first], s),
        r if r < intra + 3 => at(0, s + 1 + r - 3),
        r => {
            let r = r - intra - 3;
            at([1, 2, 5][r % 3], s + 1 + r / 3)
        }
    }
}

/// How the `i`th edge is judged: most allowed, every 40th denied (by its
/// destination namespace's `default-deny`), every 60th would-deny in
/// audit, every 250th revoked.
fn verdict_of(i: usize) -> (FlowVerdict, Option<&'static str>) {
    if i % 40 == 39 {
        (FlowVerdict::Denied, None)
    } else if i % 60 == 59 {
        (FlowVerdict::Allowed, Some("would_deny"))
    } else if i % 250 == 249 {
        (FlowVerdict::Revoked, None)
    } else {
        (FlowVerdict::Allowed, None)
    }
}

/// Records of the edges: for each, one connection recorded at both ends
/// (egress at the client, ingress at the server), ending within the last
/// minute before `now_ms`.
pub fn records(peers: &[Peer], edges: &[(usize, usize)], now_ms: u64) -> Vec<FlowRecord> {
    let node: Arc<str> = "node-a".into();
    let mut out = Vec::with_capacity(edges.len() * 2);
    for (i, &(s, d)) in edges.iter().enumerate() {
        let t = now_ms - 60_000 + (i as u64 * 7) % 55_000;
        let (verdict, audit) = verdict_of(i);
        for dir in [FlowDirection::Egress, FlowDirection::Ingress] {
            out.push(record(&peers[s], &peers[d], dir, verdict, audit, t, &node));
        }
    }
    out
}

fn record(
    src: &Peer,
    dst: &Peer,
    dir: FlowDirection,
    verdict: FlowVerdict,
    audit: Option<&'static str>,
    t: u64,
    node: &Arc<str>,
) -> FlowRecord {
    let end = |p: &Peer, port: u16| Address {
        ip: p.ip,
        port,
        pod: Some(p.info.clone()),
        external: false,
    };
    let local = match dir {
        FlowDirection::Egress => src,
        FlowDirection::Ingress => dst,
    };
    // The server's ingress decides a denial: its namespace's default deny.
    let decides = verdict != FlowVerdict::Allowed && dir == FlowDirection::Ingress;
    let deny = || PolicyRef {
        name: format!("{}/default-deny", dst.info.namespace).into(),
        rule: None,
        tier: None,
        action: None,
        rule_name: None,
    };
    let policies: Arc<[PolicyRef]> = if decides {
        Arc::from(vec![deny()])
    } else {
        Arc::from(Vec::new())
    };
    let dropped = if decides {
        Dropped {
            packets: 1,
            ..Dropped::default()
        }
    } else {
        Dropped::default()
    };
    FlowRecord {
        schema: Schema,
        kind: RecordKind::Flow,
        event: None,
        node: node.clone(),
        start: Timestamp(t),
        end: Timestamp(t + 250),
        end_reason: Some(EndReason::Closed),
        ifindex: 7,
        endpoint: Some(local.info.clone()),
        direction: dir,
        src: end(src, 40_000),
        dst: end(dst, dst.port),
        service: None,
        protocol: IpProtocol(6),
        packets: Counts { orig: 6, reply: 5 },
        bytes: Counts {
            orig: 900,
            reply: 4000,
        },
        dropped,
        tcp_flags: None,
        verdict,
        drop_reason: None,
        policies,
        revision: 1,
        audit: audit
            .filter(|_| dir == FlowDirection::Ingress)
            .map(|_| Audit {
                verdict: AuditVerdict::WouldDeny,
                policies: Arc::from(vec![deny()]),
            }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_issue_shape() {
        let shape = Shape {
            namespaces: 50,
            per_namespace: 10,
            edges: 5000,
        };
        let (model, peers) = cluster(shape);
        assert_eq!(model.pods.len(), 500);
        let namespaces: BTreeSet<&str> = model.pods.iter().map(|p| p.namespace.as_str()).collect();
        assert_eq!(namespaces.len(), 50);
        let edges = edges(shape);
        assert_eq!(edges.len(), 5000);
        let distinct: BTreeSet<_> = edges.iter().collect();
        assert_eq!(distinct.len(), 5000);
        assert!(edges.iter().all(|(s, d)| s != d));
        let recs = records(&peers, &edges, 1_800_000_000_000);
        assert_eq!(recs.len(), 10_000);
        let denied = recs
            .iter()
            .filter(|r| r.verdict == FlowVerdict::Denied)
            .count();
        assert!(denied > 0 && denied < recs.len() / 10, "{denied}");
        assert!(recs.iter().any(|r| r.audit.is_some()));
        assert!(recs.iter().any(|r| r.verdict == FlowVerdict::Revoked));
    }
}
