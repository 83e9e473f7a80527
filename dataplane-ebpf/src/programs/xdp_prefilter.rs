//! `xdp_prefilter`: XDP on the pod's host-side veth (traffic leaving the
//! pod), a stateless early drop in front of `from_pod`: spoofed source MAC
//! or IP, and new connections the pod's egress policy denies. It only reads
//! CT, and passes anything CT knows (established, replies) or that needs
//! state (fragments, ICMP errors) or that `from_pod` judges better
//! (malformed, tagged): it never drops what `from_pod` would pass.

use aya_ebpf::{macros::xdp, programs::XdpContext};
use bulkhead_common::{DropReason, ENDPOINT_ISOLATED_EGRESS, Verdict, XDP_DROP, XDP_PASS};

use crate::{
    conntrack, notify,
    parse::{self, Frag, Kind},
    policy::{Side, check_side},
};

/// Entry point.
#[xdp]
pub fn xdp_prefilter(ctx: XdpContext) -> u32 {
    match try_xdp_prefilter(&ctx) {
        Ok(_) => XDP_PASS,
        Err(reason) => {
            notify::count_drop(reason);
            XDP_DROP
        }
    }
}

#[inline(always)]
fn try_xdp_prefilter(ctx: &XdpContext) -> Result<Verdict, DropReason> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let (_, slot) = super::revision();
    let Some(ep) = super::endpoint(ifindex, slot) else {
        return Ok(Verdict::Bypass);
    };
    let Ok(eth) = parse::eth(ctx) else {
        return Ok(Verdict::Bypass); // from_pod counts it
    };
    super::check_mac(&ep, &eth.src_mac)?;
    let p = super::scratch(super::SCRATCH_XDP)?;
    if !matches!(parse::ip(ctx, eth.ether_type, p), Ok(true)) {
        return Ok(Verdict::Bypass); // non-IP, or for from_pod to count
    }
    if p.kind == Kind::LinkControl {
        return Ok(Verdict::Bypass);
    }
    super::check_ip(&ep, p)?;
    if ep.flags & ENDPOINT_ISOLATED_EGRESS == 0
        || p.frag == Frag::Later
        || p.kind == Kind::IcmpError
        || (p.kind == Kind::Flow && conntrack::known(&p.tuple))
    {
        return Ok(Verdict::Bypass);
    }
    check_side(slot, &ep, Side::Egress, &p.tuple, p.policy_port)
        .map_err(|()| DropReason::PolicyDenied)?;
    Ok(Verdict::Allowed)
}
