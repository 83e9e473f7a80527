//! `to_pod`: TC egress of the pod's host-side veth, i.e. traffic entering
//! the pod. The pod's ingress policy with conntrack; the first packet of a
//! Service connection the node translated to this pod (it carries the
//! service mark) goes to `to_backend` first.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::conntrack::Hook;

/// Entry point.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    // verifier: tested ahead of `run_tc`, on a CONFIG read of its own, so
    // nothing it learns splits the states of the rest of the program.
    if super::take_service_mark(&ctx, &super::active()) {
        return super::tail_call(&ctx, super::TAIL_TO_BACKEND);
    }
    super::run_tc(&ctx, Hook::ToPod)
}
