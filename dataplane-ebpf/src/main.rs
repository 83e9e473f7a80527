//! Bulkhead's eBPF dataplane: one ELF, so all programs share the maps of
//! [`maps`].
//!
//! Stateless for now: every packet is checked against policy on its own.
//! Conntrack (replies, related ICMP, policy epochs), egress enforcement,
//! anti-spoofing, modes and flow events come with the dataplane issue.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod policy;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use bulkhead_common::{ENDPOINT_ISOLATED_INGRESS, IDENTITY_ANY, IdentityKey};

use crate::maps::{ENDPOINTS, IDENTITIES};

/// Verdict that lets a packet through (ends the TC chain).
const PASS: i32 = TC_ACT_OK;
/// Verdict that drops a packet.
const DROP: i32 = TC_ACT_SHOT;

/// Why a packet is dropped. Local until flow events put the numbers in the
/// ABI; numbers are never reused.
#[derive(Clone, Copy)]
#[repr(u32)]
enum DropReason {
    /// No rule of the endpoint's table allows the packet.
    PolicyDenied = 1,
    /// The packet claims to be IP but its headers are cut short.
    Malformed = 2,
}

/// Traffic entering a pod: TC egress of the pod's host-side veth, enforcing
/// the pod's ingress policy.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    match try_to_pod(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason),
    }
}

fn try_to_pod(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex };
    // SAFETY: the value is copied out at once; the map is only written by
    // userspace, which replaces whole values.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(ifindex) }).copied() else {
        return Ok(PASS); // not a pod Bulkhead knows
    };
    if endpoint.flags & ENDPOINT_ISOLATED_INGRESS == 0 {
        return Ok(PASS); // no policy selects this pod for ingress
    }
    let Some(l4) = parse::parse(ctx).map_err(|parse::Malformed| DropReason::Malformed)? else {
        return Ok(PASS); // not IP (ARP, LLDP, ...): not ours to filter
    };
    let src = Key::new(128, IdentityKey { addr: l4.src });
    // An address outside every class only matches rules for any peer.
    let peer = IDENTITIES.get(&src).map_or(IDENTITY_ANY, |v| v.identity);
    match policy::allowed(endpoint.ingress_table, peer, l4.proto, l4.dport) {
        Some(_rule) => Ok(PASS),
        None => Err(DropReason::PolicyDenied),
    }
}

/// The one path every drop takes (flow events and drop counters hook in
/// here).
#[inline(always)]
fn drop_packet(_reason: DropReason) -> i32 {
    DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // verifier: with panic = "abort" and bounds-checked reads no panic path
    // survives optimisation; if one did, the verifier would reject this
    // endless loop at load time rather than let it run.
    loop {}
}
