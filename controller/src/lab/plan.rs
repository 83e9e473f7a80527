//! From a model to the lab that stands for it: namespaces, veths, MACs,
//! addresses, gateways and served ports. Pure, so it is unit-tested.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use super::LabError;
use super::naming::{
    FABRIC_BRIDGE, MAX_NODES, NODE_FABRIC_IF, default_node_name, external_netns, fabric_netns,
    fabric_veth, format_mac, host_veth, mac_of, node_netns_of, pod_netns,
};
use super::state::{
    AgentSource, Host, LabAgent, LabNode, LabState, Ports, STATE_VERSION, node_dir, watch_copy_dir,
};
use crate::model::{Mode, Model, Protocol};

/// What `lab up` was asked for, beyond the model.
#[derive(Clone, Debug, Default)]
pub struct LabSpec {
    /// Lab name (checked).
    pub name: String,
    /// Manifest directory (absolute).
    pub manifests: PathBuf,
    /// Pod CIDRs in force (one per family).
    pub pod_cidrs: Vec<IpNetwork>,
    /// Whether status addresses were ignored.
    pub assign_pod_ips: bool,
    /// External host addresses.
    pub externals: Vec<IpAddr>,
    /// Ports served beyond the declared ones, on every protocol.
    pub extra_ports: Vec<u16>,
    /// The agent watches `manifests` itself rather than a copy in the
    /// lab's directory.
    pub watch_in_place: bool,
    /// Run an agent in the node namespace.
    pub agent: bool,
    /// Its XDP prefilter.
    pub xdp: bool,
    /// Its host routing.
    pub host_routing: bool,
    /// Flow export flags passed on to the agent.
    pub flow_args: Vec<String>,
    /// The agent's default policy mode (`--mode`).
    pub mode: Mode,
    /// Where the agent reads pods and policy from.
    pub source: AgentSource,
    /// How many nodes (0 counts as 1).
    pub nodes: usize,
    /// Their Kubernetes names (empty: `node-0`, `node-1`, ...).
    pub node_names: Vec<String>,
}

impl LabSpec {
    /// How many nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.max(1)
    }

    /// The nodes' Kubernetes names.
    pub fn names(&self) -> Vec<String> {
        if self.node_names.is_empty() {
            (0..self.node_count()).map(default_node_name).collect()
        } else {
            self.node_names.clone()
        }
    }
}

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

/// Checks the node count and names of `spec`.
fn check_nodes(spec: &LabSpec) -> Result<(), LabError> {
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
fn check_fabric(spec: &LabSpec, hosts: &[Host]) -> Result<(), LabError> {
    for v4 in [true, false] {
        let fabric = fabric_cidr(v4);
        if let Some(c) = spec.pod_cidrs.iter().find(|c| {
            c.is_ipv4() == v4 && (c.contains(fabric.network()) || fabric.contains(c.network()))
        }) {
            return Err(LabError::Nodes {
                why: format!("pod CIDR {c} overlaps the nodes' fabric range {fabric}"),
            });
        }
        for h in hosts {
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

/// The gateway of a pod CIDR: its first host address (the address plan
/// starts pods at the second).
pub fn gateway(cidr: IpNetwork) -> IpAddr {
    match cidr {
        IpNetwork::V4(c) => IpAddr::V4((u32::from(c.network()) + 1).into()),
        IpNetwork::V6(c) => IpAddr::V6((u128::from(c.network()) + 1).into()),
    }
}

/// Plans the lab: every pod of `model` (which must have addresses), then
/// the external hosts. Checks that every pod address has a gateway of its
/// family and is not one, and that external hosts are outside the pod CIDRs.
pub fn plan(model: &Model, spec: &LabSpec) -> Result<LabState, LabError> {
    check_nodes(spec)?;
    let count = spec.node_count();
    let (placed, _) = placement(model, &spec.names());
    let gateways: Vec<IpAddr> = spec.pod_cidrs.iter().map(|c| gateway(*c)).collect();
    let gw_of = |v4: bool| gateways.iter().copied().find(|g| g.is_ipv4() == v4);
    let mut hosts = Vec::new();
    for (i, pod) in model.pods.iter().enumerate() {
        let key = pod.key();
        for &addr in &pod.ips {
            if gw_of(addr.is_ipv4()).is_none() {
                return Err(LabError::PodAddress {
                    pod: key,
                    addr,
                    why: "has no pod CIDR of its family to give it a gateway (add one with --pod-cidr)",
                });
            }
            if gateways.contains(&addr) {
                return Err(LabError::PodAddress {
                    pod: key,
                    addr,
                    why: "is the gateway address of its pod CIDR (the lab reserves the first address)",
                });
            }
        }
        let mut ports = Ports::default();
        for p in &pod.ports {
            ports.get_mut(p.protocol).insert(p.port);
        }
        hosts.push(Host {
            veth: host_veth(&key),
            // The dataplane's anti-spoofing expects exactly this MAC.
            mac: format_mac(crate::compile::maps::pod_mac(pod.ips.iter().copied())),
            netns: pod_netns(&spec.name, i),
            name: key,
            external: false,
            ips: pod.ips.clone(),
            ports,
            server_pid: None,
            node: placed[i],
        });
    }
    let mut union = Ports::default();
    for h in &hosts {
        for p in Protocol::ALL {
            union.get_mut(p).extend(h.ports.get(p).iter().copied());
        }
    }
    let pod_ips: HashMap<IpAddr, String> = hosts
        .iter()
        .flat_map(|h| h.ips.iter().map(move |a| (*a, h.name.clone())))
        .collect();
    let mut seen = BTreeSet::new();
    for (i, &addr) in spec.externals.iter().enumerate() {
        let bad = |why: String| Err(LabError::External { addr, why });
        if !seen.insert(addr) {
            return bad("given twice".into());
        }
        if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
            return bad("not a unicast host address".into());
        }
        if let IpAddr::V4(v4) = addr
            && v4.is_broadcast()
        {
            return bad("not a unicast host address".into());
        }
        if let Some(c) = spec.pod_cidrs.iter().find(|c| c.contains(addr)) {
            return bad(format!(
                "inside pod CIDR {c}; external hosts must be outside"
            ));
        }
        if let Some(pod) = pod_ips.get(&addr) {
            return bad(format!("is the address of pod {pod}"));
        }
        if gw_of(addr.is_ipv4()).is_none() {
            return bad("no pod CIDR of its family gives the node a gateway address".into());
        }
        let key = addr.to_string();
        hosts.push(Host {
            veth: host_veth(&key),
            mac: format_mac(mac_of(&key)),
            netns: external_netns(&spec.name, i),
            name: key,
            external: true,
            ips: vec![addr],
            ports: union.clone(),
            server_pid: None,
            // External hosts hang behind the first node; the others
            // route to them through it.
            node: 0,
        });
    }
    let mut veths: HashMap<&str, &str> = HashMap::new();
    for h in &hosts {
        if let Some(first) = veths.insert(&h.veth, &h.name) {
            return Err(LabError::VethCollision {
                veth: h.veth.clone(),
                first: first.to_owned(),
                second: h.name.clone(),
            });
        }
    }
    if count > 1 {
        check_fabric(spec, &hosts)?;
    }
    let nodes = plan_nodes(model, spec)?;
    let mut extra_ports = spec.extra_ports.clone();
    extra_ports.sort_unstable();
    extra_ports.dedup();
    Ok(LabState {
        version: STATE_VERSION,
        name: spec.name.clone(),
        manifests: spec.manifests.clone(),
        watch: if spec.watch_in_place {
            spec.manifests.clone()
        } else {
            watch_copy_dir(&spec.name)
        },
        agent: nodes[0].agent.clone(),
        pod_cidrs: spec.pod_cidrs.iter().map(ToString::to_string).collect(),
        assign_pod_ips: spec.assign_pod_ips,
        extra_ports,
        node: nodes[0].netns.clone(),
        fabric: (count > 1).then(|| fabric_netns(&spec.name)),
        nodes,
        gateways,
        hosts,
    })
}

/// The nodes of the lab: names, namespaces, fabric addresses, pod CIDR
/// shares and agents.
fn plan_nodes(model: &Model, spec: &LabSpec) -> Result<Vec<LabNode>, LabError> {
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
                    api_socket: dir.join(crate::api::SOCKET_NAME),
                    flow_log: dir.join("flows.jsonl"),
                    node_name: named.then(|| names[i].clone()),
                }),
            })
        })
        .collect()
}

/// The `ip -batch` lines run in the fabric namespace: a bridge and one
/// veth per node, whose node end goes straight into the node's namespace
/// as `eth0`.
pub fn fabric_batch(state: &LabState) -> Vec<String> {
    let mut lines = vec![
        "link set lo up".to_owned(),
        format!("link add {FABRIC_BRIDGE} type bridge"),
        format!("link set {FABRIC_BRIDGE} up"),
    ];
    for (i, n) in state.nodes.iter().enumerate() {
        let veth = fabric_veth(i);
        lines.push(format!(
            "link add {veth} type veth peer name {NODE_FABRIC_IF} netns {}",
            n.netns
        ));
        lines.push(format!("link set {veth} master {FABRIC_BRIDGE}"));
        lines.push(format!("link set {veth} up"));
    }
    lines
}

/// The `ip -batch` lines run in node `index`'s namespace for the fabric
/// (several nodes only): its fabric addresses, a route to every other
/// node's pod CIDR share via that node's fabric address, and host routes
/// (/32, /128) via the right node for every other node's pod whose
/// address lies outside that node's share, and for the external hosts
/// (behind the first node).
pub fn fabric_route_batch(state: &LabState, index: usize) -> Vec<String> {
    if state.nodes.len() <= 1 {
        return Vec::new();
    }
    let me = &state.nodes[index];
    let mut lines = vec![format!("link set {NODE_FABRIC_IF} up")];
    for ip in &me.fabric_ips {
        let net = fabric_cidr(ip.is_ipv4());
        let nodad = if ip.is_ipv4() { "" } else { " nodad" };
        lines.push(format!(
            "addr add {ip}/{} dev {NODE_FABRIC_IF}{nodad}",
            net.prefix()
        ));
    }
    let via =
        |node: &LabNode, v4: bool| node.fabric_ips.iter().copied().find(|a| a.is_ipv4() == v4);
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
                lines.push(format!("route add {cidr} via {gw} dev {NODE_FABRIC_IF}"));
            }
        }
    }
    for h in state.hosts.iter().filter(|h| h.node != index) {
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
                lines.push(format!(
                    "route add {} via {gw} dev {NODE_FABRIC_IF}",
                    host_prefix(*ip)
                ));
            }
        }
    }
    lines
}

/// The `ip -batch` lines run in node `index`'s namespace to create the
/// veth of every host wired to it (the peer goes straight into the host's
/// namespace as `eth0`).
pub fn node_link_batch(state: &LabState, index: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for h in state.hosts.iter().filter(|h| h.node == index) {
        lines.push(format!(
            "link add {} type veth peer name eth0 address {} netns {}",
            h.veth, h.mac, h.netns
        ));
        lines.push(format!("link set {} up", h.veth));
    }
    lines
}

/// The `ip -batch` lines run in node `index`'s namespace, once its hosts'
/// ends are up: gateway addresses on every veth of the node and a host
/// route per address.
pub fn node_route_batch(state: &LabState, index: usize) -> Vec<String> {
    let mut lines = vec!["link set lo up".to_owned()];
    for h in state.hosts.iter().filter(|h| h.node == index) {
        for gw in &state.gateways {
            lines.push(addr_line(*gw, &h.veth));
        }
        for ip in &h.ips {
            lines.push(format!("route add {} dev {}", host_prefix(*ip), h.veth));
        }
    }
    lines
}

/// The `ip -batch` lines run in a host's namespace: loopback, `eth0` up
/// with its addresses, a link route to the gateway and default routes.
pub fn host_batch(state: &LabState, host: &Host) -> Vec<String> {
    let mut lines = vec!["link set lo up".to_owned(), "link set eth0 up".to_owned()];
    for ip in &host.ips {
        lines.push(addr_line(*ip, "eth0"));
    }
    for gw in state
        .gateways
        .iter()
        .filter(|g| host.ip(g.is_ipv4()).is_some())
    {
        lines.push(format!("route add {} dev eth0", host_prefix(*gw)));
        let default = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        lines.push(format!("route add {default} via {gw} dev eth0"));
    }
    lines
}

fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

fn addr_line(ip: IpAddr, dev: &str) -> String {
    match ip {
        IpAddr::V4(_) => format!("addr add {} dev {dev}", host_prefix(ip)),
        // No duplicate address detection: the address is usable at once.
        IpAddr::V6(_) => format!("addr add {} dev {dev} nodad", host_prefix(ip)),
    }
}
