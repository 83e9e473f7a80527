//! Ingresses (networking.k8s.io/v1 `Ingress`): which Services an ingress
//! controller sends outside traffic to. Bulkhead does not route them; the
//! learner reads them to know which workloads are internet-facing.

use super::Origin;

/// A backend's Service port: `port.number` or `port.name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IngressPort {
    /// `port.number`: a Service port number.
    Number(u16),
    /// `port.name`: a Service port name.
    Name(String),
}

/// A Service an Ingress routes to (`spec.defaultBackend` or a rule's
/// path's `backend`; resource backends are left out).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressBackend {
    /// `service.name`, in the Ingress's namespace.
    pub service: String,
    /// `service.port`.
    pub port: IngressPort,
}

/// An Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingress {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its Service backends, sorted, without duplicates.
    pub backends: Vec<IngressBackend>,
    /// Where it was read from.
    pub origin: Origin,
}

impl Ingress {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
