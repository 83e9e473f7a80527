//! Time for the flow pipeline: the kernel stamps packets with
//! `CLOCK_MONOTONIC` (`bpf_ktime_get_ns`); records show wall-clock time, so
//! the pipeline converts with the realtime − monotonic offset, re-read at
//! every drain (an NTP step moves it).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use nix::time::{ClockId, clock_gettime};

/// A source of monotonic time and of its offset to wall-clock time.
pub trait Clock: Send + Sync {
    /// `CLOCK_MONOTONIC` now, in nanoseconds (the kernel's `bpf_ktime_get_ns`).
    fn monotonic_ns(&self) -> u64;
    /// `CLOCK_REALTIME − CLOCK_MONOTONIC` now, in nanoseconds.
    fn realtime_offset_ns(&self) -> i64;
}

/// The system clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

fn read(id: ClockId) -> i128 {
    clock_gettime(id)
        .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn monotonic_ns(&self) -> u64 {
        read(ClockId::CLOCK_MONOTONIC) as u64
    }

    fn realtime_offset_ns(&self) -> i64 {
        // Realtime read on both sides of the monotonic read: the midpoint
        // cancels most of the gap between the two calls.
        let r1 = read(ClockId::CLOCK_REALTIME);
        let m = read(ClockId::CLOCK_MONOTONIC);
        let r2 = read(ClockId::CLOCK_REALTIME);
        ((r1 + r2) / 2 - m) as i64
    }
}

/// A clock moved by hand (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    mono: AtomicU64,
    offset: AtomicI64,
}

impl ManualClock {
    /// A clock at monotonic `mono_ns` with wall-clock offset `offset_ns`.
    pub fn new(mono_ns: u64, offset_ns: i64) -> Arc<Self> {
        Arc::new(Self {
            mono: AtomicU64::new(mono_ns),
            offset: AtomicI64::new(offset_ns),
        })
    }

    /// Sets monotonic time.
    pub fn set(&self, mono_ns: u64) {
        self.mono.store(mono_ns, Ordering::SeqCst);
    }

    /// Moves monotonic time forward.
    pub fn advance(&self, ns: u64) {
        self.mono.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.mono.load(Ordering::SeqCst)
    }

    fn realtime_offset_ns(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_offset_is_wall_clock() {
        let c = SystemClock;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let derived = c.monotonic_ns() as i128 + c.realtime_offset_ns() as i128;
        assert!((wall - derived).abs() < 1_000_000_000);
    }
}
