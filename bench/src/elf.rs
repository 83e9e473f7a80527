//! What the eBPF benchmarks (`dataplane_bench`, `flow_bench`) share before
//! they measure: the root check, the ELF to load, the FLOW_CONFIG flags
//! the agent runs with, and the ELF loaded with a policy image written.

use std::path::{Path, PathBuf};

use anyhow::bail;
use bulkhead_common::{
    EndpointInfo, FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW,
};
use bulkhead_netns_tests::dataplane::Dataplane;
use bulkhead_netns_tests::{DEFAULT_EBPF_ELF, EBPF_ELF, is_root};
use bulkhead_policy::compile::maps::MapImage;

/// The FLOW_CONFIG flags the agent turns on by default.
pub const DEFAULT_FLOW_FLAGS: u32 =
    FLOW_CONFIG_ACCOUNTING | FLOW_CONFIG_EVENTS_NEW | FLOW_CONFIG_EVENTS_DROP;

/// Whether this process is root; if not, says on stderr that `bin` was
/// skipped because it needs root for `why`.
pub fn root_or_skip(bin: &str, why: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("{bin}: skipped: it needs root ({why}); run it as root");
    }
    root
}

/// The ELF to load: `arg` (`--elf`), else `$BULKHEAD_EBPF_ELF`, else where
/// `cargo xtask build-ebpf` leaves it; canonical when it can be. An error
/// if it is not a file.
pub fn resolve(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let elf = arg
        .or_else(|| std::env::var_os(EBPF_ELF).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_EBPF_ELF));
    if !elf.is_file() {
        bail!(
            "no eBPF ELF at {} (run `cargo xtask build-ebpf`, or pass --elf)",
            elf.display()
        );
    }
    Ok(elf.canonicalize().unwrap_or(elf))
}

/// A fresh load of `elf` with `image` written, `subject` as the endpoint of
/// `slot` (ifindex 1, where `BPF_PROG_TEST_RUN` runs TC programs) and
/// `revision` active: the maps the program-cost and flow benchmarks test.
pub fn load_programmed(
    elf: &Path,
    image: &MapImage,
    slot: u8,
    subject: EndpointInfo,
    revision: u64,
) -> anyhow::Result<Dataplane> {
    let mut dp = Dataplane::load_file(elf).map_err(anyhow::Error::msg)?;
    dp.write_image(image);
    dp.set_endpoint(slot, subject);
    dp.set_revision(revision);
    Ok(dp)
}
