use std::net::IpAddr;

use rtnetlink::packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::{address, link, route};
use super::watch::relevant;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn link_of(ifindex: u32, name: &str, kind: Option<InfoKind>) -> Link {
    Link {
        ifindex,
        name: name.to_owned(),
        kind,
    }
}

fn unicast(dst: &str, oif: u32) -> Route {
    Route {
        dst: dst.parse().unwrap(),
        oif: Some(oif),
        kind: RouteType::Unicast,
        via: false,
    }
}

fn addr(ifindex: u32, a: &str) -> Address {
    Address {
        ifindex,
        addr: ip(a),
        prefix_len: 32,
    }
}

#[test]
fn longest_prefix_to_a_veth_makes_a_local_endpoint() {
    let snap = Snapshot {
        links: [
            link_of(2, "eth0", None),
            link_of(7, "vp1", Some(InfoKind::Veth)),
            link_of(8, "vp2", Some(InfoKind::Veth)),
            link_of(9, "br0", Some(InfoKind::Bridge)),
        ]
        .into_iter()
        .map(|l| (l.ifindex, l))
        .collect(),
        routes: vec![
            unicast("0.0.0.0/0", 2),
            unicast("10.0.0.0/24", 2),
            unicast("10.0.0.2/32", 7),
            unicast("fd00::2/128", 7),
            unicast("10.0.0.3/32", 8),
            unicast("10.0.0.4/32", 9),
            // Not unicast, or without a device: never considered, even
            // when more specific.
            Route {
                kind: RouteType::BlackHole,
                ..unicast("10.0.0.3/32", 2)
            },
            Route {
                oif: None,
                ..unicast("10.0.0.2/32", 2)
            },
            // A device that vanished between the link and route dumps.
            unicast("10.0.0.5/32", 99),
        ],
        addresses: Vec::new(),
    };
    let pods = vec![
        (0, vec![ip("10.0.0.2"), ip("fd00::2")]),
        (1, vec![ip("10.0.0.9")]), // routes to eth0: remote
        (2, vec![ip("10.0.0.3")]),
        (3, vec![ip("10.0.0.3")]),                // same veth as pod 2
        (4, vec![ip("10.0.0.2"), ip("fd00::9")]), // split across devices
        (5, vec![ip("10.0.0.4")]),                // a bridge, not a veth
        (6, vec![ip("10.0.0.5")]),                // unknown device
        (7, vec![]),                              // no address
    ];
    assert_eq!(
        snap.local_endpoints(&pods),
        vec![
            LocalEndpoint {
                pod: 0,
                ifindex: 7,
                ifname: "vp1".into()
            },
            LocalEndpoint {
                pod: 2,
                ifindex: 8,
                ifname: "vp2".into()
            },
        ]
    );
    assert_eq!(snap.route_dev(ip("10.1.0.1")).map(|l| l.ifindex), Some(2));
    assert_eq!(snap.route_dev(ip("fd01::1")), None, "no IPv6 default route");
}

#[test]
fn loopback_and_link_local_are_not_the_nodes() {
    for a in ["127.0.0.1", "::1", "fe80::1", "0.0.0.0", "::"] {
        assert!(!is_node_address(ip(a)), "{a}");
    }
    for a in ["10.244.0.1", "169.254.1.1", "fd00:10:244::1", "2001:db8::1"] {
        assert!(is_node_address(ip(a)), "{a}");
    }
}

#[test]
fn node_addresses_are_sorted_unique_and_exclude_loopback_and_link_local() {
    let snap = Snapshot {
        addresses: vec![
            addr(3, "fd00:10:244::1"),
            addr(1, "127.0.0.1"),
            addr(1, "::1"),
            addr(2, "10.0.0.9"),
            addr(3, "fe80::1"),
            addr(4, "10.244.0.1"),
            addr(5, "10.244.0.1"), // a gateway on two links counts once
        ],
        ..Snapshot::default()
    };
    assert_eq!(
        snap.node_addresses(),
        vec![ip("10.0.0.9"), ip("10.244.0.1"), ip("fd00:10:244::1")]
    );
}

#[test]
fn link_messages_give_index_name_and_kind() {
    let mut msg = LinkMessage::default();
    msg.header.index = 7;
    msg.attributes = vec![
        LinkAttribute::IfName("vp1".into()),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
    ];
    let l = link(&msg).unwrap();
    assert_eq!(l, link_of(7, "vp1", Some(InfoKind::Veth)));
    assert!(l.is_veth());
    msg.attributes.truncate(1);
    assert_eq!(link(&msg).unwrap().kind, None);
    msg.attributes.clear();
    assert_eq!(link(&msg), None, "no name");
}

fn route_msg(family: AddressFamily, table: u8, attrs: Vec<RouteAttribute>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = table;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = attrs;
    msg
}

#[test]
fn route_messages_of_the_main_table_give_prefix_device_and_type() {
    let mut msg = route_msg(
        AddressFamily::Inet,
        254,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet("10.0.0.2".parse().unwrap())),
            RouteAttribute::Oif(7),
        ],
    );
    msg.header.destination_prefix_length = 32;
    assert_eq!(route(&msg), Some(unicast("10.0.0.2/32", 7)));

    // No destination: the default route of the family.
    let v6 = route_msg(AddressFamily::Inet6, 254, vec![RouteAttribute::Oif(2)]);
    assert_eq!(route(&v6), Some(unicast("::/0", 2)));
    let mut blackhole = route_msg(AddressFamily::Inet, 254, Vec::new());
    blackhole.header.kind = RouteType::BlackHole;
    assert_eq!(
        route(&blackhole),
        Some(Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            oif: None,
            kind: RouteType::BlackHole,
            via: false,
        })
    );

    // Other tables: the local table, and RTA_TABLE over the header's.
    assert_eq!(
        route(&route_msg(AddressFamily::Inet, 255, Vec::new())),
        None
    );
    let big = route_msg(AddressFamily::Inet, 254, vec![RouteAttribute::Table(1000)]);
    assert_eq!(route(&big), None);
    let main = route_msg(AddressFamily::Inet, 252, vec![RouteAttribute::Table(254)]);
    assert!(route(&main).is_some());
    // Other families.
    assert_eq!(
        route(&route_msg(AddressFamily::Mpls, 254, Vec::new())),
        None
    );
}

#[test]
fn address_messages_prefer_the_local_address() {
    let mut msg = AddressMessage::default();
    msg.header.index = 3;
    msg.header.prefix_len = 24;
    msg.attributes = vec![AddressAttribute::Address(ip("10.0.0.1"))];
    let a = address(&msg).unwrap();
    assert_eq!((a.ifindex, a.addr, a.prefix_len), (3, ip("10.0.0.1"), 24));
    // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    msg.attributes.push(AddressAttribute::Local(ip("10.0.0.2")));
    assert_eq!(address(&msg).unwrap().addr, ip("10.0.0.2"));
    msg.attributes.clear();
    assert_eq!(address(&msg), None);
}

fn notification(inner: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
    NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(inner),
    )
}

#[test]
fn links_addresses_main_routes_and_overruns_are_relevant() {
    use RouteNetlinkMessage as M;
    let main = route_msg(AddressFamily::Inet, 254, Vec::new());
    let local = route_msg(AddressFamily::Inet, 255, Vec::new());
    for (inner, want) in [
        (M::NewLink(LinkMessage::default()), true),
        (M::DelLink(LinkMessage::default()), true),
        (M::NewAddress(AddressMessage::default()), true),
        (M::DelAddress(AddressMessage::default()), true),
        (M::NewRoute(main.clone()), true),
        (M::DelRoute(main), true),
        (M::NewRoute(local.clone()), false),
        (M::DelRoute(local), false),
        (M::NewNeighbour(NeighbourMessage::default()), false),
    ] {
        assert_eq!(relevant(&notification(inner.clone())), want, "{inner:?}");
    }
    let overrun = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::Overrun(Vec::new()),
    );
    assert!(relevant(&overrun), "lost notifications mean a resync");
    let noop =
        NetlinkMessage::<RouteNetlinkMessage>::new(NetlinkHeader::default(), NetlinkPayload::Noop);
    assert!(!relevant(&noop));
}

#[test]
fn netlink_sockets_need_a_runtime() {
    assert!(matches!(
        NodeWatch::open(),
        Err(NodeError::NoRuntime {
            channel: Channel::Watch
        })
    ));
}

/// Reading needs no privilege: the test's own namespace has a loopback,
/// and the node addresses equal what getifaddrs(3) reads.
#[test]
fn this_namespace_reads_like_getifaddrs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let getifaddrs = || -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .unwrap()
            .filter_map(|ifa| {
                let a = ifa.address?;
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .filter(|a| is_node_address(*a))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // The host may change an address between the two reads; a few tries
    // tell that from a real difference.
    let mut last = None;
    for _ in 0..5 {
        let snap = rt.block_on(read()).unwrap();
        assert!(
            snap.links.values().any(|l| l.name == "lo"),
            "{:?}",
            snap.links
        );
        let ours = snap.node_addresses();
        let theirs = getifaddrs();
        if ours == theirs {
            return;
        }
        last = Some((ours, theirs));
    }
    panic!("netlink and getifaddrs disagree: {last:?}");
}

/// The agent's reconciler runs these on a multi-threaded runtime.
#[test]
fn the_watch_and_the_read_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    fn send_type<T: Send>() {}
    send_type::<NodeWatch>();
    send(&read());
}

#[test]
fn a_route_through_a_next_hop_never_makes_a_local_endpoint() {
    // A multi-node cluster, host-gw style: another node's pods route via
    // its address on the fabric link, which may itself be a veth (kind).
    let snap = Snapshot {
        links: [
            link_of(2, "eth0", Some(InfoKind::Veth)),
            link_of(7, "vp1", Some(InfoKind::Veth)),
        ]
        .into_iter()
        .map(|l| (l.ifindex, l))
        .collect(),
        routes: vec![
            unicast("10.244.0.2/32", 7),
            Route {
                via: true,
                ..unicast("10.244.64.0/18", 2)
            },
            Route {
                via: true,
                ..unicast("10.244.0.3/32", 2)
            },
        ],
        addresses: Vec::new(),
    };
    let pods = vec![
        (0, vec![ip("10.244.0.2")]),
        (1, vec![ip("10.244.0.3")]),
        (2, vec![ip("10.244.64.2")]),
    ];
    assert_eq!(
        snap.local_endpoints(&pods),
        vec![LocalEndpoint {
            pod: 0,
            ifindex: 7,
            ifname: "vp1".into()
        }]
    );
}

#[test]
fn a_gateway_attribute_marks_a_route_via() {
    let mut msg = route_msg(
        AddressFamily::Inet,
        254,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet("10.244.64.0".parse().unwrap())),
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.0.2".parse().unwrap())),
            RouteAttribute::Oif(2),
        ],
    );
    msg.header.destination_prefix_length = 18;
    assert_eq!(
        route(&msg),
        Some(Route {
            via: true,
            ..unicast("10.244.64.0/18", 2)
        })
    );
}
