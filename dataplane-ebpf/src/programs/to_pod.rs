//! `to_pod`: TC egress of the pod's host-side veth, i.e. traffic entering
//! the pod. The pod's ingress policy with conntrack.

use aya_ebpf::{macros::classifier, programs::TcContext};
use bulkhead_common::{DropReason, TC_DROP, TC_PASS, Verdict};

use crate::{conntrack::Hook, notify};

/// Entry point.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    match try_to_pod(&ctx) {
        Ok(_) => TC_PASS,
        Err(reason) => {
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

#[inline(always)]
fn try_to_pod(ctx: &TcContext) -> Result<Verdict, DropReason> {
    super::enforce(ctx, Hook::ToPod)
}
