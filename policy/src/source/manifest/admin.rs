//! Cluster-admin policies (the network-policy-api) → validated
//! [`AdminPolicy`]: `policy.networking.k8s.io/v1alpha2`
//! ClusterNetworkPolicy and `v1alpha1` AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy, checked as their CRDs' schemas (kubebuilder
//! markers and CEL rules) make the API server check them.
//!
//! Strict (manifests): unknown fields, and the experimental `domainNames`
//! peer Bulkhead does not implement, are errors naming the field. Not
//! strict (objects the API server already accepted): a peer this version
//! cannot read (no field it knows, or `domainNames`) fails closed as the
//! API documents: an Accept rule does not match it, a Deny or Pass rule
//! becomes "Deny all".

mod peers;
mod ports;
mod warnings;
mod wire;

pub(super) use warnings::unresolved_named_ports;

#[cfg(test)]
mod tests;

use serde_json::Value;

use super::{Ctx, ObjectError, Problem};
use crate::model::{Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Subject, Tier};

/// What differs between the three kinds.
struct Dialect {
    kind: AdminKind,
    api_version: &'static str,
    /// Most rules in one direction.
    max_rules: usize,
    /// Most peers (and most ports) in one rule.
    max_items: usize,
    /// Accepted spellings of actions.
    actions: &'static [(&'static str, Action)],
    /// Names of the accepted actions, for errors.
    action_names: &'static [&'static str],
}

const CNP: Dialect = Dialect {
    kind: AdminKind::ClusterNetworkPolicy,
    api_version: "policy.networking.k8s.io/v1alpha2",
    max_rules: 25,
    max_items: 25,
    actions: &[
        ("Accept", Action::Accept),
        ("Deny", Action::Deny),
        ("Pass", Action::Pass),
    ],
    action_names: &["Accept", "Deny", "Pass"],
};

const ANP: Dialect = Dialect {
    kind: AdminKind::AdminNetworkPolicy,
    api_version: "policy.networking.k8s.io/v1alpha1",
    max_rules: 100,
    max_items: 100,
    actions: &[
        ("Allow", Action::Accept),
        ("Deny", Action::Deny),
        ("Pass", Action::Pass),
    ],
    action_names: &["Allow", "Deny", "Pass"],
};

const BANP: Dialect = Dialect {
    kind: AdminKind::BaselineAdminNetworkPolicy,
    api_version: "policy.networking.k8s.io/v1alpha1",
    max_rules: 100,
    max_items: 100,
    actions: &[("Allow", Action::Accept), ("Deny", Action::Deny)],
    action_names: &["Allow", "Deny"],
};

/// The name the one BaselineAdminNetworkPolicy of a cluster must have.
const BANP_NAME: &str = "default";

/// Longest rule name.
const MAX_RULE_NAME: usize = 100;

impl Dialect {
    fn of(kind: &str) -> Option<&'static Dialect> {
        match kind {
            "ClusterNetworkPolicy" => Some(&CNP),
            "AdminNetworkPolicy" => Some(&ANP),
            "BaselineAdminNetworkPolicy" => Some(&BANP),
            _ => None,
        }
    }

    fn v1alpha2(&self) -> bool {
        self.kind == AdminKind::ClusterNetworkPolicy
    }
}

/// Whether `kind` is one of the cluster-admin kinds.
pub(super) fn is_admin_kind(kind: &str) -> bool {
    Dialect::of(kind).is_some()
}

/// Decodes and validates one cluster-admin policy of `kind` (one of
/// [`is_admin_kind`]); `api_version` empty: not checked (the API source).
pub(super) fn convert(
    ctx: &Ctx<'_>,
    kind: &str,
    mut value: Value,
    api_version: &str,
) -> Result<AdminPolicy, ObjectError> {
    let d = Dialect::of(kind).expect("an admin kind");
    if !api_version.is_empty() && api_version != d.api_version {
        return Err(ctx.err(
            "apiVersion",
            Problem::WrongApiVersion {
                kind: d.kind.as_str(),
                given: api_version.to_owned(),
                expected: d.api_version,
            },
        ));
    }
    if let Value::Object(map) = &mut value {
        // Checked above; `status` is the implementation's report, not policy.
        for field in ["apiVersion", "kind", "status"] {
            map.remove(field);
        }
    }
    let mut unknown = Vec::new();
    let mut on_unknown =
        |path: serde_ignored::Path<'_>| unknown.push(super::policy::field_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let doc: wire::Doc = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ctx.err(field, Problem::Decode(e.into_inner()))
    })?;
    if let Some(field) = unknown.into_iter().next().filter(|_| ctx.strict) {
        return Err(ctx.err(field, Problem::UnknownField));
    }
    let name = doc
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    if d.kind == AdminKind::BaselineAdminNetworkPolicy && name != BANP_NAME {
        return Err(ctx.err(
            "metadata.name",
            Problem::Invalid {
                value: name,
                reason: format!(
                    "the API server accepts only one BaselineAdminNetworkPolicy, named {BANP_NAME:?}"
                ),
            },
        ));
    }
    let mode = super::mode_annotation(ctx, doc.metadata.annotations.as_ref())?;
    let mut spec = doc.spec.ok_or_else(|| ctx.err("spec", Problem::Missing))?;
    foreign_spec_fields(ctx, d, &mut spec)?;
    let tier = tier(ctx, d, spec.tier.as_deref())?;
    let priority = priority(ctx, d, spec.priority)?;
    let subject = subject(ctx, d, spec.subject.as_ref())?;
    let ingress = rules(ctx, d, "spec.ingress", spec.ingress.take())?;
    let egress = rules(ctx, d, "spec.egress", spec.egress.take())?;
    Ok(AdminPolicy {
        kind: d.kind,
        name,
        tier,
        priority,
        subject,
        ingress,
        egress,
        origin: ctx.origin.clone(),
        mode,
    })
}

/// A field the union has but this kind does not: an error when strict,
/// else dropped (an API server would have pruned it). Whether it was there.
fn foreign<T>(
    ctx: &Ctx<'_>,
    field: impl Into<String>,
    slot: &mut Option<T>,
) -> Result<(), ObjectError> {
    if slot.is_some() {
        if ctx.strict {
            return Err(ctx.err(field, Problem::UnknownField));
        }
        *slot = None;
    }
    Ok(())
}

/// Drops (or refuses) the spec and rule fields of other kinds.
fn foreign_spec_fields(
    ctx: &Ctx<'_>,
    d: &Dialect,
    spec: &mut wire::Spec,
) -> Result<(), ObjectError> {
    if !d.v1alpha2() {
        foreign(ctx, "spec.tier", &mut spec.tier)?;
    }
    if d.kind == AdminKind::BaselineAdminNetworkPolicy {
        foreign(ctx, "spec.priority", &mut spec.priority)?;
    }
    for (at, rules, ingress) in [
        ("spec.ingress", &mut spec.ingress, true),
        ("spec.egress", &mut spec.egress, false),
    ] {
        for (i, rule) in rules.iter_mut().flatten().enumerate() {
            let at = format!("{at}[{i}]");
            if ingress {
                foreign(ctx, format!("{at}.to"), &mut rule.to)?;
            } else {
                foreign(ctx, format!("{at}.from"), &mut rule.from)?;
            }
            // v1alpha2 takes `ports` too: the spelling of its first
            // revisions, still in upstream's conformance manifests.
            if !d.v1alpha2() {
                foreign(ctx, format!("{at}.protocols"), &mut rule.protocols)?;
            }
            let peers_field = if ingress { "from" } else { "to" };
            let peers = if ingress {
                &mut rule.from
            } else {
                &mut rule.to
            };
            for (j, peer) in peers.iter_mut().flatten().enumerate() {
                let at = format!("{at}.{peers_field}[{j}]");
                if ingress {
                    foreign(ctx, format!("{at}.nodes"), &mut peer.nodes)?;
                    foreign(ctx, format!("{at}.networks"), &mut peer.networks)?;
                    foreign(ctx, format!("{at}.domainNames"), &mut peer.domain_names)?;
                } else if d.kind == AdminKind::BaselineAdminNetworkPolicy {
                    foreign(ctx, format!("{at}.domainNames"), &mut peer.domain_names)?;
                }
            }
            if d.v1alpha2() {
                for (j, p) in rule.protocols.iter_mut().flatten().enumerate() {
                    for (name, l4) in [
                        ("tcp", &mut p.tcp),
                        ("udp", &mut p.udp),
                        ("sctp", &mut p.sctp),
                    ] {
                        if let Some(range) = l4
                            .as_mut()
                            .and_then(|l| l.destination_port.as_mut())
                            .and_then(|p| p.range.as_mut())
                        {
                            let field = format!(
                                "{at}.protocols[{j}].{name}.destinationPort.range.protocol"
                            );
                            foreign(ctx, field, &mut range.protocol)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn tier(ctx: &Ctx<'_>, d: &Dialect, tier: Option<&str>) -> Result<Tier, ObjectError> {
    if !d.v1alpha2() {
        return Ok(match d.kind {
            AdminKind::BaselineAdminNetworkPolicy => Tier::Baseline,
            _ => Tier::Admin,
        });
    }
    match tier {
        None => Err(ctx.err("spec.tier", Problem::Missing)),
        Some("Admin") => Ok(Tier::Admin),
        Some("Baseline") => Ok(Tier::Baseline),
        Some(other) => Err(ctx.err(
            "spec.tier",
            Problem::NotSupported {
                value: other.to_owned(),
                supported: &["Admin", "Baseline"],
            },
        )),
    }
}

fn priority(ctx: &Ctx<'_>, d: &Dialect, priority: Option<i64>) -> Result<u32, ObjectError> {
    if d.kind == AdminKind::BaselineAdminNetworkPolicy {
        return Ok(0);
    }
    let p = priority.ok_or_else(|| ctx.err("spec.priority", Problem::Missing))?;
    u32::try_from(p).ok().filter(|p| *p <= 1000).ok_or_else(|| {
        ctx.err(
            "spec.priority",
            Problem::Invalid {
                value: p.to_string(),
                reason: "must be 0 to 1000".into(),
            },
        )
    })
}

fn subject(ctx: &Ctx<'_>, d: &Dialect, s: Option<&wire::Subject>) -> Result<Subject, ObjectError> {
    let s = s.ok_or_else(|| ctx.err("spec.subject", Problem::Missing))?;
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Ok(Subject::selecting(
            super::policy::selector(ctx, ns, "spec.subject.namespaces")?,
            crate::model::Selector::everything(),
        )),
        (None, Some(p)) => {
            let (namespaces, pods) = peers::namespaced_pod(ctx, d, p, "spec.subject.pods")?;
            Ok(Subject::selecting(namespaces, pods))
        }
        (a, b) => Err(ctx.err(
            "spec.subject",
            Problem::OneOf {
                fields: "namespaces, pods",
                found: usize::from(a.is_some()) + usize::from(b.is_some()),
            },
        )),
    }
}

/// The rules of one direction, at `at` (`spec.ingress`/`spec.egress`).
fn rules(
    ctx: &Ctx<'_>,
    d: &Dialect,
    at: &str,
    rules: Option<Vec<wire::Rule>>,
) -> Result<Vec<AdminRule>, ObjectError> {
    let rules = rules.unwrap_or_default();
    count(ctx, at, rules.len(), 0, d.max_rules)?;
    let mut out = Vec::new();
    for (i, r) in rules.into_iter().enumerate() {
        if let Some(rule) = rule(ctx, d, &format!("{at}[{i}]"), at == "spec.ingress", r)? {
            out.push(rule);
        }
    }
    Ok(out)
}

/// One rule; `None` if it fails closed to matching nothing.
fn rule(
    ctx: &Ctx<'_>,
    d: &Dialect,
    at: &str,
    ingress: bool,
    r: wire::Rule,
) -> Result<Option<AdminRule>, ObjectError> {
    if let Some(name) = &r.name
        && name.chars().count() > MAX_RULE_NAME
    {
        return Err(ctx.err(
            format!("{at}.name"),
            Problem::Invalid {
                value: name.clone(),
                reason: format!("longer than {MAX_RULE_NAME} characters"),
            },
        ));
    }
    let action = action(ctx, d, at, r.action.as_deref())?;
    let peers_field = if ingress { "from" } else { "to" };
    let peers_at = format!("{at}.{peers_field}");
    let list = if ingress { r.from } else { r.to };
    let list = list.ok_or_else(|| ctx.err(&peers_at, Problem::Missing))?;
    count(ctx, &peers_at, list.len(), 1, d.max_items)?;
    let read = peers::peers(ctx, d, &peers_at, &list)?;
    let ports = match (d.v1alpha2(), r.protocols.as_deref(), r.ports.as_deref()) {
        (true, Some(_), Some(_)) => {
            return Err(ctx.err(
                at,
                Problem::OneOf {
                    fields: "protocols, ports",
                    found: 2,
                },
            ));
        }
        (true, protocols, None) => {
            ports::protocols(ctx, &format!("{at}.protocols"), protocols, d.max_items)?
        }
        (_, _, ports) => ports::ports(ctx, &format!("{at}.ports"), ports, d.max_items)?,
    };
    if read.address_peer && ports.named {
        return Err(ctx.err(
            at,
            Problem::Forbidden(
                "networks/nodes/domainNames peer cannot be set with named ports \
                 (networks, nodes and domain names have no named ports)",
            ),
        ));
    }
    let name = r.name.filter(|n| !n.is_empty());
    if read.unreadable == 0 {
        return Ok(Some(AdminRule {
            name,
            action,
            peers: read.peers,
            ports: ports.specs,
        }));
    }
    Ok(fail_closed(ctx, at, name, action, read.peers, ports.specs))
}

/// A rule with peers this version cannot read, as the API says to read
/// it: Accept matches only the peers it can read (nothing if none), Deny
/// and Pass become "Deny all".
fn fail_closed(
    ctx: &Ctx<'_>,
    at: &str,
    name: Option<String>,
    action: Action,
    peers: Vec<AdminPeer>,
    ports: Option<Vec<crate::model::PortSpec>>,
) -> Option<AdminRule> {
    let object = &ctx.object;
    if action == Action::Accept {
        tracing::warn!(%object, field = at, "a peer of this Accept rule cannot be read (an unknown or unsupported kind of peer): the rule does not match it");
        return (!peers.is_empty()).then_some(AdminRule {
            name,
            action,
            peers,
            ports,
        });
    }
    tracing::warn!(%object, field = at, "a peer of this {action} rule cannot be read (an unknown or unsupported kind of peer): the rule denies all traffic, as the API says to fail closed");
    Some(AdminRule {
        name,
        action: Action::Deny,
        peers: peers::everything(),
        ports: None,
    })
}

fn action(
    ctx: &Ctx<'_>,
    d: &Dialect,
    at: &str,
    action: Option<&str>,
) -> Result<Action, ObjectError> {
    let field = format!("{at}.action");
    let action = action.ok_or_else(|| ctx.err(&field, Problem::Missing))?;
    d.actions
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            ctx.err(
                field,
                Problem::NotSupported {
                    value: action.to_owned(),
                    supported: d.action_names,
                },
            )
        })
}

/// Checks a list's length against the schema's MinItems/MaxItems.
fn count(ctx: &Ctx<'_>, at: &str, found: usize, min: usize, max: usize) -> Result<(), ObjectError> {
    if (min..=max).contains(&found) {
        Ok(())
    } else {
        Err(ctx.err(at, Problem::Count { found, min, max }))
    }
}
