//! The nodes of a lab and the fabric joining them (see the module docs of
//! [`super`], "Several nodes"): pod placement, each node's share of the
//! pod CIDRs, fabric addresses, and the wiring steps of the fabric and of
//! each node's routes to the others. Pure, so it is unit-tested.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_netkit::Route;
use ipnetwork::IpNetwork;

use super::LabError;
use super::naming::{FABRIC_BRIDGE, MAX_NODES, NODE_FABRIC_IF, fabric_veth, node_netns_of};
use super::net::{Op, host_net};
use super::plan::LabSpec;
use super::state::{AgentSource, Host, LabAgent, LabNode, LabState, node_dir};
use bulkhead_policy::model::Model;

/// The fabric's IPv4 range (RFC 2544's benchmarking block): node `i` has
/// its `i + 1`th address on its `eth0`.
pub const FABRIC_V4: &str = "198.18.0.0/24";

/// The fabric's IPv6 range (a unique local one).
pub const FABRIC_V6: &str = "fd00:fab::/64";

/// The fabric range of a family.
pub fn fabric_cidr(v4: bool) -> IpNetwork {
    (if v4 { FABRIC_V4 } else { FABRIC_V6 })
        .parse()
        .expect("a valid CIDR")
}

/// Node `index`'s fabric address of a family.
pub fn fabric_ip(v4: bool, index: usize) -> IpAddr {
    nth(fabric_cidr(v4), index as u128 + 1)
}

fn nth(cidr: IpNetwork, n: u128) -> IpAddr {
    match cidr {
        IpNetwork::V4(c) => IpAddr::V4((u32::from(c.network()) + n as u32).into()),
        IpNetwork::V6(c) => IpAddr::V6((u128::from(c.network()) + n).into()),
    }
}

/// Node `index`'s share of pod CIDR `cidr` among `nodes` nodes: the CIDR
/// cut into the smallest power of two of equal blocks that is at least
/// `nodes` (10.244.0.0/16 on 3 nodes: /18 blocks 10.244.0.0, .64.0 and
/// .128.0; fd00:10:244::/64: /66 blocks), the `index`th block; the whole
/// CIDR on one node. `None` when the CIDR is too small to cut so.
pub fn node_cidr(cidr: IpNetwork, index: usize, nodes: usize) -> Option<IpNetwork> {
    let bits = nodes.max(1).next_power_of_two().trailing_zeros() as u8;
    let width: u8 = if cidr.is_ipv4() { 32 } else { 128 };
    let prefix = cidr.prefix() + bits;
    // Each block keeps room for a gateway and a pod at least.
    if prefix > width - 2 {
        return None;
    }
    let block = 1u128 << (width - prefix);
    IpNetwork::new(nth(cidr, block * index as u128), prefix).ok()
}

/// The node of every pod of `model` (in order) among `names`: the node
/// its `spec.nodeName` names, else the next in turn (round-robin over the
/// pods without one, in the model's order); and a warning for each pod
/// whose `spec.nodeName` names no node of the lab (it is spread too).
pub fn placement(model: &Model, names: &[String]) -> (Vec<usize>, Vec<String>) {
    let mut next = 0;
    let mut warnings = Vec::new();
    let nodes = model
        .pods
        .iter()
        .map(|pod| {
            let named = pod.node.as_deref();
            if let Some(i) = named.and_then(|n| names.iter().position(|m| m == n)) {
                return i;
            }
            let i = next % names.len().max(1);
            next += 1;
            if let Some(n) = named {
                warnings.push(format!(
                    "pod {} has spec.nodeName {n:?}, which is no node of the lab ({}); \
                     placed on {}",
                    pod.key(),
                    names.join(", "),
                    names[i]
                ));
            }
            i
        })
        .collect();
    (nodes, warnings)
}

/// The addresses of a lab node: where its hostNetwork pods serve and its
/// NodePorts are reached, and what its Node object (if the manifests
/// have one) must declare. Its fabric addresses in a lab of several
/// nodes; in a one-node lab, which has no fabric, the gateway addresses
/// every pod's veth carries on it (the node's only addresses its pods
/// reach: their default route's next hop).
pub fn node_addresses(node: &LabNode, gateways: &[IpAddr]) -> Vec<IpAddr> {
    if node.fabric_ips.is_empty() {
        gateways.to_vec()
    } else {
        node.fabric_ips.clone()
    }
}

/// Checks that every Node object of `model` named as a node of the lab
/// declares (in `status.addresses`) only addresses the lab gives that
/// node ([`node_addresses`]): a `nodes` peer of a cluster-admin rule
/// resolves to what the Node objects declare, and the agents must see the
/// addresses the lab's nodes really have. Node objects of other names are
/// the model's business (nodes the lab does not make).
pub fn check_node_objects(
    model: &Model,
    nodes: &[LabNode],
    gateways: &[IpAddr],
) -> Result<(), LabError> {
    for object in &model.nodes {
        let Some(node) = nodes.iter().find(|n| n.name == object.name) else {
            continue;
        };
        let lab = node_addresses(node, gateways);
        if let Some(&addr) = object.addresses.iter().find(|a| !lab.contains(a)) {
            return Err(LabError::NodeAddress {
                node: object.name.clone(),
                field: "status.addresses",
                addr,
                lab,
            });
        }
    }
    Ok(())
}

/// Checks the node count and names of `spec`.
pub(super) fn check_nodes(spec: &LabSpec) -> Result<(), LabError> {
    let n = spec.node_count();
    let bad = |why: String| Err(LabError::Nodes { why });
    if n > MAX_NODES {
        return bad(format!("at most {MAX_NODES} nodes, not {n}"));
    }
    if !spec.node_names.is_empty() && spec.node_names.len() != n {
        return bad(format!(
            "{} node names for {n} nodes",
            spec.node_names.len()
        ));
    }
    let names = spec.names();
    let mut seen = BTreeSet::new();
    for name in &names {
        // A DNS-1123 subdomain, as Kubernetes names nodes.
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return bad(format!("node name {name:?} is not a DNS-1123 name"));
        }
        if !seen.insert(name) {
            return bad(format!("node name {name:?} given twice"));
        }
    }
    Ok(())
}

/// Checks that the fabric's ranges hold no pod CIDR, pod or external
/// address of the lab (several nodes only).
pub(super) fn check_fabric(spec: &LabSpec, hosts: &[Host]) -> Result<(), LabError> {
    for v4 in [true, false] {
        let fabric = fabric_cidr(v4);
        if let Some(c) = spec.pod_cidrs.iter().find(|c| {
            c.is_ipv4() == v4 && (c.contains(fabric.network()) || fabric.contains(c.network()))
        }) {
            return Err(LabError::Nodes {
                why: format!("pod CIDR {c} overlaps the nodes' fabric range {fabric}"),
            });
        }
        // A hostNetwork pod's addresses are its node's: fabric ones.
        for h in hosts.iter().filter(|h| !h.host_network) {
            if let Some(a) = h.ips.iter().find(|a| fabric.contains(**a)) {
                return Err(LabError::Nodes {
                    why: format!(
                        "{} {} has address {a}, inside the nodes' fabric range {fabric}",
                        if h.external { "external host" } else { "pod" },
                        h.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The nodes of the lab: names, namespaces, fabric addresses, pod CIDR
/// shares and agents.
pub(super) fn plan_nodes(model: &Model, spec: &LabSpec) -> Result<Vec<LabNode>, LabError> {
    let count = spec.node_count();
    let names = spec.names();
    // Each agent gets its node's name when that narrows nothing the lab
    // placed: always with the API (its pods' nodeName are what the API
    // says), and with manifests unless some pod names a node the lab does
    // not have (then routes alone tell each agent its pods, as on one node).
    let (_, warnings) = placement(model, &names);
    let named = count > 1 && (spec.source != AgentSource::Manifests || warnings.is_empty());
    (0..count)
        .map(|i| {
            let share = spec
                .pod_cidrs
                .iter()
                .map(|c| {
                    node_cidr(*c, i, count).ok_or_else(|| LabError::Nodes {
                        why: format!("pod CIDR {c} is too small to share among {count} nodes"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let dir = node_dir(&spec.name, i, count);
            let bpffs = dir.join("bpf");
            Ok(LabNode {
                name: names[i].clone(),
                netns: node_netns_of(&spec.name, i, count),
                fabric_ips: if count > 1 {
                    spec.pod_cidrs
                        .iter()
                        .map(|c| fabric_ip(c.is_ipv4(), i))
                        .collect()
                } else {
                    Vec::new()
                },
                pod_cidrs: share.iter().map(ToString::to_string).collect(),
                agent: spec.agent.then(|| LabAgent {
                    pin_dir: bpffs.join("bulkhead"),
                    bpffs,
                    log: dir.join("agent.log"),
                    xdp: spec.xdp,
                    host_routing: spec.host_routing,
                    flow_args: spec.flow_args.clone(),
                    mode: spec.mode,
                    source: spec.source.clone(),
                    pid: None,
                    api_socket: dir.join(bulkhead_agent::api::SOCKET_NAME),
                    flow_log: dir.join("flows.jsonl"),
                    timeline_db: dir.join("timeline.redb"),
                    node_name: named.then(|| names[i].clone()),
                }),
                cni_conf: None,
                kube_proxy_pid: None,
            })
        })
        .collect()
}

/// The steps run in the fabric namespace: a bridge and one veth per node,
/// whose node end goes straight into the node's namespace as `eth0`.
pub fn fabric_batch(state: &LabState) -> Vec<Op> {
    let mut ops = vec![
        Op::Up("lo".to_owned()),
        Op::Bridge(FABRIC_BRIDGE.to_owned()),
    ];
    for (i, n) in state.nodes.iter().enumerate() {
        let veth = fabric_veth(i);
        ops.push(Op::Veth {
            name: veth.clone(),
            peer: NODE_FABRIC_IF.to_owned(),
            peer_mac: None,
            peer_netns: n.netns.clone(),
        });
        ops.push(Op::Master {
            link: veth,
            master: FABRIC_BRIDGE.to_owned(),
        });
    }
    ops
}

/// The steps run in node `index`'s namespace for the fabric (several
/// nodes only): its fabric addresses, a route to every other node's pod
/// CIDR share via that node's fabric address, and host routes (/32, /128)
/// via the right node for every other node's pod whose address lies
/// outside that node's share, and for the external hosts (behind the
/// first node).
pub fn fabric_route_batch(state: &LabState, index: usize) -> Vec<Op> {
    if state.nodes.len() <= 1 {
        return Vec::new();
    }
    let me = &state.nodes[index];
    let mut ops = vec![Op::Up(NODE_FABRIC_IF.to_owned())];
    for ip in &me.fabric_ips {
        let net = fabric_cidr(ip.is_ipv4());
        ops.push(Op::Addr {
            dev: NODE_FABRIC_IF.to_owned(),
            net: IpNetwork::new(*ip, net.prefix()).expect("a prefix of the fabric"),
        });
    }
    let via =
        |node: &LabNode, v4: bool| node.fabric_ips.iter().copied().find(|a| a.is_ipv4() == v4);
    let route = |dst: IpNetwork, gw: IpAddr| Op::Route(Route::to(dst).via(gw).dev(NODE_FABRIC_IF));
    for (j, other) in state.nodes.iter().enumerate() {
        if j == index {
            continue;
        }
        for cidr in other
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNetwork>().ok())
        {
            if let Some(gw) = via(other, cidr.is_ipv4()) {
                ops.push(route(cidr, gw));
            }
        }
    }
    // HostNetwork pods have their node's fabric addresses: on the link.
    for h in state
        .hosts
        .iter()
        .filter(|h| h.node != index && !h.host_network)
    {
        let node = state.node_of(h);
        let shares: Vec<IpNetwork> = node
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        for ip in &h.ips {
            if !h.external && shares.iter().any(|c| c.contains(*ip)) {
                continue;
            }
            if let Some(gw) = via(node, ip.is_ipv4()) {
                ops.push(route(host_net(*ip), gw));
            }
        }
    }
    ops
}
