//! From a model to the lab that stands for it: namespaces, veths, MACs,
//! addresses, gateways and served ports. Pure, so it is unit-tested.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use bulkhead_netkit::Route;

use super::LabError;
use super::kubeproxy::ProxyMode;
use super::naming::{
    default_node_name, external_netns, fabric_netns, format_mac, host_veth, mac_of, pod_netns,
};
use super::net::{Op, default_via, host_net};
use super::nodes::{
    check_fabric, check_node_objects, check_nodes, node_addresses, placement, plan_nodes,
};
use super::state::{AgentSource, Host, LabNode, LabState, Ports, STATE_VERSION, watch_copy_dir};
use bulkhead_policy::model::{Mode, Model, OffNetwork, Pod, Protocol};

/// What `lab up` was asked for, beyond the model.
#[derive(Clone, Debug, Default)]
pub struct LabSpec {
    /// Lab name (checked).
    pub name: String,
    /// Manifest directory (absolute).
    pub manifests: PathBuf,
    /// Pod CIDRs in force (one per family).
    pub pod_cidrs: Vec<IpNetwork>,
    /// `--service-cidr` (empty: the defaults).
    pub service_cidrs: Vec<IpNetwork>,
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
    /// The Service NAT rules each node gets.
    pub kube_proxy: ProxyMode,
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
    let nodes = plan_nodes(model, spec)?;
    check_node_objects(model, &nodes, &gateways)?;
    let mut hosts = Vec::new();
    for (i, pod) in model.pods.iter().enumerate() {
        let key = pod.key();
        if is_host_network(pod, spec) {
            hosts.push(host_network_host(
                pod, &nodes, placed[i], &gateways, &hosts,
            )?);
            continue;
        }
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
            // Both are the CNI result's, once `ptp` has made the veth.
            veth: String::new(),
            mac: String::new(),
            netns: pod_netns(&spec.name, i),
            name: key,
            external: false,
            host_network: false,
            ips: pod.ips.clone(),
            ports,
            server_pid: None,
            node: placed[i],
            cni: None,
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
        .filter(|h| h.is_pod())
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
            host_network: false,
            ips: vec![addr],
            ports: union.clone(),
            server_pid: None,
            // External hosts hang behind the first node; the others
            // route to them through it.
            node: 0,
            cni: None,
        });
    }
    let mut veths: HashMap<&str, &str> = HashMap::new();
    for h in hosts.iter().filter(|h| h.external) {
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
        service_cidrs: spec.service_cidrs.iter().map(ToString::to_string).collect(),
        assign_pod_ips: spec.assign_pod_ips,
        extra_ports,
        node: nodes[0].netns.clone(),
        fabric: (count > 1).then(|| fabric_netns(&spec.name)),
        nodes,
        gateways,
        hosts,
        kube_proxy: spec.kube_proxy,
        builder: None,
    })
}

/// Whether `model` has a pod the lab hosts as a hostNetwork pod.
pub fn has_host_network(model: &Model, assign_pod_ips: bool) -> bool {
    !assign_pod_ips
        && model
            .pods
            .iter()
            .any(|p| p.off_network == Some(OffNetwork::HostNetwork))
}

/// `model` (the manifests as `lab up` reads them: every pod) with the
/// addresses the agents give its pods on the pod network: those of
/// `agents` (the same manifests loaded for enforcement, where hostNetwork
/// pods are left out before addresses are assigned, so one without a
/// status address takes no pod address there). Call when
/// [`has_host_network`].
pub fn with_agent_addresses(mut model: Model, agents: &Model) -> Model {
    for pod in model.pods.iter_mut().filter(|p| p.off_network.is_none()) {
        if let Some((_, theirs)) = agents.pod(&pod.key()) {
            pod.ips = theirs.ips.clone();
        }
    }
    model
}

/// Whether the lab hosts `pod` as a hostNetwork pod: `spec.hostNetwork`,
/// unless `--assign-pod-ips` gives every pod an address of its own on the
/// pod network (then the agent, too, takes it for an ordinary pod).
pub fn is_host_network(pod: &Pod, spec: &LabSpec) -> bool {
    !spec.assign_pod_ips && pod.off_network == Some(OffNetwork::HostNetwork)
}

/// The host of hostNetwork pod `pod` on node `node` (`hosts`: those
/// planned so far): its node's namespace and addresses (its status
/// addresses, if any, are not used: on a node, a hostNetwork pod's address
/// is the node's), its declared ports. One per node: two would share the
/// node's addresses and ports, and a probe could not tell their servers
/// apart.
fn host_network_host(
    pod: &Pod,
    nodes: &[LabNode],
    node: usize,
    gateways: &[IpAddr],
    hosts: &[Host],
) -> Result<Host, LabError> {
    let key = pod.key();
    let lab_node = &nodes[node];
    if let Some(other) = hosts.iter().find(|h| h.host_network && h.node == node) {
        return Err(LabError::HostNetwork {
            pod: key,
            why: format!(
                "{} is already the hostNetwork pod of node {}; the lab hosts at most one per \
                 node (they would share its addresses and ports)",
                other.name, lab_node.name
            ),
        });
    }
    let mut ports = Ports::default();
    for p in &pod.ports {
        ports.get_mut(p.protocol).insert(p.port);
    }
    Ok(Host {
        veth: String::new(),
        mac: String::new(),
        netns: lab_node.netns.clone(),
        name: key,
        external: false,
        host_network: true,
        ips: node_addresses(lab_node, gateways),
        ports,
        server_pid: None,
        node,
        cni: None,
    })
}

/// The steps run in node `index`'s namespace to create the veth of every
/// external host wired to it (the peer goes straight into the host's
/// namespace as `eth0`). Pods are wired by the CNI plugins ([`super::cni`]).
pub fn node_link_batch(state: &LabState, index: usize) -> Vec<Op> {
    state
        .hosts
        .iter()
        .filter(|h| h.external && h.node == index)
        .map(|h| Op::Veth {
            name: h.veth.clone(),
            peer: "eth0".to_owned(),
            peer_mac: Some(h.mac.clone()),
            peer_netns: h.netns.clone(),
        })
        .collect()
}

/// The steps run in node `index`'s namespace, once its external hosts'
/// ends are up: loopback, gateway addresses on every external host's veth
/// and a host route per address (what `ptp` does for a pod).
pub fn node_route_batch(state: &LabState, index: usize) -> Vec<Op> {
    let mut ops = vec![Op::Up("lo".to_owned())];
    for h in state.hosts.iter().filter(|h| h.external && h.node == index) {
        for gw in &state.gateways {
            ops.push(Op::Addr {
                dev: h.veth.clone(),
                net: host_net(*gw),
            });
        }
        for ip in &h.ips {
            ops.push(Op::Route(Route::to(host_net(*ip)).dev(&h.veth)));
        }
    }
    ops
}

/// The steps run in an external host's namespace: loopback, `eth0` up with
/// its addresses, a link route to the gateway and default routes.
pub fn host_batch(state: &LabState, host: &Host) -> Vec<Op> {
    let mut ops = vec![Op::Up("lo".to_owned()), Op::Up("eth0".to_owned())];
    for ip in &host.ips {
        ops.push(Op::Addr {
            dev: "eth0".to_owned(),
            net: host_net(*ip),
        });
    }
    for gw in state
        .gateways
        .iter()
        .filter(|g| host.ip(g.is_ipv4()).is_some())
    {
        ops.push(Op::Route(Route::to(host_net(*gw)).dev("eth0")));
        ops.push(Op::Route(default_via(*gw, "eth0")));
    }
    ops
}
