//! What the API server accepts in a cluster-admin policy that makes part
//! of it match nothing: warnings, never errors.

use crate::model::{Direction, Model, PortMatch};
use crate::source::manifest::{Ctx, ObjectError, ObjectRef, Problem};

/// Named ports of cluster-admin rules that no pod of the model declares
/// (warnings: such an entry matches nothing until such a pod exists).
pub(in crate::source::manifest) fn unresolved_named_ports(model: &Model) -> Vec<ObjectError> {
    let mut out = Vec::new();
    for policy in &model.admin_policies {
        let ctx = Ctx {
            origin: &policy.origin,
            object: ObjectRef {
                kind: Some(policy.kind.as_str().to_owned()),
                namespace: None,
                name: Some(policy.name.clone()),
            },
            strict: false,
        };
        for direction in Direction::ALL {
            for (ri, rule) in policy.rules(direction).iter().enumerate() {
                let mut names: Vec<&str> = rule
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|s| match &s.port {
                        PortMatch::Named(n) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect();
                names.dedup();
                for name in names {
                    let declared = model
                        .pods
                        .iter()
                        .any(|p| p.ports.iter().any(|c| c.name.as_deref() == Some(name)));
                    if !declared {
                        out.push(ctx.err(
                            format!("spec.{direction}[{ri}]"),
                            Problem::NamedPortUnresolved {
                                name: name.to_owned(),
                                protocol: "any protocol".to_owned(),
                            },
                        ));
                    }
                }
            }
        }
    }
    out
}
