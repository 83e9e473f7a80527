//! What `promote` can change: a NetworkPolicy (`namespace/name`) or a
//! cluster-admin policy (`Kind/name`, as flow records and `audit report`
//! name it), each with its own `bulkhead.io/mode` annotation.

use std::path::{Path, PathBuf};

use bulkhead_policy::model::{AdminPolicy, Mode, Model, Origin, Policy};

/// One policy of the model that `promote` may edit.
#[derive(Clone, Copy, Debug)]
pub enum Target<'m> {
    /// A NetworkPolicy.
    Network(&'m Policy),
    /// A ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy.
    Admin(&'m AdminPolicy),
}

impl<'m> Target<'m> {
    /// Every policy of `model`: NetworkPolicies, then cluster-admin
    /// policies, each in the model's order.
    pub fn all(model: &'m Model) -> impl Iterator<Item = Target<'m>> {
        let network = model.policies.iter().map(Target::Network);
        network.chain(model.admin_policies.iter().map(Target::Admin))
    }

    /// `namespace/name`, or `Kind/name` for a cluster-admin policy.
    pub fn key(self) -> String {
        match self {
            Target::Network(p) => p.key(),
            Target::Admin(p) => p.key(),
        }
    }

    /// How messages name it: `NetworkPolicy ns/name`, `ClusterNetworkPolicy/name`.
    pub fn label(self) -> String {
        match self {
            Target::Network(p) => format!("NetworkPolicy {}", p.key()),
            Target::Admin(p) => p.key(),
        }
    }

    /// The mode it takes effect in.
    pub fn mode(self, model: &Model) -> Mode {
        match self {
            Target::Network(p) => model.mode_of(p),
            Target::Admin(p) => model.admin_mode_of(p),
        }
    }

    /// Where it was read from.
    pub fn origin(self) -> &'m Origin {
        match self {
            Target::Network(p) => &p.origin,
            Target::Admin(p) => &p.origin,
        }
    }

    /// The manifest file it was read from (promote reads manifest
    /// directories only; an origin without a file names none, and reading
    /// it fails with a clear error).
    pub fn file(self) -> PathBuf {
        self.origin()
            .path()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The index of its document in its file.
    pub fn document(self) -> usize {
        self.origin().document().unwrap_or(0)
    }

    /// Whether a parsed document's `kind` and metadata are this policy's.
    pub fn is_document(self, kind: &str, name: Option<&str>, namespace: Option<&str>) -> bool {
        match self {
            Target::Network(p) => {
                kind == "NetworkPolicy"
                    && name == Some(p.name.as_str())
                    && namespace.unwrap_or("default") == p.namespace
            }
            // Cluster-scoped: the API server ignores a namespace there.
            Target::Admin(p) => kind == p.kind.as_str() && name == Some(p.name.as_str()),
        }
    }
}
