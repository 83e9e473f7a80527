//! Service objects (core/v1) → model [`Service`]s, defaulted and checked
//! as the API server defaults and checks them on create
//! (`SetDefaults_Service`, the Service REST's IP-family defaulting, and
//! `ValidateService` of `pkg/apis/core/validation`): what it refuses is an
//! error naming the field; what it accepts stays, even where it makes
//! little sense (warnings are found when the model is assembled).
//! Addresses a manifest leaves out are given by the address plan.

mod addresses;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Service as K8sService, ServicePort as K8sPort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::policy::{field_path, valid_port_name};
use super::{Ctx, ObjectError, ObjectRef, Problem};
use crate::model::{
    Model, Pod, Protocol, Service, ServicePort, ServiceType, SessionAffinity, TargetPort,
    TrafficPolicy,
};
use addresses::{cluster_ips, external_ips, ip_families, ip_family_policy, load_balancer_ips};

/// The one apiVersion of Services.
const API_VERSION: &str = "v1";

/// `core.MaxClientIPServiceAffinitySeconds`, and the default timeout.
const MAX_AFFINITY_SECONDS: u32 = 86_400;
const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// Decodes, defaults and validates one Service.
pub(super) fn convert(
    ctx: &Ctx<'_>,
    mut value: Value,
    api_version: &str,
) -> Result<Service, ObjectError> {
    ctx.only_api_version(api_version, &[API_VERSION])?;
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), API_VERSION.into());
        map.insert("kind".into(), "Service".into());
    }
    let svc = decode(ctx, value)?;
    let name = svc
        .metadata
        .name
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    if let Some(reason) = dns_label_problem(&name, true) {
        return Err(ctx.err("metadata.name", invalid(&name, reason)));
    }
    let namespace = svc.metadata.namespace.unwrap_or_else(|| "default".into());
    let spec = svc.spec.unwrap_or_default();
    let kind = service_type(ctx, spec.type_.as_deref())?;
    let (cluster_ips, headless) = cluster_ips(ctx, &spec, kind)?;
    let ip_families = ip_families(ctx, &spec, kind, &cluster_ips, headless)?;
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    let ip_family_policy = ip_family_policy(
        ctx,
        &spec,
        kind,
        &cluster_ips,
        &ip_families,
        headless,
        &selector,
    )?;
    let ports = ports(ctx, &spec, kind, headless)?;
    let external_ips = external_ips(ctx, &spec)?;
    let load_balancer_ips = load_balancer_ips(ctx, &svc.status, kind)?;
    if spec.allocate_load_balancer_node_ports.is_some() && kind != ServiceType::LoadBalancer {
        return Err(ctx.err(
            "spec.allocateLoadBalancerNodePorts",
            Problem::Forbidden("may only be used when `type` is 'LoadBalancer'"),
        ));
    }
    let externally_accessible = matches!(kind, ServiceType::NodePort | ServiceType::LoadBalancer)
        || (kind == ServiceType::ClusterIp && !external_ips.is_empty());
    let etp = traffic_policy(
        ctx,
        "spec.externalTrafficPolicy",
        &spec.external_traffic_policy,
    )?;
    if spec.external_traffic_policy.is_some() && !externally_accessible {
        return Err(ctx.err(
            "spec.externalTrafficPolicy",
            invalid(
                spec.external_traffic_policy.as_deref().unwrap_or_default(),
                "may only be set for externally-accessible services",
            ),
        ));
    }
    Ok(Service {
        namespace,
        name,
        kind,
        selector,
        cluster_ips,
        headless,
        ip_families,
        ip_family_policy,
        ports,
        external_ips,
        load_balancer_ips,
        external_traffic_policy: etp,
        internal_traffic_policy: traffic_policy(
            ctx,
            "spec.internalTrafficPolicy",
            &spec.internal_traffic_policy,
        )?,
        session_affinity: session_affinity(ctx, &spec)?,
        external_name: external_name(ctx, &spec, kind)?,
        skip_node_ports: spec.allocate_load_balancer_node_ports == Some(false),
        origin: ctx.origin.clone(),
    })
}

/// The typed object; unknown fields are errors in strict mode.
fn decode(ctx: &Ctx<'_>, value: Value) -> Result<K8sService, ObjectError> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let svc: K8sService = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ctx.err(field, Problem::Decode(e.into_inner()))
    })?;
    match unknown.into_iter().next().filter(|_| ctx.strict) {
        Some(field) => Err(ctx.err(field, Problem::UnknownField)),
        None => Ok(svc),
    }
}

/// What Services hold that the API server accepts and nothing uses: a
/// named targetPort none of the pods the Service selects declares (those
/// pods are no backends of that port), a selector on an ExternalName
/// Service (nothing is selected for a DNS alias); and unnamed ports of a
/// multi-port Service, which it refuses but which change nothing here.
pub(super) fn warnings(model: &Model) -> Vec<ObjectError> {
    let mut out = Vec::new();
    for svc in &model.services {
        let ctx = Ctx {
            origin: &svc.origin,
            object: ObjectRef {
                kind: Some("Service".into()),
                namespace: Some(svc.namespace.clone()),
                name: Some(svc.name.clone()),
            },
            strict: false,
        };
        if svc.kind == ServiceType::ExternalName {
            if svc.selector.is_some() {
                let why = "an ExternalName Service selects no pods; its selector has no effect";
                out.push(ctx.err("spec.selector", Problem::NoEffect(why)));
            }
            continue;
        }
        if svc.ports.len() > 1 {
            for (i, _) in svc
                .ports
                .iter()
                .enumerate()
                .filter(|(_, p)| p.name.is_none())
            {
                out.push(ctx.err(format!("spec.ports[{i}].name"), Problem::UnnamedPort));
            }
        }
        let selected: Vec<&Pod> = model.pods.iter().filter(|p| svc.selects(p)).collect();
        for (i, port) in svc.ports.iter().enumerate() {
            let TargetPort::Name(name) = &port.target_port else {
                continue;
            };
            let resolved = selected
                .iter()
                .any(|p| p.named_port(name, port.protocol).is_some());
            if !selected.is_empty() && !resolved {
                out.push(ctx.err(
                    format!("spec.ports[{i}].targetPort"),
                    Problem::TargetPortUnresolved {
                        name: name.clone(),
                        protocol: port.protocol.to_string(),
                    },
                ));
            }
        }
    }
    out
}

fn invalid(value: impl ToString, reason: impl Into<String>) -> Problem {
    Problem::Invalid {
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn service_type(ctx: &Ctx<'_>, given: Option<&str>) -> Result<ServiceType, ObjectError> {
    Ok(match given {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(ctx.err(
                "spec.type",
                Problem::NotSupported {
                    value: other.to_owned(),
                    supported: &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                },
            ));
        }
    })
}

/// `spec.ports`.
fn ports(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec,
    kind: ServiceType,
    headless: bool,
) -> Result<Vec<ServicePort>, ObjectError> {
    let given = spec.ports.as_deref().unwrap_or_default();
    if given.is_empty() && !headless && kind != ServiceType::ExternalName {
        return Err(ctx.err("spec.ports", Problem::Missing));
    }
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    let mut node_ports = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in given.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = port(ctx, &at, p, &mut names)?;
        if !numbers.insert((port.protocol, port.port)) {
            let dup = format!("{}/{}", port.port, port.protocol);
            return Err(ctx.err(at, Problem::DuplicateValue(dup)));
        }
        if let Some(n) = port.node_port {
            if kind == ServiceType::ClusterIp {
                let why = "may not be used when `type` is 'ClusterIP'";
                return Err(ctx.err(format!("{at}.nodePort"), Problem::Forbidden(why)));
            }
            if !node_ports.insert((port.protocol, n)) {
                let dup = format!("{n}/{}", port.protocol);
                return Err(ctx.err(format!("{at}.nodePort"), Problem::DuplicateValue(dup)));
            }
        }
        out.push(port);
    }
    Ok(out)
}

/// One entry of `spec.ports`, at `at`.
fn port(
    ctx: &Ctx<'_>,
    at: &str,
    p: &K8sPort,
    names: &mut HashSet<String>,
) -> Result<ServicePort, ObjectError> {
    let name = p.name.clone().filter(|n| !n.is_empty());
    // Several ports without names: the API server refuses it, but nothing
    // here refers to a Service port by name, and manifests written for
    // analyzers hold it; a warning when the model is assembled.
    match &name {
        None => {}
        Some(n) => {
            if let Some(why) = dns_label_problem(n, false) {
                return Err(ctx.err(format!("{at}.name"), invalid(n, why)));
            }
            if !names.insert(n.clone()) {
                return Err(ctx.err(format!("{at}.name"), Problem::DuplicateValue(n.clone())));
            }
        }
    }
    let number = |n: i32, field: &str| {
        u16::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| ctx.err(format!("{at}.{field}"), Problem::PortOutOfRange(n.into())))
    };
    let port = number(p.port, "port")?;
    let protocol = match p.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            let problem = Problem::BadProtocol(other.to_owned());
            return Err(ctx.err(format!("{at}.protocol"), problem));
        }
    };
    // Defaulting: an absent, zero or empty targetPort is the port.
    let target_port = match &p.target_port {
        None | Some(IntOrString::Int(0)) => TargetPort::Number(port),
        Some(IntOrString::String(s)) if s.is_empty() => TargetPort::Number(port),
        Some(IntOrString::Int(n)) => TargetPort::Number(number(*n, "targetPort")?),
        Some(IntOrString::String(s)) if valid_port_name(s) => TargetPort::Name(s.clone()),
        Some(IntOrString::String(s)) => {
            return Err(ctx.err(format!("{at}.targetPort"), Problem::BadPortName(s.clone())));
        }
    };
    let node_port = match p.node_port {
        None | Some(0) => None,
        Some(n) => Some(number(n, "nodePort")?),
    };
    Ok(ServicePort {
        name,
        protocol,
        port,
        target_port,
        node_port,
    })
}

fn traffic_policy(
    ctx: &Ctx<'_>,
    field: &str,
    given: &Option<String>,
) -> Result<TrafficPolicy, ObjectError> {
    match given.as_deref() {
        None | Some("Cluster") => Ok(TrafficPolicy::Cluster),
        Some("Local") => Ok(TrafficPolicy::Local),
        Some(other) => Err(ctx.err(
            field,
            Problem::NotSupported {
                value: other.to_owned(),
                supported: &["Cluster", "Local"],
            },
        )),
    }
}

fn session_affinity(ctx: &Ctx<'_>, spec: &ServiceSpec) -> Result<SessionAffinity, ObjectError> {
    let config = spec.session_affinity_config.as_ref();
    match spec.session_affinity.as_deref() {
        None | Some("None") => match config {
            None => Ok(SessionAffinity::None),
            Some(_) => Err(ctx.err(
                "spec.sessionAffinityConfig",
                Problem::Forbidden("must not be set when session affinity is None"),
            )),
        },
        Some("ClientIP") => {
            let timeout = config
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            let timeout_seconds = match timeout {
                None => DEFAULT_AFFINITY_SECONDS,
                Some(t) => u32::try_from(t)
                    .ok()
                    .filter(|t| (1..=MAX_AFFINITY_SECONDS).contains(t))
                    .ok_or_else(|| {
                        ctx.err(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            invalid(t, "must be greater than 0 and at most 86400"),
                        )
                    })?,
            };
            Ok(SessionAffinity::ClientIp { timeout_seconds })
        }
        Some(other) => Err(ctx.err(
            "spec.sessionAffinity",
            Problem::NotSupported {
                value: other.to_owned(),
                supported: &["ClientIP", "None"],
            },
        )),
    }
}

/// `spec.externalName`: required for (and only read of) ExternalName
/// Services; a DNS-1123 subdomain, with an optional final dot.
fn external_name(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec,
    kind: ServiceType,
) -> Result<Option<String>, ObjectError> {
    if kind != ServiceType::ExternalName {
        return Ok(None);
    }
    let name = spec.external_name.as_deref().unwrap_or_default();
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err(ctx.err("spec.externalName", Problem::Missing));
    }
    let labels_ok = bare.len() <= 253
        && bare
            .split('.')
            .all(|l| dns_label_problem(l, false).is_none());
    if !labels_ok {
        let why = "must be a lower-case DNS-1123 subdomain (e.g. 'example.com')";
        return Err(ctx.err("spec.externalName", invalid(name, why)));
    }
    Ok(Some(name.to_owned()))
}

/// Why `s` is not a DNS label: DNS-1123 (lower-case letters, digits and
/// '-', at most 63, starting and ending with a letter or digit), and with
/// `dns1035` starting with a letter too (Service names).
fn dns_label_problem(s: &str, dns1035: bool) -> Option<&'static str> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let starts_ok = if dns1035 {
        s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
    } else {
        ends(s.as_bytes().first())
    };
    if s.is_empty() || s.len() > 63 {
        Some("must be 1-63 characters")
    } else if !ok_chars || !starts_ok || !ends(s.as_bytes().last()) {
        Some(if dns1035 {
            "must consist of lower-case letters, digits and '-', start with a letter and end \
             with a letter or digit (DNS-1035 label)"
        } else {
            "must consist of lower-case letters, digits and '-', and start and end with a \
             letter or digit (DNS-1123 label)"
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
