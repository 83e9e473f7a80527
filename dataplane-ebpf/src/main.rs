//! Bulkhead's eBPF dataplane: one ELF, so all programs share the maps of
//! [`maps`].
//!
//! - `from_pod` (TC ingress of a pod's host-side veth: traffic leaving the
//!   pod): anti-spoofing, then the pod's egress policy.
//! - `to_pod` (TC egress of the host-side veth: traffic entering the pod):
//!   the pod's ingress policy.
//! - `deliver` (never attached; `from_pod`'s tail call with host routing,
//!   `CONFIG_F_HOST_ROUTING`): for a packet the node routes to another
//!   pod's host veth, that pod's ingress policy as `to_pod` would judge
//!   it, then the frame rewritten as forwarding would and redirected into
//!   the pod (`hostroute`), skipping the node's stack.
//! - `xdp_prefilter` (XDP on the host-side veth): stateless early drop of
//!   spoofed sources and denied new connections leaving the pod.
//! - `noop` (never attached by the agent): passes everything; the
//!   comparison benchmark's hook floor.
//!
//! Stateful (`conntrack`), evasion-proof parsing (`parse`), policy by slot
//! and revision (`policy`, ABI in `bulkhead-common`); every drop goes
//! through `notify`, and every judged packet is counted into a flow
//! (`flowlog`).
#![no_std]
#![no_main]
// `core::sync::atomic`'s read-modify-write methods need compare-and-swap,
// which the BPF target lacks; the intrinsics compile to BPF's atomic add
// and or (see `atomic`).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod atomic;
mod conntrack;
mod flowlog;
mod frags;
mod hostroute;
mod maps;
mod notify;
mod parse;
mod policy;
mod programs;
mod service;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // verifier: with panic = "abort" and bounds-checked reads no panic path
    // survives optimisation; if one did, the verifier would reject this
    // endless loop at load time rather than let it run.
    loop {}
}
