//! What the CNI registrations ([`crate::cni`]) change in a reconcile, as
//! pure functions of the model, the node view and the registrations:
//!
//! - [`address_overlay`]: a registered pod the source lists without
//!   addresses (Kubernetes: CNI ADD runs before `status.podIP` exists)
//!   gets the registered ones, so it is enforced at once;
//! - [`bind`]: a registered pod is bound to the veth its ADD named (not
//!   only found by routes), with the MAC of its interface;
//! - [`publication`]: per registration, enforced on its veth or what it
//!   waits for, for the waiting ADDs and CHECKs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::cni::{Binding, Published, Stored};
use bulkhead_dataplane::node::{LocalEndpoint, Snapshot};
use bulkhead_policy::model::Model;

/// The registrations in force: per pod, the latest ADD (highest
/// generation); older ones of the same pod are superseded.
pub(super) fn latest(regs: &[Stored]) -> BTreeMap<String, &Stored> {
    let mut out: BTreeMap<String, &Stored> = BTreeMap::new();
    for s in regs {
        let key = s.registration.pod_key();
        match out.get(&key) {
            Some(o) if o.generation > s.generation => {}
            _ => {
                out.insert(key, s);
            }
        }
    }
    out
}

fn pod_index(model: &Model) -> HashMap<(&str, &str), usize> {
    model
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.namespace.as_str(), p.name.as_str()), i))
        .collect()
}

/// (pod index, registered addresses) of the registered pods the model
/// lists without addresses, by index.
pub(super) fn address_overlay(model: &Model, regs: &[Stored]) -> Vec<(usize, Vec<IpAddr>)> {
    let index = pod_index(model);
    let mut out: Vec<(usize, Vec<IpAddr>)> = latest(regs)
        .values()
        .filter_map(|s| {
            let r = &s.registration;
            let &i = index.get(&(r.pod_namespace.as_str(), r.pod_name.as_str()))?;
            model.pods[i].ips.is_empty().then(|| (i, r.ips.clone()))
        })
        .collect();
    out.sort();
    out
}

/// `model` with the overlay's addresses (the same `Arc` when there is
/// none: a copy only while some pod waits for its `status.podIP`).
pub(super) fn overlaid(model: &Arc<Model>, overlay: &[(usize, Vec<IpAddr>)]) -> Arc<Model> {
    if overlay.is_empty() {
        return Arc::clone(model);
    }
    let mut m = Model::clone(model);
    for (i, ips) in overlay {
        m.pods[*i].ips.clone_from(ips);
    }
    Arc::new(m)
}

/// Whether a pod scheduled on `pod_node` can be local here.
fn on_this_node(me: Option<&str>, pod_node: Option<&str>) -> bool {
    match (me, pod_node) {
        (Some(me), Some(theirs)) => me == theirs,
        _ => true,
    }
}

/// The veth of `s` on the node: the first of its host interfaces that is
/// a veth here.
fn veth_of<'a>(node: &'a Snapshot, s: &Stored) -> Option<(u32, &'a str)> {
    s.registration.host_interfaces.iter().find_map(|name| {
        node.links
            .values()
            .find(|l| &l.name == name && l.is_veth())
            .map(|l| (l.ifindex, l.name.as_str()))
    })
}

/// `eps` (found by routes) with every registered pod bound to its own
/// veth instead, and the MACs of the registered pods' interfaces.
pub(super) fn bind(
    mut eps: Vec<LocalEndpoint>,
    model: &Model,
    node: &Snapshot,
    regs: &[Stored],
    node_name: Option<&str>,
) -> (Vec<LocalEndpoint>, BTreeMap<usize, [u8; 6]>) {
    let index = pod_index(model);
    let mut macs = BTreeMap::new();
    for s in latest(regs).values() {
        let r = &s.registration;
        let Some(&pod) = index.get(&(r.pod_namespace.as_str(), r.pod_name.as_str())) else {
            continue;
        };
        let p = &model.pods[pod];
        if p.ips.is_empty() || !on_this_node(node_name, p.node.as_deref()) {
            continue;
        }
        let Some((ifindex, ifname)) = veth_of(node, s) else {
            continue;
        };
        eps.retain(|e| e.pod != pod && e.ifindex != ifindex);
        eps.push(LocalEndpoint {
            pod,
            ifindex,
            ifname: ifname.to_owned(),
        });
        if let Some(mac) = r.mac_bytes() {
            macs.insert(pod, mac);
        }
    }
    eps.sort();
    (eps, macs)
}

/// Where every registration stands. `enforced` says the endpoints `eps`
/// are in the maps with their hooks attached (the last sync and attach
/// succeeded); `why_not` is the reason when they did not.
pub(super) fn publication(
    model: Option<&Model>,
    eps: &[LocalEndpoint],
    enforced: Result<(), &str>,
    regs: &[Stored],
    node_name: Option<&str>,
) -> Published {
    let latest = latest(regs);
    let index = model.map(pod_index).unwrap_or_default();
    regs.iter()
        .map(|s| {
            let r = &s.registration;
            let key = r.pod_key();
            let binding = match (model, latest.get(&key)) {
                (_, Some(l)) if l.generation != s.generation => Binding::Waiting(format!(
                    "pod {key} was added again as container {}",
                    l.registration.container_id
                )),
                (None, _) => Binding::Waiting("the agent has no complete policy view yet".into()),
                (Some(m), _) => bound(m, &index, eps, enforced, s, node_name),
            };
            (r.container_id.clone(), (s.generation, binding))
        })
        .collect()
}

fn bound(
    model: &Model,
    index: &HashMap<(&str, &str), usize>,
    eps: &[LocalEndpoint],
    enforced: Result<(), &str>,
    s: &Stored,
    node_name: Option<&str>,
) -> Binding {
    let r = &s.registration;
    let key = r.pod_key();
    let Some(&pod) = index.get(&(r.pod_namespace.as_str(), r.pod_name.as_str())) else {
        return Binding::Waiting(format!("the policy source does not list pod {key} yet"));
    };
    let p = &model.pods[pod];
    if !on_this_node(node_name, p.node.as_deref()) {
        return Binding::Waiting(format!(
            "pod {key} is scheduled on node {}, not this one",
            p.node.as_deref().unwrap_or_default()
        ));
    }
    let Some(ep) = eps
        .iter()
        .find(|e| e.pod == pod && r.host_interfaces.contains(&e.ifname))
    else {
        return Binding::Waiting(format!(
            "no veth named {} on this node",
            r.host_interfaces.join(" or ")
        ));
    };
    match enforced {
        Ok(()) => Binding::Enforced {
            ifname: ep.ifname.clone(),
            ifindex: ep.ifindex,
        },
        Err(why) => Binding::Waiting(format!("the last sync failed: {why}")),
    }
}

#[cfg(test)]
mod tests;
