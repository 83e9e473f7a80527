//! [`read`]: one rtnetlink dump of links, main-table routes (IPv4 and
//! IPv6) and addresses into a [`Snapshot`], and the conversions from the
//! kernel's messages (pure, tested without root).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::{Stream, TryStreamExt};
use ipnetwork::IpNetwork;
use rtnetlink::Handle;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};

use super::snapshot::{Address, Link, Route, Snapshot};
use super::{Channel, DumpKind, NodeError};

/// Reads the links, main-table routes and addresses of the calling
/// thread's network namespace (the socket is opened, in that namespace,
/// when this runs). Needs a Tokio runtime with I/O enabled; drives its own
/// netlink connection, so nothing is spawned.
///
/// A change made while the dump runs may be half in it: keep a
/// [`super::NodeWatch`] open from before the read and read again after it
/// fires (see the module doc of [`super`]).
pub async fn read() -> Result<Snapshot, NodeError> {
    tokio::runtime::Handle::try_current().map_err(|_| NodeError::NoRuntime {
        channel: Channel::Dump,
    })?;
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| NodeError::Socket {
            channel: Channel::Dump,
            source,
        })?;
    // The connection is polled beside the dump. It only ends when its
    // socket fails or a message does not decode; `biased` checks it first,
    // so a dump cut short by that is an error, never a partial snapshot.
    tokio::select! {
        biased;
        () = connection => Err(NodeError::Closed { channel: Channel::Dump }),
        snapshot = dump(&handle) => snapshot,
    }
}

/// The three dumps, one after the other on one socket.
async fn dump(handle: &Handle) -> Result<Snapshot, NodeError> {
    let links = collect(DumpKind::Links, handle.link().get().execute()).await?;
    let mut routes = Vec::new();
    for (what, family) in [
        (DumpKind::Ipv4Routes, AddressFamily::Inet),
        (DumpKind::Ipv6Routes, AddressFamily::Inet6),
    ] {
        let mut request = RouteMessage::default();
        request.header.address_family = family;
        // Without NETLINK_GET_STRICT_CHK the kernel dumps every table of
        // the family; `route` keeps the main table's.
        routes.extend(collect(what, handle.route().get(request).execute()).await?);
    }
    let addresses = collect(DumpKind::Addresses, handle.address().get().execute()).await?;
    Ok(Snapshot {
        links: links
            .iter()
            .filter_map(link)
            .map(|l| (l.ifindex, l))
            .collect(),
        routes: routes.iter().filter_map(route).collect(),
        addresses: addresses.iter().filter_map(address).collect(),
    })
}

async fn collect<T>(
    what: DumpKind,
    stream: impl Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<Vec<T>, NodeError> {
    stream
        .try_collect()
        .await
        .map_err(|source| NodeError::Dump { what, source })
}

/// A link message as a [`Link`]; `None` without a name (the kernel always
/// sends one).
pub(super) fn link(msg: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut kind = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.clone()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Some(Link {
        ifindex: msg.header.index,
        name: name?,
        kind,
    })
}

/// The routing table of a route message: `RTA_TABLE` when present (ids
/// above 255 only fit there), else the header's.
pub(super) fn table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// A main-table IPv4 or IPv6 route message as a [`Route`]; `None` for
/// other tables and families.
pub(super) fn route(msg: &RouteMessage) -> Option<Route> {
    if table(msg) != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let mut dst = None;
    let mut oif = None;
    let mut via = false;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(d) => dst = Some(d),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => via = true,
            _ => {}
        }
    }
    let addr: IpAddr = match (dst, msg.header.address_family) {
        (Some(RouteAddress::Inet(a)), _) => (*a).into(),
        (Some(RouteAddress::Inet6(a)), _) => (*a).into(),
        (Some(_), _) => return None,
        // No destination: a default route.
        (None, AddressFamily::Inet) => Ipv4Addr::UNSPECIFIED.into(),
        (None, AddressFamily::Inet6) => Ipv6Addr::UNSPECIFIED.into(),
        (None, _) => return None,
    };
    Some(Route {
        dst: IpNetwork::new(addr, msg.header.destination_prefix_length).ok()?,
        oif,
        kind: msg.header.kind,
        via,
    })
}

/// An address message as an [`Address`]: `IFA_LOCAL` if present (on a
/// point-to-point link `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`, as
/// getifaddrs(3) reads it.
pub(super) fn address(msg: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut addr = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => addr = Some(*a),
            _ => {}
        }
    }
    Some(Address {
        ifindex: msg.header.index,
        addr: local.or(addr)?,
        prefix_len: msg.header.prefix_len,
    })
}
