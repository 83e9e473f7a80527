//! The resources the fake API server serves (one table row each) and the
//! discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`,
//! `/version`) that let real clients such as `kubectl` find them.

use std::net::SocketAddr;

use serde_json::{Value, json};

/// One served resource type: what discovery reports and the store keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    /// API version within the group, e.g. `v1`.
    pub version: &'static str,
    /// Plural resource name used in paths, e.g. `pods`.
    pub plural: &'static str,
    /// Singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Kind of one object, e.g. `Pod`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names `kubectl` accepts, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Field selector labels this resource supports beyond `metadata.name`
    /// and `metadata.namespace`, each with its path in the object.
    pub fields: &'static [(&'static str, &'static [&'static str])],
    /// Served only while a CustomResourceDefinition named
    /// `plural.group` exists (as a real API server serves a CRD's kind).
    pub custom: bool,
}

impl ResourceType {
    /// `apiVersion` of its objects: `v1` for core, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Kind of a list of these objects, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// Every resource served. Adding one (nodes, endpointslices, a
/// CRD of `policy.networking.k8s.io`) is one row here.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        fields: &[("status.phase", &["status", "phase"])],
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        fields: &[
            ("spec.nodeName", &["spec", "nodeName"]),
            ("status.phase", &["status", "phase"]),
        ],
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        fields: &[
            ("spec.clusterIP", &["spec", "clusterIP"]),
            ("spec.type", &["spec", "type"]),
        ],
        custom: false,
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        namespaced: true,
        short_names: &["netpol"],
        fields: &[],
        custom: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        fields: &[],
        custom: false,
    },
    ResourceType {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        fields: &[],
        custom: false,
    },
    ResourceType {
        group: "policy.networking.k8s.io",
        version: "v1alpha2",
        plural: "clusternetworkpolicies",
        singular: "clusternetworkpolicy",
        kind: "ClusterNetworkPolicy",
        namespaced: false,
        short_names: &["cnp"],
        fields: &[],
        custom: true,
    },
    ResourceType {
        group: "policy.networking.k8s.io",
        version: "v1alpha1",
        plural: "adminnetworkpolicies",
        singular: "adminnetworkpolicy",
        kind: "AdminNetworkPolicy",
        namespaced: false,
        short_names: &["anp"],
        fields: &[],
        custom: true,
    },
    ResourceType {
        group: "policy.networking.k8s.io",
        version: "v1alpha1",
        plural: "baselineadminnetworkpolicies",
        singular: "baselineadminnetworkpolicy",
        kind: "BaselineAdminNetworkPolicy",
        namespaced: false,
        short_names: &["banp"],
        fields: &[],
        custom: true,
    },
];

/// For a CRD-served resource: the CRD's name, `plural.group`.
pub(crate) fn crd_name(res: ResId) -> Option<String> {
    let r = &RESOURCES[res];
    r.custom.then(|| format!("{}.{}", r.plural, r.group))
}

/// Index of a resource in [`RESOURCES`]; the store keys on it.
pub(crate) type ResId = usize;

/// The resource served at `/{group}/{version}/{plural}`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<ResId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of objects with this `apiVersion` and `kind`.
pub(crate) fn by_api_version_kind(api_version: &str, kind: &str) -> Option<ResId> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// The resource named by its kind (`Pod`) or plural (`pods`), any group.
pub(crate) fn by_name(name: &str) -> Option<ResId> {
    RESOURCES
        .iter()
        .position(|r| r.kind == name || r.plural == name)
}

/// The version the server reports at `/version` (a kubectl that picks its
/// own version by the server's, like gcloud's dispatcher, picks this one).
const MINOR: &str = "33";

/// `/version`: a `version.Info`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "gitVersion": format!("v1.{MINOR}.0-bulkhead-fake"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's `APIVersions`.
pub(crate) fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

/// The named groups, each with its versions, in table order.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if versions.contains(&r.version) => {}
            Some((_, versions)) => versions.push(r.version),
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

/// `/apis`: an `APIGroupList` of the named groups.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "preferredVersion": versions[0].clone(),
                "versions": versions,
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/{group}/{version}`: an `APIResourceList`, or `None`
/// for a group/version not served.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": r.short_names,
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
