//! One scale's cluster as API objects, and the changes the benchmark makes
//! to it: the synthetic namespaces, remote pods and policies
//! ([`super::objects`]), plus the node's two local pods in namespace
//! [`LOCAL_NS`] with the policies that isolate them and allow the client's
//! UDP requests to the server's echo port.
//!
//! Changes: a remote pod created in [`LOCAL_NS`] as another `app: client`
//! (a new allowed peer of the local server), deleted again; the local
//! client relabeled (`role: probe` on and off, which a policy admits to
//! TCP 81 of the server); and for the churn, remote pods of the synthetic
//! workloads created (replicas of a random pod), relabeled (canary track
//! on and off, which policies select on) and deleted.

use std::net::Ipv4Addr;

use bulkhead_policy::model::NAMESPACE_NAME_LABEL;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::objects::{self, Addresses};
use crate::cluster::ClusterSpec;
use crate::dataplane::netns::{CLIENT_IP, SERVER_IP};

/// The namespace of the local pods.
pub const LOCAL_NS: &str = "bench-local";
/// The node under test.
pub const NODE_NAME: &str = "node-0";

/// A scale's objects and what the changes need.
pub struct Synthetic {
    /// Every object to load, in order (namespaces first).
    pub objects: Vec<Value>,
    /// Remote pods of the synthetic workloads, live now.
    pub remote: Vec<Value>,
    /// Remote pod addresses.
    pub addresses: Addresses,
    /// Namespaces (synthetic and local).
    pub namespaces: usize,
    /// NetworkPolicies (synthetic and local).
    pub policies: usize,
    /// Bytes of JSON of all objects.
    pub json_bytes: usize,
    rng: ChaCha8Rng,
    made: u64,
}

/// Generates the cluster of `spec` (its `pods` are the remote pods) plus
/// the local pods and policies. `None` if the pod CIDR cannot hold them.
pub fn generate(spec: &ClusterSpec) -> Option<Synthetic> {
    let cluster = spec.build_with(None);
    let model = cluster.model;
    let mut addresses = Addresses::default();
    let mut objects: Vec<Value> = model.namespaces.values().map(objects::namespace).collect();
    objects.push(local_namespace());
    let mut remote = Vec::with_capacity(model.pods.len());
    for p in &model.pods {
        let (node, ip) = addresses.take()?;
        remote.push(objects::pod(p, &node, ip));
    }
    objects.extend(remote.iter().cloned());
    objects.extend(model.policies.iter().map(objects::policy));
    let local = local_objects();
    objects.extend(local);
    let json_bytes = objects.iter().map(|o| o.to_string().len()).sum();
    Some(Synthetic {
        namespaces: model.namespaces.len() + 1,
        policies: model.policies.len() + LOCAL_POLICIES,
        objects,
        remote,
        addresses,
        json_bytes,
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x0063_6875_726e),
        made: 0,
    })
}

const LOCAL_POLICIES: usize = 4;

fn local_namespace() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": LOCAL_NS, "labels": {
            NAMESPACE_NAME_LABEL: LOCAL_NS, "team": "bench", "env": "prod"}},
    })
}

fn local_pod(name: &str, ip: Ipv4Addr, labels: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": LOCAL_NS, "labels": labels},
        "spec": {"nodeName": NODE_NAME, "containers": [{"name": name, "image": "echo:1", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
                   "startTime": "2026-01-01T00:00:00Z"},
    })
}

fn client_labels(probe: bool) -> Value {
    let mut l = json!({"app": "client", "tier": "frontend", "team": "bench"});
    if probe {
        l["role"] = json!("probe");
    }
    l
}

/// The local client pod, with or without `role: probe`.
pub fn client(probe: bool) -> Value {
    local_pod("client", CLIENT_IP, client_labels(probe), json!([]))
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": LOCAL_NS}, "spec": spec,
    })
}

/// The local pods and the [`LOCAL_POLICIES`] policies: both pods isolated
/// both ways; the client may send to the server's UDP 80, the server
/// admits `app: client` on its named port `echo` (UDP 80) and `role:
/// probe` on TCP 81.
fn local_objects() -> Vec<Value> {
    let server_ports = json!([
        {"name": "echo", "containerPort": 80, "protocol": "UDP"},
        {"name": "http", "containerPort": 80, "protocol": "TCP"},
    ]);
    let server_labels = json!({"app": "server", "tier": "backend", "team": "bench"});
    vec![
        client(false),
        local_pod("server", SERVER_IP, server_labels, server_ports),
        policy(
            "default-deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        policy(
            "client-to-server",
            json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                               "ports": [{"protocol": "UDP", "port": 80}]}]}),
        ),
        policy(
            "server-from-client",
            json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                "ports": [{"protocol": "UDP", "port": "echo"}]}]}),
        ),
        policy(
            "server-from-probe",
            json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "probe"}}}],
                                "ports": [{"protocol": "TCP", "port": 81}]}]}),
        ),
    ]
}

/// A changed object, or one to delete.
pub enum Change {
    /// Create or replace.
    Apply(Value),
    /// Delete this pod (namespace, name).
    DeletePod(String, String),
}

fn name_of(v: &Value) -> (String, String) {
    let f = |k: &str| v["metadata"][k].as_str().unwrap_or_default().to_owned();
    (f("namespace"), f("name"))
}

impl Synthetic {
    /// A new remote `app: client` pod in [`LOCAL_NS`] (an allowed peer
    /// of the local server).
    pub fn new_local_ns_peer(&mut self) -> Option<Value> {
        let (node, ip) = self.addresses.take()?;
        self.made += 1;
        let mut pod = local_pod(
            &format!("peer-{}", self.made),
            ip,
            client_labels(false),
            json!([]),
        );
        pod["spec"]["nodeName"] = json!(node);
        Some(pod)
    }

    /// Gives a deleted pod's address back.
    pub fn release(&mut self, pod: &Value) {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(ip) = pod["status"]["podIP"].as_str().and_then(|s| s.parse().ok()) {
            self.addresses.release(node, ip);
        }
    }

    /// The `i`th churn change: creates, relabels and deletes in turn, on
    /// remote pods of the synthetic workloads.
    pub fn churn_change(&mut self, i: u64) -> Option<Change> {
        if self.remote.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..self.remote.len());
        match i % 3 {
            0 => {
                let (node, ip) = self.addresses.take()?;
                self.made += 1;
                let mut pod = self.remote[pick].clone();
                let (_, name) = name_of(&pod);
                pod["metadata"]["name"] = json!(format!("{name}-c{}", self.made));
                pod["spec"]["nodeName"] = json!(node);
                pod["status"]["podIP"] = json!(ip.to_string());
                pod["status"]["podIPs"] = json!([{"ip": ip.to_string()}]);
                self.remote.push(pod.clone());
                Some(Change::Apply(pod))
            }
            1 => {
                let pod = &mut self.remote[pick];
                let labels = &mut pod["metadata"]["labels"];
                if labels.get("track").is_some() {
                    labels.as_object_mut()?.remove("track");
                } else {
                    labels["track"] = json!("canary");
                }
                Some(Change::Apply(pod.clone()))
            }
            _ => {
                let pod = self.remote.swap_remove(pick);
                self.release(&pod);
                let (ns, name) = name_of(&pod);
                Some(Change::DeletePod(ns, name))
            }
        }
    }
}
