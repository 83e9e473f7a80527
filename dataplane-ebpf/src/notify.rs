//! The one path every drop takes: count it by reason (flow events hook in
//! here later).

use bulkhead_common::DropReason;

use crate::maps::DROPS;

/// Counts a drop of `reason` on this CPU.
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU array slot is only touched by programs running
        // on this CPU, which do not preempt each other mid-update.
        unsafe { *counter += 1 };
    }
}
