//! `xdp_prefilter`: XDP on the pod's host-side veth (traffic leaving the
//! pod), a stateless early drop in front of `from_pod`: spoofed source MAC
//! or IP, and new connections the pod's egress policy denies. It only reads
//! CT, and passes anything CT knows (established, replies) or that needs
//! state (fragments, ICMP errors) or that `from_pod` judges better
//! (malformed, tagged): it never drops what `from_pod` would pass.

use aya_ebpf::{macros::xdp, programs::XdpContext};
use bulkhead_common::{
    DropReason, ENDPOINT_ISOLATED_EGRESS, FLOW_SIDE_EGRESS, HOOK_XDP, Verdict, XDP_DROP, XDP_PASS,
};

use crate::{
    conntrack, flowlog, notify,
    parse::{self, Frag, Kind, Parsed},
    policy::{Side, check_side},
    service,
};

/// Entry point.
#[xdp]
pub fn xdp_prefilter(ctx: XdpContext) -> u32 {
    let Ok(p) = super::scratch(super::SCRATCH_XDP) else {
        return XDP_PASS; // from_pod judges it
    };
    p.flow.reset();
    match try_xdp_prefilter(&ctx, p) {
        Ok(_) => XDP_PASS,
        Err(reason) => {
            let len = (ctx.data_end() - ctx.data()) as u64;
            flowlog::account_xdp_drop(p, len, reason);
            notify::count_drop(reason);
            XDP_DROP
        }
    }
}

#[inline(always)]
fn try_xdp_prefilter(ctx: &XdpContext, p: &mut Parsed) -> Result<Verdict, DropReason> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let super::Active { revision, slot, .. } = super::active();
    let Some(ep) = super::endpoint(ifindex, slot) else {
        return Ok(Verdict::Bypass);
    };
    let Ok(eth) = parse::eth(ctx) else {
        return Ok(Verdict::Bypass); // from_pod counts it
    };
    super::check_mac(&ep, &eth.src_mac)?;
    if !matches!(parse::ip(ctx, eth.ether_type, p), Ok(true)) {
        return Ok(Verdict::Bypass); // non-IP, or for from_pod to count
    }
    if p.kind == Kind::LinkControl {
        return Ok(Verdict::Bypass);
    }
    p.flow.start(ifindex, HOOK_XDP, revision, &ep);
    p.flow.parsed(FLOW_SIDE_EGRESS);
    super::check_ip(&ep, p)?;
    if ep.flags & ENDPOINT_ISOLATED_EGRESS == 0
        || p.frag == Frag::Later
        || p.kind == Kind::IcmpError
        || (p.kind == Kind::Flow && conntrack::known(&p.key.tuple, &mut p.rev))
        // A Service connection is judged after the node's translation.
        || (p.kind == Kind::Flow && p.frag == Frag::No && service::is_frontend(slot, &p.key.tuple))
    {
        return Ok(Verdict::Bypass);
    }
    check_side(slot, &ep, Side::Egress, &p.key.tuple, p.policy_port, false)
        .map_err(|_| DropReason::PolicyDenied)?;
    Ok(Verdict::Allowed)
}
