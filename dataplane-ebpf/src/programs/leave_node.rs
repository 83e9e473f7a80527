//! `leave_node`: TC egress of the node's own interfaces (its uplinks: the
//! way to other nodes). Only packets that carry the service mark concern
//! it: the first packet of a Service connection `from_pod` deferred, which
//! the node translated to a backend on another node. It judges the
//! client's egress on that backend (`service`), records the connection in
//! CT and accounts it on the client's endpoint; the backend's node judges
//! the backend's ingress. Every other packet passes at the cost of reading
//! CONFIG and the mark.

use aya_ebpf::{EbpfContext as _, bindings::__sk_buff, macros::classifier, programs::TcContext};
use bulkhead_common::{DropReason, TC_DROP, TC_PASS, Verdict};

use crate::{
    flowlog, notify,
    parse::{self, Frag, Kind, Parsed},
    service,
};

/// Entry point.
#[classifier]
pub fn leave_node(ctx: TcContext) -> i32 {
    let at = super::active();
    if !super::take_service_mark(&ctx, &at) {
        return TC_PASS;
    }
    let Ok(p) = super::scratch(super::SCRATCH_TC) else {
        notify::count_drop(DropReason::ServiceUnjudged);
        return TC_DROP;
    };
    p.flow.reset();
    let len = u64::from(ctx.len());
    match judge(&ctx, &at, p) {
        Ok(_) => {
            flowlog::account(p, len, None);
            TC_PASS
        }
        Err(reason) => {
            flowlog::account(p, len, Some(reason));
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

/// The client's egress on the translated packet; anything that cannot be
/// judged is dropped (the client retransmits, and that is judged).
#[inline(always)]
fn judge(ctx: &TcContext, at: &super::Active, p: &mut Parsed) -> Result<Verdict, DropReason> {
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    if unsafe { &*ctx.as_ptr().cast::<__sk_buff>() }.vlan_present != 0 {
        return Err(DropReason::ServiceUnjudged);
    }
    let eth = parse::eth(ctx).map_err(|_| DropReason::ServiceUnjudged)?;
    if !parse::ip(ctx, eth.ether_type, p)? || p.kind != Kind::Flow || p.frag == Frag::Later {
        return Err(DropReason::ServiceUnjudged);
    }
    let pend = service::take(p).ok_or(DropReason::ServiceUnjudged)?;
    let (client, judged) = service::judge_client(at, pend, p)?;
    service::opened(at, pend, &client, judged, p);
    Ok(Verdict::Allowed)
}
