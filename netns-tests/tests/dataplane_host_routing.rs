//! Host routing against the reference evaluator, through
//! `BPF_PROG_TEST_RUN` with the node's real FIB: in a node namespace of
//! this test's own, `from_pod` runs as received on one host veth (S) while
//! the FIB routes every address to the other (D) through a gateway with a
//! permanent neighbour entry. With `CONFIG_F_HOST_ROUTING`, for random
//! policies (the compiler's generator, half with random modes) and random
//! packets (IPv4/IPv6 × TCP, UDP, SCTP, ICMP echo) from a pod:
//!
//! - the source's egress denies → dropped, as without host routing;
//! - it allows and the destination is no endpoint (an external address)
//!   → passed to the stack untouched;
//! - it allows and the destination is a pod → `from_pod` and its tail
//!   call `deliver` judge the destination's ingress too: redirected iff
//!   the evaluator allows the packet, dropped otherwise; the frame is
//!   rewritten as forwarding would (the route's MACs, TTL or hop limit one
//!   less, the IPv4 checksum still right), and the CT entry carries both
//!   sides' audit verdicts as the evaluator's `Compiled::audit`;
//! - the reply of every redirected connection, sent by the destination,
//!   is redirected back by conntrack;
//! - the reply of a connection whose original packet took the node's
//!   stack (host routing was off for it here; in a cluster, a Service
//!   address that kube-proxy DNATs) is passed to the stack untouched, so
//!   netfilter's conntrack can undo its NAT.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use bulkhead_netkit::{Netns, Route, Veth};

use bulkhead_common::{CONFIG_F_HOST_ROUTING, CT_HOST_ROUTED, CT_UNCHECKED};
use bulkhead_netns_tests::{
    dataplane::{DROP, Dataplane, PASS, REDIRECT, audit_bits},
    packet::frame,
    probe::{Case, Probe},
};

/// The FIB's next hop behind D, for both families: its MAC.
const GATEWAY_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 1];

/// The test's namespaces (node, S's pod, D's pod), deleted on drop (also
/// when the test fails).
struct Namespaces(Vec<Netns>);

/// A node namespace with host veths S and D (peers in namespaces of their
/// own), forwarding on, and every address of both families routed to D
/// through a gateway whose neighbour entry is permanent. Returns the
/// namespaces and (S's ifindex, D's ifindex, D's MAC).
fn node(id: &str) -> (Namespaces, u32, u32, [u8; 6]) {
    let node = format!("bhr-{id}");
    // `recreate`: a namespace a killed run left behind goes first.
    let ns = Namespaces(
        [node.clone(), format!("{node}-s"), format!("{node}-d")]
            .iter()
            .map(|n| Netns::recreate(n).expect("create a namespace"))
            .collect(),
    );
    let n = &ns.0[0];
    let nl = n.netlink().expect("netlink in the node");
    nl.set_up("lo").unwrap();
    for (dev, peer) in [("vs", &ns.0[1]), ("vd", &ns.0[2])] {
        nl.add_veth(&Veth::new(dev, "eth0").peer_in(peer)).unwrap();
        peer.netlink().unwrap().set_up("eth0").unwrap();
        nl.set_up(dev).unwrap();
    }
    n.sysctl("net.ipv4.ip_forward", "1").unwrap();
    n.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    // One gateway per family behind D, its neighbour entry permanent.
    for (default, gateway, onlink) in [
        ("0.0.0.0/0", "169.254.1.1", true),
        ("::/0", "fe80::1", false),
    ] {
        let gateway: IpAddr = gateway.parse().unwrap();
        let mut route = Route::to(default.parse().unwrap()).via(gateway).dev("vd");
        if onlink {
            route = route.onlink();
        }
        nl.add_route(&route).unwrap();
        nl.add_neighbour("vd", gateway, GATEWAY_MAC).unwrap();
    }
    let (s, d) = (nl.link("vs").unwrap(), nl.link("vd").unwrap());
    let d_mac = d.mac.expect("a veth has a MAC");
    (ns, s.index, d.index, d_mac)
}

/// The one's complement sum of the IPv4 header `h` (20 bytes).
fn ipv4_sum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The IPv4 header checksum of `h` (20 bytes without options) is right.
fn ipv4_checksum_ok(h: &[u8]) -> bool {
    ipv4_sum(h) == 0xffff
}

/// Writes the right header checksum into `h`.
fn set_ipv4_checksum(h: &mut [u8]) {
    h[10..12].copy_from_slice(&[0, 0]);
    let check = !ipv4_sum(h);
    h[10..12].copy_from_slice(&check.to_be_bytes());
}

#[test]
fn host_routing_verdicts_equal_the_reference_evaluator() {
    let Some(mut dp) = Dataplane::load() else {
        return;
    };
    let id = format!("{}", std::process::id());
    let (ns, s_if, d_if, d_mac) = node(&id);
    // The test runs see the calling thread's namespace: run there.
    ns.0[0]
        .run(|| run(&mut dp, s_if, d_if, d_mac))
        .expect("enter the node namespace");
    drop(ns);
}

fn run(dp: &mut Dataplane, s_if: u32, d_if: u32, d_mac: [u8; 6]) {
    dp.set_flags(CONFIG_F_HOST_ROUTING);
    dp.set_revision(0);
    let start = Instant::now();
    // (redirected, dropped at the source, dropped at the destination,
    // passed to the stack, replies of stack-carried connections passed)
    let mut outcomes = [0usize; 5];
    let mut stack_carried = 0usize;
    let mut by_kind: BTreeMap<(bool, &str), usize> = BTreeMap::new();
    let mut audited = 0usize;
    let mut next_port: u16 = 1024;
    for seed in 0..500u64 {
        let Case {
            rng: mut r,
            compiled: c,
            image,
            addrs,
        } = Case::new(seed, 6151, 3);
        dp.write_image(&image);
        for _ in 0..30 {
            let src = *r.pick(&addrs);
            let dst = *r.pick(&addrs);
            let (Some(sp), dpod) = (c.pod_of(src), c.pod_of(dst)) else {
                continue; // only packets leaving a pod meet from_pod
            };
            if src == dst || src.is_ipv4() != dst.is_ipv4() {
                continue;
            }
            let sport = next_port;
            next_port = next_port.checked_add(1).expect("fewer than 64k cases");
            let dport = 76 + r.below(12) as u16;
            let probe = Probe::new(&c, src, dst, r.below(4), sport, dport);
            let described = probe.describe(seed);
            let ctx = || described.as_str();
            let Probe {
                v6,
                l4,
                name,
                want,
                verdict,
                audit,
                tuple,
                ..
            } = probe;

            let src_ep = image.endpoints[sp].1;
            let mut pkt = frame(src_ep.mac, src, dst, l4);
            if !v6 {
                // The builder leaves the header checksum 0 (the programs
                // never check it); the rewrite must keep a valid one valid.
                set_ipv4_checksum(&mut pkt[14..34]);
            }
            dp.set_endpoint_on(s_if, 0, src_ep);
            match dpod {
                Some(d) => dp.set_endpoint_on(d_if, 0, image.endpoints[d].1),
                None => dp.remove_endpoint_on(d_if, 0),
            }
            let (ret, out) = dp.from_pod_on(s_if, &pkt);
            *by_kind.entry((v6, name)).or_default() += 1;
            if !verdict.egress.allows() {
                assert_eq!(ret, DROP, "source egress denies: {}", ctx());
                outcomes[1] += 1;
                continue;
            }
            let Some(d) = dpod else {
                assert_eq!(ret, PASS, "not a pod: the stack's: {}", ctx());
                assert_eq!(out, pkt, "passed to the stack untouched: {}", ctx());
                // Recorded with its egress side, for `to_pod` to find.
                let e = dp
                    .ct_get(&tuple)
                    .expect("CT entry of a packet the stack takes");
                assert_eq!(e.egress_revision, 0, "egress checked: {}", ctx());
                assert_eq!(
                    e.ingress_revision,
                    CT_UNCHECKED,
                    "ingress left to to_pod: {}",
                    ctx()
                );
                assert_eq!(e.flags & CT_HOST_ROUTED, 0, "not host-routed: {}", ctx());
                outcomes[3] += 1;
                continue;
            };
            if !want {
                assert_eq!(ret, DROP, "destination ingress denies: {}", ctx());
                // A connection the destination denies leaves no CT entry.
                assert!(dp.ct_get(&tuple).is_none(), "no CT entry: {}", ctx());
                outcomes[2] += 1;
                continue;
            }
            assert_eq!(ret, REDIRECT, "both sides allow: {}", ctx());
            let dst_ep = image.endpoints[d].1;
            let reply = frame(dst_ep.mac, dst, src, l4.reply());
            if stack_carried.is_multiple_of(5) {
                // Once in five: the same connection anew with its original
                // packet through the stack (host routing off for it).
                stack_carried += 1;
                dp.ct_remove(&tuple);
                dp.set_flags(0);
                let (ret, _) = dp.from_pod_on(s_if, &pkt);
                dp.set_flags(CONFIG_F_HOST_ROUTING);
                assert_eq!(ret, PASS, "host routing off: {}", ctx());
                dp.set_endpoint_on(s_if, 0, dst_ep);
                dp.set_endpoint_on(d_if, 0, src_ep);
                let (ret, out) = dp.from_pod_on(s_if, &reply);
                assert_eq!(ret, PASS, "reply of a stack-carried connection: {}", ctx());
                assert_eq!(out, reply, "passed untouched: {}", ctx());
                outcomes[4] += 1;
                continue;
            }
            stack_carried += 1;
            outcomes[0] += 1;
            // Rewritten as forwarding would.
            assert_eq!(out.len(), pkt.len(), "{}", ctx());
            assert_eq!(out[0..6], GATEWAY_MAC, "destination MAC: {}", ctx());
            assert_eq!(out[6..12], d_mac, "source MAC: {}", ctx());
            if v6 {
                assert_eq!(out[14 + 7], pkt[14 + 7] - 1, "hop limit: {}", ctx());
                assert_eq!(out[14..14 + 7], pkt[14..14 + 7], "{}", ctx());
                assert_eq!(out[14 + 8..], pkt[14 + 8..], "{}", ctx());
            } else {
                assert_eq!(out[14 + 8], pkt[14 + 8] - 1, "TTL: {}", ctx());
                assert!(ipv4_checksum_ok(&pkt[14..34]), "test frame: {}", ctx());
                assert!(ipv4_checksum_ok(&out[14..34]), "checksum: {}", ctx());
                assert_eq!(out[34..], pkt[34..], "{}", ctx());
            }
            let e = dp.ct_get(&tuple).expect("CT entry of a redirected packet");
            assert_eq!(
                (e.egress_revision, e.ingress_revision),
                (0, 0),
                "both sides checked: {}",
                ctx()
            );
            assert_ne!(e.flags & CT_HOST_ROUTED, 0, "host-routed: {}", ctx());
            assert_eq!(
                e.audit_egress,
                audit_bits(audit.egress),
                "audit egress: {}",
                ctx()
            );
            assert_eq!(
                e.audit_ingress,
                audit_bits(audit.ingress),
                "audit ingress: {}",
                ctx()
            );
            audited += usize::from(audit.egress.is_some() || audit.ingress.is_some());

            // The reply, sent by the destination, goes back by conntrack
            // (its veth is now S, the original source's D).
            dp.set_endpoint_on(s_if, 0, dst_ep);
            dp.set_endpoint_on(d_if, 0, src_ep);
            let (ret, _) = dp.from_pod_on(s_if, &reply);
            assert_eq!(ret, REDIRECT, "reply: {}", ctx());
        }
        dp.clear_image();
    }
    dp.remove_endpoint_on(s_if, 0);
    dp.remove_endpoint_on(d_if, 0);
    let cases: usize = outcomes.iter().sum();
    eprintln!(
        "host routing: {cases} cases in {:.2} s: {} redirected ({audited} with an audit view), {} dropped at the source, {} at the destination, {} to the stack, {} replies of stack-carried connections left to the stack; by (v6, protocol): {by_kind:?}",
        start.elapsed().as_secs_f64(),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        outcomes[3],
        outcomes[4]
    );
    assert!(cases >= 3000, "only {cases} cases");
    assert!(
        outcomes.iter().all(|&n| n >= 100),
        "every outcome must occur often: {outcomes:?}"
    );
    assert!(
        audited >= 50,
        "only {audited} redirected cases had an audit view"
    );
    for v6 in [false, true] {
        for name in ["TCP", "UDP", "SCTP", "ICMP"] {
            let n = by_kind.get(&(v6, name)).copied().unwrap_or_default();
            assert!(n >= 100, "{name} v6={v6}: {n} cases");
        }
    }
}
