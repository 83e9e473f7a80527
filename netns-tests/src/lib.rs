//! Privileged end-to-end tests of Bulkhead: the eBPF dataplane loaded into
//! the kernel, and (as the dataplane arrives) real pods as network
//! namespaces.
//!
//! Every test here needs root and the eBPF ELF. Without them a test prints
//! why and passes as skipped, unless [`REQUIRE_PRIVILEGED`] is set (as
//! `cargo xtask test` does when it runs as root), which turns the skip into a
//! failure so CI cannot silently test nothing.
//!
//! The crate is also the test kit that tests and benchmarks share:
//! [`pods`] wires pod namespaces to a node namespace (through
//! `bulkhead_netkit`, the namespace toolkit the lab shares), and
//! [`apiserver`] is a fake Kubernetes API server (no root needed; its tests
//! are `tests/apiserver*.rs`), also runnable as the `fake-apiserver` binary.

pub mod apiserver;
pub mod cniexec;
pub mod collectors;
pub mod dataplane;
pub mod packet;
pub mod pods;
pub mod probe;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
    skip(&why);
    None
}

/// Says why a privileged test is skipped, or panics when
/// [`REQUIRE_PRIVILEGED`] is set.
pub fn skip(why: &str) {
    if std::env::var_os(REQUIRE_PRIVILEGED).is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("privileged test cannot run: {why}; {REQUIRE_PRIVILEGED} is set");
    }
    eprintln!("skipping privileged test: {why}");
}

/// Whether a test that needs only root (not the ELF) can run; otherwise
/// says why and skips, or panics when [`REQUIRE_PRIVILEGED`] is set.
pub fn privileged() -> bool {
    if is_root() {
        return true;
    }
    skip("not running as root");
    false
}

/// Environment variable naming the `bulkhead` binary to test.
pub const BULKHEAD_BIN: &str = "BULKHEAD_BIN";

/// The `bulkhead` binary: `$BULKHEAD_BIN`, or built now with cargo (a no-op
/// when up to date; `cargo xtask test` builds it before the netns tests),
/// located from cargo's own report.
pub fn bulkhead_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_bin(BULKHEAD_BIN, "bulkhead", "bulkhead"))
}

/// Environment variable naming a prebuilt `bulkhead-cni` binary.
pub const BULKHEAD_CNI_BIN: &str = "BULKHEAD_CNI_BIN";

/// The `bulkhead-cni` plugin binary: `$BULKHEAD_CNI_BIN`, or built now
/// with cargo, as [`bulkhead_bin`].
pub fn cni_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_bin(BULKHEAD_CNI_BIN, "bulkhead-cni", "bulkhead-cni"))
}

/// Binary `bin` of workspace package `package`: `$env`, or built with cargo.
fn cargo_bin(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == bin)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"))
}

/// TX packets of device `dev` in network namespace `ns` (what that
/// namespace's stack sent through it; `ip -s link`).
pub fn tx_packets(ns: &str, dev: &str) -> Result<u64, bulkhead_netkit::NetlinkError> {
    Ok(bulkhead_netkit::NsHandle::open(ns)?
        .netlink()?
        .stats(dev)?
        .tx_packets)
}
