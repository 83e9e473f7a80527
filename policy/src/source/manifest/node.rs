//! Node objects → [`Node`]: name, labels and the addresses the `nodes`
//! peer of cluster-admin rules matches (`status.addresses` of type
//! InternalIP and ExternalIP; host names are not addresses).

use std::net::IpAddr;

use serde_json::Value;

use super::{Ctx, ObjectError, Problem, workload};
use crate::model::Node;

/// The address types that are IPs of the node.
const IP_TYPES: [&str; 2] = ["InternalIP", "ExternalIP"];

/// Converts a Node.
pub(super) fn convert(ctx: &Ctx<'_>, mut value: Value) -> Result<Node, ObjectError> {
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        // Nothing of the spec is used; a newer field there must not fail it.
        spec.clear();
    }
    let node: k8s_openapi::api::core::v1::Node = workload::decode(ctx, value)?;
    let name = node
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    let mut addresses = Vec::new();
    let listed = node.status.and_then(|s| s.addresses).unwrap_or_default();
    for (i, a) in listed.iter().enumerate() {
        if !IP_TYPES.contains(&a.type_.as_str()) {
            continue;
        }
        let ip: IpAddr = match a.address.parse() {
            Ok(ip) => ip,
            Err(e) => {
                let e = ctx.err(
                    format!("status.addresses[{i}].address"),
                    Problem::Invalid {
                        value: a.address.clone(),
                        reason: format!("{e}"),
                    },
                );
                // The API server does not check node addresses: one it
                // accepted is left out, the node kept.
                if ctx.strict {
                    return Err(e);
                }
                tracing::warn!("{e} (address left out)");
                continue;
            }
        };
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    Ok(Node {
        name,
        labels: node.metadata.labels.unwrap_or_default(),
        addresses,
    })
}
