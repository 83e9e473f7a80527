//! From a model to the lab that stands for it: namespaces, veths, MACs,
//! addresses, gateways and served ports. Pure, so it is unit-tested.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use super::LabError;
use super::naming::{external_netns, format_mac, host_veth, mac_of, node_netns, pod_netns};
use super::state::{
    AgentSource, Host, LabAgent, LabState, Ports, STATE_VERSION, bpffs_dir, lab_dir, pin_dir,
    watch_copy_dir,
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
        agent: spec.agent.then(|| LabAgent {
            bpffs: bpffs_dir(&spec.name),
            pin_dir: pin_dir(&spec.name),
            log: lab_dir(&spec.name).join("agent.log"),
            xdp: spec.xdp,
            host_routing: spec.host_routing,
            flow_args: spec.flow_args.clone(),
            mode: spec.mode,
            source: spec.source.clone(),
            pid: None,
        }),
        pod_cidrs: spec.pod_cidrs.iter().map(ToString::to_string).collect(),
        assign_pod_ips: spec.assign_pod_ips,
        extra_ports,
        node: node_netns(&spec.name),
        gateways,
        hosts,
    })
}

/// The `ip -batch` lines run in the node namespace to create every veth
/// (the peer goes straight into the host's namespace as `eth0`).
pub fn node_link_batch(state: &LabState) -> Vec<String> {
    let mut lines = Vec::new();
    for h in &state.hosts {
        lines.push(format!(
            "link add {} type veth peer name eth0 address {} netns {}",
            h.veth, h.mac, h.netns
        ));
        lines.push(format!("link set {} up", h.veth));
    }
    lines
}

/// The `ip -batch` lines run in the node namespace, once the hosts' ends
/// are up: gateway addresses on every veth and a host route per address.
pub fn node_route_batch(state: &LabState) -> Vec<String> {
    let mut lines = vec!["link set lo up".to_owned()];
    for h in &state.hosts {
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
