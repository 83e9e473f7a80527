//! CPU time of this process and of its threads, from Linux `/proc`:
//! the process's `utime + stime` (`/proc/self/stat`, clock ticks; it
//! includes threads that have exited), and a live thread's run time
//! (`/proc/self/task/<tid>/schedstat`, nanoseconds, falling back to the
//! thread's `stat` in ticks). Missing files read as `None`, never as an
//! error.

use std::fs;
use std::time::Duration;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, usually 100).
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t.max(1) as u64)
}

/// `utime + stime` of a `stat` file, as a duration.
fn stat_cpu(path: &str) -> Option<Duration> {
    let text = fs::read_to_string(path).ok()?;
    // Fields after the parenthesized command name (which may hold spaces).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tps = ticks_per_second();
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / tps))
}

/// CPU time of the whole process so far, exited threads included
/// (clock-tick resolution).
pub fn process_cpu() -> Option<Duration> {
    stat_cpu("/proc/self/stat")
}

/// CPU time of a task directory (`/proc/self/task/<tid>` or
/// `/proc/thread-self`).
fn task_cpu(dir: &str) -> Option<Duration> {
    fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .or_else(|| stat_cpu(&format!("{dir}/stat")))
}

/// CPU time of the calling thread.
pub fn this_thread_cpu() -> Option<Duration> {
    task_cpu("/proc/thread-self")
}

/// CPU time of this process's live threads named `name` (their `comm`,
/// at most 15 bytes), summed; `None` when there is none.
pub fn threads_cpu(name: &str) -> Option<Duration> {
    let mut total = None;
    for entry in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() == name
            && let Some(cpu) = task_cpu(&dir.to_string_lossy())
        {
            total = Some(total.unwrap_or(Duration::ZERO) + cpu);
        }
    }
    total
}

/// Pins the calling thread to `cpus` (threads it starts afterwards inherit
/// the set). Whether it worked.
pub fn pin(cpus: &[usize]) -> bool {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    for &c in cpus {
        if set.set(c).is_err() {
            return false;
        }
    }
    sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}
