//! Ingress objects (networking.k8s.io/v1) → model [`Ingress`]es: the
//! Services they route to (`spec.defaultBackend` and every rule's paths'
//! `backend.service`), checked as the API server checks them
//! (`ValidateIngressBackend`): a backend names a Service or a resource,
//! not both; a Service backend has a name and exactly one of
//! `port.number` (1-65535) and `port.name`. Unknown fields are ignored:
//! nothing else of an Ingress changes what Bulkhead does.

use k8s_openapi::api::networking::v1::{Ingress as K8sIngress, IngressBackend as K8sBackend};
use serde_json::Value;

use super::policy::valid_port_name;
use super::{Ctx, ObjectError, Problem, workload};
use crate::model::{Ingress, IngressBackend, IngressPort};

/// The one apiVersion of Ingresses this version reads (the beta ones are
/// gone from the API since Kubernetes 1.22).
const API_VERSION: &str = "networking.k8s.io/v1";

/// Decodes and checks one Ingress.
pub(super) fn convert(
    ctx: &Ctx<'_>,
    value: Value,
    api_version: &str,
) -> Result<Ingress, ObjectError> {
    ctx.only_api_version(api_version, &[API_VERSION])?;
    let ing: K8sIngress = workload::decode(ctx, value)?;
    let name = ing
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    let namespace = ing.metadata.namespace.unwrap_or_else(|| "default".into());
    let spec = ing.spec.unwrap_or_default();
    let mut backends = Vec::new();
    if let Some(b) = &spec.default_backend {
        backends.extend(backend(ctx, "spec.defaultBackend", b)?);
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let Some(http) = &rule.http else { continue };
        for (j, path) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}].backend");
            backends.extend(backend(ctx, &field, &path.backend)?);
        }
    }
    backends.sort();
    backends.dedup();
    Ok(Ingress {
        namespace,
        name,
        backends,
        origin: ctx.origin.clone(),
    })
}

/// The Service a backend names (`None` for a resource backend).
fn backend(
    ctx: &Ctx<'_>,
    field: &str,
    b: &K8sBackend,
) -> Result<Option<IngressBackend>, ObjectError> {
    let Some(service) = &b.service else {
        return match b.resource {
            Some(_) => Ok(None),
            None => Err(ctx.err(
                field,
                Problem::OneOf {
                    fields: "service, resource",
                    found: 0,
                },
            )),
        };
    };
    if b.resource.is_some() {
        return Err(ctx.err(
            field,
            Problem::OneOf {
                fields: "service, resource",
                found: 2,
            },
        ));
    }
    if service.name.is_empty() {
        return Err(ctx.err(format!("{field}.service.name"), Problem::Missing));
    }
    let port_field = format!("{field}.service.port");
    let port = service.port.as_ref();
    let port = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.as_deref()),
    ) {
        (Some(n), None) => match u16::try_from(n) {
            Ok(n) if n > 0 => IngressPort::Number(n),
            _ => {
                return Err(ctx.err(
                    format!("{port_field}.number"),
                    Problem::PortOutOfRange(i64::from(n)),
                ));
            }
        },
        (None, Some(name)) if valid_port_name(name) => IngressPort::Name(name.to_owned()),
        (None, Some(name)) => {
            return Err(ctx.err(
                format!("{port_field}.name"),
                Problem::BadPortName(name.to_owned()),
            ));
        }
        (n, name) => {
            return Err(ctx.err(
                port_field,
                Problem::OneOf {
                    fields: "number, name",
                    found: usize::from(n.is_some()) + usize::from(name.is_some()),
                },
            ));
        }
    };
    Ok(Some(IngressBackend {
        service: service.name.clone(),
        port,
    }))
}

#[cfg(test)]
mod tests;
