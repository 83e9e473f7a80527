//! The lab's CNI configuration, pure (unit-tested): each node's network
//! configuration list, `host-local`'s ranges of a node, the runtime's
//! capability arguments of a pod, what a plugin gets on stdin, and what a
//! result says was made. The runtime that runs it is [`super::cni`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use super::plan::gateway;
use super::state::{Host, LabState, node_dir};

/// The network's name (host-local keeps its reservations under it).
pub const NETWORK: &str = "bulkhead-lab";

/// The CNI version of the lists the lab writes.
pub const CNI_VERSION: &str = "1.0.0";

/// The pod's interface.
pub const IFNAME: &str = "eth0";

/// How long each ADD may wait for the agent (`bulkhead-cni`'s `timeout`).
const TIMEOUT: &str = "30s";

/// The directory of node `index`'s CNI files.
pub fn cni_dir(state: &LabState, index: usize) -> PathBuf {
    node_dir(&state.name, index, state.nodes.len()).join("cni")
}

/// The first and last address of `net`.
fn span(net: IpNetwork) -> (IpAddr, IpAddr) {
    match net {
        IpNetwork::V4(n) => (IpAddr::V4(n.network()), IpAddr::V4(n.broadcast())),
        IpNetwork::V6(n) => {
            let first = u128::from(n.network());
            let last = first | (u128::MAX >> n.prefix());
            (IpAddr::V6(n.network()), IpAddr::V6(last.into()))
        }
    }
}

/// The addresses of pod CIDR `cidr` a pod may have: all but its network
/// address (and, IPv4, its broadcast address).
fn usable(cidr: IpNetwork) -> (IpAddr, IpAddr) {
    let (first, last) = span(cidr);
    let next = |a: IpAddr, up: bool| match a {
        IpAddr::V4(a) => {
            let n = u32::from(a);
            IpAddr::V4(if up { n + 1 } else { n - 1 }.into())
        }
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    let last = if cidr.is_ipv4() {
        next(last, false)
    } else {
        last
    };
    (next(first, true), last)
}

/// The smallest network holding both `a` and `b` with room for
/// `host-local` (at least two host bits).
pub(super) fn supernet(a: IpAddr, b: IpAddr) -> IpNetwork {
    let (x, y, width) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (a, b) => (
            u128::from_be_bytes(bulkhead_policy::compile::maps::abi_addr(a)),
            u128::from_be_bytes(bulkhead_policy::compile::maps::abi_addr(b)),
            128,
        ),
    };
    let common = ((x ^ y) << (128 - width)).leading_zeros().min(width);
    let prefix = common.min(width - 2) as u8;
    let net = IpNetwork::new(a, prefix).expect("a prefix within the width");
    IpNetwork::new(net.network(), prefix).expect("the same prefix")
}

fn range(subnet: IpNetwork, start: IpAddr, end: IpAddr, gw: IpAddr) -> Value {
    json!({
        "subnet": subnet.to_string(),
        "rangeStart": start.to_string(),
        "rangeEnd": end.to_string(),
        "gateway": gw.to_string(),
    })
}

/// `host-local`'s range sets of node `index`, one per pod CIDR (family):
/// the node's share as a range of the whole pod CIDR (whose gateway is
/// the lab's), then a one-address range for each address of the node's
/// pods that lies outside the share (a declared address, or one the model
/// assigned from another node's share): inside the pod CIDR as a range of
/// it, outside as one of the smallest network holding it and the gateway.
pub fn range_sets(state: &LabState, index: usize) -> Vec<(bool, Vec<Value>)> {
    let node = &state.nodes[index];
    let mut sets = Vec::new();
    for cidr in state
        .pod_cidrs
        .iter()
        .filter_map(|c| c.parse::<IpNetwork>().ok())
    {
        let v4 = cidr.is_ipv4();
        let gw = gateway(cidr);
        let share = node
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNetwork>().ok())
            .find(|c| c.is_ipv4() == v4)
            .unwrap_or(cidr);
        let (first, last) = span(share);
        let (cidr_first, cidr_last) = usable(cidr);
        let mut set = vec![range(cidr, first.max(cidr_first), last.min(cidr_last), gw)];
        let mut pinned: Vec<IpAddr> = state
            .hosts
            .iter()
            .filter(|h| h.is_pod() && h.node == index)
            .flat_map(|h| h.ips.iter().copied())
            .filter(|a| a.is_ipv4() == v4 && !share.contains(*a))
            .collect();
        pinned.sort_unstable();
        pinned.dedup();
        for a in pinned {
            let subnet = if cidr.contains(a) {
                cidr
            } else {
                supernet(a, gw)
            };
            set.push(range(subnet, a, a, gw));
        }
        sets.push((v4, set));
    }
    sets
}

/// The CNI network configuration list of node `index`: `ptp` with
/// `host-local` (capabilities `ips` and `ipRanges`: the ranges come with
/// each ADD, see the module doc), then `bulkhead-cni`
/// talking to the node's agent when the node has one and the plugin is
/// there.
pub fn conflist(state: &LabState, index: usize, bulkhead_cni: bool) -> Value {
    let routes: Vec<Value> = state
        .gateways
        .iter()
        .map(|g| json!({"dst": if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" }}))
        .collect();
    let mut plugins = vec![json!({
        "type": "ptp",
        "ipMasq": false,
        "capabilities": {"ips": true, "ipRanges": true},
        "ipam": {
            "type": "host-local",
            "routes": routes,
            "dataDir": cni_dir(state, index).join("ipam"),
        },
    })];
    if let (true, Some(agent)) = (bulkhead_cni, &state.nodes[index].agent) {
        plugins.push(json!({
            "type": bulkhead_cni::install::PLUGIN_TYPE,
            "socket": agent.api_socket,
            "timeout": TIMEOUT,
        }));
    }
    json!({"cniVersion": CNI_VERSION, "name": NETWORK, "plugins": plugins})
}

/// What a plugin gets on stdin (CNI spec, "Execution of network
/// configurations"): its `entry` of `list` with the list's `cniVersion`
/// and `name`, `prev` as `prevResult`, and under `runtimeConfig` the
/// runtime's `capability_args` that the entry declares (`"capabilities":
/// {"ips": true}`), no others.
pub(super) fn plugin_conf(
    list: &Value,
    entry: &Value,
    prev: Option<&Value>,
    capability_args: serde_json::Map<String, Value>,
) -> Value {
    let mut conf = entry.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    let declared = entry["capabilities"].as_object();
    let runtime: serde_json::Map<String, Value> = capability_args
        .into_iter()
        .filter(|(k, _)| declared.is_some_and(|c| c.get(k) == Some(&Value::Bool(true))))
        .collect();
    if !runtime.is_empty() {
        conf["runtimeConfig"] = Value::Object(runtime);
    }
    conf
}

/// The runtime's capability arguments for pod `host`: `ips`, its planned
/// addresses, and `ipRanges`, its node's ranges of its own families (a
/// pod declared with one family in a dual-stack lab gets nothing of the
/// other).
pub(super) fn capability_args(state: &LabState, host: &Host) -> serde_json::Map<String, Value> {
    let mut args = serde_json::Map::new();
    let ips: Vec<String> = host.ips.iter().map(ToString::to_string).collect();
    args.insert("ips".into(), json!(ips));
    let own: Vec<Value> = range_sets(state, host.node)
        .into_iter()
        .filter(|(v4, _)| host.ip(*v4).is_some())
        .map(|(_, set)| Value::Array(set))
        .collect();
    args.insert("ipRanges".into(), Value::Array(own));
    args
}

/// The loopback network containerd adds every sandbox to.
pub(super) fn loopback() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]})
}

/// What ADD made for a pod, read from the final result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wiring {
    /// The node-side veth (the result's interface without a sandbox).
    pub veth: String,
    /// The pod's `eth0` MAC.
    pub mac: String,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
}

/// Reads `result` (CNI 1.0.0) for interface `ifname` in `sandbox`.
pub fn wiring(result: &Value, ifname: &str, sandbox: &Path) -> Option<Wiring> {
    let ifaces = result["interfaces"].as_array()?;
    let pod = ifaces.iter().position(|i| {
        i["name"] == ifname && i["sandbox"].as_str().map(Path::new) == Some(sandbox)
    })?;
    let host = ifaces.iter().find(|i| i["sandbox"].is_null())?;
    let mut ips: Vec<IpAddr> = result["ips"]
        .as_array()?
        .iter()
        .filter(|ip| ip["interface"].as_u64().is_none_or(|i| i == pod as u64))
        .filter_map(|ip| ip["address"].as_str()?.parse::<IpNetwork>().ok())
        .map(|n| n.ip())
        .collect();
    ips.sort_unstable();
    Some(Wiring {
        veth: host["name"].as_str()?.to_owned(),
        mac: ifaces[pod]["mac"].as_str()?.to_owned(),
        ips,
    })
}
