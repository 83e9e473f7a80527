//! Links, addresses and routes inside a namespace, through rtnetlink.
//!
//! A netlink socket belongs to the network namespace of the thread that
//! created it, for its whole life. [`NsHandle::netlink`] creates the socket
//! on a scoped thread that has entered the namespace; the returned
//! [`Netlink`] then works from any thread.
//!
//! The API is synchronous: each call runs rtnetlink's request on a private
//! current-thread tokio runtime owned by the [`Netlink`] (rtnetlink's socket
//! needs a tokio reactor; a runtime of two small structures is cheaper than
//! an async API every caller must drive, and it keeps the toolkit usable
//! from plain threads, tests and benchmarks). A call made inside an async
//! task still works (it is driven from a scoped thread, since tokio forbids
//! a nested `block_on`) but blocks that task's worker: async callers (the
//! lab) should use `spawn_blocking`.

use std::future::Future;
use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage, State,
};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::ns::{NetnsError, NsHandle};

/// Errors of netlink operations; each names the namespace and the link,
/// address or route.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The runtime or the socket could not be made.
    #[error("opening a netlink socket in network namespace {netns}: {source}")]
    Socket {
        /// The namespace.
        netns: String,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// No link of that name.
    #[error("network namespace {netns} has no link {link}")]
    NoLink {
        /// The namespace.
        netns: String,
        /// The link's name.
        link: String,
    },
    /// A link operation failed.
    #[error("{op} link {link} in network namespace {netns}: {source}")]
    Link {
        /// The namespace.
        netns: String,
        /// The link's name.
        link: String,
        /// What was asked (`adding veth`, `setting MTU of`...).
        op: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Adding an address failed.
    #[error("adding address {addr} to {link} in network namespace {netns}: {source}")]
    Address {
        /// The namespace.
        netns: String,
        /// The link's name.
        link: String,
        /// The address and prefix.
        addr: IpNetwork,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Adding a neighbour entry failed.
    #[error(
        "adding neighbour {ip} lladdr {mac:02x?} on {link} in network namespace {netns}: {source}"
    )]
    Neighbour {
        /// The namespace.
        netns: String,
        /// The link's name.
        link: String,
        /// The neighbour's address.
        ip: IpAddr,
        /// Its MAC.
        mac: [u8; 6],
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Adding a route failed.
    #[error("adding route {route} in network namespace {netns}: {source}")]
    Route {
        /// The namespace.
        netns: String,
        /// The route as `ip route` would print it.
        route: String,
        /// The kernel's answer (or the builder's).
        #[source]
        source: io::Error,
    },
}

/// rtnetlink's error as the errno it carries (for `kind()` and messages).
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// A link's counters (`ip -s link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// What a link is (`ip link show`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its ifindex in its namespace.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its MAC, for an Ethernet-like link.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Operationally up (`operstate UP`: for a veth, both ends up).
    pub oper_up: bool,
    /// Its counters.
    pub stats: LinkStats,
}

impl LinkInfo {
    fn from_message(m: &LinkMessage) -> Self {
        let mut info = LinkInfo {
            index: m.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            oper_up: false,
            stats: LinkStats::default(),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Address(a) => info.mac = a.as_slice().try_into().ok(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::OperState(s) => info.oper_up = *s == State::Up,
                LinkAttribute::Stats64(s) => {
                    info.stats = LinkStats {
                        rx_packets: s.rx_packets,
                        tx_packets: s.tx_packets,
                        rx_bytes: s.rx_bytes,
                        tx_bytes: s.tx_bytes,
                        rx_dropped: s.rx_dropped,
                        tx_dropped: s.tx_dropped,
                    }
                }
                _ => {}
            }
        }
        info
    }
}

/// A veth pair to create: `name` here, `peer` here or in another namespace.
#[derive(Clone, Debug)]
pub struct Veth<'a> {
    name: String,
    peer: String,
    mac: Option<[u8; 6]>,
    peer_mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    peer_netns: Option<&'a NsHandle>,
}

impl<'a> Veth<'a> {
    /// A pair `name` ↔ `peer` (both here unless [`Self::peer_in`]).
    pub fn new(name: &str, peer: &str) -> Self {
        Self {
            name: name.to_owned(),
            peer: peer.to_owned(),
            mac: None,
            peer_mac: None,
            mtu: None,
            peer_netns: None,
        }
    }

    /// Creates the peer directly inside `netns` (one request: no moment
    /// where the peer's name must be free here).
    pub fn peer_in(mut self, netns: &'a NsHandle) -> Self {
        self.peer_netns = Some(netns);
        self
    }

    /// This side's MAC.
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    /// The peer's MAC.
    pub fn peer_mac(mut self, mac: [u8; 6]) -> Self {
        self.peer_mac = Some(mac);
        self
    }

    /// Both sides' MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    fn message(&self) -> LinkMessage {
        let mut peer = LinkUnspec::new_with_name(&self.peer);
        if let Some(ns) = self.peer_netns {
            peer = peer.append_extra_attribute(LinkAttribute::NetNsFd(
                std::os::fd::AsRawFd::as_raw_fd(&ns.fd()),
            ));
        }
        if let Some(mac) = self.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        if let Some(mtu) = self.mtu {
            peer = peer.mtu(mtu);
        }
        let mut me = LinkVeth::new(&self.name, &self.peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mac) = self.mac {
            me = me.address(mac.to_vec());
        }
        if let Some(mtu) = self.mtu {
            me = me.mtu(mtu);
        }
        me.build()
    }
}

/// A route to add (`ip route add DST [via GW] [dev DEV] [onlink]`).
#[derive(Clone, Debug)]
pub struct Route {
    dst: IpNetwork,
    via: Option<IpAddr>,
    dev: Option<String>,
    onlink: bool,
}

impl Route {
    /// A route to `dst` (`0.0.0.0/0` or `::/0` for the default route).
    pub fn to(dst: IpNetwork) -> Self {
        Self {
            dst,
            via: None,
            dev: None,
            onlink: false,
        }
    }

    /// Through gateway `gw`.
    pub fn via(mut self, gw: IpAddr) -> Self {
        self.via = Some(gw);
        self
    }

    /// Out of device `dev`.
    pub fn dev(mut self, dev: &str) -> Self {
        self.dev = Some(dev.to_owned());
        self
    }

    /// The gateway is on the link even if no address covers it.
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.via {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// A netlink (rtnetlink) socket inside one namespace, with synchronous
/// operations (see the module doc).
pub struct Netlink {
    netns: String,
    handle: rtnetlink::Handle,
    rt: tokio::runtime::Runtime,
}

impl NsHandle {
    /// A netlink socket inside this namespace.
    pub fn netlink(&self) -> Result<Netlink, NetlinkError> {
        let socket = |source| NetlinkError::Socket {
            netns: self.name().to_owned(),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(socket)?;
        let (conn, handle, _) = self
            .run(|| {
                // The socket registers with this runtime's reactor.
                let _in_rt = rt.enter();
                rtnetlink::new_connection()
            })?
            .map_err(socket)?;
        rt.spawn(conn);
        Ok(Netlink {
            netns: self.name().to_owned(),
            handle,
            rt,
        })
    }
}

impl Netlink {
    /// The namespace this socket is in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Drives a request to completion on the private runtime. Inside an
    /// async context (where tokio forbids a nested `block_on`) it is driven
    /// from a scoped thread; the caller blocks either way, so async callers
    /// should still prefer `spawn_blocking`.
    fn block<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn link_err(
        &self,
        link: &str,
        op: &'static str,
    ) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
        let (netns, link) = (self.netns.clone(), link.to_owned());
        move |e| {
            let source = to_io(e);
            if source.raw_os_error() == Some(libc::ENODEV) && op != "adding" {
                NetlinkError::NoLink { netns, link }
            } else {
                NetlinkError::Link {
                    netns,
                    link,
                    op,
                    source,
                }
            }
        }
    }

    /// Link `name`.
    pub fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        let req = self.handle.link().get().match_name(name.to_owned());
        let m = self
            .block(async { req.execute().try_next().await })
            .map_err(self.link_err(name, "reading"))?;
        m.map(|m| LinkInfo::from_message(&m))
            .ok_or_else(|| NetlinkError::NoLink {
                netns: self.netns.clone(),
                link: name.to_owned(),
            })
    }

    /// Every link in the namespace, by ifindex.
    pub fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let req = self.handle.link().get();
        let all: Vec<LinkMessage> = self
            .block(req.execute().try_collect())
            .map_err(self.link_err("*", "listing"))?;
        let mut links: Vec<LinkInfo> = all.iter().map(LinkInfo::from_message).collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// The ifindex of link `name`.
    pub fn index(&self, name: &str) -> Result<u32, NetlinkError> {
        Ok(self.link(name)?.index)
    }

    /// The counters of link `name`.
    pub fn stats(&self, name: &str) -> Result<LinkStats, NetlinkError> {
        Ok(self.link(name)?.stats)
    }

    /// Creates a veth pair (the peer possibly in another namespace).
    pub fn add_veth(&self, veth: &Veth<'_>) -> Result<(), NetlinkError> {
        let req = self.handle.link().add(veth.message());
        self.block(req.execute())
            .map_err(self.link_err(&veth.name, "adding veth"))
    }

    /// Creates bridge `name`, up (`ip link add NAME type bridge`, `ip link
    /// set NAME up`).
    pub fn add_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        let req = self.handle.link().add(LinkBridge::new(name).build());
        self.block(req.execute())
            .map_err(self.link_err(name, "adding bridge"))
    }

    /// Makes link `name` a port of bridge `master` (`ip link set NAME
    /// master MASTER`).
    pub fn set_master(&self, name: &str, master: &str) -> Result<(), NetlinkError> {
        let controller = self.index(master)?;
        self.set(name, "setting the master of", |b| b.controller(controller))
    }

    /// Deletes link `name` (a veth takes its peer with it).
    pub fn del_link(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let req = self.handle.link().del(index);
        self.block(req.execute())
            .map_err(self.link_err(name, "deleting"))
    }

    fn set(
        &self,
        name: &str,
        op: &'static str,
        f: impl FnOnce(
            rtnetlink::LinkMessageBuilder<LinkUnspec>,
        ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
    ) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let req = self
            .handle
            .link()
            .set(f(LinkUnspec::new_with_index(index)).build());
        self.block(req.execute()).map_err(self.link_err(name, op))
    }

    /// Sets link `name` up.
    pub fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        self.set(name, "setting up", |b| b.up())
    }

    /// Sets link `name` down.
    pub fn set_down(&self, name: &str) -> Result<(), NetlinkError> {
        self.set(name, "setting down", |b| b.down())
    }

    /// Sets the MAC of link `name`.
    pub fn set_mac(&self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.set(name, "setting the MAC of", |b| b.address(mac.to_vec()))
    }

    /// Sets the MTU of link `name`.
    pub fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.set(name, "setting the MTU of", |b| b.mtu(mtu))
    }

    /// Adds `addr` (address and prefix) to link `name`; an IPv6 address is
    /// added `nodad` (usable at once, as tests and pods need).
    pub fn add_address(&self, name: &str, addr: IpNetwork) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let mut req = self.handle.address().add(index, addr.ip(), addr.prefix());
        if addr.is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.block(req.execute())
            .map_err(|e| NetlinkError::Address {
                netns: self.netns.clone(),
                link: name.to_owned(),
                addr,
                source: to_io(e),
            })
    }

    /// The addresses on link `name`.
    pub fn addresses(&self, name: &str) -> Result<Vec<IpNetwork>, NetlinkError> {
        let index = self.index(name)?;
        let req = self.handle.address().get().set_link_index_filter(index);
        let all: Vec<_> = self
            .block(req.execute().try_collect())
            .map_err(self.link_err(name, "listing addresses of"))?;
        Ok(all
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => IpNetwork::new(*ip, m.header.prefix_len).ok(),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds a permanent neighbour entry: `ip` reaches `mac` on link `name`
    /// (`ip neigh add IP lladdr MAC dev NAME nud permanent`).
    pub fn add_neighbour(&self, name: &str, ip: IpAddr, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let req = self
            .handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent);
        self.block(req.execute())
            .map_err(|e| NetlinkError::Neighbour {
                netns: self.netns.clone(),
                link: name.to_owned(),
                ip,
                mac,
                source: to_io(e),
            })
    }

    /// Adds `route`. A route without a gateway gets link scope, as `ip`
    /// gives it.
    pub fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let err = |source| NetlinkError::Route {
            netns: self.netns.clone(),
            route: route.to_string(),
            source,
        };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.ip(), route.dst.prefix())
            .map_err(|e| err(io::Error::other(e.to_string())))?
            .protocol(RouteProtocol::Boot);
        match route.via {
            Some(gw) => {
                b = b
                    .gateway(gw)
                    .map_err(|e| err(io::Error::other(e.to_string())))?
            }
            None => b = b.scope(RouteScope::Link),
        }
        if let Some(dev) = &route.dev {
            b = b.output_interface(self.index(dev)?);
        }
        if route.onlink {
            b = b.onlink();
        }
        let req = self.handle.route().add(b.build());
        self.block(req.execute()).map_err(|e| err(to_io(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_reads_like_ip_route() {
        let r = Route::to("0.0.0.0/0".parse().unwrap())
            .via("169.254.1.1".parse().unwrap())
            .dev("eth0")
            .onlink();
        assert_eq!(r.to_string(), "0.0.0.0/0 via 169.254.1.1 dev eth0 onlink");
        assert_eq!(
            Route::to("fd00::5/128".parse().unwrap())
                .dev("vp0")
                .to_string(),
            "fd00::5/128 dev vp0"
        );
    }

    #[test]
    fn a_veth_message_carries_both_names_macs_and_mtu() {
        let m = Veth::new("vp0", "eth0")
            .mac([2, 0, 0, 0, 0, 1])
            .peer_mac([2, 0, 0, 0, 0, 2])
            .mtu(1400)
            .message();
        let text = format!("{m:?}");
        assert!(text.contains("IfName(\"vp0\")"), "{text}");
        assert!(text.contains("IfName(\"eth0\")"), "{text}");
        assert!(text.contains("Address([2, 0, 0, 0, 0, 2])"), "{text}");
        assert_eq!(text.matches("Mtu(1400)").count(), 2, "{text}");
    }

    #[test]
    fn link_info_reads_the_attributes() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up;
        m.attributes = vec![
            LinkAttribute::IfName("vp0".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]),
            LinkAttribute::Mtu(1500),
        ];
        let info = LinkInfo::from_message(&m);
        assert_eq!(
            info,
            LinkInfo {
                index: 7,
                name: "vp0".into(),
                mac: Some([2, 0, 0, 0, 0, 9]),
                mtu: 1500,
                up: true,
                oper_up: false,
                stats: LinkStats::default(),
            }
        );
    }
}
