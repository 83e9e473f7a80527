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
use crate::model::{Mode, Model, Namespace, Pod, Policy, Service};
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
}

impl Kind {
    /// The API resource (plural).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Pod => "pods",
            Self::NetworkPolicy => "networkpolicies",
            Self::Service => "services",
        }
    }

    /// The API kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Pod => "Pod",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::Service => "Service",
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

/// The view of the cluster.
#[derive(Default)]
pub struct View {
    namespaces: Objects<Namespace>,
    pods: Objects<Pod>,
    policies: Objects<Policy>,
    services: Objects<Service>,
    /// Why objects are left out, by `Kind namespace/name`.
    skipped: BTreeMap<String, String>,
    /// Highest resourceVersion seen in an event.
    revision: u64,
}

impl View {
    /// Whether every kind has completed its initial list.
    pub fn complete(&self) -> bool {
        self.namespaces.synced && self.pods.synced && self.policies.synced && self.services.synced
    }

    /// The highest resourceVersion the view includes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Objects left out, with why.
    pub fn skipped(&self) -> impl Iterator<Item = &String> {
        self.skipped.values()
    }

    /// Applies one watch event of `kind` (objects as JSON); whether the
    /// view changed.
    pub fn apply(&mut self, kind: Kind, event: Event<Value>) -> bool {
        match event {
            Event::Init => {
                self.set_relisting(kind);
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

    fn set_relisting(&mut self, kind: Kind) {
        match kind {
            Kind::Namespace => self.namespaces.relisting = Some(BTreeMap::new()),
            Kind::Pod => self.pods.relisting = Some(BTreeMap::new()),
            Kind::NetworkPolicy => self.policies.relisting = Some(BTreeMap::new()),
            Kind::Service => self.services.relisting = Some(BTreeMap::new()),
        }
    }

    fn finish_relist(&mut self, kind: Kind) {
        fn swap<T>(o: &mut Objects<T>) {
            if let Some(map) = o.relisting.take() {
                o.live = map;
            }
            o.synced = true;
        }
        match kind {
            Kind::Namespace => swap(&mut self.namespaces),
            Kind::Pod => swap(&mut self.pods),
            Kind::NetworkPolicy => swap(&mut self.policies),
            Kind::Service => swap(&mut self.services),
        }
        // Warnings of objects a relist no longer has go with them.
        let prefix = format!("{} ", kind.name());
        let (ns, pods, pols, svcs) = (&self.namespaces, &self.pods, &self.policies, &self.services);
        self.skipped.retain(|k, _| {
            let Some(key) = k.strip_prefix(&prefix) else {
                return true;
            };
            match kind {
                Kind::Namespace => ns.live.contains_key(key),
                Kind::Pod => pods.live.contains_key(key),
                Kind::NetworkPolicy => pols.live.contains_key(key),
                Kind::Service => svcs.live.contains_key(key),
            }
        });
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
            None => match kind {
                Kind::Namespace => self.namespaces.put(key, None, listing),
                Kind::Pod => self.pods.put(key, None, listing),
                Kind::NetworkPolicy => self.policies.put(key, None, listing),
                Kind::Service => self.services.put(key, None, listing),
            },
        }
        !listing
    }

    /// The model of the view, assembled as the manifest source assembles
    /// its own (one model), for enforcement: pods off the pod network left
    /// out, addresses only from pod status (a pod without one yet has an
    /// identity and no address), Service addresses and NodePorts only as
    /// the API server gave them.
    pub fn model(&self, default_mode: Mode) -> Model {
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
