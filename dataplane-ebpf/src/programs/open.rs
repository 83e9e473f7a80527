//! `open_from_pod` and `open_to_pod` (never attached; tail calls of
//! `from_pod` and `to_pod` through TAILS): new connections and Service
//! connections whose egress side is stale (see `super::run_open`).

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::conntrack::Hook;

/// Entry point for `from_pod`'s packets.
#[classifier]
pub fn open_from_pod(ctx: TcContext) -> i32 {
    super::run_open(&ctx, Hook::FromPod)
}

/// Entry point for `to_pod`'s packets.
#[classifier]
pub fn open_to_pod(ctx: TcContext) -> i32 {
    super::run_open(&ctx, Hook::ToPod)
}
