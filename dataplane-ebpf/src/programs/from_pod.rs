//! `from_pod`: TC ingress of the pod's host-side veth, i.e. traffic leaving
//! the pod. Anti-spoofing (source MAC and IP must be the pod's), then the
//! pod's egress policy with conntrack.

use aya_ebpf::{macros::classifier, programs::TcContext};
use bulkhead_common::{DropReason, TC_DROP, TC_PASS, Verdict};

use crate::{conntrack::Hook, notify};

/// Entry point.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    match try_from_pod(&ctx) {
        Ok(_) => TC_PASS,
        Err(reason) => {
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

#[inline(always)]
fn try_from_pod(ctx: &TcContext) -> Result<Verdict, DropReason> {
    super::enforce(ctx, Hook::FromPod)
}
