//! Another process's memory and CPU time from `/proc/PID`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A `/proc/PID/status` field (in kB for the memory ones).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    crate::machine::status_field(&format!("/proc/{pid}/status"), field)
}

/// Memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub peak_kib: u64,
    /// Anonymous resident memory (`RssAnon`: the heap, not the binary's
    /// pages), KiB.
    pub anon_kib: u64,
    /// Threads.
    pub threads: u64,
}

impl Memory {
    /// Reads it; `None` if the process is gone.
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            rss_kib: status_kib(pid, "VmRSS:")?,
            peak_kib: status_kib(pid, "VmHWM:").unwrap_or(0),
            anon_kib: status_kib(pid, "RssAnon:").unwrap_or(0),
            threads: status_kib(pid, "Threads:").unwrap_or(0),
        })
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// utime + stime per thread name (threads of one name summed), in ticks.
fn ticks_by_thread(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if let Some(t) = stat_ticks(&dir.join("stat").to_string_lossy()) {
            *out.entry(name.trim().to_owned()).or_default() += t;
        }
    }
    out
}

fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields count from after ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64)
}

/// CPU use of a process over a window.
#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    /// Length of the window, seconds.
    pub seconds: f64,
    /// CPU time used, seconds.
    pub cpu_seconds: f64,
    /// As % of one core.
    pub percent_of_core: f64,
    /// CPU seconds by thread name, busiest first (threads that used none
    /// left out; threads that ended during the window are not counted).
    pub by_thread: Vec<(String, f64)>,
}

/// Measures `pid`'s CPU time over `window`; `None` if it went away.
pub fn cpu_over(pid: u32, window: Duration) -> Option<CpuUse> {
    let hz = ticks_per_second() as f64;
    let start = Instant::now();
    let before = cpu_ticks(pid)?;
    let threads_before = ticks_by_thread(pid);
    std::thread::sleep(window);
    let after = cpu_ticks(pid)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = after.saturating_sub(before) as f64 / hz;
    let mut by_thread: Vec<(String, f64)> = ticks_by_thread(pid)
        .into_iter()
        .map(|(name, t)| {
            let was = threads_before.get(&name).copied().unwrap_or(0);
            (name, t.saturating_sub(was) as f64 / hz)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(CpuUse {
        seconds,
        cpu_seconds,
        percent_of_core: 100.0 * cpu_seconds / seconds,
        by_thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = Memory::of(me).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib && m.threads >= 1);
        let before = cpu_ticks(me).unwrap();
        // Burn CPU until the tick counter moves (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_ticks(me).unwrap() == before && Instant::now() < deadline {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        assert!(cpu_ticks(me).unwrap() > before);
        assert!(!ticks_by_thread(me).is_empty());
        assert!(Memory::of(u32::MAX).is_none());
    }
}
