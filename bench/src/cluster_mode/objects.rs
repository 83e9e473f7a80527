//! The synthetic cluster as Kubernetes API objects (JSON, as a client
//! would create them): the compile benchmark's generator
//! ([`crate::cluster`]) draws namespaces, workloads, pods and
//! NetworkPolicies; this module writes them out as `v1/Namespace`,
//! `v1/Pod` (scheduled on remote nodes, with `status.podIP`s) and
//! `networking.k8s.io/v1/NetworkPolicy` objects.
//!
//! Pod addresses come from [`Addresses`]: one /24 per node out of
//! [`POD_CIDR`], [`PODS_PER_NODE`] pods per node (Kubernetes' default
//! maximum), as a cloud provider's IPAM hands them out.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use bulkhead_policy::model::{
    Labels, Namespace, NamespaceScope, Peer, Pod, Policy, PortMatch, PortSpec, Requirement, Rule,
    Selector,
};
use serde_json::{Map, Value, json};

/// The pod CIDR remote pods get addresses from (1,024 node /24s).
pub const POD_CIDR: &str = "10.244.0.0/14";

/// Pods per node (Kubernetes' default `maxPods`).
pub const PODS_PER_NODE: usize = 110;

/// Nodes the pod CIDR has room for.
const NODES: u32 = 1024;

/// Gives out remote pod addresses node by node, reusing released ones
/// (oldest first, as IPAM does once a pod is gone).
#[derive(Debug)]
pub struct Addresses {
    /// Next never-used slot: node index × [`PODS_PER_NODE`] + pod.
    next: u32,
    released: VecDeque<(String, Ipv4Addr)>,
}

impl Default for Addresses {
    fn default() -> Self {
        // Node 0 is the node under test: remote pods start on node 1.
        Self {
            next: PODS_PER_NODE as u32,
            released: VecDeque::new(),
        }
    }
}

impl Addresses {
    /// A node name and an address on it, or `None` when the pod CIDR is
    /// full.
    pub fn take(&mut self) -> Option<(String, Ipv4Addr)> {
        if let Some(a) = self.released.pop_front() {
            return Some(a);
        }
        let per = PODS_PER_NODE as u32;
        let (node, slot) = (self.next / per, self.next % per);
        if node >= NODES {
            return None;
        }
        self.next += 1;
        let base = u32::from(Ipv4Addr::new(10, 244, 0, 0));
        Some((
            format!("node-{node}"),
            Ipv4Addr::from(base + node * 256 + 2 + slot),
        ))
    }

    /// Gives an address back (its pod was deleted).
    pub fn release(&mut self, node: String, addr: Ipv4Addr) {
        self.released.push_back((node, addr));
    }
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A `v1/Namespace` (its labels include `kubernetes.io/metadata.name`, as
/// the API server sets it).
pub fn namespace(ns: &Namespace) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns.name, "labels": labels_json(&ns.labels)},
        "status": {"phase": "Active"},
    })
}

/// A running `v1/Pod` of the model's `pod`, scheduled on `node` with
/// address `ip`: its owner as a controller reference (ReplicaSet pods
/// also carry `pod-template-hash`, as Deployments make them), one
/// container with the pod's ports.
pub fn pod(pod: &Pod, node: &str, ip: Ipv4Addr) -> Value {
    let mut labels = pod.labels.clone();
    let app = pod.labels.get("app").map_or("app", String::as_str);
    let mut owners = Vec::new();
    if let Some(owner) = &pod.owner {
        let mut name = owner.name.clone();
        if owner.kind == "ReplicaSet" {
            // One ReplicaSet per workload version and track, its hash on
            // every replica (as a Deployment makes them).
            let template = format!("{}/{app}/{:?}", pod.namespace, pod.labels);
            let hash = format!("{:08x}", fnv(&template));
            name = format!("{app}-{hash}");
            labels.insert("pod-template-hash".into(), hash);
        }
        owners.push(json!({
            "apiVersion": "apps/v1",
            "kind": owner.kind,
            "name": name,
            "uid": format!("{:08x}-0000-4000-8000-000000000000", fnv(&name)),
            "controller": true,
            "blockOwnerDeletion": true,
        }));
    }
    let ports: Vec<Value> = pod
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"containerPort": p.port, "protocol": p.protocol.as_str()});
            if let Some(name) = &p.name {
                port["name"] = json!(name);
            }
            port
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": labels_json(&labels),
            "ownerReferences": owners,
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "containers": [{
                "name": app,
                "image": format!("registry.example/{}/{app}:1.0", pod.namespace),
                "ports": ports,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }],
        },
        "status": {
            "phase": "Running",
            "hostIP": node_ip(node),
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "startTime": "2026-01-01T00:00:00Z",
        },
    })
}

/// The node's own address (status.hostIP; not used by the agent).
fn node_ip(node: &str) -> String {
    let n: u32 = node
        .strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 0, 0)) + n + 1).to_string()
}

/// A small stable hash for made-up uids.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A `networking.k8s.io/v1/NetworkPolicy` of the model's `policy`.
pub fn policy(policy: &Policy) -> Value {
    let mut spec = Map::new();
    spec.insert("podSelector".into(), selector(&policy.pod_selector));
    let mut types = Vec::new();
    if let Some(rules) = &policy.ingress {
        types.push("Ingress");
        spec.insert("ingress".into(), rules_json(rules, "from"));
    }
    if let Some(rules) = &policy.egress {
        types.push("Egress");
        spec.insert("egress".into(), rules_json(rules, "to"));
    }
    spec.insert("policyTypes".into(), json!(types));
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": policy.name, "namespace": policy.namespace},
        "spec": spec,
    })
}

fn rules_json(rules: &[Rule], peers_field: &str) -> Value {
    let rules = rules
        .iter()
        .map(|r| {
            let mut rule = Map::new();
            if let Some(peers) = &r.peers {
                rule.insert(peers_field.into(), peers.iter().map(peer).collect());
            }
            if let Some(ports) = &r.ports {
                rule.insert("ports".into(), ports.iter().map(port).collect());
            }
            Value::Object(rule)
        })
        .collect();
    Value::Array(rules)
}

fn peer(p: &Peer) -> Value {
    match p {
        Peer::Pods {
            namespaces: NamespaceScope::Same(_),
            pods,
        } => json!({"podSelector": selector(pods)}),
        Peer::Pods {
            namespaces: NamespaceScope::Selected(ns),
            pods,
        } if pods.is_everything() => json!({"namespaceSelector": selector(ns)}),
        Peer::Pods {
            namespaces: NamespaceScope::Selected(ns),
            pods,
        } => json!({"namespaceSelector": selector(ns), "podSelector": selector(pods)}),
        Peer::IpBlock(b) => {
            let mut block = json!({"cidr": b.cidr.to_string()});
            if !b.except.is_empty() {
                block["except"] = b.except.iter().map(|e| json!(e.to_string())).collect();
            }
            json!({"ipBlock": block})
        }
    }
}

fn port(p: &PortSpec) -> Value {
    let mut port = json!({"protocol": p.protocol.as_str()});
    match &p.port {
        PortMatch::Any => {}
        PortMatch::Range(lo, hi) => {
            port["port"] = json!(lo);
            if hi != lo {
                port["endPort"] = json!(hi);
            }
        }
        PortMatch::Named(name) => port["port"] = json!(name),
    }
    port
}

/// A label selector: single-value `In`s as `matchLabels`, the rest as
/// `matchExpressions`.
pub fn selector(s: &Selector) -> Value {
    let mut labels = Map::new();
    let mut exprs = Vec::new();
    for r in s.requirements() {
        match r {
            Requirement::In(k, vs) if vs.len() == 1 => {
                labels.insert(k.clone(), json!(vs[0]));
            }
            Requirement::In(k, vs) => {
                exprs.push(json!({"key": k, "operator": "In", "values": vs}));
            }
            Requirement::NotIn(k, vs) => {
                exprs.push(json!({"key": k, "operator": "NotIn", "values": vs}));
            }
            Requirement::Exists(k) => exprs.push(json!({"key": k, "operator": "Exists"})),
            Requirement::DoesNotExist(k) => {
                exprs.push(json!({"key": k, "operator": "DoesNotExist"}));
            }
        }
    }
    let mut out = Map::new();
    if !labels.is_empty() {
        out.insert("matchLabels".into(), Value::Object(labels));
    }
    if !exprs.is_empty() {
        out.insert("matchExpressions".into(), Value::Array(exprs));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
