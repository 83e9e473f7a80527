//! The programs and what they share: the revision/slot read, endpoint
//! lookup, anti-spoofing and the TC enforcement path.

pub mod from_pod;
pub mod to_pod;
pub mod xdp_prefilter;

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, xdp_md},
    helpers::generated::bpf_xdp_load_bytes,
    programs::{TcContext, XdpContext},
};
use bulkhead_common::{
    DropReason, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6, ENDPOINT_HAS_MAC, EndpointInfo, EndpointKey,
    Verdict, active_slot,
};

use crate::{
    conntrack::{self, Hook},
    frags,
    maps::{CONFIG, ENDPOINTS, SCRATCH},
    parse::{self, Frag, Kind, Packet, Parsed},
    policy::check_side,
};

impl Packet for TcContext {
    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        TcContext::load(self, off).map_err(|_| DropReason::Malformed)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes exactly `size_of::<T>()` bytes into
        // `out` or fails; `T` is plain bytes.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.ctx.cast::<xdp_md>(),
                off as u32,
                out.as_mut_ptr().cast(),
                size_of::<T>() as u32,
            )
        };
        if ret == 0 {
            // SAFETY: initialised by the helper above.
            Ok(unsafe { out.assume_init() })
        } else {
            Err(DropReason::Malformed)
        }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }
}

/// Scratch slot of the TC programs (they never nest on one CPU).
pub const SCRATCH_TC: u32 = 0;
/// Scratch slot of the XDP program.
pub const SCRATCH_XDP: u32 = 1;

/// The per-CPU scratch space for a packet's parse result.
#[inline(always)]
pub fn scratch(index: u32) -> Result<&'static mut Parsed, DropReason> {
    let ptr = SCRATCH.get_ptr_mut(index).ok_or(DropReason::Malformed)?;
    // SAFETY: per-CPU and per program kind (TC and XDP use different
    // indexes; programs run to completion without nesting on one CPU), and
    // every field is valid when zeroed (`Parsed` is repr(C), its enums have
    // a zero variant).
    Ok(unsafe { &mut *ptr })
}

/// The revision in force (read once per packet) and its slot.
#[inline(always)]
pub fn revision() -> (u64, u8) {
    let revision = CONFIG.get(0).map_or(0, |c| c.revision);
    (revision, active_slot(revision))
}

/// The endpoint on `ifindex` in `slot`, copied out.
#[inline(always)]
pub fn endpoint(ifindex: u32, slot: u8) -> Option<EndpointInfo> {
    // SAFETY: copied at once; userspace replaces whole values.
    unsafe { ENDPOINTS.get(EndpointKey::new(ifindex, slot)) }.copied()
}

/// A frame leaving the pod must carry the pod's MAC.
#[inline(always)]
pub fn check_mac(ep: &EndpointInfo, src_mac: &[u8; 6]) -> Result<(), DropReason> {
    if ep.flags & ENDPOINT_HAS_MAC != 0 && *src_mac != ep.mac {
        return Err(DropReason::SpoofedMac);
    }
    Ok(())
}

/// An IP packet leaving the pod must carry the pod's address of its family.
#[inline(always)]
pub fn check_ip(ep: &EndpointInfo, p: &Parsed) -> Result<(), DropReason> {
    let ok = if p.v6 {
        ep.flags & ENDPOINT_HAS_IPV6 != 0 && p.tuple.src == ep.ipv6
    } else {
        ep.flags & ENDPOINT_HAS_IPV4 != 0 && p.tuple.src == ep.ipv4
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::SpoofedIp)
    }
}

/// The TC path of both `from_pod` and `to_pod`.
#[inline(always)]
fn enforce(ctx: &TcContext, hook: Hook) -> Result<Verdict, DropReason> {
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let skb = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() };
    let ifindex = skb.ifindex;
    let (revision, slot) = revision();
    let Some(ep) = endpoint(ifindex, slot) else {
        return Ok(Verdict::Bypass); // not a pod Bulkhead knows
    };
    // A tag the kernel already moved out of the frame (skb metadata).
    if skb.vlan_present != 0 {
        return Err(DropReason::VlanTagged);
    }
    let eth = parse::eth(ctx)?;
    if hook == Hook::FromPod {
        check_mac(&ep, &eth.src_mac)?;
    }
    let p = scratch(SCRATCH_TC)?;
    if !parse::ip(ctx, eth.ether_type, p)? {
        return Ok(Verdict::Bypass); // ARP and other non-IP
    }
    if p.kind == Kind::LinkControl {
        return Ok(Verdict::Bypass);
    }
    if hook == Hook::FromPod {
        check_ip(&ep, p)?;
    }
    if p.frag == Frag::Later {
        return frags::later(&ep, p, ifindex, hook);
    }
    let verdict = match p.kind {
        Kind::Flow => conntrack::track(revision, slot, &ep, hook, p)?,
        Kind::IcmpError if p.has_inner && conntrack::related(&p.inner, &p.tuple) => {
            Verdict::Related
        }
        _ => {
            check_side(slot, &ep, hook.new_side(), &p.tuple, p.policy_port)
                .map_err(|()| DropReason::PolicyDenied)?;
            Verdict::Allowed
        }
    };
    if p.frag == Frag::First {
        frags::record(p, ifindex, hook);
    }
    Ok(verdict)
}
