//! Program tests by `BPF_PROG_TEST_RUN` on hand-written maps: conntrack
//! (replies, related ICMP, revocation and survival across revisions),
//! anti-spoofing, evasion-proof parsing and the XDP prefilter. Every drop is
//! checked against its counter.
//!
//! Two pods, A and B, on one node. Test runs all happen on `lo`, so the
//! ENDPOINTS entry of ifindex 1 is switched to A or B to simulate the veth a
//! packet crosses (`as_a`/`as_b`).

use std::net::IpAddr;

use bulkhead_common::{
    CT_SEEN_REPLY, DropReason, EndpointInfo, IDENTITY_F_NODE, IDENTITY_F_POD, PROTO_ANY,
    PROTO_ICMP, PROTO_TCP, PROTO_UDP, RULE_NODE,
};
use bulkhead_netns_tests::{
    dataplane::{DROP, Dataplane, PASS, XDP_DROP, XDP_PASS, ct_key, endpoint},
    packet::{
        ACK, L4, SYN, V4, ether, ether_vlan, ext_header, frag_header, frame, icmp_error, ip_frame,
        ip_of, ipv4, ipv6, tcp,
    },
};

use bulkhead_netns_tests::dataplane::fixture::{
    A_EG, A_IN, B_EG, B_IN, ID_A, ID_B, ID_EXT, MAC_A, MAC_B, ip,
};

struct Lab {
    dp: Dataplane,
    a4: IpAddr,
    a6: IpAddr,
    b4: IpAddr,
    b6: IpAddr,
    ext4: IpAddr,
    ext6: IpAddr,
}

impl Lab {
    /// A and B isolated both ways. A's egress allows B on TCP `a_to_b` and
    /// UDP 53, and anything external; B's ingress allows A on TCP `b_from_a`
    /// and UDP 53. Nothing else: A's ingress and B's egress deny all.
    fn new() -> Option<Self> {
        let mut lab = Lab {
            dp: Dataplane::load()?,
            a4: ip("10.0.0.1"),
            a6: ip("fd00::1"),
            b4: ip("10.0.0.2"),
            b6: ip("fd00::2"),
            ext4: ip("192.0.2.1"),
            ext6: ip("2001:db8::1"),
        };
        lab.policy(0, &[80, 443], &[80, 443]);
        lab.dp.set_revision(0);
        Some(lab)
    }

    /// (Re)writes slot `slot` with the given allowed TCP ports.
    fn policy(&mut self, slot: u8, a_to_b: &[u16], b_from_a: &[u16]) {
        let dp = &mut self.dp;
        dp.clear_slot(slot);
        for (net, id) in [
            ("10.0.0.1/32", ID_A),
            ("fd00::1/128", ID_A),
            ("10.0.0.2/32", ID_B),
            ("fd00::2/128", ID_B),
            ("0.0.0.0/0", ID_EXT),
            ("::/0", ID_EXT),
        ] {
            dp.add_identity(slot, net.parse().unwrap(), id);
        }
        for &port in a_to_b {
            dp.allow(slot, A_EG, ID_B, PROTO_TCP, Some(port));
        }
        dp.allow(slot, A_EG, ID_B, PROTO_UDP, Some(53));
        dp.allow(slot, A_EG, ID_EXT, PROTO_ANY, None);
        for &port in b_from_a {
            dp.allow(slot, B_IN, ID_A, PROTO_TCP, Some(port));
        }
        dp.allow(slot, B_IN, ID_A, PROTO_UDP, Some(53));
    }

    fn endpoint_a(&self) -> EndpointInfo {
        endpoint(&[self.a4, self.a6], MAC_A, Some(A_IN), Some(A_EG))
    }

    fn endpoint_b(&self) -> EndpointInfo {
        endpoint(&[self.b4, self.b6], MAC_B, Some(B_IN), Some(B_EG))
    }

    /// Simulates A's veth (both slots).
    fn as_a(&mut self) -> &mut Dataplane {
        let e = self.endpoint_a();
        self.dp.set_endpoint(0, e);
        self.dp.set_endpoint(1, e);
        &mut self.dp
    }

    /// Simulates B's veth (both slots).
    fn as_b(&mut self) -> &mut Dataplane {
        let e = self.endpoint_b();
        self.dp.set_endpoint(0, e);
        self.dp.set_endpoint(1, e);
        &mut self.dp
    }
}

fn tcp_l4(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        flags,
    }
}

#[test]
fn conntrack_replies_related_icmp_and_policy_changes() {
    let Some(mut lab) = Lab::new() else { return };
    let (a4, b4, a6, b6) = (lab.a4, lab.b4, lab.a6, lab.b6);
    let syn = frame(MAC_A, a4, b4, tcp_l4(40000, 80, SYN));
    let synack = frame(MAC_B, b4, a4, tcp_l4(80, 40000, SYN | ACK));
    let ack = frame(MAC_A, a4, b4, tcp_l4(40000, 80, ACK));
    let key = ct_key(a4, b4, 40000, 80, PROTO_TCP);

    // An allowed connection, and its reply although B's egress and A's
    // ingress deny everything.
    assert_eq!(lab.as_a().from_pod(&syn), PASS);
    assert_eq!(lab.as_b().to_pod(&syn), PASS);
    assert_eq!(lab.as_b().from_pod(&synack), PASS, "reply leaves B");
    assert_eq!(lab.as_a().to_pod(&synack), PASS, "reply enters A");
    let e = lab.dp.ct_get(&key).expect("tracked");
    assert_eq!((e.egress_revision, e.ingress_revision), (0, 0));
    assert_eq!(e.flags & CT_SEEN_REPLY, CT_SEEN_REPLY);
    assert_eq!((e.tcp_flags_orig, e.tcp_flags_reply), (SYN, SYN | ACK));

    // The reverse direction as a new connection is denied.
    let denied = lab.dp.drops(DropReason::PolicyDenied);
    let reverse = frame(MAC_B, b4, a4, tcp_l4(40001, 80, SYN));
    assert_eq!(lab.as_b().from_pod(&reverse), DROP);
    assert_eq!(lab.dp.drops(DropReason::PolicyDenied), denied + 1);

    // Related ICMP errors pass into A (whose ingress denies ICMP); an error
    // about an unknown connection does not.
    let unreachable = icmp_error(MAC_B, lab.ext4, a4, 3, &ip_of(&syn));
    assert_eq!(lab.as_a().to_pod(&unreachable), PASS, "related ICMP");
    let other = frame(MAC_A, a4, b4, tcp_l4(40000, 81, SYN));
    let unrelated = icmp_error(MAC_B, lab.ext4, a4, 3, &ip_of(&other));
    assert_eq!(lab.as_a().to_pod(&unrelated), DROP, "unrelated ICMP");
    assert_eq!(lab.dp.drops(DropReason::PolicyDenied), denied + 2);
    // IPv6: a connection on 443, then "packet too big" about it.
    let syn6 = frame(MAC_A, a6, b6, tcp_l4(40002, 443, SYN));
    assert_eq!(lab.as_a().from_pod(&syn6), PASS);
    assert_eq!(lab.as_b().to_pod(&syn6), PASS);
    let too_big = icmp_error(MAC_B, lab.ext6, a6, 2, &ip_of(&syn6));
    assert_eq!(lab.as_a().to_pod(&too_big), PASS, "related ICMPv6");
    // ICMP echo: A may ping externals; the reply comes back in.
    let ping = frame(MAC_A, a4, lab.ext4, L4::EchoRequest { id: 7 });
    let pong = frame(MAC_B, lab.ext4, a4, L4::EchoReply { id: 7 });
    assert_eq!(lab.as_a().from_pod(&ping), PASS);
    assert_eq!(lab.as_a().to_pod(&pong), PASS, "echo reply");
    let unsolicited = frame(MAC_B, lab.ext4, a4, L4::EchoReply { id: 8 });
    assert_eq!(
        lab.as_a().to_pod(&unsolicited),
        DROP,
        "unsolicited echo reply"
    );
    assert!(
        lab.dp
            .ct_get(&ct_key(a4, lab.ext4, 7, 0, PROTO_ICMP))
            .is_some()
    );

    // Revision 1 (slot 1): B no longer accepts 80; 443 still allowed. The
    // established port-80 connection stops on its next packet; its entry
    // is gone.
    lab.policy(1, &[80, 443], &[443]);
    lab.dp.set_revision(1);
    let revoked = lab.dp.drops(DropReason::PolicyRevoked);
    assert_eq!(
        lab.as_a().from_pod(&ack),
        PASS,
        "A's egress still allows 80"
    );
    assert_eq!(lab.dp.ct_get(&key).unwrap().egress_revision, 1);
    assert_eq!(lab.as_b().to_pod(&ack), DROP, "B's ingress revoked 80");
    assert_eq!(lab.dp.drops(DropReason::PolicyRevoked), revoked + 1);
    assert!(lab.dp.ct_get(&key).is_none(), "revoked entry deleted");
    // The 443 connection keeps passing, both ways, and is re-stamped.
    let ack6 = frame(MAC_A, a6, b6, tcp_l4(40002, 443, ACK));
    let reply6 = frame(MAC_B, b6, a6, tcp_l4(443, 40002, ACK));
    assert_eq!(lab.as_a().from_pod(&ack6), PASS);
    assert_eq!(lab.as_b().to_pod(&ack6), PASS);
    assert_eq!(lab.as_b().from_pod(&reply6), PASS);
    assert_eq!(lab.as_a().to_pod(&reply6), PASS);
    let key6 = ct_key(a6, b6, 40002, 443, PROTO_TCP);
    let e = lab.dp.ct_get(&key6).unwrap();
    assert_eq!((e.egress_revision, e.ingress_revision), (1, 1));

    // Revision 2 (slot 0 rewritten): A's egress no longer allows 443. The
    // next packet, a reply entering A, is dropped: revocation works in
    // either direction.
    lab.policy(0, &[80], &[443]);
    lab.dp.set_revision(2);
    assert_eq!(
        lab.as_b().from_pod(&reply6),
        PASS,
        "B's ingress still allows 443"
    );
    assert_eq!(lab.as_a().to_pod(&reply6), DROP, "A's egress revoked 443");
    assert_eq!(lab.dp.drops(DropReason::PolicyRevoked), revoked + 2);
    assert!(lab.dp.ct_get(&key6).is_none());
    lab.dp.ct_clear();
}

/// Identity of the node's addresses in [`senders_lab`].
const ID_NODE: u32 = 9;

/// [`Lab::new`] with A and B flagged as pods and a node at 10.0.0.254 and
/// fd00::fe (slot 0).
fn senders_lab() -> Option<(Lab, IpAddr, IpAddr)> {
    let mut lab = Lab::new()?;
    let (node4, node6) = (ip("10.0.0.254"), ip("fd00::fe"));
    for (net, id) in [
        ("10.0.0.1/32", ID_A),
        ("fd00::1/128", ID_A),
        ("10.0.0.2/32", ID_B),
        ("fd00::2/128", ID_B),
    ] {
        lab.dp
            .add_identity_flagged(0, net.parse().unwrap(), id, IDENTITY_F_POD);
    }
    for net in ["10.0.0.254/32", "fd00::fe/128"] {
        lab.dp
            .add_identity_flagged(0, net.parse().unwrap(), ID_NODE, IDENTITY_F_NODE);
    }
    Some((lab, node4, node6))
}

#[test]
fn icmp_errors_only_from_the_peer_or_a_non_pod() {
    let Some((mut lab, node4, _)) = senders_lab() else {
        return;
    };
    let (a4, b4, ext4) = (lab.a4, lab.b4, lab.ext4);
    // A → external on TCP 80: tracked.
    let syn = frame(MAC_A, a4, ext4, tcp_l4(40300, 80, SYN));
    assert_eq!(lab.as_a().from_pod(&syn), PASS);
    let sender0 = lab.dp.drops(DropReason::IcmpErrorSender);
    // Into A: from the peer, the node or another non-pod address (a router
    // on the path) it passes; from pod B, which is not the peer, never.
    for (from, want) in [(ext4, PASS), (node4, PASS), (ip("198.51.100.9"), PASS)] {
        let e = icmp_error(MAC_B, from, a4, 3, &ip_of(&syn));
        assert_eq!(lab.as_a().to_pod(&e), want, "error from {from}");
    }
    let injected = icmp_error(MAC_B, b4, a4, 3, &ip_of(&syn));
    assert_eq!(lab.as_a().to_pod(&injected), DROP, "error from pod B");
    // Leaving B (whose egress policy has nothing to do with it), too.
    assert_eq!(lab.as_b().from_pod(&injected), DROP, "error sent by pod B");
    assert_eq!(lab.dp.drops(DropReason::IcmpErrorSender), sender0 + 2);
    // B's own error about a connection it is the peer of passes.
    let syn_ab = frame(MAC_A, a4, b4, tcp_l4(40301, 80, SYN));
    assert_eq!(lab.as_a().from_pod(&syn_ab), PASS);
    let own = icmp_error(MAC_B, b4, a4, 3, &ip_of(&syn_ab));
    assert_eq!(lab.as_b().from_pod(&own), PASS, "the peer's error");
    assert_eq!(lab.as_a().to_pod(&own), PASS, "the peer's error in");
    lab.dp.ct_clear();
}

#[test]
fn the_node_is_always_let_in() {
    let Some((mut lab, node4, node6)) = senders_lab() else {
        return;
    };
    let a4 = lab.a4;
    // A's ingress denies everything, but not its node.
    for (from, port) in [(node4, 8080), (node6, 8081)] {
        let to = if from.is_ipv4() { a4 } else { lab.a6 };
        let syn = frame(MAC_B, from, to, tcp_l4(40400, port, SYN));
        assert_eq!(lab.as_a().to_pod(&syn), PASS, "from the node {from}");
        let e = lab
            .dp
            .ct_get(&ct_key(from, to, 40400, port, PROTO_TCP))
            .expect("tracked");
        assert_eq!(e.ingress_rule, RULE_NODE);
    }
    let denied = lab.dp.drops(DropReason::PolicyDenied);
    let other = frame(MAC_B, lab.ext4, a4, tcp_l4(40401, 8080, SYN));
    assert_eq!(lab.as_a().to_pod(&other), DROP, "anyone else");
    assert_eq!(lab.dp.drops(DropReason::PolicyDenied), denied + 1);
    // Egress to the node still needs a rule: B's egress allows nothing.
    let out = frame(MAC_B, lab.b4, node4, tcp_l4(40402, 10250, SYN));
    assert_eq!(lab.as_b().from_pod(&out), DROP, "B to its node");
    lab.dp.ct_clear();
}

#[test]
fn neighbour_discovery_passes_only_on_the_link() {
    let Some((mut lab, _, node6)) = senders_lab() else {
        return;
    };
    let (a6, b6) = (lab.a6, lab.b6);
    let nd = |src: &str, dst: IpAddr, ty: u8| {
        ip_frame(MAC_A, ip(src), dst, 58, &[ty, 0, 0, 0, 0, 0, 0, 0])
    };
    let (spoofed0, denied0) = (
        lab.dp.drops(DropReason::SpoofedIp),
        lab.dp.drops(DropReason::PolicyDenied),
    );
    let dp = lab.as_a();
    // Leaving A: link-local or own source to the link or the node passes.
    assert_eq!(
        dp.from_pod(&nd("fe80::1", b6, 135)),
        PASS,
        "link-local source"
    );
    assert_eq!(
        dp.from_pod(&nd("::", ip("ff02::1:ff00:1"), 135)),
        PASS,
        "DAD"
    );
    assert_eq!(
        dp.from_pod(&nd("fd00::1", ip("ff02::1:ff00:fe"), 135)),
        PASS
    );
    assert_eq!(
        dp.from_pod(&nd("fd00::1", node6, 135)),
        PASS,
        "NUD to the node"
    );
    assert_eq!(
        dp.from_pod(&nd("fd00::1", ip("ff02::16"), 143)),
        PASS,
        "MLDv2"
    );
    // Across the node to B: judged by A's egress, which allows no ICMPv6.
    for ty in [130, 133, 134, 135, 136, 137, 143] {
        assert_eq!(dp.from_pod(&nd("fd00::1", b6, ty)), DROP, "type {ty} to B");
    }
    // A foreign source never passes.
    assert_eq!(dp.from_pod(&nd("fd00::2", b6, 135)), DROP, "B's address");
    assert_eq!(dp.from_pod(&nd("::", b6, 135)), DROP, "unspecified to B");
    assert_eq!(dp.drops(DropReason::SpoofedIp), spoofed0 + 2);
    assert_eq!(dp.drops(DropReason::PolicyDenied), denied0 + 7);
    // Entering A: from a link-local, the unspecified address or the node;
    // not from B's address (forwarded by the node), which A's ingress
    // denies.
    let into_a = |src: IpAddr| ip_frame(MAC_B, src, a6, 58, &[136, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(dp.to_pod(&into_a(ip("fe80::2"))), PASS);
    assert_eq!(dp.to_pod(&into_a(ip("::"))), PASS);
    assert_eq!(dp.to_pod(&into_a(node6)), PASS);
    assert_eq!(dp.to_pod(&into_a(b6)), DROP, "from B across the node");
    assert_eq!(dp.drops(DropReason::PolicyDenied), denied0 + 8);
}

#[test]
fn anti_spoofing_drops_foreign_source_ip_and_mac() {
    let Some(mut lab) = Lab::new() else { return };
    let (a4, a6, ext4, ext6) = (lab.a4, lab.a6, lab.ext4, lab.ext6);
    let l4 = tcp_l4(40100, 80, SYN);
    let dp = lab.as_a();
    let (ip0, mac0) = (
        dp.drops(DropReason::SpoofedIp),
        dp.drops(DropReason::SpoofedMac),
    );
    assert_eq!(
        dp.from_pod(&frame(MAC_A, a4, ext4, l4)),
        PASS,
        "own addresses"
    );
    assert_eq!(dp.from_pod(&frame(MAC_A, a6, ext6, l4)), PASS, "own IPv6");
    assert_eq!(dp.from_pod(&frame(MAC_A, ip("10.0.0.99"), ext4, l4)), DROP);
    assert_eq!(dp.from_pod(&frame(MAC_A, ip("fd00::99"), ext6, l4)), DROP);
    assert_eq!(
        dp.from_pod(&frame(MAC_A, ip("10.0.0.2"), ext4, l4)),
        DROP,
        "B's IP"
    );
    assert_eq!(dp.drops(DropReason::SpoofedIp), ip0 + 3);
    assert_eq!(dp.from_pod(&frame(MAC_B, a4, ext4, l4)), DROP, "B's MAC");
    assert_eq!(dp.drops(DropReason::SpoofedMac), mac0 + 1);
    // ARP and neighbour discovery (link-local source) always pass.
    assert_eq!(dp.from_pod(&ether(MAC_A, 0x0806, &[0; 28])), PASS, "ARP");
    let ns = ip_frame(
        MAC_A,
        ip("fe80::1"),
        ip("ff02::1:ff00:2"),
        58,
        &[135, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(dp.from_pod(&ns), PASS, "neighbour solicitation");
    assert_eq!(dp.to_pod(&ns), PASS, "neighbour solicitation in");
    // A pod without an IPv6 address may not send IPv6 at all.
    let mut v4_only = lab.endpoint_a();
    v4_only.flags &= !bulkhead_common::ENDPOINT_HAS_IPV6;
    lab.dp.set_endpoint(0, v4_only);
    assert_eq!(lab.dp.from_pod(&frame(MAC_A, a6, ext6, l4)), DROP);
    assert_eq!(lab.dp.drops(DropReason::SpoofedIp), ip0 + 4);
    lab.dp.ct_clear();
}

/// A first fragment (ID `id`) of a TCP SYN to B's denied port 22.
fn first22_id(lab: &Lab, id: u16) -> Vec<u8> {
    let o = V4 {
        id,
        more: true,
        ..V4::default()
    };
    v4_frame(lab, PROTO_TCP, &tcp(40403, 22, SYN, 5), &o)
}

/// Frame helpers for B's ingress (A → B).
fn v4_frame(lab: &Lab, proto: u8, payload: &[u8], o: &V4) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (lab.a4, lab.b4) else {
        unreachable!()
    };
    ether(MAC_A, 0x0800, &ipv4(s, d, proto, payload, o))
}

fn v6_frame(lab: &Lab, next: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (lab.a6, lab.b6) else {
        unreachable!()
    };
    ether(MAC_A, 0x86dd, &ipv6(s, d, next, payload))
}

#[test]
fn evasion_extension_headers_fragments_vlan_and_bad_headers() {
    let Some(mut lab) = Lab::new() else { return };
    lab.as_b();
    let count = |lab: &mut Lab, r| lab.dp.drops(r);
    let denied0 = count(&mut lab, DropReason::PolicyDenied);

    // IPv6 extension headers before TCP: walked, so the port is found.
    for (port, want) in [(22, DROP), (80, PASS)] {
        let t = tcp(40200 + port, port, SYN, 5);
        let mut ah = vec![6u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // AH: 12 bytes
        ah.extend(&t);
        let chain = ext_header(60, &ext_header(43, &ext_header(51, &ah)));
        assert_eq!(
            lab.dp.to_pod(&v6_frame(&lab, 0, &chain)),
            want,
            "ext headers, port {port}"
        );
    }
    assert_eq!(count(&mut lab, DropReason::PolicyDenied), denied0 + 1);
    let mut long = tcp(40300, 80, SYN, 5);
    for _ in 0..9 {
        long = ext_header(if long.len() == 28 { 6 } else { 60 }, &long);
    }
    let ext0 = count(&mut lab, DropReason::Ipv6ExtHeaders);
    assert_eq!(
        lab.dp.to_pod(&v6_frame(&lab, 60, &long)),
        DROP,
        "9 extension headers"
    );
    assert_eq!(count(&mut lab, DropReason::Ipv6ExtHeaders), ext0 + 1);

    // IPv4 fragments.
    let frag = |id: u16, frag_offset: u16, more: bool| V4 {
        id,
        frag_offset,
        more,
        ..V4::default()
    };
    let untracked0 = count(&mut lab, DropReason::FragmentUntracked);
    let denied1 = count(&mut lab, DropReason::PolicyDenied);
    // First fragment to a denied port, then the rest: neither passes.
    let first22 = v4_frame(&lab, PROTO_TCP, &tcp(40400, 22, SYN, 5), &frag(1, 0, true));
    let rest1 = v4_frame(&lab, PROTO_TCP, &[0u8; 16], &frag(1, 4, false));
    assert_eq!(lab.dp.to_pod(&first22), DROP);
    assert_eq!(lab.dp.to_pod(&rest1), DROP);
    assert_eq!(count(&mut lab, DropReason::PolicyDenied), denied1 + 1);
    assert_eq!(
        count(&mut lab, DropReason::FragmentUntracked),
        untracked0 + 1
    );
    // Allowed port: the first fragment is recorded and the rest follows;
    // the last fragment ends the record, so a replay of it is dropped.
    let first80 = v4_frame(&lab, PROTO_TCP, &tcp(40401, 80, SYN, 5), &frag(2, 0, true));
    let middle2 = v4_frame(&lab, PROTO_TCP, &[0u8; 16], &frag(2, 4, true));
    let last2 = v4_frame(&lab, PROTO_TCP, &[0u8; 16], &frag(2, 6, false));
    assert_eq!(lab.dp.to_pod(&first80), PASS);
    assert_eq!(lab.dp.to_pod(&middle2), PASS);
    let frags = lab.dp.frags_len();
    assert!(frags >= 1);
    assert_eq!(lab.dp.to_pod(&last2), PASS);
    assert_eq!(lab.dp.frags_len(), frags - 1, "the last fragment ends it");
    assert_eq!(lab.dp.to_pod(&last2), DROP, "after the datagram ended");
    // The same ID reused for a denied datagram: its first fragment is
    // dropped and removes any record, so its rest never passes.
    assert_eq!(lab.dp.to_pod(&first80), PASS, "ID 2 again, allowed");
    assert_eq!(
        lab.dp.to_pod(&first22_id(&lab, 2)),
        DROP,
        "ID 2 reused, denied"
    );
    assert_eq!(lab.dp.to_pod(&middle2), DROP, "rest of the denied datagram");
    // A fragment overlapping the TCP header (offset 8 bytes) could rewrite
    // the port: dropped even for an allowed datagram.
    let overlap0 = count(&mut lab, DropReason::FragmentOverlap);
    let overlap = v4_frame(
        &lab,
        PROTO_TCP,
        &tcp(40401, 22, SYN, 5)[8..],
        &frag(2, 1, false),
    );
    assert_eq!(lab.dp.to_pod(&overlap), DROP);
    assert_eq!(count(&mut lab, DropReason::FragmentOverlap), overlap0 + 1);
    // A tiny first fragment (ports but not the whole TCP header).
    let short0 = count(&mut lab, DropReason::FragmentTooShort);
    let tiny = v4_frame(
        &lab,
        PROTO_TCP,
        &tcp(40402, 80, SYN, 5)[..8],
        &frag(3, 0, true),
    );
    assert_eq!(lab.dp.to_pod(&tiny), DROP);
    assert_eq!(count(&mut lab, DropReason::FragmentTooShort), short0 + 1);
    // IPv6 fragments.
    let first6 = |lab: &Lab, port: u16, id: u32| {
        v6_frame(
            lab,
            44,
            &frag_header(6, 0, true, id, &tcp(40500 + port, port, SYN, 5)),
        )
    };
    let rest6 = |lab: &Lab, id: u32| v6_frame(lab, 44, &frag_header(6, 4, false, id, &[0u8; 16]));
    for (port, id, want) in [(22, 9, DROP), (80, 10, PASS)] {
        let (first, rest) = (first6(&lab, port, id), rest6(&lab, id));
        assert_eq!(
            lab.dp.to_pod(&first),
            want,
            "IPv6 first fragment, port {port}"
        );
        assert_eq!(
            lab.dp.to_pod(&rest),
            want,
            "IPv6 later fragment, port {port}"
        );
    }
    assert_eq!(
        count(&mut lab, DropReason::FragmentUntracked),
        untracked0 + 4
    );

    // VLAN tags (pods do not tag): dropped leaving A and entering B.
    let vlan0 = count(&mut lab, DropReason::VlanTagged);
    let inner = ip_of(&frame(MAC_A, lab.a4, lab.b4, tcp_l4(40600, 80, SYN)));
    let tagged = ether_vlan(MAC_A, 7, 0x0800, &inner);
    assert_eq!(lab.dp.to_pod(&tagged), DROP);
    assert_eq!(lab.as_a().from_pod(&tagged), DROP);
    lab.as_b();
    assert_eq!(count(&mut lab, DropReason::VlanTagged), vlan0 + 2);

    // TCP data offset below 5 or beyond the packet.
    let doff0 = count(&mut lab, DropReason::BadTcpDataOffset);
    let no = V4::default();
    assert_eq!(
        lab.dp
            .to_pod(&v4_frame(&lab, PROTO_TCP, &tcp(40700, 80, SYN, 4), &no)),
        DROP
    );
    assert_eq!(
        lab.dp
            .to_pod(&v4_frame(&lab, PROTO_TCP, &tcp(40701, 80, SYN, 15), &no)),
        DROP
    );
    assert_eq!(count(&mut lab, DropReason::BadTcpDataOffset), doff0 + 2);

    // IP options are allowed: the port behind them is still enforced.
    let opts = V4 {
        options: vec![1, 1, 1, 0],
        ..V4::default()
    };
    let denied2 = count(&mut lab, DropReason::PolicyDenied);
    assert_eq!(
        lab.dp
            .to_pod(&v4_frame(&lab, PROTO_TCP, &tcp(40800, 80, SYN, 5), &opts)),
        PASS
    );
    assert_eq!(
        lab.dp
            .to_pod(&v4_frame(&lab, PROTO_TCP, &tcp(40801, 22, SYN, 5), &opts)),
        DROP
    );
    assert_eq!(count(&mut lab, DropReason::PolicyDenied), denied2 + 1);
    // Bad IHL.
    let ihl0 = count(&mut lab, DropReason::BadIpv4Ihl);
    let bad_ihl = V4 {
        ihl: Some(4),
        ..V4::default()
    };
    assert_eq!(
        lab.dp.to_pod(&v4_frame(
            &lab,
            PROTO_TCP,
            &tcp(40900, 80, SYN, 5),
            &bad_ihl
        )),
        DROP
    );
    assert_eq!(count(&mut lab, DropReason::BadIpv4Ihl), ihl0 + 1);
    lab.dp.ct_clear();
}

#[test]
fn xdp_prefilter_drops_spoofed_and_denied_new_flows_but_never_replies() {
    let Some(mut lab) = Lab::new() else { return };
    let (a4, b4, ext4) = (lab.a4, lab.b4, lab.ext4);
    let dp = lab.as_a();
    let (ip0, mac0, denied0) = (
        dp.drops(DropReason::SpoofedIp),
        dp.drops(DropReason::SpoofedMac),
        dp.drops(DropReason::PolicyDenied),
    );
    let syn = frame(MAC_A, a4, b4, tcp_l4(41000, 80, SYN));
    assert_eq!(dp.xdp(&syn), XDP_PASS, "allowed new flow");
    assert_eq!(
        dp.xdp(&frame(MAC_A, ip("10.0.0.99"), ext4, tcp_l4(1, 80, SYN))),
        XDP_DROP
    );
    assert_eq!(
        dp.xdp(&frame(MAC_B, a4, ext4, tcp_l4(1, 80, SYN))),
        XDP_DROP
    );
    assert_eq!(
        dp.xdp(&frame(MAC_A, a4, b4, tcp_l4(41001, 22, SYN))),
        XDP_DROP,
        "denied"
    );
    assert_eq!(dp.drops(DropReason::SpoofedIp), ip0 + 1);
    assert_eq!(dp.drops(DropReason::SpoofedMac), mac0 + 1);
    assert_eq!(dp.drops(DropReason::PolicyDenied), denied0 + 1);
    // Left for from_pod: non-IP, malformed, fragments.
    assert_eq!(dp.xdp(&ether(MAC_A, 0x0806, &[0; 28])), XDP_PASS, "ARP");
    let bad = V4 {
        ihl: Some(4),
        ..V4::default()
    };
    let (IpAddr::V4(s), IpAddr::V4(d)) = (a4, b4) else {
        unreachable!()
    };
    let malformed = ether(
        MAC_A,
        0x0800,
        &ipv4(s, d, PROTO_TCP, &tcp(1, 22, SYN, 5), &bad),
    );
    assert_eq!(
        dp.xdp(&malformed),
        XDP_PASS,
        "malformed: from_pod counts it"
    );

    // B's egress denies everything, yet its reply of A's connection passes.
    assert_eq!(lab.as_a().from_pod(&syn), PASS);
    assert_eq!(lab.as_b().to_pod(&syn), PASS);
    let synack = frame(MAC_B, b4, a4, tcp_l4(80, 41000, SYN | ACK));
    assert_eq!(
        lab.as_b().xdp(&synack),
        XDP_PASS,
        "reply of an allowed connection"
    );
    let new_from_b = frame(MAC_B, b4, a4, tcp_l4(41002, 80, SYN));
    assert_eq!(lab.dp.xdp(&new_from_b), XDP_DROP, "B's new flow");
    assert_eq!(lab.dp.drops(DropReason::PolicyDenied), denied0 + 2);
    lab.dp.ct_clear();
}
