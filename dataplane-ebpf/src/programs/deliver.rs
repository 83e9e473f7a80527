//! `deliver`: host routing's second half, reached only by `from_pod`'s
//! tail call (never attached). Judges a passed packet for the pod the
//! node routes it to, as `to_pod` would, and delivers it into that pod
//! (`hostroute`).

use aya_ebpf::{macros::classifier, programs::TcContext};

/// Entry point.
#[classifier]
pub fn deliver(ctx: TcContext) -> i32 {
    super::run_deliver(&ctx)
}
