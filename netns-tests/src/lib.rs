//! Privileged end-to-end tests of Bulkhead: the eBPF dataplane loaded into
//! the kernel, and (as the dataplane arrives) real pods as network
//! namespaces.
//!
//! Every test here needs root and the eBPF ELF. Without them a test prints
//! why and passes as skipped, unless [`REQUIRE_PRIVILEGED`] is set (as
//! `cargo xtask test` does when it runs as root), which turns the skip into a
//! failure so CI cannot silently test nothing.

pub mod dataplane;
pub mod packet;

use std::path::PathBuf;

/// Environment variable that makes a privileged test fail instead of skip.
pub const REQUIRE_PRIVILEGED: &str = "BULKHEAD_REQUIRE_PRIVILEGED";

/// Environment variable naming the eBPF ELF to load.
pub const EBPF_ELF: &str = "BULKHEAD_EBPF_ELF";

/// Where `cargo xtask build-ebpf` leaves the ELF.
pub const DEFAULT_EBPF_ELF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../dataplane-ebpf/target/bpfel-unknown-none/release/bulkhead-ebpf"
);

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // The second field of `Uid:` in /proc/self/status is the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The path of the eBPF ELF if this test can run (root, ELF built);
/// otherwise prints why and returns `None`, or panics when
/// [`REQUIRE_PRIVILEGED`] is set.
pub fn privileged_ebpf_elf() -> Option<PathBuf> {
    let elf = std::env::var_os(EBPF_ELF)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_EBPF_ELF));
    let why = if !is_root() {
        "not running as root".to_owned()
    } else if !elf.is_file() {
        format!(
            "no eBPF ELF at {} (run `cargo xtask build-ebpf` or set {EBPF_ELF})",
            elf.display()
        )
    } else {
        return Some(elf);
    };
    if std::env::var_os(REQUIRE_PRIVILEGED).is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("privileged test cannot run: {why}; {REQUIRE_PRIVILEGED} is set");
    }
    eprintln!("skipping privileged test: {why}");
    None
}
