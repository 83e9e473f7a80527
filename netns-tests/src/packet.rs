//! Crafted frames for `BPF_PROG_TEST_RUN`: Ethernet, optional VLAN tag,
//! IPv4 (options, fragments) or IPv6 (extension headers), and TCP, UDP,
//! SCTP or ICMP/ICMPv6 headers. Checksums are left zero (the programs do not
//! check them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulkhead_common::{PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// MAC of the host side, the destination of frames a pod sends.
pub const HOST_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];

/// An L4 header to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with these flags (data offset 5).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte (SYN = 0x02, ACK = 0x10, ...).
        flags: u8,
    },
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// SCTP common header.
    Sctp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP/ICMPv6 echo request.
    EchoRequest {
        /// Identifier.
        id: u16,
    },
    /// ICMP/ICMPv6 echo reply.
    EchoReply {
        /// Identifier.
        id: u16,
    },
}

/// TCP SYN.
pub const SYN: u8 = 0x02;
/// TCP ACK.
pub const ACK: u8 = 0x10;

impl L4 {
    /// IP protocol number for a packet of family `v6`.
    pub fn proto(self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Sctp { .. } => PROTO_SCTP,
            L4::EchoRequest { .. } | L4::EchoReply { .. } if v6 => PROTO_ICMPV6,
            L4::EchoRequest { .. } | L4::EchoReply { .. } => PROTO_ICMP,
        }
    }

    /// Destination port as policy sees it (0 for ICMP).
    pub fn policy_port(self) -> u16 {
        match self {
            L4::Tcp { dport, .. } | L4::Udp { dport, .. } | L4::Sctp { dport, .. } => dport,
            _ => 0,
        }
    }

    /// The header of the opposite direction (ports swapped, echo answered,
    /// TCP SYN → SYN+ACK, else ACK).
    pub fn reply(self) -> L4 {
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => L4::Tcp {
                sport: dport,
                dport: sport,
                flags: if flags & SYN != 0 { SYN | ACK } else { ACK },
            },
            L4::Udp { sport, dport } => L4::Udp {
                sport: dport,
                dport: sport,
            },
            L4::Sctp { sport, dport } => L4::Sctp {
                sport: dport,
                dport: sport,
            },
            L4::EchoRequest { id } => L4::EchoReply { id },
            L4::EchoReply { id } => L4::EchoRequest { id },
        }
    }

    /// The header bytes (plus 8 bytes of payload) for family `v6`.
    pub fn bytes(self, v6: bool) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => return tcp(sport, dport, flags, 5),
            L4::Udp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(16u16.to_be_bytes());
                b.extend([0, 0]);
            }
            L4::Sctp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend([0; 8]);
            }
            L4::EchoRequest { id } | L4::EchoReply { id } => {
                let request = matches!(self, L4::EchoRequest { .. });
                let ty = match (v6, request) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                };
                b.extend([ty, 0, 0, 0]);
                b.extend(id.to_be_bytes());
                b.extend(1u16.to_be_bytes());
            }
        }
        b.extend([0xab; 8]);
        b
    }
}

/// A TCP header with data offset `doff` (words; the header is always 20
/// bytes here, plus zeroed options up to `doff` when larger), plus 8 bytes.
pub fn tcp(sport: u16, dport: u16, flags: u8, doff: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(sport.to_be_bytes());
    b.extend(dport.to_be_bytes());
    b.extend([0, 0, 0, 1, 0, 0, 0, 0]);
    b.extend([doff << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    b.extend([0xab; 8]);
    b
}

/// Ethernet frame.
pub fn ether(src_mac: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend(src_mac);
    f.extend(ether_type.to_be_bytes());
    f.extend(payload);
    f
}

/// Ethernet frame with an 802.1Q tag.
pub fn ether_vlan(src_mac: [u8; 6], vid: u16, ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = vid.to_be_bytes().to_vec();
    inner.extend(ether_type.to_be_bytes());
    inner.extend(payload);
    ether(src_mac, 0x8100, &inner)
}

/// IPv4 header options and fragmentation.
#[derive(Clone, Debug, Default)]
pub struct V4 {
    /// Options (padded to 4 bytes with NOPs... callers pass whole words).
    pub options: Vec<u8>,
    /// Identification.
    pub id: u16,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// More fragments.
    pub more: bool,
    /// Override of the IHL nibble (to build bad headers).
    pub ihl: Option<u8>,
}

/// IPv4 packet (no Ethernet).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8], o: &V4) -> Vec<u8> {
    let hlen = 20 + o.options.len();
    let ihl = o.ihl.unwrap_or((hlen / 4) as u8);
    let total = (hlen + payload.len()) as u16;
    let mut frag = o.frag_offset & 0x1fff;
    if o.more {
        frag |= 0x2000;
    }
    let mut p = vec![0x40 | ihl, 0];
    p.extend(total.to_be_bytes());
    p.extend(o.id.to_be_bytes());
    p.extend(frag.to_be_bytes());
    p.extend([64, proto, 0, 0]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(&o.options);
    p.extend(payload);
    p
}

/// IPv6 packet (no Ethernet); `payload` starts with the header `next` names.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([next, 64]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(payload);
    p
}

/// An 8-byte IPv6 options-style extension header (hop-by-hop, routing,
/// destination options) followed by `rest`.
pub fn ext_header(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0]; // PadN option fills it
    h.extend(rest);
    h
}

/// An IPv6 fragment header followed by `rest`.
pub fn frag_header(next: u8, offset_units: u16, more: bool, id: u32, rest: &[u8]) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend(field.to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(rest);
    h
}

/// A whole frame from `src` to `dst` (same family) carrying `l4`.
pub fn frame(src_mac: [u8; 6], src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    ip_frame(
        src_mac,
        src,
        dst,
        l4.proto(src.is_ipv6()),
        &l4.bytes(src.is_ipv6()),
    )
}

/// A frame with IP from `src` to `dst` and raw L4 bytes.
pub fn ip_frame(src_mac: [u8; 6], src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ether(src_mac, 0x0800, &ipv4(s, d, proto, l4, &V4::default()))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => ether(src_mac, 0x86dd, &ipv6(s, d, proto, l4)),
        _ => panic!("mixed families: {src} -> {dst}"),
    }
}

/// An ICMP (v4) or ICMPv6 error of `ty` from `src` to `dst` embedding
/// `inner` (an IP packet without Ethernet).
pub fn icmp_error(src_mac: [u8; 6], src: IpAddr, dst: IpAddr, ty: u8, inner: &[u8]) -> Vec<u8> {
    let mut l4 = vec![ty, 0, 0, 0, 0, 0, 0, 0];
    l4.extend(inner);
    let proto = if src.is_ipv6() {
        PROTO_ICMPV6
    } else {
        PROTO_ICMP
    };
    ip_frame(src_mac, src, dst, proto, &l4)
}

/// The IP packet (no Ethernet) of `frame`.
pub fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// The differential tests' packet kinds, by `kind % 4`: a TCP SYN, UDP,
/// SCTP or an ICMP echo request (identifier `sport`), with the kind's
/// name.
pub fn probe_l4(kind: usize, sport: u16, dport: u16) -> (L4, &'static str) {
    match kind % 4 {
        0 => (
            L4::Tcp {
                sport,
                dport,
                flags: SYN,
            },
            "TCP",
        ),
        1 => (L4::Udp { sport, dport }, "UDP"),
        2 => (L4::Sctp { sport, dport }, "SCTP"),
        _ => (L4::EchoRequest { id: sport }, "ICMP"),
    }
}

/// The ports of `l4`'s CT tuple (an echo request: its identifier, 0).
pub fn ct_ports(l4: L4) -> (u16, u16) {
    match l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } | L4::Sctp { sport, dport } => {
            (sport, dport)
        }
        L4::EchoRequest { id } => (id, 0),
        L4::EchoReply { id } => (0, id),
    }
}
