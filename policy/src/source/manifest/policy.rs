//! NetworkPolicy objects → validated [`Policy`], strictly: unknown fields,
//! bad CIDRs, operators, protocols and ports are errors naming the field.

use ipnetwork::IpNetwork;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{Ctx, ObjectError, Problem};
use crate::model::{
    IpBlock, NamespaceScope, Peer, Policy, PortMatch, PortSpec, Protocol, Requirement, Rule,
    Selector,
};

const API_VERSION: &str = "networking.k8s.io/v1";

/// Decodes and validates one NetworkPolicy.
pub(super) fn convert(
    ctx: &Ctx<'_>,
    mut value: Value,
    api_version: &str,
) -> Result<Policy, ObjectError> {
    if !api_version.is_empty() && api_version != API_VERSION {
        return Err(ctx.err(
            "apiVersion",
            Problem::UnsupportedApiVersion(api_version.to_string()),
        ));
    }
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), API_VERSION.into());
        map.insert("kind".into(), "NetworkPolicy".into());
        // Older API servers report an (unused) status; it is not policy.
        map.remove("status");
    }
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let np: NetworkPolicy = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ctx.err(field, Problem::Decode(e.into_inner()))
    })?;
    if let Some(field) = unknown.into_iter().next().filter(|_| ctx.strict) {
        return Err(ctx.err(field, Problem::UnknownField));
    }
    let name = np
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    let namespace = np.metadata.namespace.unwrap_or_else(|| "default".into());
    let mode = super::mode_annotation(ctx, np.metadata.annotations.as_ref())?;
    let spec = np.spec.ok_or_else(|| ctx.err("spec", Problem::Missing))?;
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(ctx, s, "spec.podSelector")?,
        None => Selector::everything(),
    };
    let has_egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
    // policyTypes defaulting, as the API server does it: Ingress always,
    // Egress when there are egress rules.
    let (mut isolates_ingress, mut isolates_egress) = (false, false);
    match &spec.policy_types {
        Some(types) if !types.is_empty() => {
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => isolates_ingress = true,
                    "Egress" => isolates_egress = true,
                    other => {
                        return Err(ctx.err(
                            format!("spec.policyTypes[{i}]"),
                            Problem::BadPolicyType(other.to_string()),
                        ));
                    }
                }
            }
        }
        _ => (isolates_ingress, isolates_egress) = (true, has_egress_rules),
    }
    let ingress = isolates_ingress
        .then(|| {
            let rules = spec.ingress.iter().flatten();
            let rules = rules.map(|r| (r.from.as_deref(), r.ports.as_deref()));
            rule_list(ctx, &namespace, "spec.ingress", "from", rules)
        })
        .transpose()?;
    let egress = isolates_egress
        .then(|| {
            let rules = spec.egress.iter().flatten();
            let rules = rules.map(|r| (r.to.as_deref(), r.ports.as_deref()));
            rule_list(ctx, &namespace, "spec.egress", "to", rules)
        })
        .transpose()?;
    Ok(Policy {
        namespace,
        name,
        pod_selector,
        ingress,
        egress,
        origin: ctx.origin.clone(),
        mode,
    })
}

/// `spec.ingress[0].from`: the same form as every other field path we report
/// (serde_ignored's own Display marks optional levels with `?`).
pub(super) fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Rules given as (peers, ports) pairs, the `i`th at `{at}[i]`.
fn rule_list<'a>(
    ctx: &Ctx<'_>,
    namespace: &str,
    at: &str,
    peers_field: &str,
    rules: impl Iterator<
        Item = (
            Option<&'a [NetworkPolicyPeer]>,
            Option<&'a [NetworkPolicyPort]>,
        ),
    >,
) -> Result<Vec<Rule>, ObjectError> {
    rules
        .enumerate()
        .map(|(i, (peers, ports))| {
            rule(
                ctx,
                namespace,
                &format!("{at}[{i}]"),
                peers_field,
                peers,
                ports,
            )
        })
        .collect()
}

fn rule(
    ctx: &Ctx<'_>,
    namespace: &str,
    at: &str,
    peers_field: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Result<Rule, ObjectError> {
    let peers = match peers {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(ctx, namespace, &format!("{at}.{peers_field}[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(ctx, &format!("{at}.ports[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

fn peer(
    ctx: &Ctx<'_>,
    namespace: &str,
    at: &str,
    p: &NetworkPolicyPeer,
) -> Result<Peer, ObjectError> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(b), None, None) => {
            ip_block(ctx, &format!("{at}.ipBlock"), &b.cidr, b.except.as_deref())
        }
        (Some(_), _, _) => Err(ctx.err(
            at,
            Problem::BadPeer("ipBlock cannot be combined with podSelector or namespaceSelector"),
        )),
        (None, None, None) => Err(ctx.err(
            at,
            Problem::BadPeer("a peer needs podSelector, namespaceSelector or ipBlock"),
        )),
        (None, ns, pods) => {
            let namespaces = match ns {
                Some(s) => {
                    NamespaceScope::Selected(selector(ctx, s, &format!("{at}.namespaceSelector"))?)
                }
                None => NamespaceScope::Same(namespace.to_string()),
            };
            let pods = match pods {
                Some(s) => selector(ctx, s, &format!("{at}.podSelector"))?,
                None => Selector::everything(),
            };
            Ok(Peer::Pods { namespaces, pods })
        }
    }
}

fn ip_block(
    ctx: &Ctx<'_>,
    at: &str,
    cidr: &str,
    except: Option<&[String]>,
) -> Result<Peer, ObjectError> {
    let block = parse_cidr(ctx, &format!("{at}.cidr"), cidr)?;
    let mut excepts = Vec::new();
    for (i, e) in except.unwrap_or_default().iter().enumerate() {
        let field = format!("{at}.except[{i}]");
        let net = parse_cidr(ctx, &field, e)?;
        let inside = net.is_ipv4() == block.is_ipv4()
            && net.prefix() > block.prefix()
            && block.contains(net.network());
        if !inside {
            return Err(ctx.err(
                field,
                Problem::ExceptOutsideCidr {
                    except: e.clone(),
                    cidr: cidr.to_string(),
                },
            ));
        }
        excepts.push(net);
    }
    excepts.sort();
    excepts.dedup();
    Ok(Peer::IpBlock(IpBlock {
        cidr: block,
        except: excepts,
    }))
}

/// Parses a CIDR; host bits are cleared (as the API server's parser does).
pub(super) fn parse_cidr(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<IpNetwork, ObjectError> {
    let bad = |reason: String| {
        ctx.err(
            field,
            Problem::InvalidCidr {
                value: text.to_string(),
                reason,
            },
        )
    };
    if !text.contains('/') {
        return Err(bad("missing /prefix length".into()));
    }
    let net: IpNetwork = text
        .parse()
        .map_err(|e: ipnetwork::IpNetworkError| bad(e.to_string()))?;
    IpNetwork::new(net.network(), net.prefix()).map_err(|e| bad(e.to_string()))
}

fn port(ctx: &Ctx<'_>, at: &str, p: &NetworkPolicyPort) -> Result<PortSpec, ObjectError> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err(ctx.err(
                format!("{at}.protocol"),
                Problem::BadProtocol(other.to_string()),
            ));
        }
    };
    let number = |n: i64, field: &str| {
        u16::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| ctx.err(format!("{at}.{field}"), Problem::PortOutOfRange(n)))
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::Any,
        (Some(IntOrString::Int(n)), None) => {
            let n = number((*n).into(), "port")?;
            PortMatch::Range(n, n)
        }
        (Some(IntOrString::Int(n)), Some(end)) => {
            let lo = number((*n).into(), "port")?;
            let hi = number(end.into(), "endPort")?;
            if hi < lo {
                return Err(ctx.err(
                    format!("{at}.endPort"),
                    Problem::EndPortBelowPort {
                        port: lo,
                        end: end.into(),
                    },
                ));
            }
            PortMatch::Range(lo, hi)
        }
        (Some(IntOrString::String(s)), None) => {
            // A numeric string is a number to the API server too.
            if let Ok(n) = s.parse::<i64>() {
                let n = number(n, "port")?;
                PortMatch::Range(n, n)
            } else if valid_port_name(s) {
                PortMatch::Named(s.clone())
            } else {
                return Err(ctx.err(format!("{at}.port"), Problem::BadPortName(s.clone())));
            }
        }
        (_, Some(_)) => {
            return Err(ctx.err(format!("{at}.endPort"), Problem::EndPortWithoutNumericPort));
        }
    };
    Ok(PortSpec { protocol, port })
}

/// IANA service name rules (RFC 6335 §5.1), as Kubernetes checks them.
pub(super) fn valid_port_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 15
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

pub(super) fn selector(
    ctx: &Ctx<'_>,
    s: &LabelSelector,
    at: &str,
) -> Result<Selector, ObjectError> {
    let mut reqs: Vec<Requirement> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
        .collect();
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let field = format!("{at}.matchExpressions[{i}]");
        let values = e.values.clone().unwrap_or_default();
        let needs_values = |op: &str, present: bool| {
            if present == values.is_empty() {
                Err(ctx.err(
                    format!("{field}.values"),
                    Problem::OperatorValues {
                        operator: op.to_string(),
                        expectation: if present {
                            "needs at least one value"
                        } else {
                            "takes no values"
                        },
                    },
                ))
            } else {
                Ok(())
            }
        };
        let key = e.key.clone();
        reqs.push(match e.operator.as_str() {
            "In" => needs_values("In", true).map(|_| Requirement::In(key, values.clone()))?,
            "NotIn" => {
                needs_values("NotIn", true).map(|_| Requirement::NotIn(key, values.clone()))?
            }
            "Exists" => needs_values("Exists", false).map(|_| Requirement::Exists(key))?,
            "DoesNotExist" => {
                needs_values("DoesNotExist", false).map(|_| Requirement::DoesNotExist(key))?
            }
            other => {
                return Err(ctx.err(
                    format!("{field}.operator"),
                    Problem::BadOperator(other.to_string()),
                ));
            }
        });
    }
    Ok(Selector::new(reqs))
}
