//! Embeds the eBPF dataplane ELF into the `bulkhead` binary when it has been
//! built (`cargo xtask build-ebpf`, which `cargo xtask test` and `demo` run
//! before building the controller). The ELF is taken from `BULKHEAD_EBPF_ELF`
//! if set, else from the xtask's output path. Without it the controller
//! still builds, and `bulkhead agent` explains how to get a dataplane.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bulkhead_embedded_elf)");
    println!("cargo::rerun-if-env-changed=BULKHEAD_EBPF_ELF");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let elf = std::env::var_os("BULKHEAD_EBPF_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest_dir.join("../dataplane-ebpf/target/bpfel-unknown-none/release/bulkhead-ebpf")
        });
    // Rerun when the ELF appears or changes (a missing file reruns every build,
    // which is cheap).
    println!("cargo::rerun-if-changed={}", elf.display());
    if elf.is_file() {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"))
            .join("bulkhead-ebpf.elf");
        std::fs::copy(&elf, &out).expect("copying the eBPF ELF into OUT_DIR");
        println!("cargo::rustc-cfg=bulkhead_embedded_elf");
    } else {
        println!(
            "cargo::warning=no eBPF ELF at {}: `bulkhead agent` will be unavailable (run `cargo xtask build-ebpf` first)",
            elf.display()
        );
    }
}
