//! Host routing (`CONFIG_F_HOST_ROUTING`): `from_pod` hands a packet for
//! another pod on this node straight to that pod (`bpf_redirect_peer`),
//! as the node would have forwarded it, instead of sending it through the
//! node's IP stack and the destination's host veth.
//!
//! The node's FIB stays the authority: only a packet the node would
//! forward (`bpf_fib_lookup` from the source's host veth, so policy
//! routing and `ip_forward` count) to a device that is a known endpoint,
//! with a resolved neighbour and within that device's MTU, is delivered
//! here; anything else takes the stack. The frame is rewritten as
//! forwarding would: the route's MACs, TTL or hop limit one less (a packet
//! whose TTL would expire takes the stack, which answers it).
//!
//! The caller judges the destination's ingress side ([`crate::programs`])
//! between [`route`] and [`redirect`], since `to_pod` never sees a
//! redirected packet.

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_RECOMPUTE_CSUM, bpf_fib_lookup},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect_peer, bpf_skb_store_bytes},
    programs::TcContext,
};

use crate::parse::Parsed;

/// `AF_INET`.
const AF_INET: u8 = 2;
/// `AF_INET6`.
const AF_INET6: u8 = 10;
/// Offset of the IP header (VLAN-tagged frames never get here).
const IP_OFF: usize = 14;
/// IPv4: offset of the TTL in the header.
const V4_TTL: usize = 8;
/// IPv4: offset of the header checksum.
const V4_CHECK: usize = 10;
/// IPv6: offset of the hop limit in the header.
const V6_HOP_LIMIT: usize = 7;

/// Looks up the node's route for the packet in `p` (parsed: a tracked flow,
/// not a fragment) that arrived on `ifindex`, into `p.fib`: `Some(egress
/// ifindex)` when the node forwards it there with a resolved neighbour,
/// within that device's MTU, and its TTL allows forwarding. Reads only;
/// [`rewrite`] then changes the frame.
#[inline(always)]
pub fn route(ctx: &TcContext, ifindex: u32, p: &mut Parsed) -> Option<u32> {
    let hdr = if p.v6 { 40 } else { 20 };
    let data = ctx.data();
    if data + IP_OFF + hdr > ctx.data_end() {
        return None;
    }
    let ip = (data + IP_OFF) as *const u8;
    // SAFETY: within the linear data (checked above).
    let ttl = unsafe { *ip.add(if p.v6 { V6_HOP_LIMIT } else { V4_TTL }) };
    if ttl <= 1 {
        return None;
    }
    let t = &p.key.tuple;
    let f = &mut p.fib;
    f.ifindex = ifindex;
    f.l4_protocol = t.proto;
    f.sport = t.sport.to_be();
    f.dport = t.dport.to_be();
    // 0: the kernel checks the skb itself against the egress device's MTU
    // (GSO-aware).
    f.__bindgen_anon_1.tot_len = 0;
    // SAFETY: the header is within the linear data (checked above); the
    // unions are plain words.
    unsafe {
        if p.v6 {
            f.family = AF_INET6;
            // Traffic class and flow label, as the kernel's flowinfo.
            f.__bindgen_anon_2.flowinfo =
                (ip as *const u32).read_unaligned() & 0x0fff_ffffu32.to_be();
            f.__bindgen_anon_3.ipv6_src = core::mem::transmute::<[u8; 16], [u32; 4]>(t.src);
            f.__bindgen_anon_4.ipv6_dst = core::mem::transmute::<[u8; 16], [u32; 4]>(t.dst);
        } else {
            f.family = AF_INET;
            f.__bindgen_anon_2.tos = *ip.add(1);
            f.__bindgen_anon_3.ipv4_src =
                u32::from_ne_bytes([t.src[12], t.src[13], t.src[14], t.src[15]]);
            f.__bindgen_anon_4.ipv4_dst =
                u32::from_ne_bytes([t.dst[12], t.dst[13], t.dst[14], t.dst[15]]);
        }
    }
    // SAFETY: `f` is a `bpf_fib_lookup` in the scratch map, of that size.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), f, size_of::<bpf_fib_lookup>() as i32, 0) };
    (rc == 0).then_some(f.ifindex)
}

/// Rewrites the frame in `ctx` as the node forwards it along the route
/// [`route`] found: the route's source and destination MACs, TTL (IPv4,
/// checksum updated in place) or hop limit (IPv6) one less. `false` (the
/// frame untouched) when the headers are not in the linear data or the
/// skb cannot be made writable.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, p: &Parsed) -> bool {
    let hdr = if p.v6 { 40 } else { 20 };
    if p.v6 {
        let data = ctx.data();
        if data + IP_OFF + hdr > ctx.data_end() {
            return false;
        }
        // SAFETY: within the linear data (checked above).
        let hop_limit = unsafe { *((data + IP_OFF + V6_HOP_LIMIT) as *const u8) } - 1;
        // The helper keeps a CHECKSUM_COMPLETE skb's sum right (the hop
        // limit is in no header checksum, but in the skb's).
        // SAFETY: one byte from the stack into the packet.
        let rc = unsafe {
            bpf_skb_store_bytes(
                ctx.as_ptr().cast(),
                (IP_OFF + V6_HOP_LIMIT) as u32,
                (&raw const hop_limit).cast(),
                1,
                u64::from(BPF_F_RECOMPUTE_CSUM),
            )
        };
        if rc != 0 {
            return false;
        }
    }
    // Fresh pointers: the store above may have moved the data.
    let data = ctx.data();
    if data + IP_OFF + hdr > ctx.data_end() {
        return false;
    }
    let eth = data as *mut u8;
    let f = &p.fib;
    // SAFETY: the Ethernet and IP headers are within the linear data
    // (checked above) and TC may write them (the kernel uncloned the skb
    // for a program that writes packet data).
    unsafe {
        core::ptr::copy_nonoverlapping(f.dmac.as_ptr(), eth, 6);
        core::ptr::copy_nonoverlapping(f.smac.as_ptr(), eth.add(6), 6);
        if !p.v6 {
            // RFC 1141: TTL one less is the checksum 0x0100 more (the
            // header's sum, hence a CHECKSUM_COMPLETE skb's, is unchanged).
            let ip = eth.add(IP_OFF);
            *ip.add(V4_TTL) -= 1;
            let check = ip.add(V4_CHECK).cast::<u16>();
            // As the kernel's `ip_decrease_ttl`, bit for bit.
            let sum = u32::from(check.read_unaligned()) + u32::from(0x0100u16.to_be());
            check.write_unaligned((sum + u32::from(sum >= 0xffff)) as u16);
        }
    }
    true
}

/// Redirects the rewritten frame into the pod behind the host veth
/// [`route`] found (its peer, in the pod's namespace).
#[inline(always)]
pub fn redirect(p: &Parsed) -> i32 {
    // SAFETY: the helper takes an ifindex and flags (none).
    unsafe { bpf_redirect_peer(p.fib.ifindex, 0) as i32 }
}
