//! Whether a recorded PID is a running Bulkhead process: the one check
//! behind `bulkhead status`, the agent's refusal to start twice on the
//! same pins and `--cleanup`'s refusal to run under a live agent.
//!
//! A PID that merely exists is not enough: a killed agent whose parent does
//! not reap it (a container's PID 1 may not) stays a zombie, and a PID can
//! be reused by another program. Running means: `/proc/PID/stat` says the
//! process is neither a zombie (`Z`) nor dead (`X`), and its
//! `/proc/PID/comm` is `bulkhead`.

/// The name the kernel gives the agent's process (`/proc/PID/comm`).
pub const COMM: &str = "bulkhead";

/// Whether `pid` is a running (not zombie) process named [`COMM`].
pub fn is_bulkhead(pid: u32) -> bool {
    pid != 0
        && state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x'))
        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == COMM)
}

/// The state letter of `pid` (`R`, `S`, `D`, `Z`, ...), if it exists.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_state(&stat)
}

/// The state field of a `/proc/PID/stat` line: `pid (comm) S ...`. The
/// command name may hold spaces and parentheses, so the state is the first
/// field after the *last* `)`.
pub fn parse_stat_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .next()
        .filter(|f| f.chars().count() == 1)?
        .chars()
        .next()
}

#[cfg(test)]
mod tests;
