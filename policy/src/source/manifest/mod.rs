//! Loads a directory tree of Kubernetes manifests (YAML multi-document and
//! JSON, `*List` objects included) into a validated [`Model`].
//!
//! All files are read and checked before anything is returned: one bad field
//! anywhere fails the whole load with every problem listed, so a caller never
//! sees half a directory. Files are found and read by [`walk`], within its
//! bounds (no link loops, sizes and counts limited).

// ObjectError carries file, object and field by design; it is built only on
// the cold path of a failed load, so its size does not matter.
#![allow(clippy::result_large_err)]

mod admin;
mod error;
mod ingress;
mod node;
mod policy;
mod revision;
mod service;
pub mod walk;
pub mod watch;
mod workload;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

pub use error::{ManifestError, ManifestErrors, ObjectError, ObjectRef, Problem};
pub use revision::{content_hash, content_hash_within};
pub use walk::{Limits, WalkError};

use crate::model::addressing::{AddressPlan, AddressingError};
use crate::model::{
    AdminPolicy, Direction, MODE_ANNOTATION, Mode, Model, Namespace, Node, Origin, Pod, Policy,
    PortMatch, Service,
};

/// Workload kinds that stand for one pod each.
pub const WORKLOAD_KINDS: [&str; 7] = [
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

/// What a model is for, which decides what happens to pods without an
/// address of their own on the pod network ([`crate::model::OffNetwork`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Purpose {
    /// Offline analysis (`connectivity`, `explain`, ...): such pods stay,
    /// as other NetworkPolicy analyzers keep them.
    #[default]
    Analysis,
    /// An enforcing agent: such pods are left out before addresses are
    /// settled (never endpoints; their addresses match only ipBlocks),
    /// unless the plan assigns every address itself (`ignore_status`).
    Enforcement,
}

/// Loads every manifest under `dir` and gives pods addresses by `plan`.
pub fn load_dir(dir: &Path, plan: &AddressPlan) -> Result<Model, ManifestErrors> {
    load_dir_for(dir, plan, Purpose::Analysis)
}

/// [`load_dir`] for `purpose`.
pub fn load_dir_for(
    dir: &Path,
    plan: &AddressPlan,
    purpose: Purpose,
) -> Result<Model, ManifestErrors> {
    load_dir_within(dir, plan, &Limits::DEFAULT, purpose)
}

/// [`load_dir_for`] with the walk and reads bounded by `limits`.
pub fn load_dir_within(
    dir: &Path,
    plan: &AddressPlan,
    limits: &Limits,
    purpose: Purpose,
) -> Result<Model, ManifestErrors> {
    let files = walk::walk(dir, limits).map_err(|e| ManifestErrors(vec![e.into()]))?;
    if files.is_empty() {
        return Err(ManifestErrors(vec![ManifestError::Empty(
            dir.to_path_buf(),
        )]));
    }
    let mut reader = walk::Reader::new(*limits);
    let mut errors = Vec::new();
    let mut builder = Builder::default();
    // File by file: only one file's text and documents are held at a time.
    for file in &files {
        match read_documents(&mut reader, file) {
            Ok(docs) => builder.add_documents(docs),
            // A limit reached: stop reading (nothing more is used anyway).
            Err(e @ ManifestError::Walk(_)) => return Err(ManifestErrors(vec![e])),
            Err(e) => errors.push(e),
        }
    }
    errors.extend(builder.errors.into_iter().map(ManifestError::Object));
    if !errors.is_empty() {
        return Err(ManifestErrors(errors));
    }
    assemble(builder.model, plan, purpose).map_err(|e| ManifestErrors(vec![e.into()]))
}

/// Finishes a model of converted objects, the same way whatever the source
/// (one model: the manifest directory and the Kubernetes API give the same
/// model for the same objects): sorted, every used namespace present,
/// addresses settled by `plan`, and the states an API server accepts that
/// leave part of an object ineffective recorded as warnings.
pub fn assemble(
    mut model: Model,
    plan: &AddressPlan,
    purpose: Purpose,
) -> Result<Model, AddressingError> {
    // With every address assigned by the plan (`--assign-pod-ips`: the lab
    // realises each pod in its own namespace), no pod carries its node's
    // or a reused address: all are on the pod network.
    if purpose == Purpose::Enforcement && !plan.ignore_status {
        for pod in model.pods.iter().filter(|p| p.off_network.is_some()) {
            tracing::debug!(pod = %pod.key(), "not on the pod network: only ipBlocks match its addresses");
        }
        model.drop_off_network_pods();
    }
    model.normalize();
    // Pods labelled for quarantine (the agent adds its stored ones).
    model.apply_quarantines(&[]);
    let conflicts = plan.assign(&mut model.pods)?;
    for conflict in conflicts {
        tracing::warn!("{conflict}");
        model.warnings.push(conflict.to_string());
    }
    for warning in plan.assign_services(&mut model.services)? {
        tracing::warn!("{warning}");
        model.warnings.push(warning.to_string());
    }
    // The API server accepts a named port no pod declares: the entry
    // allows nothing until such a pod exists.
    for unresolved in unresolved_named_ports(&model)
        .into_iter()
        .chain(admin::unresolved_named_ports(&model))
    {
        let text = ManifestError::from(unresolved).to_string();
        tracing::warn!("{text} (allows nothing)");
        model.warnings.push(text);
    }
    // Cluster-admin policies of one priority over the same pods: the API
    // leaves their order open.
    for tie in crate::model::admin::priority_ties(&model) {
        let text = tie.to_string();
        tracing::warn!("{text}");
        model.warnings.push(text);
    }
    // The API server accepts what the endpoints controller then ignores.
    for ignored in service::warnings(&model) {
        let text = ManifestError::from(ignored).to_string();
        tracing::warn!("{text}");
        model.warnings.push(text);
    }
    Ok(model)
}

/// An object of the Kubernetes API, converted.
#[derive(Clone, Debug)]
pub enum ApiObject {
    /// A Namespace.
    Namespace(Namespace),
    /// A Pod.
    Pod(Pod),
    /// A NetworkPolicy.
    Policy(Policy),
    /// A Service.
    Service(Service),
    /// A ClusterNetworkPolicy, AdminNetworkPolicy or
    /// BaselineAdminNetworkPolicy.
    Admin(AdminPolicy),
    /// A Node.
    Node(Node),
}

/// Converts an object an API server served, of `kind` (its list's item
/// kind): by the same conversion as manifests, except that fields this
/// version does not know (a newer API) are ignored rather than errors. An
/// error here means the object cannot be used at all; the caller skips it
/// and warns.
pub fn api_object(kind: &str, value: Value) -> Result<ApiObject, ObjectError> {
    let origin = Origin::KubernetesApi;
    let ctx = Ctx {
        origin: &origin,
        object: object_ref(&value, Some(kind)),
        strict: false,
    };
    match kind {
        "Namespace" => namespace(&ctx, value).map(ApiObject::Namespace),
        "Pod" => workload::convert(&ctx, kind, value).map(ApiObject::Pod),
        "NetworkPolicy" => policy::convert(&ctx, value, "").map(ApiObject::Policy),
        "Service" => service::convert(&ctx, value, "").map(ApiObject::Service),
        "Node" => node::convert(&ctx, value).map(ApiObject::Node),
        k if admin::is_admin_kind(k) => admin::convert(&ctx, k, value, "").map(ApiObject::Admin),
        other => Err(ctx.err(
            "kind",
            Problem::UnsupportedPolicyKind {
                kind: other.to_owned(),
                api_version: String::new(),
            },
        )),
    }
}

/// Converts a Namespace.
fn namespace(ctx: &Ctx<'_>, value: Value) -> Result<Namespace, ObjectError> {
    let ns: k8s_openapi::api::core::v1::Namespace = workload::decode(ctx, value)?;
    let name = ns
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    let mode = mode_annotation(ctx, ns.metadata.annotations.as_ref())?;
    Ok(Namespace {
        name,
        labels: ns.metadata.labels.unwrap_or_default(),
        origin: Some(ctx.origin.clone()),
        mode,
    })
}

/// The documents of one file (read through `reader`, within its limits),
/// empty documents dropped.
fn read_documents(
    reader: &mut walk::Reader,
    path: &Path,
) -> Result<Vec<(Origin, Value)>, ManifestError> {
    let text = String::from_utf8(reader.read(path)?).map_err(|e| ManifestError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    let origin = |document| Origin::file(path, document);
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let value: Value = serde_json::from_str(&text).map_err(|source| ManifestError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(vec![(origin(0), value)]);
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc).map_err(|source| ManifestError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        if !value.is_null() {
            out.push((origin(i), value));
        }
    }
    Ok(out)
}

/// The object an error is about, from whatever the value has.
fn object_ref(value: &Value, kind: Option<&str>) -> ObjectRef {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(String::from);
    let given = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let namespace = match (&name, given) {
        (None, _) => None,
        (Some(_), Some(ns)) => Some(ns.to_string()),
        (Some(_), None) if kind.is_some_and(is_cluster_scoped) => None,
        (Some(_), None) => Some("default".to_string()),
    };
    ObjectRef {
        kind: kind.map(String::from),
        namespace,
        name,
    }
}

/// Kinds that live outside namespaces (for naming objects in errors).
fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace" | "Node" | "ClusterRole" | "ClusterRoleBinding"
    ) || kind.starts_with("Cluster")
        || kind.starts_with("Global")
        || kind.contains("Clusterwide")
        || kind.ends_with("AdminNetworkPolicy")
}

/// The object being converted, for error reports.
pub(crate) struct Ctx<'a> {
    origin: &'a Origin,
    object: ObjectRef,
    /// Unknown fields are errors (manifests a user is about to apply), not
    /// ignored (objects an API server of a newer version already accepted).
    strict: bool,
}

impl Ctx<'_> {
    /// An error at `apiVersion` unless it is empty (a list's item, an API
    /// object) or `supported[0]`, the one this kind has.
    pub(crate) fn only_api_version(
        &self,
        api_version: &str,
        supported: &'static [&'static str; 1],
    ) -> Result<(), ObjectError> {
        if api_version.is_empty() || api_version == supported[0] {
            return Ok(());
        }
        Err(self.err(
            "apiVersion",
            Problem::NotSupported {
                value: api_version.to_owned(),
                supported,
            },
        ))
    }

    /// An error at `field`.
    pub(crate) fn err(&self, field: impl Into<String>, problem: Problem) -> ObjectError {
        ObjectError {
            origin: self.origin.clone(),
            object: self.object.clone(),
            field: field.into(),
            problem,
        }
    }
}

/// Accumulates objects and errors across all documents.
#[derive(Default)]
struct Builder {
    model: Model,
    errors: Vec<ObjectError>,
    seen: BTreeMap<(&'static str, String), Origin>,
}

impl Builder {
    /// Adds the documents of one file.
    fn add_documents(&mut self, docs: Vec<(Origin, Value)>) {
        for (origin, value) in docs {
            let is_object = value.get("kind").is_some() || value.get("apiVersion").is_some();
            if !is_object {
                // Not a Kubernetes object at all (e.g. a tool's output saved
                // beside the manifests): say so, but it cannot change policy.
                tracing::warn!(%origin, "skipping a document that is not a Kubernetes object (no apiVersion, no kind)");
                continue;
            }
            self.add(&origin, value, None);
        }
    }

    /// Adds one document; `list_kind` is the item kind implied by an
    /// enclosing `*List`.
    fn add(&mut self, origin: &Origin, mut value: Value, list_kind: Option<&str>) {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .or(list_kind)
            .map(String::from);
        let ctx = Ctx {
            origin,
            object: object_ref(&value, kind.as_deref()),
            strict: true,
        };
        let Some(kind) = kind else {
            self.errors.push(ctx.err("kind", Problem::Missing));
            return;
        };
        if let Some(item_kind) = kind.strip_suffix("List") {
            let Some(items) = value.get_mut("items").map(Value::take) else {
                self.errors.push(ctx.err("items", Problem::Missing));
                return;
            };
            let Value::Array(items) = items else {
                self.errors.push(ctx.err("items", Problem::BadListItem));
                return;
            };
            let implied = (!item_kind.is_empty()).then_some(item_kind);
            for item in items {
                if !item.is_object() {
                    self.errors.push(ctx.err("items", Problem::BadListItem));
                    continue;
                }
                self.add(origin, item, implied);
            }
            return;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let result = match kind.as_str() {
            "Namespace" => self.add_namespace(&ctx, value),
            "NetworkPolicy" => policy::convert(&ctx, value, &api_version).map(|p| {
                let key = p.key();
                if self.check_unique(&ctx, "policy", key) {
                    self.model.policies.push(p);
                }
            }),
            "Service" => service::convert(&ctx, value, &api_version).map(|s| {
                if self.check_unique(&ctx, "service", s.key()) {
                    self.model.services.push(s);
                }
            }),
            k if k == "Pod" || WORKLOAD_KINDS.contains(&k) => workload::convert(&ctx, k, value)
                .map(|p| {
                    if self.check_unique(&ctx, "pod", p.key()) {
                        self.model.pods.push(p);
                    }
                }),
            k if admin::is_admin_kind(k) => admin::convert(&ctx, k, value, &api_version).map(|p| {
                if self.check_unique(&ctx, "cluster-admin policy", p.key()) {
                    self.model.admin_policies.push(p);
                }
            }),
            "Ingress" => ingress::convert(&ctx, value, &api_version).map(|i| {
                if self.check_unique(&ctx, "ingress", i.key()) {
                    self.model.ingresses.push(i);
                }
            }),
            "Node" => node::convert(&ctx, value).map(|n| {
                if self.check_unique(&ctx, "node", n.name.clone()) {
                    self.model.nodes.push(n);
                }
            }),
            k if k.contains("NetworkPolicy") => Err(ctx.err(
                "kind",
                Problem::UnsupportedPolicyKind {
                    kind: k.to_string(),
                    api_version,
                },
            )),
            other => {
                tracing::debug!(%origin, kind = other, "ignoring object of a kind that carries no pods, Services or policy");
                Ok(())
            }
        };
        if let Err(e) = result {
            self.errors.push(e);
        }
    }

    /// Records `key`; false (and an error) if it was seen before.
    fn check_unique(&mut self, ctx: &Ctx<'_>, what: &'static str, key: String) -> bool {
        match self.seen.get(&(what, key.clone())) {
            Some(other) => {
                let other = other.clone();
                self.errors
                    .push(ctx.err("metadata.name", Problem::Duplicate { what, key, other }));
                false
            }
            None => {
                self.seen.insert((what, key), ctx.origin.clone());
                true
            }
        }
    }

    fn add_namespace(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<(), ObjectError> {
        let ns = namespace(ctx, value)?;
        if self.check_unique(ctx, "namespace", ns.name.clone()) {
            self.model.namespaces.insert(ns.name.clone(), ns);
        }
        Ok(())
    }
}

/// The mode an object's `bulkhead.io/mode` annotation sets, if any.
fn mode_annotation(
    ctx: &Ctx<'_>,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Option<Mode>, ObjectError> {
    let Some(value) = annotations.and_then(|a| a.get(MODE_ANNOTATION)) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|e| {
        ctx.err(
            format!("metadata.annotations[{MODE_ANNOTATION:?}]"),
            Problem::BadMode(e),
        )
    })
}

/// Named ports that no pod of the model declares with the rule's
/// protocol (warnings: such an entry allows nothing).
fn unresolved_named_ports(model: &Model) -> Vec<ObjectError> {
    let mut out = Vec::new();
    for policy in &model.policies {
        for direction in Direction::ALL {
            let field = match direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            for (ri, rule) in policy
                .rules(direction)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                for (pi, spec) in rule.ports.iter().flatten().enumerate() {
                    let PortMatch::Named(name) = &spec.port else {
                        continue;
                    };
                    if model
                        .pods
                        .iter()
                        .any(|p| p.named_port(name, spec.protocol).is_some())
                    {
                        continue;
                    }
                    let ctx = Ctx {
                        origin: &policy.origin,
                        object: ObjectRef {
                            kind: Some("NetworkPolicy".into()),
                            namespace: Some(policy.namespace.clone()),
                            name: Some(policy.name.clone()),
                        },
                        strict: false,
                    };
                    out.push(ctx.err(
                        format!("spec.{field}[{ri}].ports[{pi}].port"),
                        Problem::NamedPortUnresolved {
                            name: name.clone(),
                            protocol: spec.protocol.to_string(),
                        },
                    ));
                }
            }
        }
    }
    out
}
