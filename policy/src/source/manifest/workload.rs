//! Pods and workload objects → model pods (a workload stands for one pod of
//! its template, named after the workload).

use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod as K8sPod, PodSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Ctx, ObjectError, Problem};
use crate::model::{AddressClaim, ContainerPort, Labels, OffNetwork, Pod, Protocol, Workload};

/// Decodes `value` as the k8s-openapi type `T`. `apiVersion` and `kind` are
/// set to `T`'s (list items lack them; older workload apiVersions carry the
/// same pod template). Unknown fields are ignored here: only policies are
/// checked strictly.
pub(super) fn decode<T: DeserializeOwned + k8s_openapi::Resource>(
    ctx: &Ctx<'_>,
    mut value: Value,
) -> Result<T, ObjectError> {
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), T::API_VERSION.into());
        map.insert("kind".into(), T::KIND.into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ctx.err(field, Problem::Decode(e.into_inner()))
    })
}

/// Converts a Pod or workload object of kind `kind`.
pub(super) fn convert(ctx: &Ctx<'_>, kind: &str, mut value: Value) -> Result<Pod, ObjectError> {
    // ownerReferences are read by hand: analyzer-style dumps omit the fields
    // (uid, apiVersion) that the typed struct requires.
    let owner = value
        .get_mut("metadata")
        .and_then(|m| m.as_object_mut())
        .and_then(|m| m.remove("ownerReferences"))
        .and_then(|refs| controlling_owner(&refs));
    let mut claim = AddressClaim::default();
    let mut node = None;
    let mut off_network = None;
    let (meta, spec, ips) = match kind {
        "Pod" => {
            let pod: K8sPod = decode(ctx, value)?;
            let ips = status_ips(ctx, &pod)?;
            claim = address_claim(&pod);
            node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            off_network = off_network_of(&pod);
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            (pod.metadata, (pod.spec, labels), ips)
        }
        "Deployment" => template(decode::<Deployment>(ctx, value)?, |o| {
            (o.metadata, Some(o.spec.template))
        }),
        "ReplicaSet" => template(decode::<ReplicaSet>(ctx, value)?, |o| {
            (o.metadata, o.spec.template)
        }),
        "StatefulSet" => template(decode::<StatefulSet>(ctx, value)?, |o| {
            (o.metadata, Some(o.spec.template))
        }),
        "DaemonSet" => template(decode::<DaemonSet>(ctx, value)?, |o| {
            (o.metadata, Some(o.spec.template))
        }),
        "Job" => template(decode::<Job>(ctx, value)?, |o| {
            (o.metadata, o.spec.map(|s| s.template))
        }),
        "CronJob" => template(decode::<CronJob>(ctx, value)?, |o| {
            let t = o.spec.job_template.spec.map(|s| s.template);
            (o.metadata, t)
        }),
        "ReplicationController" => template(decode::<ReplicationController>(ctx, value)?, |o| {
            (o.metadata, o.spec.and_then(|s| s.template))
        }),
        other => unreachable!("convert called for kind {other}"),
    };
    let name = meta
        .name
        .clone()
        .ok_or_else(|| ctx.err("metadata.name", Problem::Missing))?;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    Ok(Pod {
        namespace,
        source: Workload {
            kind: kind.to_string(),
            name: name.clone(),
        },
        name,
        owner: if kind == "Pod" { owner } else { None },
        ports: container_ports(ctx, spec.0.as_ref())?,
        labels: spec.1,
        ips,
        claim,
        node,
        off_network,
        origin: ctx.origin.clone(),
    })
}

/// Why a Pod object has no address of its own, if so.
fn off_network_of(pod: &K8sPod) -> Option<OffNetwork> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some(OffNetwork::Ended);
    }
    let host = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    host.then_some(OffNetwork::HostNetwork)
}

/// A Pod's claim on its status addresses: its phase and start time.
fn address_claim(pod: &K8sPod) -> AddressClaim {
    let status = pod.status.as_ref();
    AddressClaim {
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
        started_unix: status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_second()),
    }
}

/// (metadata, (pod spec, pod labels), status IPs) of a workload: the pod
/// template's spec and labels.
fn template<T>(
    object: T,
    parts: impl FnOnce(
        T,
    ) -> (
        ObjectMeta,
        Option<k8s_openapi::api::core::v1::PodTemplateSpec>,
    ),
) -> (ObjectMeta, (Option<PodSpec>, Labels), Vec<IpAddr>) {
    let (meta, template) = parts(object);
    let (spec, labels) = match template {
        Some(t) => (
            t.spec,
            t.metadata.and_then(|m| m.labels).unwrap_or_default(),
        ),
        None => (None, Labels::new()),
    };
    (meta, (spec, labels), Vec::new())
}

/// The controlling owner (`controller: true`, not a Node) of a pod.
fn controlling_owner(refs: &Value) -> Option<Workload> {
    refs.as_array()?.iter().find_map(|r| {
        let controller = r.get("controller").and_then(Value::as_bool) == Some(true);
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("Pod");
        let name = r.get("name").and_then(Value::as_str)?;
        (controller && kind != "Node").then(|| Workload {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    })
}

/// `status.podIPs`, else `status.podIP`, parsed.
fn status_ips(ctx: &Ctx<'_>, pod: &K8sPod) -> Result<Vec<IpAddr>, ObjectError> {
    let Some(status) = &pod.status else {
        return Ok(Vec::new());
    };
    let parse = |field: String, s: &str| {
        s.parse::<IpAddr>().map_err(|e| {
            ctx.err(
                field,
                Problem::InvalidCidr {
                    value: s.to_string(),
                    reason: e.to_string(),
                },
            )
        })
    };
    let mut ips = Vec::new();
    for (i, ip) in status.pod_ips.iter().flatten().enumerate() {
        ips.push(parse(format!("status.podIPs[{i}].ip"), &ip.ip)?);
    }
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty())
    {
        ips.push(parse("status.podIP".into(), ip)?);
    }
    ips.dedup();
    Ok(ips)
}

/// Container ports of all (regular) containers.
fn container_ports(
    ctx: &Ctx<'_>,
    spec: Option<&PodSpec>,
) -> Result<Vec<ContainerPort>, ObjectError> {
    let mut out = Vec::new();
    let Some(spec) = spec else { return Ok(out) };
    for (ci, c) in spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let field = |f: &str| format!("spec.containers[{ci}].ports[{pi}].{f}");
            let port = u16::try_from(p.container_port)
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| {
                    ctx.err(
                        field("containerPort"),
                        Problem::PortOutOfRange(p.container_port.into()),
                    )
                })?;
            let protocol = match p.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(s) => s
                    .parse()
                    .map_err(|_| ctx.err(field("protocol"), Problem::BadProtocol(s.into())))?,
            };
            out.push(ContainerPort {
                name: p.name.clone(),
                port,
                protocol,
            });
        }
    }
    Ok(out)
}
