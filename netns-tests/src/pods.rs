//! How the tests' and benchmarks' nodes wire a pod (the routed, proxy-ARP
//! layout of Calico and of CNI `ptp`): a veth from the node namespace into
//! the pod namespace, the pod's address as a /32 on its `eth0` with a
//! default route out of it, and the node routing that /32 to the host-side
//! veth and answering the pod's ARP for any address by proxy. Built with
//! `bulkhead_netkit` (netlink), no `ip` process.

use std::net::Ipv4Addr;

use bulkhead_netkit::{NetlinkError, NsHandle, Route, Veth};

/// One pod to wire.
#[derive(Clone, Debug)]
pub struct PodWiring<'a> {
    /// The host-side veth's name (in the node namespace).
    pub veth: &'a str,
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// The pod's `eth0` MAC (the one its compiled endpoint expects).
    pub mac: [u8; 6],
}

/// Prepares node namespace `node`: loopback up, IPv4 forwarding on.
pub fn prepare_node(node: &NsHandle) -> Result<(), NetlinkError> {
    node.netlink()?.set_up("lo")?;
    node.sysctl("net.ipv4.ip_forward", "1")?;
    Ok(())
}

/// Wires pod namespace `pod` to node namespace `node` as the module doc
/// says. IPv6 is turned off in the pod and on the host-side veth (no
/// router solicitations or DAD traffic in the measurements).
pub fn wire_pod(node: &NsHandle, pod: &NsHandle, w: &PodWiring<'_>) -> Result<(), NetlinkError> {
    let nl = node.netlink()?;
    let pl = pod.netlink()?;
    nl.add_veth(&Veth::new(w.veth, "eth0").peer_in(pod).peer_mac(w.mac))?;
    pod.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
    node.sysctl(&format!("net.ipv6.conf.{}.disable_ipv6", w.veth), "1")?;
    pl.set_up("lo")?;
    pl.add_address("eth0", format!("{}/32", w.ip).parse().expect("a /32"))?;
    pl.set_up("eth0")?;
    pl.add_route(&Route::to("0.0.0.0/0".parse().expect("default")).dev("eth0"))?;
    nl.set_up(w.veth)?;
    node.sysctl(&format!("net.ipv4.conf.{}.proxy_arp", w.veth), "1")?;
    // Proxy ARP answers after a random delay of up to 0.8 s by default.
    node.sysctl(&format!("net.ipv4.neigh.{}.proxy_delay", w.veth), "0")?;
    nl.add_route(&Route::to(format!("{}/32", w.ip).parse().expect("a /32")).dev(w.veth))?;
    Ok(())
}
