//! The wire form of the three cluster-admin kinds, as one union: every
//! field any of them has, all optional, so that one decoder reads them
//! all and the converter checks, per kind, which fields belong (a field
//! of another kind is an unknown field to the API server).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;

/// A whole object (`apiVersion` and `kind` are checked and `status`
/// removed before decoding: it is not policy).
#[derive(Deserialize)]
pub(super) struct Doc {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<Spec>,
}

/// `spec` of any of the three kinds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Spec {
    /// ClusterNetworkPolicy only.
    pub tier: Option<String>,
    /// Not in BaselineAdminNetworkPolicy.
    pub priority: Option<i64>,
    pub subject: Option<Subject>,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

/// `spec.subject`: exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Subject {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

/// Pods in namespaces.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NamespacedPod {
    /// Optional in v1alpha2, required in v1alpha1.
    pub namespace_selector: Option<LabelSelector>,
    pub pod_selector: Option<LabelSelector>,
}

/// An ingress (`from`) or egress (`to`) rule.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rule {
    pub name: Option<String>,
    pub action: Option<String>,
    /// Ingress only.
    pub from: Option<Vec<Peer>>,
    /// Egress only.
    pub to: Option<Vec<Peer>>,
    /// v1alpha2 only.
    pub protocols: Option<Vec<Protocol>>,
    /// v1alpha1 only.
    pub ports: Option<Vec<Port>>,
}

/// A peer: exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Peer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    /// Egress only.
    pub nodes: Option<LabelSelector>,
    /// Egress only.
    pub networks: Option<Vec<String>>,
    /// Egress only, not in BaselineAdminNetworkPolicy; not supported.
    pub domain_names: Option<Vec<String>>,
}

/// A v1alpha2 `protocols` entry: exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Protocol {
    pub tcp: Option<L4>,
    pub udp: Option<L4>,
    pub sctp: Option<L4>,
    pub destination_named_port: Option<String>,
}

/// TCP, UDP or SCTP matches (at least one field).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct L4 {
    pub destination_port: Option<DestinationPort>,
}

/// A v1alpha2 port: exactly one field.
#[derive(Deserialize)]
pub(super) struct DestinationPort {
    pub number: Option<i64>,
    pub range: Option<Range>,
}

/// A port range (v1alpha2; v1alpha1 adds a protocol).
#[derive(Deserialize)]
pub(super) struct Range {
    /// v1alpha1 only.
    pub protocol: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// A v1alpha1 `ports` entry: exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Port {
    pub port_number: Option<PortNumber>,
    pub named_port: Option<String>,
    pub port_range: Option<Range>,
}

/// A v1alpha1 port number.
#[derive(Deserialize)]
pub(super) struct PortNumber {
    /// Defaults to TCP.
    pub protocol: Option<String>,
    pub port: Option<i64>,
}
