//! Facts about the machine a benchmark ran on, and the process's memory use
//! (Linux `/proc`; missing facts read as "unknown", never as an error).

use std::fs;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and toolchain a run used.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// `MemTotal` from `/proc/meminfo`, KiB.
    pub mem_total_kib: Option<u64>,
    /// `rustc --version` of the toolchain in use.
    pub rustc: String,
    /// Whether this binary was built with optimizations.
    pub release_build: bool,
    /// `git describe --always --dirty` of the work tree, if it is one.
    pub git: String,
}

/// The trimmed stdout of `program args`, if it ran and succeeded.
pub(crate) fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The number after `field` (e.g. `VmRSS:`) in a `/proc` key-value file
/// (`/proc/meminfo`, `/proc/PID/status`), without its `kB` unit.
pub fn status_field(file: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Machine {
    /// Reads the facts of this machine.
    pub fn detect() -> Self {
        let unknown = || "unknown".to_string();
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| unknown());
        // Cargo runs binaries with the toolchain it used in RUSTC, when set.
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            mem_total_kib: status_field("/proc/meminfo", "MemTotal:"),
            rustc: command_line(&rustc, &["--version"]).unwrap_or_else(unknown),
            release_build: !cfg!(debug_assertions),
            git: command_line(
                "git",
                &[
                    "-C",
                    env!("CARGO_MANIFEST_DIR"),
                    "describe",
                    "--always",
                    "--dirty",
                ],
            )
            .unwrap_or_else(unknown),
        }
    }
}

/// Peak resident set size of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_field("/proc/self/status", "VmHWM:")
}

/// Current resident set size (`VmRSS`), KiB.
pub fn rss_kib() -> Option<u64> {
    status_field("/proc/self/status", "VmRSS:")
}

/// Resets the peak RSS to the current RSS (`echo 5 > /proc/self/clear_refs`,
/// Linux 4.0+), so each case reports its own peak. Whether it worked.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `/proc/loadavg`'s three load averages (empty if unreadable).
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
