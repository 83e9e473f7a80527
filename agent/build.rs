//! Embeds the web UI's bundle (`ui/dist`, built by `cargo xtask build-ui`,
//! which `cargo xtask test` and `demo` run before building Rust) into this
//! crate, and so into the `bulkhead` binary, as the dataplane crate embeds
//! its eBPF ELF. The bundle is taken from `BULKHEAD_UI_DIST` if set, else
//! from `<workspace>/ui/dist`. Without one the crate still builds (cfg
//! `bulkhead_embedded_ui` unset) and the agent answers `/ui/` with 503.
//!
//! A stale bundle (built from other sources than this checkout's `ui/`)
//! is refused with a build error (see build/ui_sources.rs). The bundle is
//! copied into `OUT_DIR` (dot files left out) and `include_dir!` embeds
//! the copy, so the binary holds exactly what was checked.

use std::io;
use std::path::{Path, PathBuf};

#[path = "../dataplane/build/ebpf_sources.rs"]
#[allow(dead_code)]
mod ebpf_sources;
#[path = "build/ui_sources.rs"]
#[allow(dead_code)]
mod ui_sources;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bulkhead_embedded_ui)");
    println!("cargo::rerun-if-env-changed=BULKHEAD_UI_DIST");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build/ui_sources.rs");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("the agent crate is in the workspace")
        .to_owned();
    let dist = std::env::var_os("BULKHEAD_UI_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(ui_sources::DIST));
    // Rerun when the bundle or any of its sources change: the npm
    // project's directory is watched (recursively) as a whole, as a
    // missing path (an absent vite.config variant) would rerun every
    // build; a bundle elsewhere too. A checkout without `ui/` watches
    // nothing of it, for the same reason.
    let ui = root.join("ui");
    if ui.is_dir() {
        println!("cargo::rerun-if-changed={}", ui.display());
    }
    if !dist.starts_with(&ui) && dist.is_dir() {
        println!("cargo::rerun-if-changed={}", dist.display());
    }
    if !dist.join("index.html").is_file() {
        println!(
            "cargo::warning=no web UI bundle at {}: the agent will answer /ui/ with 503 (run `cargo xtask build-ui` first)",
            dist.display()
        );
        return;
    }
    if let Some(why) = stale(&dist, &root) {
        println!(
            "cargo::error=the web UI bundle {} is stale: {why}. Run `cargo xtask build-ui` \
             (it rebuilds the bundle and its stamp), then build again",
            dist.display()
        );
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("ui-dist");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("removing the old copy of the bundle");
    }
    copy_tree(&dist, &out).expect("copying the web UI bundle into OUT_DIR");
    println!("cargo::rustc-cfg=bulkhead_embedded_ui");
}

/// Why the bundle in `dist` must not be embedded, if it must not.
fn stale(dist: &Path, root: &Path) -> Option<String> {
    match ui_sources::check(dist, root) {
        Ok(Ok(())) => None,
        Ok(Err(ebpf_sources::Stale::Stamp { built_from, now })) => Some(format!(
            "it was built from other sources ({built_from}) than this checkout's ui/ ({now})"
        )),
        Ok(Err(ebpf_sources::Stale::Newer(source))) => Some(format!(
            "{} changed after it was built",
            source.strip_prefix(root).unwrap_or(&source).display()
        )),
        Err(e) => Some(format!("cannot compare it with its sources: {e}")),
    }
}

/// Copies the files under `from` to `to`, leaving out dot files and
/// directories (the stamp).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
