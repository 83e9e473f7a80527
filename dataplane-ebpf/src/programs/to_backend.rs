//! `to_backend` (never attached; `to_pod`'s tail call through TAILS): the
//! first packet of a Service connection, after the node translated it to
//! a backend on this node (it carried the service mark, which `to_pod`
//! cleared). Judges the client's egress on this backend and accounts it on
//! the client's endpoint (`service`); when allowed, records the connection
//! and runs `to_pod` again, which judges the backend's ingress on the
//! packet as it arrives like any packet's (on the client when the node
//! masqueraded it: the client is recorded for that).

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, macros::classifier, programs::TcContext};
use bulkhead_common::{DropReason, TC_DROP, Verdict};

use crate::{
    conntrack::Hook,
    flowlog, notify,
    parse::{self, Frag, Kind, Parsed},
    service,
};

/// Entry point.
#[classifier]
pub fn to_backend(ctx: TcContext) -> i32 {
    let at = super::active();
    let Ok(p) = super::scratch(super::SCRATCH_TC) else {
        notify::count_drop(DropReason::ServiceUnjudged);
        return TC_DROP;
    };
    p.flow.reset();
    let len = u64::from(ctx.len());
    match judge(&ctx, &at, p) {
        Ok(_) => {
            flowlog::account(p, len, None);
            super::tail_call(&ctx, super::TAIL_TO_POD)
        }
        Err(reason) => {
            flowlog::account(p, len, Some(reason));
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

/// The client's side of the translated packet; anything that cannot be
/// judged is dropped (the client retransmits, and that is judged).
#[inline(always)]
fn judge(ctx: &TcContext, at: &super::Active, p: &mut Parsed) -> Result<Verdict, DropReason> {
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let skb = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() };
    let ifindex = skb.ifindex;
    let backend = super::endpoint(ifindex, at.slot).ok_or(DropReason::ServiceUnjudged)?;
    if skb.vlan_present != 0 {
        return Err(DropReason::ServiceUnjudged);
    }
    let eth = parse::eth(ctx)?;
    if !parse::ip(ctx, eth.ether_type, p)? || p.kind != Kind::Flow || p.frag == Frag::Later {
        return Err(DropReason::ServiceUnjudged);
    }
    p.flow
        .start(ifindex, Hook::ToPod.number(), at.revision, &backend);
    p.flow.parsed(Hook::ToPod.new_side().flow_side());
    p.flow.now();
    let pend = service::take(at.slot, p).ok_or(DropReason::ServiceUnjudged)?;
    let (client, judged) = service::judge_client(at, pend, p)?;
    service::record_masquerade(pend, p);
    service::opened(at, pend, &client, judged, p);
    Ok(Verdict::Allowed)
}
