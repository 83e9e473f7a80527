//! `from_pod`: TC ingress of the pod's host-side veth, i.e. traffic leaving
//! the pod. Anti-spoofing (source MAC and IP must be the pod's), then the
//! pod's egress policy with conntrack.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::conntrack::Hook;

/// Entry point.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    super::run_tc(&ctx, Hook::FromPod)
}
