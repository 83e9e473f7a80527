//! Embeds the eBPF dataplane ELF into this crate (and so into the `bulkhead`
//! binary) when it has been built (`cargo xtask build-ebpf`, which `cargo
//! xtask test` and `demo` run before building the controller). The ELF is
//! taken from `BULKHEAD_EBPF_ELF` if set, else from the xtask's output path.
//! Without it the crate still builds, and `bulkhead agent` explains how to get a dataplane.
//!
//! A stale ELF (built from other sources than this checkout's
//! dataplane-ebpf/ and common/) is refused with a build error: embedding it
//! would run an old dataplane against a new ABI (see build/ebpf_sources.rs).

use std::path::{Path, PathBuf};

#[path = "build/ebpf_sources.rs"]
#[allow(dead_code)]
mod ebpf_sources;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bulkhead_embedded_elf)");
    println!("cargo::rerun-if-env-changed=BULKHEAD_EBPF_ELF");
    println!("cargo::rerun-if-changed=build/ebpf_sources.rs");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("..");
    let elf = std::env::var_os("BULKHEAD_EBPF_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest_dir.join("../dataplane-ebpf/target/bpfel-unknown-none/release/bulkhead-ebpf")
        });
    // Rerun when the ELF, its stamp or any of its sources appear or change
    // (a missing file reruns every build, which is cheap; a directory is
    // scanned recursively).
    println!("cargo::rerun-if-changed={}", elf.display());
    println!(
        "cargo::rerun-if-changed={}",
        ebpf_sources::stamp_path(&elf).display()
    );
    for source in ebpf_sources::SOURCES {
        println!("cargo::rerun-if-changed={}", root.join(source).display());
    }
    if !elf.is_file() {
        println!(
            "cargo::warning=no eBPF ELF at {}: `bulkhead agent` will be unavailable (run `cargo xtask build-ebpf` first)",
            elf.display()
        );
        return;
    }
    if let Some(why) = stale(&elf, &root) {
        println!(
            "cargo::error=the eBPF ELF {} is stale: {why}. Run `cargo xtask build-ebpf` \
             (it rebuilds the ELF and its stamp), then build again",
            elf.display()
        );
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"))
        .join("bulkhead-ebpf.elf");
    std::fs::copy(&elf, &out).expect("copying the eBPF ELF into OUT_DIR");
    println!("cargo::rustc-cfg=bulkhead_embedded_elf");
}

/// Why `elf` must not be embedded, if it must not.
fn stale(elf: &Path, root: &Path) -> Option<String> {
    match ebpf_sources::check(elf, root) {
        Ok(Ok(())) => None,
        Ok(Err(ebpf_sources::Stale::Stamp { built_from, now })) => Some(format!(
            "it was built from other sources ({built_from}) than this checkout's \
             dataplane-ebpf/ and common/ ({now})"
        )),
        Ok(Err(ebpf_sources::Stale::Newer(source))) => Some(format!(
            "{} changed after it was built",
            source.strip_prefix(root).unwrap_or(&source).display()
        )),
        Err(e) => Some(format!("cannot compare it with its sources: {e}")),
    }
}
