//! Atomic read-modify-write on map values shared between CPUs.
//!
//! The BPF target has no compare-and-swap, so `core::sync::atomic` offers
//! no `fetch_add`/`fetch_or` there; the compiler intrinsics do, and with
//! the result unused they compile to BPF's `lock ... +=` (XADD) and the
//! atomic OR of the v3 instruction set (kernel 5.12+).

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd};

/// `*dst += n`, atomically (relaxed).
///
/// # Safety
/// `dst` points at a valid, aligned `u64` (a map value field).
#[inline(always)]
pub unsafe fn add(dst: *mut u64, n: u64) {
    // SAFETY: per the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, n) };
}

/// `*dst |= bits`, atomically (relaxed).
///
/// # Safety
/// `dst` points at a valid, aligned `u32` (a map value field).
#[inline(always)]
pub unsafe fn or(dst: *mut u32, bits: u32) {
    // SAFETY: per the caller.
    unsafe { atomic_or::<u32, u32, { AtomicOrdering::Relaxed }>(dst, bits) };
}
