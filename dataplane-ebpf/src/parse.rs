//! Evasion-proof packet parsing, shared by the TC and XDP programs.
//!
//! Reads go through the [`Packet`] trait: directly from the linear packet
//! data when it holds the bytes (bounds-checked against `data_end`, which
//! the verifier checks too), else through `bpf_skb_load_bytes` /
//! `bpf_xdp_load_bytes`, which also read non-linear packets (the same bytes
//! either way, so the verdict never depends on the path). A helper call per
//! header cost about as much as the rest of the parse.
//!
//! Deliberate choices (each drop is counted under its `DropReason`):
//! - **VLAN tags**: pods do not tag. A tagged frame (802.1Q/802.1ad in the
//!   data, or a tag already moved to skb metadata) is dropped: `VlanTagged`.
//! - **IPv4 options** are allowed: the L4 header is found through IHL, so
//!   options cannot hide it. IHL below 5 or beyond the total length:
//!   `BadIpv4Ihl`. A total length beyond the packet: `Malformed`.
//! - **IPv6 extension headers** (hop-by-hop, routing, destination options,
//!   fragment, AH) are walked, at most `IPV6_EXT_HEADERS_MAX` (8); a longer
//!   chain is dropped: `Ipv6ExtHeaders`. ESP and "no next header" are L4
//!   protocols without ports.
//! - **Fragments are tracked** (IPv4 and IPv6): a first fragment must hold
//!   the whole L4 header (TCP: its data offset; UDP 8, SCTP 12, ICMP 8 bytes),
//!   else `FragmentTooShort`; it is then judged like any packet and, if it
//!   passes, recorded in FRAGS (src, dst, id, proto, device, hook); if it
//!   is dropped, any older record under that key is removed, so a reused
//!   ID never lets a denied datagram's fragments through. A later
//!   fragment whose offset is below the minimal L4 header end overlaps it
//!   (`FragmentOverlap`); otherwise it passes only with a FRAGS entry from
//!   its first fragment at the same hook, no older than the kernel's
//!   reassembly timeout (`FragmentUntracked`), unless the endpoint is
//!   isolated in neither direction. The last fragment ends the record.
//!   Fragments arriving before their first fragment are therefore dropped
//!   for isolated pods (Linux sends them in order, and veth keeps it).
//! - **TCP** data offset below 5 or beyond the packet: `BadTcpDataOffset`.
//! - **ICMP/ICMPv6**: echo request/reply are tracked with the identifier as
//!   a port; errors (v4: unreachable, time exceeded, parameter problem; v6:
//!   unreachable, packet too big, time exceeded, parameter problem) carry the
//!   embedded tuple so conntrack can pass them as related; neighbour
//!   discovery (133-137) and MLD (130-132, 143), link-local control traffic,
//!   always pass; other types are judged by policy without tracking.
//! - Non-IP (ARP, LLDP, ...) passes.

use aya_ebpf::bindings::bpf_fib_lookup;
use bulkhead_common::{
    CtKey, DropReason, FlowKey, FlowValue, IPV6_EXT_HEADERS_MAX, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};

use core::mem::{align_of, offset_of};

use crate::flowlog::Meta;

/// EtherType of IPv4.
const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q tag.
const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad tag.
const ETH_P_8021AD: u16 = 0x88A8;
/// Ethernet header length.
const ETH_HLEN: usize = 14;

/// Packet bytes, read with the kernel's bounds-checked load helpers.
pub trait Packet {
    /// Reads a `T` at byte offset `off`; `Malformed` past the end.
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason>;
    /// Length of the packet in bytes.
    fn len(&self) -> usize;
}

/// The Ethernet header.
pub struct Eth {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// EtherType (host order).
    pub ether_type: u16,
}

/// Reads the Ethernet header.
#[inline(always)]
pub fn eth<P: Packet>(pkt: &P) -> Result<Eth, DropReason> {
    let h: [u8; ETH_HLEN] = pkt.load(0)?;
    Ok(Eth {
        src_mac: [h[6], h[7], h[8], h[9], h[10], h[11]],
        ether_type: u16::from_be_bytes([h[12], h[13]]),
    })
}

/// What a packet is, for conntrack and policy. (`repr(u8)` with a zero
/// variant: the scratch map starts zeroed.)
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Tracked in CT by its 5-tuple (TCP, UDP, SCTP, echo, other protocols).
    Flow = 0,
    /// ICMP that is not tracked (no echo, no error): judged by policy only.
    Untracked,
    /// ICMP error whose embedded packet is `Parsed::inner`.
    IcmpError,
    /// Neighbour discovery / MLD: always passes.
    LinkControl,
}

/// Fragment state of a packet (`Parsed::frag_id` names the datagram).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Frag {
    /// Not a fragment (IPv6 atomic fragments count as not fragmented).
    No = 0,
    /// The first fragment of a datagram.
    First = 1,
    /// A later fragment (no L4 header here).
    Later = 2,
}

/// What the programs need from an IP packet. It lives in a per-CPU scratch
/// map (`maps::SCRATCH`), not on the stack, and is filled in place.
///
/// Aligned to 8 with the tuples at 8-aligned offsets, so addresses, ports
/// and padding are written as whole words ([`Tuple`]) rather than byte by
/// byte (which the compiler turns into `memset` loops).
#[repr(C, align(8))]
pub struct Parsed {
    /// The packet's flow key. `key.tuple` is the CT tuple of this packet as
    /// sent (ports per `CtKey`'s rules) until `flowlog::account`, which
    /// makes it the flow's key (original direction, endpoint, side).
    pub key: FlowKey,
    /// The tuple of the packet embedded in an ICMP error, as it was sent
    /// (its source is the error's destination).
    pub inner: CtKey,
    /// `key.tuple` reversed (conntrack's reply lookup), when computed.
    pub rev: CtKey,
    /// A Service connection's tuple as the client's egress is judged on
    /// it: the client's own address and port to the backend (`service`).
    pub xlate: CtKey,
    /// IP identification of a fragment's datagram.
    pub frag_id: u32,
    /// Destination port for policy (0 for protocols without ports and ICMP).
    pub policy_port: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// What it is.
    pub kind: Kind,
    /// Fragment state.
    pub frag: Frag,
    /// More fragments follow (the fragment's MF flag): false on the last.
    pub frag_more: bool,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// `inner` holds the embedded packet of a `Kind::IcmpError`.
    pub has_inner: bool,
    /// What the verdict path learnt for flow accounting.
    pub flow: Meta,
    /// The packet's own flow delta (a new entry's value, an event's).
    pub fval: FlowValue,
    /// Host routing's FIB query and answer (`hostroute`).
    pub fib: bpf_fib_lookup,
}
const _: () = assert!(align_of::<Parsed>() == 8);
const _: () = assert!(offset_of!(Parsed, key) % 8 == 0);
const _: () = assert!(offset_of!(Parsed, inner) % 8 == 0);
const _: () = assert!(offset_of!(Parsed, rev) % 8 == 0);
const _: () = assert!(offset_of!(Parsed, xlate) % 8 == 0);

/// Whole-word writes into a `CtKey` that sits at an 8-aligned address (the
/// tuples of [`Parsed`]; see the asserts above).
pub struct Tuple(*mut CtKey);

impl Tuple {
    /// `key.tuple` of `p`.
    #[inline(always)]
    pub fn key(p: &mut Parsed) -> Self {
        Self(&raw mut p.key.tuple)
    }

    /// `inner` of `p`.
    #[inline(always)]
    pub fn inner(p: &mut Parsed) -> Self {
        Self(&raw mut p.inner)
    }

    #[inline(always)]
    fn word(&self, off: usize) -> *mut u32 {
        // SAFETY: `off` < 40 is within the key, and the key is 8-aligned
        // (only `Parsed`'s tuples are wrapped), so the word is aligned.
        unsafe { self.0.cast::<u8>().add(off).cast::<u32>() }
    }

    /// Source (`dst` false) or destination address: IPv4 `a` mapped into
    /// IPv6 (`::ffff:a`).
    #[inline(always)]
    pub fn set_v4(&self, dst: bool, a: [u8; 4]) {
        let base = if dst { 16 } else { 0 };
        // SAFETY: aligned words within the key (see `word`).
        unsafe {
            self.word(base).write(0);
            self.word(base + 4).write(0);
            self.word(base + 8)
                .write(u32::from_le_bytes([0, 0, 0xff, 0xff]));
            self.word(base + 12).write(u32::from_le_bytes(a));
        }
    }

    /// Source and destination port.
    #[inline(always)]
    pub fn set_ports(&self, sport: u16, dport: u16) {
        // SAFETY: an aligned word within the key (see `word`); `sport`
        // then `dport` in memory order.
        unsafe {
            self.word(32)
                .write(u32::from(sport) | u32::from(dport) << 16)
        };
    }

    /// Protocol, and the padding zeroed.
    #[inline(always)]
    pub fn set_proto(&self, proto: u8) {
        // SAFETY: an aligned word within the key (see `word`): `proto`
        // then three bytes of padding.
        unsafe { self.word(36).write(u32::from(proto)) };
    }
}

/// Copies `from` into `to` (both `Parsed` tuples: 8-aligned) word by word.
#[inline(always)]
pub fn copy_into(from: &CtKey, to: &mut CtKey) {
    let f = core::ptr::from_ref(from).cast::<u64>();
    let t = core::ptr::from_mut(to).cast::<u64>();
    // SAFETY: both keys are 8-aligned (`Parsed` fields), 40 bytes: five
    // words.
    unsafe {
        for i in 0..5 {
            t.add(i).write(f.add(i).read());
        }
    }
}

/// Copies the reverse of `from` into `to` (both `Parsed` tuples: 8-aligned)
/// word by word.
#[inline(always)]
pub fn reverse_into(from: &CtKey, to: &mut CtKey) {
    let f = core::ptr::from_ref(from).cast::<u64>();
    let t = core::ptr::from_mut(to).cast::<u64>();
    // SAFETY: both keys are 8-aligned (`Parsed` fields), 40 bytes: five
    // words; words 0-1 are `src`, 2-3 `dst`, 4 ports, protocol and padding.
    unsafe {
        t.write(f.add(2).read());
        t.add(1).write(f.add(3).read());
        t.add(2).write(f.read());
        t.add(3).write(f.add(1).read());
        let w = f.add(4).read();
        // Little-endian: sport is bits 0-15, dport 16-31.
        let swapped = (w & !0xffff_ffff) | (w & 0xffff) << 16 | (w >> 16) & 0xffff;
        t.add(4).write(swapped);
    }
}

#[inline(always)]
fn be16(a: u8, b: u8) -> u16 {
    u16::from_be_bytes([a, b])
}

/// Parses the IP layer of a frame with `ether_type` into `p`: `Ok(false)`
/// for non-IP.
#[inline(always)]
pub fn ip<P: Packet>(pkt: &P, ether_type: u16, p: &mut Parsed) -> Result<bool, DropReason> {
    p.policy_port = 0;
    p.tcp_flags = 0;
    p.kind = Kind::Flow;
    p.frag = Frag::No;
    p.has_inner = false;
    Tuple::key(p).set_ports(0, 0);
    match ether_type {
        ETH_P_IP => ipv4(pkt, ETH_HLEN, p).map(|()| true),
        ETH_P_IPV6 => ipv6(pkt, ETH_HLEN, p).map(|()| true),
        ETH_P_8021Q | ETH_P_8021AD => Err(DropReason::VlanTagged),
        _ => Ok(false),
    }
}

#[inline(always)]
fn ipv4<P: Packet>(pkt: &P, off: usize, p: &mut Parsed) -> Result<(), DropReason> {
    let h: [u8; 12] = pkt.load(off)?;
    if h[0] >> 4 != 4 {
        return Err(DropReason::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(be16(h[2], h[3]));
    if ihl < 20 || ihl > total {
        return Err(DropReason::BadIpv4Ihl);
    }
    let end = off + total;
    if end > pkt.len() {
        return Err(DropReason::Malformed);
    }
    let id = u32::from(be16(h[4], h[5]));
    let frag_field = be16(h[6], h[7]);
    let more = frag_field & 0x2000 != 0;
    let frag_off = usize::from(frag_field & 0x1fff) * 8;
    p.frag_id = id;
    p.frag_more = more;
    p.frag = match (frag_off, more) {
        (0, false) => Frag::No,
        (0, true) => Frag::First,
        _ => Frag::Later,
    };
    let a: [u8; 8] = pkt.load(off + 12)?;
    p.v6 = false;
    let t = Tuple::key(p);
    t.set_v4(false, [a[0], a[1], a[2], a[3]]);
    t.set_v4(true, [a[4], a[5], a[6], a[7]]);
    t.set_proto(h[9]);
    l4(pkt, off + ihl, end, frag_off, p)
}

#[inline(always)]
fn ipv6<P: Packet>(pkt: &P, off: usize, p: &mut Parsed) -> Result<(), DropReason> {
    let h: [u8; 8] = pkt.load(off)?;
    if h[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let end = off + 40 + usize::from(be16(h[4], h[5]));
    if end > pkt.len() {
        return Err(DropReason::Malformed);
    }
    p.v6 = true;
    p.key.tuple.src = pkt.load(off + 8)?;
    p.key.tuple.dst = pkt.load(off + 24)?;
    let mut next = h[6];
    let mut cur = off + 40;
    let mut frag_off = 0;
    // verifier: a constant trip count keeps the walk bounded (the loop is
    // unrolled or verified as a bounded loop).
    let mut walked = 0;
    while walked < IPV6_EXT_HEADERS_MAX {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet
            // units, not counting the first 8.
            0 | 43 | 60 => {
                let e: [u8; 2] = pkt.load(cur)?;
                next = e[0];
                cur += (usize::from(e[1]) + 1) * 8;
            }
            // AH: length in 4-octet units, not counting the first 2.
            51 => {
                let e: [u8; 2] = pkt.load(cur)?;
                next = e[0];
                cur += (usize::from(e[1]) + 2) * 4;
            }
            44 => {
                let f: [u8; 8] = pkt.load(cur)?;
                next = f[0];
                cur += 8;
                let field = be16(f[2], f[3]);
                frag_off = usize::from(field & 0xfff8);
                let more = field & 1 != 0;
                let id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                p.frag_id = id;
                p.frag_more = more;
                p.frag = match (frag_off, more) {
                    (0, false) => Frag::No,
                    (0, true) => Frag::First,
                    _ => Frag::Later,
                };
                if frag_off != 0 {
                    // What follows is payload from the middle of the datagram.
                    break;
                }
            }
            _ => break,
        }
        walked += 1;
    }
    if p.frag != Frag::Later && matches!(next, 0 | 43 | 60 | 51 | 44) {
        return Err(DropReason::Ipv6ExtHeaders);
    }
    if cur > end {
        return Err(DropReason::Malformed);
    }
    Tuple::key(p).set_proto(next);
    l4(pkt, cur, end, frag_off, p)
}

/// Minimal L4 header length the policy needs for `proto`.
#[inline(always)]
pub fn l4_min_len(proto: u8) -> usize {
    match proto {
        PROTO_TCP => 20,
        PROTO_SCTP => 12,
        PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6 => 8,
        _ => 0,
    }
}

#[inline(always)]
fn l4<P: Packet>(
    pkt: &P,
    off: usize,
    end: usize,
    frag_off: usize,
    p: &mut Parsed,
) -> Result<(), DropReason> {
    let proto = p.key.tuple.proto;
    if p.frag == Frag::Later {
        if frag_off < l4_min_len(proto) {
            return Err(DropReason::FragmentOverlap);
        }
        return Ok(());
    }
    let first = p.frag == Frag::First;
    if off > end || end - off < l4_min_len(proto) {
        return Err(if first {
            DropReason::FragmentTooShort
        } else {
            DropReason::Malformed
        });
    }
    let avail = end - off;
    let icmp = if p.v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    match proto {
        PROTO_TCP => {
            let t: [u8; 14] = pkt.load(off)?;
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 {
                return Err(DropReason::BadTcpDataOffset);
            }
            if doff > avail {
                return Err(if first {
                    DropReason::FragmentTooShort
                } else {
                    DropReason::BadTcpDataOffset
                });
            }
            let dport = be16(t[2], t[3]);
            Tuple::key(p).set_ports(be16(t[0], t[1]), dport);
            p.policy_port = dport;
            p.tcp_flags = t[13];
        }
        PROTO_UDP | PROTO_SCTP => {
            let ports: [u8; 4] = pkt.load(off)?;
            let dport = be16(ports[2], ports[3]);
            Tuple::key(p).set_ports(be16(ports[0], ports[1]), dport);
            p.policy_port = dport;
        }
        x if x == icmp => {
            let i: [u8; 8] = pkt.load(off)?;
            let id = be16(i[4], i[5]);
            match (p.v6, i[0]) {
                (false, 8) | (true, 128) => Tuple::key(p).set_ports(id, 0),
                (false, 0) | (true, 129) => Tuple::key(p).set_ports(0, id),
                (false, 3 | 11 | 12) | (true, 1..=4) => {
                    p.kind = Kind::IcmpError;
                    p.has_inner = inner(pkt, off + 8, p).is_ok();
                }
                (true, 130..=137 | 143) => p.kind = Kind::LinkControl,
                _ => p.kind = Kind::Untracked,
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the tuple of the packet embedded in an ICMP error at `off` into
/// `p.inner`; `Err` if it cannot be read or is not trackable (TCP, UDP,
/// SCTP, echo). IPv6 extension headers in the embedded packet are not
/// walked (such errors are judged by policy like other ICMP).
#[inline(always)]
fn inner<P: Packet>(pkt: &P, off: usize, p: &mut Parsed) -> Result<(), DropReason> {
    let l4_off = if p.v6 {
        let h: [u8; 8] = pkt.load(off)?;
        p.inner.src = pkt.load(off + 8)?;
        p.inner.dst = pkt.load(off + 24)?;
        Tuple::inner(p).set_proto(h[6]);
        off + 40
    } else {
        let h: [u8; 20] = pkt.load(off)?;
        let t = Tuple::inner(p);
        t.set_v4(false, [h[12], h[13], h[14], h[15]]);
        t.set_v4(true, [h[16], h[17], h[18], h[19]]);
        t.set_proto(h[9]);
        off + usize::from(h[0] & 0x0f) * 4
    };
    Tuple::inner(p).set_ports(0, 0);
    let l4: [u8; 8] = pkt.load(l4_off)?;
    let icmp = if p.v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    match p.inner.proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            Tuple::inner(p).set_ports(be16(l4[0], l4[1]), be16(l4[2], l4[3]));
        }
        x if x == icmp => match (p.v6, l4[0]) {
            (false, 8) | (true, 128) => Tuple::inner(p).set_ports(be16(l4[4], l4[5]), 0),
            (false, 0) | (true, 129) => Tuple::inner(p).set_ports(0, be16(l4[4], l4[5])),
            _ => return Err(DropReason::Malformed),
        },
        _ => return Err(DropReason::Malformed),
    }
    Ok(())
}
