//! Explaining a connection to a Service: the node's kube-proxy sends it to
//! one of the Service's backends, and the dataplane judges it as the
//! connection to that backend (the client's egress to the backend on the
//! target port, the backend's ingress from the client). So a Service
//! destination (`svc/NAMESPACE/NAME`, or a frontend address and port) is
//! explained once per backend, from the same compiled tables as any other
//! connection ([`super::explain`]).

use std::net::IpAddr;

use serde::Serialize;

use super::{ExplainError, Explanation, PeerArg, explain};
use crate::compile::Compiled;
use crate::model::{Model, Protocol, Service, ServicePort, ServiceType};

/// A Service destination, resolved.
#[derive(Clone, Copy, Debug)]
pub struct Target<'m> {
    /// The Service.
    pub service: &'m Service,
    /// The Service port the connection uses.
    pub port: &'m ServicePort,
    /// The frontend address, when the destination was given as one.
    pub addr: Option<IpAddr>,
}

/// The frontend a connection used.
#[derive(Clone, Debug, Serialize)]
pub struct FrontendInfo {
    /// The address (a ClusterIP, a node address for a NodePort, an
    /// external or load-balancer address); absent for a headless Service
    /// given by name (clients reach its pods directly).
    pub addr: Option<IpAddr>,
    /// The port on it (the Service port, or the NodePort).
    pub port: u16,
    /// The Service port's `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

/// The connection to one backend.
#[derive(Clone, Debug, Serialize)]
pub struct BackendExplanation {
    /// `namespace/name` of the backend pod.
    pub pod: String,
    /// The connection from the client to the backend's address on the
    /// target port (`dst`, `port`), as the dataplane judges it.
    #[serde(flatten)]
    pub explanation: Explanation,
}

/// The answer for a Service destination.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceExplanation {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The frontend.
    pub frontend: FrontendInfo,
    /// Protocol.
    pub protocol: Protocol,
    /// `allowed` (to every backend), `denied` (to every backend),
    /// `some-backends` or `no-backends`.
    pub verdict: &'static str,
    /// Why there is no backend (with `no-backends`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_backends: Option<String>,
    /// One per backend pod, in pod order.
    pub backends: Vec<BackendExplanation>,
}

/// Either answer of [`super::answer`].
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// A connection to an address or pod.
    Connection(Box<Explanation>),
    /// A connection to a Service, per backend.
    Service(ServiceExplanation),
}

/// The Service port of `service` for `protocol`/`port`, or an error
/// listing its ports.
fn service_port(
    service: &Service,
    protocol: Protocol,
    port: u16,
) -> Result<&ServicePort, ExplainError> {
    service
        .ports
        .iter()
        .find(|p| p.protocol == protocol && p.port == port)
        .ok_or_else(|| ExplainError::NoServicePort {
            service: service.key(),
            protocol,
            port,
            ports: service
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Whether `to` is a Service: given by name, or a frontend address (a
/// NodePort on `node`). An address of a Service with a port it does not
/// have is an error (kube-proxy translates no such connection).
pub fn target<'m>(
    model: &'m Model,
    to: &PeerArg,
    protocol: Protocol,
    port: u16,
) -> Result<Option<Target<'m>>, ExplainError> {
    let addrs = match to {
        PeerArg::Service(key) => {
            let service = model
                .service(key)
                .ok_or_else(|| ExplainError::UnknownService(key.clone()))?;
            let port = service_port(service, protocol, port)?;
            return Ok(Some(Target {
                service,
                port,
                addr: None,
            }));
        }
        PeerArg::Pod(_) => return Ok(None),
        PeerArg::Addr(a) => vec![*a],
        PeerArg::Node => model.node_ips.clone(),
    };
    for a in addrs {
        if let Some((service, p)) = model.frontend(a, protocol, port) {
            return Ok(Some(Target {
                service,
                port: p,
                addr: Some(a),
            }));
        }
        if let Some(s) = model.services.iter().find(|s| {
            s.cluster_ips
                .iter()
                .chain(&s.external_ips)
                .chain(&s.load_balancer_ips)
                .any(|x| *x == a)
        }) {
            service_port(s, protocol, port)?;
        }
    }
    Ok(None)
}

/// The address family of the connection: the frontend's, else (a Service
/// by name) the first of its ClusterIPs' families the client has, else
/// the client's first.
fn family(model: &Model, from: &PeerArg, t: &Target<'_>) -> Option<bool> {
    if let Some(a) = t.addr {
        return Some(a.is_ipv4());
    }
    let client: Vec<IpAddr> = match from {
        PeerArg::Addr(a) => vec![*a],
        PeerArg::Pod(k) => model.pod(k).map(|(_, p)| p.ips.clone())?,
        PeerArg::Node => model.node_ips.clone(),
        PeerArg::Service(_) => return None,
    };
    t.service
        .cluster_ips
        .iter()
        .map(|a| a.is_ipv4())
        .find(|v4| client.iter().any(|c| c.is_ipv4() == *v4))
        .or_else(|| client.first().map(|c| c.is_ipv4()))
}

/// Why a Service port has no backends.
fn no_backends_reason(model: &Model, t: &Target<'_>, v4: bool) -> String {
    let s = t.service;
    if s.kind == ServiceType::ExternalName {
        return "an ExternalName Service is a DNS alias: nothing is translated".into();
    }
    if s.selector.is_none() {
        return "the Service has no selector: its endpoints are managed outside it, and Bulkhead \
                knows only backends by selector"
            .into();
    }
    let selected: Vec<_> = model.pods.iter().filter(|p| s.selects(p)).collect();
    if selected.is_empty() {
        return "no pod matches the Service's selector".into();
    }
    let family = if v4 { "IPv4" } else { "IPv6" };
    if !selected
        .iter()
        .any(|p| p.ips.iter().any(|a| a.is_ipv4() == v4))
    {
        return format!("no selected pod has an {family} address");
    }
    "no selected pod declares the target port".into()
}

/// Explains a connection from `from` to the Service `t`, per backend.
pub fn explain_service(
    model: &Model,
    compiled: &Compiled,
    from: &PeerArg,
    t: &Target<'_>,
    protocol: Protocol,
) -> Result<ServiceExplanation, ExplainError> {
    let v4 = family(model, from, t).ok_or_else(|| ExplainError::NoCommonFamily {
        from: from.to_string(),
        to: t.service.key(),
    })?;
    let mut backends = Vec::new();
    for b in model.service_backends(t.service, t.port, v4) {
        let explanation = explain(
            model,
            compiled,
            from,
            &PeerArg::Addr(b.addr),
            protocol,
            b.port,
        )?;
        backends.push(BackendExplanation {
            pod: model.pods[b.pod].key(),
            explanation,
        });
    }
    let allowed = backends.iter().filter(|b| b.explanation.allowed).count();
    let verdict = match allowed {
        _ if backends.is_empty() => "no-backends",
        0 => "denied",
        n if n == backends.len() => "allowed",
        _ => "some-backends",
    };
    let frontend_port = match t.addr {
        Some(a) if model.node_ips.contains(&a) && !model.is_service_address(a) => {
            t.port.node_port.unwrap_or(t.port.port)
        }
        _ => t.port.port,
    };
    Ok(ServiceExplanation {
        service: t.service.key(),
        frontend: FrontendInfo {
            addr: t.addr.or_else(|| {
                t.service
                    .cluster_ips
                    .iter()
                    .copied()
                    .find(|a| a.is_ipv4() == v4)
            }),
            port: frontend_port,
            port_name: t.port.name.clone(),
        },
        protocol,
        verdict,
        no_backends: backends
            .is_empty()
            .then(|| no_backends_reason(model, t, v4)),
        backends,
    })
}
