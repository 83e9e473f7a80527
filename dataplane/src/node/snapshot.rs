//! One network namespace's links, main-table routes and addresses, and
//! what follows from them: which pods are local (and on which veth), and
//! which addresses are the node's own. Pure data and logic: [`super::read`]
//! fills it from the kernel, tests build it by hand.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use rtnetlink::packet_route::link::InfoKind;
use rtnetlink::packet_route::route::RouteType;

/// A local pod and its host-side veth.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalEndpoint {
    /// Pod index in the model.
    pub pod: usize,
    /// ifindex of the host-side veth (in this namespace).
    pub ifindex: u32,
    /// Its name.
    pub ifname: String,
}

/// A device of the node's own that leads to other nodes (an uplink):
/// where `leave_node` judges Service connections the node translated to a
/// backend elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uplink {
    /// Its index.
    pub ifindex: u32,
    /// Its name.
    pub ifname: String,
}

/// A network device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub ifindex: u32,
    /// Its name (`IFLA_IFNAME`).
    pub name: String,
    /// Its kind (`IFLA_INFO_KIND` in `IFLA_LINKINFO`); `None` for devices
    /// without one (physical NICs, loopback).
    pub kind: Option<InfoKind>,
}

impl Link {
    /// Whether it is one end of a veth pair.
    pub fn is_veth(&self) -> bool {
        self.kind == Some(InfoKind::Veth)
    }
}

/// A route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNetwork,
    /// Output device (`RTA_OIF`); `None` for routes without one, such as
    /// multipath routes (their devices are in the nexthops).
    pub oif: Option<u32>,
    /// Route type (`rtm_type`).
    pub kind: RouteType,
    /// Whether it goes through a next hop (`RTA_GATEWAY` or `RTA_VIA`):
    /// its destinations are beyond a router on that device (another
    /// node's pods, host-gw style), not on the link itself.
    pub via: bool,
}

/// An address configured on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The link's index.
    pub ifindex: u32,
    /// The local address (`IFA_LOCAL`, else `IFA_ADDRESS`: on a
    /// point-to-point link the latter is the peer's).
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// One namespace's links, main-table routes (both families) and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Links by ifindex.
    pub links: BTreeMap<u32, Link>,
    /// Routes of the main table.
    pub routes: Vec<Route>,
    /// Addresses of every link.
    pub addresses: Vec<Address>,
}

impl Snapshot {
    /// The device the longest matching unicast route with an output device
    /// sends `addr` to. Other routes are not considered at all: a more
    /// specific blackhole or multipath route does not hide a veth route.
    pub fn route_dev(&self, addr: IpAddr) -> Option<&Link> {
        self.route_oif(addr).and_then(|oif| self.links.get(&oif))
    }

    /// The output device index of that route.
    fn route_oif(&self, addr: IpAddr) -> Option<u32> {
        self.best_route(addr).map(|r| r.1)
    }

    /// The longest matching unicast route with an output device: its
    /// prefix, device and whether it goes through a next hop.
    fn best_route(&self, addr: IpAddr) -> Option<(u8, u32, bool)> {
        self.routes
            .iter()
            .filter(|r| r.kind == RouteType::Unicast && r.dst.contains(addr))
            .filter_map(|r| Some((r.dst.prefix(), r.oif?, r.via)))
            .max_by_key(|(prefix, _, _)| *prefix)
    }

    /// The device `addr` is directly on: the longest matching route's,
    /// unless that route goes through a next hop (then the address is
    /// another node's, even when the device is a veth, as a kind node's
    /// `eth0` is).
    fn direct_oif(&self, addr: IpAddr) -> Option<u32> {
        self.best_route(addr)
            .filter(|(_, _, via)| !via)
            .map(|(_, oif, _)| oif)
    }

    /// The local endpoints among `pods` (index, addresses): a pod is local
    /// when every address of it routes directly (no next hop) to the same
    /// veth. A veth claimed by
    /// two pods goes to the first; the other is logged and skipped.
    pub fn local_endpoints(&self, pods: &[(usize, Vec<IpAddr>)]) -> Vec<LocalEndpoint> {
        let mut out: Vec<LocalEndpoint> = Vec::new();
        for (pod, addrs) in pods {
            let mut devs = addrs.iter().map(|&a| self.direct_oif(a));
            let Some(Some(ifindex)) = devs.next() else {
                continue;
            };
            if devs.any(|d| d != Some(ifindex)) {
                tracing::warn!(pod, "pod addresses route to different devices; not local");
                continue;
            }
            let Some(link) = self.links.get(&ifindex).filter(|l| l.is_veth()) else {
                continue;
            };
            if out.iter().any(|e| e.ifindex == ifindex) {
                tracing::warn!(pod, dev = %link.name, "veth already belongs to another pod; skipped");
                continue;
            }
            out.push(LocalEndpoint {
                pod: *pod,
                ifindex,
                ifname: link.name.clone(),
            });
        }
        out
    }

    /// The node's uplinks: every device a unicast route through a next
    /// hop leaves by (a default route, another node's pod CIDR the
    /// host-gw or overlay way), and the devices named in `extra`, but
    /// never an endpoint's veth or loopback. Sorted by ifindex.
    pub fn uplinks(&self, endpoints: &[LocalEndpoint], extra: &[String]) -> Vec<Uplink> {
        let routed = self
            .routes
            .iter()
            .filter(|r| r.kind == RouteType::Unicast && r.via)
            .filter_map(|r| r.oif);
        let named = self
            .links
            .values()
            .filter(|l| extra.contains(&l.name))
            .map(|l| l.ifindex);
        let mut out: Vec<Uplink> = routed
            .chain(named)
            .filter(|i| endpoints.iter().all(|e| e.ifindex != *i))
            .filter_map(|i| self.links.get(&i))
            .filter(|l| l.name != "lo")
            .map(|l| Uplink {
                ifindex: l.ifindex,
                ifname: l.name.clone(),
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The node's own addresses: every address configured in the
    /// namespace (on any link, up or down) but loopback and IPv6
    /// link-local ones ([`is_node_address`]), sorted and without
    /// duplicates (an address on several links, like the lab's gateways,
    /// counts once). Kubernetes always lets a pod's node reach it, so
    /// these become the model's `node_ips`.
    pub fn node_addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .addresses
            .iter()
            .map(|a| a.addr)
            .filter(|&a| is_node_address(a))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Whether an address configured on the node counts as the node's: not
/// loopback, not unspecified, and not IPv6 link-local (those are per link
/// and only carry neighbour discovery, which the dataplane handles apart).
pub fn is_node_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
    }
}
