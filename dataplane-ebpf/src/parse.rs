//! Packet parsing for the TC programs: Ethernet, IPv4 or IPv6, and the
//! destination port of TCP, UDP and SCTP.
//!
//! Reads go through `bpf_skb_load_bytes` (`TcContext::load`): the kernel
//! checks every read against the packet length and it works on non-linear
//! skbs (GSO traffic on veths), so no `bpf_skb_pull_data` is needed. Direct
//! packet access can replace it later where it measurably pays.
//!
//! Not handled yet: IPv6 extension headers and VLAN tags (see [`L4`]).

use aya_ebpf::programs::TcContext;
use bulkhead_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

/// EtherType of IPv4, host order.
const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6, host order.
const ETH_P_IPV6: u16 = 0x86DD;

/// A packet that claims to be IP but whose headers cannot be read.
pub struct Malformed;

/// What the policy needs from an IP packet.
pub struct L4 {
    /// Source address, IPv4 mapped into IPv6.
    pub src: [u8; 16],
    /// IP protocol (IPv6: the first next header, as extension headers are not
    /// walked yet, so a packet with one only matches any-protocol rules).
    pub proto: u8,
    /// Destination port, host order; 0 for protocols without ports and for
    /// IPv4 fragments after the first (only port-wildcard rules match them).
    pub dport: u16,
}

/// The first four bytes of TCP, UDP and SCTP headers alike: the ports.
#[repr(C)]
struct Ports {
    _src: [u8; 2],
    dst: [u8; 2],
}

/// Parses an Ethernet frame: `Ok(None)` when it is not IP (ARP and the
/// like), `Err` when an IP header is cut short.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Option<L4>, Malformed> {
    let eth: EthHdr = ctx.load(0).map_err(|_| Malformed)?;
    // `ether_type` is stored in network byte order.
    match u16::from_be(eth.ether_type) {
        ETH_P_IP => parse_ipv4(ctx, EthHdr::LEN).map(Some),
        ETH_P_IPV6 => parse_ipv6(ctx, EthHdr::LEN).map(Some),
        _ => Ok(None),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &TcContext, off: usize) -> Result<L4, Malformed> {
    let ip: Ipv4Hdr = ctx.load(off).map_err(|_| Malformed)?;
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    if ihl < Ipv4Hdr::LEN {
        return Err(Malformed);
    }
    let mut src = [0u8; 16];
    src[10] = 0xff;
    src[11] = 0xff;
    src[12..].copy_from_slice(&ip.src_addr);
    // Fragment offset (low 13 bits): non-zero means no L4 header here.
    let later_fragment = u16::from_be_bytes(ip.frags) & 0x1fff != 0;
    let dport = if later_fragment {
        0
    } else {
        dport(ctx, ip.proto, off + ihl)?
    };
    Ok(L4 {
        src,
        proto: ip.proto,
        dport,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &TcContext, off: usize) -> Result<L4, Malformed> {
    let ip: Ipv6Hdr = ctx.load(off).map_err(|_| Malformed)?;
    let dport = dport(ctx, ip.next_hdr, off + Ipv6Hdr::LEN)?;
    Ok(L4 {
        src: ip.src_addr,
        proto: ip.next_hdr,
        dport,
    })
}

/// Destination port of a TCP, UDP or SCTP header at `off`; 0 for others.
#[inline(always)]
fn dport(ctx: &TcContext, proto: u8, off: usize) -> Result<u16, Malformed> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            let ports: Ports = ctx.load(off).map_err(|_| Malformed)?;
            Ok(u16::from_be_bytes(ports.dst))
        }
        _ => Ok(0),
    }
}
