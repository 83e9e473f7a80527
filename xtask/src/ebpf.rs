//! `cargo xtask build-ebpf`: builds the dataplane ELF with nightly.

use std::{ffi::OsString, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, ebpf_sources, setup};

/// The BPF target the dataplane is built for (little-endian hosts).
pub const TARGET: &str = "bpfel-unknown-none";

/// Name of the eBPF crate's binary, i.e. of the ELF file.
pub const ELF_NAME: &str = "bulkhead-ebpf";

/// The eBPF crate's directory (outside the workspace).
pub fn crate_dir() -> PathBuf {
    cmd::repo_root().join("dataplane-ebpf")
}

/// Where `build` leaves the ELF.
pub fn elf_path() -> PathBuf {
    crate_dir()
        .join("target")
        .join(TARGET)
        .join("release")
        .join(ELF_NAME)
}

/// Checks the toolchain, builds the eBPF crate, and returns the ELF's path.
pub fn build() -> Result<PathBuf> {
    let toolchain = setup::ebpf_toolchain()?;
    build_with(&toolchain)
}

/// Builds the eBPF crate with an already checked toolchain.
pub fn build_with(toolchain: &setup::EbpfToolchain) -> Result<PathBuf> {
    cmd::run(&mut nightly_cargo(toolchain, "build")?).context("building the eBPF crate")?;
    let elf = elf_path();
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    // What the dataplane crate's build script compares with the sources before
    // it embeds the ELF (a stale ELF is a build error there).
    let stamp = ebpf_sources::stamp(cmd::repo_root()).context("hashing the eBPF sources")?;
    let stamp_path = ebpf_sources::stamp_path(&elf);
    std::fs::write(&stamp_path, format!("{stamp}\n"))
        .with_context(|| format!("cannot write {}", stamp_path.display()))?;
    eprintln!("build-ebpf: {} ({stamp})", elf.display());
    Ok(elf)
}

/// Runs clippy on the eBPF crate, warnings denied.
pub fn clippy(toolchain: &setup::EbpfToolchain) -> Result<()> {
    let mut cargo = nightly_cargo(toolchain, "clippy")?;
    cargo.args(["--", "-D", "warnings"]);
    cmd::run(&mut cargo).context("clippy on the eBPF crate")
}

/// `cargo +nightly SUBCOMMAND` for the eBPF crate: BPF target, `core` built
/// from source, release profile, bpf-linker first on `PATH`, and none of the
/// outer cargo's toolchain or host-build variables.
fn nightly_cargo(toolchain: &setup::EbpfToolchain, subcommand: &str) -> Result<Command> {
    let dir = crate_dir();
    let mut cargo = cmd::clean_for_cross("cargo");
    cargo
        .current_dir(&dir)
        .env("PATH", cmd::path_with(&toolchain.linker_bin_dir)?)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags())
        .arg(format!("+{}", setup::NIGHTLY))
        .arg(subcommand)
        .args(["-Z", "build-std=core", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(dir.join("target"));
    Ok(cargo)
}

/// Flags for the BPF target, as aya-build passes them: BTF for the loader
/// (debug info in, `--btf` to bpf-linker) and the `bpf_target_arch` cfg that
/// aya-ebpf uses for architecture-specific register layouts.
fn rustflags() -> OsString {
    let flags = [
        format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ];
    // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f.
    flags.join("\x1f").into()
}
