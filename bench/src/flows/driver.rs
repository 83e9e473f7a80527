//! The driver: runs `from_pod` by `BPF_PROG_TEST_RUN`, one UDP datagram
//! per new flow (flow `n` of [`Tuples`]), paced to a target rate or as fast
//! as one thread can, bounded in count and in time.
//!
//! Pacing: flow `n` is due at `n / rate` seconds after the start. The
//! driver sends whatever is due in chunks (at most [`CHUNK`] runs between
//! clock reads, about a millisecond of traffic at the rates measured here),
//! catches up when it fell behind, and sleeps until the next millisecond's
//! batch is due when it is ahead. Whether it kept up is judged on the count
//! it reached within the run's time: a driver that could not sustain the
//! rate fails the run's rate, and the report says so.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use bulkhead_netns_tests::dataplane::PASS;
use bulkhead_netns_tests::packet::{L4, frame};
use serde::Serialize;

use super::cpu;
use super::policy::Tuples;

/// Runs between clock reads.
pub const CHUNK: u64 = 256;
/// Share of the target count the driver must reach to have kept up.
pub const KEPT_UP: f64 = 0.99;

/// Offsets in the frame: IPv4 destination, UDP source and destination port.
const DST_AT: usize = 14 + 16;
const SPORT_AT: usize = 14 + 20;
const DPORT_AT: usize = SPORT_AT + 2;

/// What to drive.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DrivePlan {
    /// New flows per second; `None`: as fast as the driver can.
    pub rate: Option<f64>,
    /// The time bound.
    pub duration: Duration,
    /// How flow numbers map to tuples.
    pub tuples: Tuples,
}

impl DrivePlan {
    /// The count bound: `rate × duration` (unpaced: the tuple space).
    pub fn target_flows(&self) -> u64 {
        let max = self.tuples.max();
        self.rate.map_or(max, |r| {
            ((r * self.duration.as_secs_f64()).round() as u64).min(max)
        })
    }
}

/// What the driver did.
#[derive(Clone, Debug, Serialize)]
pub struct Driven {
    /// Flows driven (one packet each; flow `0..flows` of [`Tuples`]).
    pub flows: u64,
    /// Seconds from the first run to the last.
    pub seconds: f64,
    /// `flows / seconds`.
    pub achieved_rate: f64,
    /// Paced runs: reached [`KEPT_UP`] of the target count in time.
    /// Unpaced runs: always true (the rate is the driver's maximum).
    pub kept_up: bool,
    /// Most flows that were due and not yet sent at a clock read.
    pub max_behind: u64,
    /// CPU time of the driver thread (its syscalls included).
    pub cpu_seconds: Option<f64>,
}

/// The datagram of flow 0 of `tuples` from the subject; [`patch`] makes
/// flow `n`'s.
pub fn template(mac: [u8; 6], src: Ipv4Addr, tuples: &Tuples) -> Vec<u8> {
    let (sport, dst, dport) = tuples.tuple(0);
    frame(
        mac,
        IpAddr::V4(src),
        IpAddr::V4(dst),
        L4::Udp { sport, dport },
    )
}

/// Rewrites `frame` (from [`template`]) into flow `n`'s datagram.
fn patch(frame: &mut [u8], tuples: &Tuples, n: u64) {
    let (sport, dst, dport) = tuples.tuple(n);
    frame[DST_AT..DST_AT + 4].copy_from_slice(&dst.octets());
    frame[SPORT_AT..SPORT_AT + 2].copy_from_slice(&sport.to_be_bytes());
    frame[DPORT_AT..DPORT_AT + 2].copy_from_slice(&dport.to_be_bytes());
}

/// Drives `plan` through `prog` (`from_pod`, with the subject on the
/// test-run device) from the calling thread. Every run must pass: a
/// verdict other than `TC_ACT_OK` means the maps are not what the
/// benchmark thinks, and fails it.
pub fn drive(prog: &SchedClassifier, mut frame: Vec<u8>, plan: &DrivePlan) -> Result<Driven> {
    let target = plan.target_flows();
    let cpu0 = cpu::this_thread_cpu();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut max_behind = 0u64;
    let batch = plan
        .rate
        .map_or(CHUNK, |r| ((r / 1000.0).ceil() as u64).max(1));
    let mut end;
    loop {
        let elapsed = start.elapsed();
        end = elapsed;
        if elapsed >= plan.duration || sent >= target {
            break;
        }
        let due = match plan.rate {
            Some(r) => ((r * elapsed.as_secs_f64()) as u64).min(target),
            None => sent + CHUNK,
        };
        if sent >= due {
            // Ahead: sleep until the next batch is due.
            let r = plan.rate.expect("unpaced runs are never ahead");
            let next = Duration::from_secs_f64((sent + batch).min(target) as f64 / r);
            let wait = next.min(plan.duration).saturating_sub(start.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            continue;
        }
        max_behind = max_behind.max(due - sent);
        let upto = due.min(sent + CHUNK);
        while sent < upto {
            patch(&mut frame, &plan.tuples, sent);
            let opts = TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::default()
            };
            let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN from_pod")?;
            ensure!(
                r.return_value == PASS,
                "from_pod returned {} for flow {sent} (expected {PASS}, pass): the maps are not what the benchmark thinks",
                r.return_value
            );
            sent += 1;
        }
    }
    let seconds = end.as_secs_f64().max(1e-9);
    let cpu1 = cpu::this_thread_cpu();
    Ok(Driven {
        flows: sent,
        seconds,
        achieved_rate: sent as f64 / seconds,
        kept_up: plan.rate.is_none() || sent as f64 >= KEPT_UP * target as f64,
        max_behind,
        cpu_seconds: cpu0.zip(cpu1).map(|(a, b)| (b - a).as_secs_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_writes_the_tuple() {
        let t = Tuples::Distinct;
        let mut f = template([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 1), &t);
        patch(&mut f, &t, 123_456_789);
        let dst = Ipv4Addr::new(f[DST_AT], f[DST_AT + 1], f[DST_AT + 2], f[DST_AT + 3]);
        let sport = u16::from_be_bytes([f[SPORT_AT], f[SPORT_AT + 1]]);
        let dport = u16::from_be_bytes([f[DPORT_AT], f[DPORT_AT + 1]]);
        assert_eq!(t.index(sport, dst, dport), Some(123_456_789));
        assert_eq!(f[14 + 9], 17, "UDP");
    }
}
