//! `to_pod`: TC egress of the pod's host-side veth, i.e. traffic entering
//! the pod. The pod's ingress policy with conntrack.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::conntrack::Hook;

/// Entry point.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    super::run_tc(&ctx, Hook::ToPod)
}
