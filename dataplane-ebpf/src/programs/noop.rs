//! `noop`: passes every packet. Never attached by the agent: the
//! comparison benchmark attaches it to both TC hooks of the host-side
//! veths to measure what a hook running a program costs by itself (the
//! floor under `from_pod` and `to_pod`).

use aya_ebpf::{macros::classifier, programs::TcContext};
use bulkhead_common::TC_PASS;

/// Entry point.
#[classifier]
pub fn noop(_ctx: TcContext) -> i32 {
    TC_PASS
}
