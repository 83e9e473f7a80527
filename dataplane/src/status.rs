//! What the pinned maps say is enforced, read directly from bpffs (works
//! while the agent is dead).

use std::net::{IpAddr, Ipv6Addr};

use bulkhead_common::{
    CT_MAX, ENDPOINT_AUDIT_EGRESS, ENDPOINT_AUDIT_INGRESS, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6,
    ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, ENDPOINTS_SLOT_CAPACITY,
    IDENTITIES_SLOT_CAPACITY, POLICY_NODES_SLOT_CAPACITY, POLICY_SLOT_CAPACITY, active_slot,
};
use serde::Serialize;

use super::DataplaneError;
use super::kmaps::KernelMaps;
use super::pins::{POLICY_MAP, POLICY_NODES_MAP, PinDir};
use super::sync::SlotMaps;

/// Entries of one map (the active slot for policy maps) and its capacity.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MapFill {
    /// Map name.
    pub map: &'static str,
    /// Entries.
    pub entries: usize,
    /// Capacity (per slot for policy maps).
    pub capacity: u32,
}

/// An endpoint of the active slot.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointStatus {
    /// ifindex of the host-side veth.
    pub ifindex: u32,
    /// The pod's addresses.
    pub addresses: Vec<IpAddr>,
    /// Ingress isolated.
    pub isolated_ingress: bool,
    /// Egress isolated.
    pub isolated_egress: bool,
    /// Ingress has an audit view (audit-mode policies select the pod).
    pub audit_ingress: bool,
    /// Egress has an audit view.
    pub audit_egress: bool,
    /// Hooks with a pinned link (`from_pod`, `to_pod`, `xdp`).
    pub hooks: Vec<String>,
}

/// The dataplane's state as pinned.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MapStatus {
    /// Policy revision.
    pub revision: u64,
    /// Active slot.
    pub active_slot: u8,
    /// Host routing is on (`CONFIG_F_HOST_ROUTING`).
    #[serde(default)]
    pub host_routing: bool,
    /// Fill per map.
    pub maps: Vec<MapFill>,
    /// Endpoints.
    pub endpoints: Vec<EndpointStatus>,
    /// Drop counters by reason.
    pub drops: Vec<(String, u64)>,
    /// Flow accounting counters (`FlowStat` names; empty when the pins
    /// predate flow accounting).
    #[serde(default)]
    pub flows: Vec<(String, u64)>,
}

/// FLOW_STATS summed over CPUs, by counter name.
fn flow_stats(pins: &PinDir) -> Result<Vec<(String, u64)>, DataplaneError> {
    let map = super::kmaps::open(pins, super::flowtap::FLOW_STATS_MAP)?;
    let stats: aya::maps::PerCpuArray<_, u64> =
        aya::maps::PerCpuArray::try_from(map).map_err(|e| DataplaneError::Map {
            name: super::flowtap::FLOW_STATS_MAP,
            reason: e.to_string(),
        })?;
    bulkhead_common::FLOW_STATS
        .iter()
        .map(|&s| {
            let v = stats.get(&(s as u32), 0).map_err(DataplaneError::map_op(
                "reading",
                super::flowtap::FLOW_STATS_MAP,
            ))?;
            Ok((s.name().to_owned(), v.iter().sum()))
        })
        .collect()
}

/// Reads the status from the pins.
pub fn read(pins: &PinDir) -> Result<MapStatus, DataplaneError> {
    let maps = KernelMaps::open(pins)?;
    let revision = maps.revision()?;
    let slot = active_slot(revision);
    let image = maps.read_slot(slot)?;
    let links: Vec<String> = std::fs::read_dir(pins.links())
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let endpoints = image
        .endpoints
        .iter()
        .map(|(k, v)| {
            let mut addresses = Vec::new();
            if v.flags & ENDPOINT_HAS_IPV4 != 0 {
                let a = Ipv6Addr::from(v.ipv4);
                addresses.push(a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4));
            }
            if v.flags & ENDPOINT_HAS_IPV6 != 0 {
                addresses.push(IpAddr::V6(Ipv6Addr::from(v.ipv6)));
            }
            let prefix = format!("{}-", k.ifindex);
            let mut hooks: Vec<String> = links
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            hooks.sort();
            EndpointStatus {
                ifindex: k.ifindex,
                addresses,
                isolated_ingress: v.flags & ENDPOINT_ISOLATED_INGRESS != 0,
                isolated_egress: v.flags & ENDPOINT_ISOLATED_EGRESS != 0,
                audit_ingress: v.flags & ENDPOINT_AUDIT_INGRESS != 0,
                audit_egress: v.flags & ENDPOINT_AUDIT_EGRESS != 0,
                hooks,
            }
        })
        .collect();
    Ok(MapStatus {
        revision,
        active_slot: slot,
        host_routing: maps.host_routing(),
        maps: vec![
            MapFill {
                map: "IDENTITIES",
                entries: image.identities.len(),
                capacity: IDENTITIES_SLOT_CAPACITY,
            },
            MapFill {
                map: POLICY_MAP,
                entries: image.policy.len(),
                capacity: POLICY_SLOT_CAPACITY,
            },
            MapFill {
                map: POLICY_NODES_MAP,
                entries: image.policy_nodes.len(),
                capacity: POLICY_NODES_SLOT_CAPACITY,
            },
            MapFill {
                map: bulkhead_common::ENDPOINTS_MAP,
                entries: image.endpoints.len(),
                capacity: ENDPOINTS_SLOT_CAPACITY,
            },
            MapFill {
                map: "CT",
                entries: maps.ct_len(),
                capacity: CT_MAX,
            },
        ],
        endpoints,
        drops: maps
            .drops()?
            .into_iter()
            .map(|(r, n)| (r.name().to_owned(), n))
            .collect(),
        flows: flow_stats(pins).unwrap_or_default(),
    })
}
