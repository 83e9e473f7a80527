//! The cluster as the watches have it: each watched kind's objects,
//! converted as they arrive (pods trimmed to what identity needs: the
//! converted model pod, never the API object), and assembled into a model
//! only when every kind has completed its initial list.
//!
//! A relist (after a 410 Gone or a desync) is buffered and swapped in at
//! its end, as kube's reflector store does, so a kind never shows a
//! partial list. An object that cannot be used (the API accepted something
//! this version cannot read) is left out with a warning that lasts as long
//! as the object does; it never stops the rest of the view.

use std::collections::BTreeMap;

use kube::runtime::watcher::Event;
use serde_json::Value;

use crate::model::addressing::AddressPlan;
use crate::model::{AdminKind, AdminPolicy, Mode, Model, Namespace, Node, Pod, Policy, Service};
use crate::source::manifest::{self, ApiObject, Purpose};

/// A watched kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Pod.
    Pod,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// core/v1 Service.
    Service,
    /// core/v1 Node.
    Node,
    /// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy (a CRD).
    ClusterNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy (a CRD).
    AdminNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy (a CRD).
    BaselineAdminNetworkPolicy,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 8] = [
        Self::Namespace,
        Self::Pod,
        Self::NetworkPolicy,
        Self::Service,
        Self::Node,
        Self::ClusterNetworkPolicy,
        Self::AdminNetworkPolicy,
        Self::BaselineAdminNetworkPolicy,
    ];

    /// The API resource (plural).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Pod => "pods",
            Self::NetworkPolicy => "networkpolicies",
            Self::Service => "services",
            Self::Node => "nodes",
            Self::ClusterNetworkPolicy => "clusternetworkpolicies",
            Self::AdminNetworkPolicy => "adminnetworkpolicies",
            Self::BaselineAdminNetworkPolicy => "baselineadminnetworkpolicies",
        }
    }

    /// The API kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Pod => "Pod",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::Service => "Service",
            Self::Node => "Node",
            Self::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Self::AdminNetworkPolicy => "AdminNetworkPolicy",
            Self::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// For a kind served by a CustomResourceDefinition (often not
    /// installed): its group and version.
    pub fn custom(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::ClusterNetworkPolicy => Some(("policy.networking.k8s.io", "v1alpha2")),
            Self::AdminNetworkPolicy | Self::BaselineAdminNetworkPolicy => {
                Some(("policy.networking.k8s.io", "v1alpha1"))
            }
            _ => None,
        }
    }
}

/// One kind's objects, by `namespace/name`.
struct Objects<T> {
    live: BTreeMap<String, T>,
    /// A relist in progress.
    relisting: Option<BTreeMap<String, T>>,
    /// An initial list completed.
    synced: bool,
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Self {
            live: BTreeMap::new(),
            relisting: None,
            synced: false,
        }
    }
}

impl<T> Objects<T> {
    fn put(&mut self, key: String, object: Option<T>, listing: bool) {
        let map = match (&mut self.relisting, listing) {
            (Some(map), true) => map,
            _ => &mut self.live,
        };
        match object {
            Some(o) => map.insert(key, o),
            None => map.remove(&key),
        };
    }
}

/// What the view does with any kind's objects, whatever their type.
trait Slot {
    fn begin_relist(&mut self);
    fn finish_relist(&mut self);
    fn synced(&self) -> bool;
    fn contains(&self, key: &str) -> bool;
    fn remove(&mut self, key: String, listing: bool);
    /// No such objects at all (the kind is not served): listed, empty.
    /// Whether anything changed.
    fn absent(&mut self) -> bool;
}

impl<T> Slot for Objects<T> {
    fn begin_relist(&mut self) {
        self.relisting = Some(BTreeMap::new());
    }
    fn finish_relist(&mut self) {
        if let Some(map) = self.relisting.take() {
            self.live = map;
        }
        self.synced = true;
    }
    fn synced(&self) -> bool {
        self.synced
    }
    fn contains(&self, key: &str) -> bool {
        self.live.contains_key(key)
    }
    fn remove(&mut self, key: String, listing: bool) {
        self.put(key, None, listing);
    }
    fn absent(&mut self) -> bool {
        let changed = !self.synced || !self.live.is_empty();
        self.live.clear();
        self.relisting = None;
        self.synced = true;
        changed
    }
}

/// The view of the cluster.
#[derive(Default)]
pub struct View {
    namespaces: Objects<Namespace>,
    pods: Objects<Pod>,
    policies: Objects<Policy>,
    services: Objects<Service>,
    nodes: Objects<Node>,
    /// Cluster-admin policies, one slot per kind (each lists on its own).
    cnps: Objects<AdminPolicy>,
    anps: Objects<AdminPolicy>,
    banps: Objects<AdminPolicy>,
    /// Why objects are left out, by `Kind namespace/name`.
    skipped: BTreeMap<String, String>,
    /// Highest resourceVersion seen in an event.
    revision: u64,
}

impl View {
    fn slot(&mut self, kind: Kind) -> &mut dyn Slot {
        match kind {
            Kind::Namespace => &mut self.namespaces,
            Kind::Pod => &mut self.pods,
            Kind::NetworkPolicy => &mut self.policies,
            Kind::Service => &mut self.services,
            Kind::Node => &mut self.nodes,
            Kind::ClusterNetworkPolicy => &mut self.cnps,
            Kind::AdminNetworkPolicy => &mut self.anps,
            Kind::BaselineAdminNetworkPolicy => &mut self.banps,
        }
    }

    fn slot_ref(&self, kind: Kind) -> &dyn Slot {
        match kind {
            Kind::Namespace => &self.namespaces,
            Kind::Pod => &self.pods,
            Kind::NetworkPolicy => &self.policies,
            Kind::Service => &self.services,
            Kind::Node => &self.nodes,
            Kind::ClusterNetworkPolicy => &self.cnps,
            Kind::AdminNetworkPolicy => &self.anps,
            Kind::BaselineAdminNetworkPolicy => &self.banps,
        }
    }

    /// Whether every kind has completed its initial list (a kind the
    /// cluster does not serve counts as listed, empty: [`View::absent`]).
    pub fn complete(&self) -> bool {
        Kind::ALL.iter().all(|k| self.slot_ref(*k).synced())
    }

    /// The highest resourceVersion the view includes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Objects left out, with why.
    pub fn skipped(&self) -> impl Iterator<Item = &String> {
        self.skipped.values()
    }

    /// `kind` is not served (its CRD is not installed): none of its
    /// objects exist, and it counts as listed. Whether the view changed.
    pub fn absent(&mut self, kind: Kind) -> bool {
        let changed = self.slot(kind).absent();
        let prefix = format!("{} ", kind.name());
        self.skipped.retain(|k, _| !k.starts_with(&prefix));
        changed
    }

    /// Applies one watch event of `kind` (objects as JSON); whether the
    /// view changed.
    pub fn apply(&mut self, kind: Kind, event: Event<Value>) -> bool {
        match event {
            Event::Init => {
                self.slot(kind).begin_relist();
                false
            }
            Event::InitApply(v) => {
                self.put(kind, v, true, false);
                false
            }
            Event::InitDone => {
                self.finish_relist(kind);
                true
            }
            Event::Apply(v) => self.put(kind, v, false, false),
            Event::Delete(v) => self.put(kind, v, false, true),
        }
    }

    fn finish_relist(&mut self, kind: Kind) {
        self.slot(kind).finish_relist();
        // Warnings of objects a relist no longer has go with them.
        let prefix = format!("{} ", kind.name());
        let slot = self.slot_ref(kind);
        let keep: Vec<String> = self
            .skipped
            .keys()
            .filter(|k| k.strip_prefix(&prefix).is_none_or(|key| slot.contains(key)))
            .cloned()
            .collect();
        self.skipped.retain(|k, _| keep.contains(k));
    }

    /// Converts and stores (or removes) one object; whether the view changed.
    fn put(&mut self, kind: Kind, value: Value, listing: bool, deleted: bool) -> bool {
        if let Some(rv) = resource_version(&value) {
            self.revision = self.revision.max(rv);
        }
        let key = object_key(&value);
        let skip_key = format!("{} {key}", kind.name());
        let object = if deleted {
            None
        } else {
            match manifest::api_object(kind.name(), value) {
                Ok(o) => Some(o),
                Err(e) => {
                    let text = format!("{e} (left out)");
                    tracing::warn!("{text}");
                    self.skipped.insert(skip_key.clone(), text);
                    None
                }
            }
        };
        if object.is_some() || deleted {
            self.skipped.remove(&skip_key);
        }
        match object {
            Some(ApiObject::Namespace(n)) => self.namespaces.put(key, Some(n), listing),
            Some(ApiObject::Pod(p)) => self.pods.put(key, Some(p), listing),
            Some(ApiObject::Policy(p)) => self.policies.put(key, Some(p), listing),
            Some(ApiObject::Service(s)) => self.services.put(key, Some(s), listing),
            Some(ApiObject::Node(n)) => self.nodes.put(key, Some(n), listing),
            Some(ApiObject::Admin(p)) => match p.kind {
                AdminKind::ClusterNetworkPolicy => self.cnps.put(key, Some(p), listing),
                AdminKind::AdminNetworkPolicy => self.anps.put(key, Some(p), listing),
                AdminKind::BaselineAdminNetworkPolicy => self.banps.put(key, Some(p), listing),
                // The agent's own, never an API object.
                AdminKind::Quarantine => {}
            },
            None => self.slot(kind).remove(key, listing),
        }
        !listing
    }

    /// The model of the view, assembled as the manifest source assembles
    /// its own (one model), for enforcement: pods off the pod network left
    /// out, addresses only from pod status (a pod without one yet has an
    /// identity and no address), Service addresses and NodePorts only as
    /// the API server gave them.
    pub fn model(&self, default_mode: Mode) -> Model {
        let admin = [&self.cnps, &self.anps, &self.banps];
        let mut model = Model {
            namespaces: self
                .namespaces
                .live
                .values()
                .map(|n| (n.name.clone(), n.clone()))
                .collect(),
            pods: self.pods.live.values().cloned().collect(),
            policies: self.policies.live.values().cloned().collect(),
            services: self.services.live.values().cloned().collect(),
            admin_policies: admin
                .iter()
                .flat_map(|o| o.live.values().cloned())
                .collect(),
            nodes: self.nodes.live.values().cloned().collect(),
            default_mode,
            ..Model::default()
        };
        model.warnings = self.skipped.values().cloned().collect();
        let plan = AddressPlan {
            cidrs: Vec::new(),
            ignore_status: false,
            service_cidrs: Vec::new(),
            node_ports: None,
        };
        manifest::assemble(model, &plan, Purpose::Enforcement)
            .expect("a plan without CIDRs cannot fail")
    }
}

/// `metadata.resourceVersion` as a number (etcd's), if it is one.
fn resource_version(value: &Value) -> Option<u64> {
    value
        .pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// `namespace/name` (or `name` for cluster-scoped objects).
fn object_key(value: &Value) -> String {
    let field = |f: &str| {
        value
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match field("namespace") {
        "" => field("name").to_owned(),
        ns => format!("{ns}/{}", field("name")),
    }
}

#[cfg(test)]
mod tests;
