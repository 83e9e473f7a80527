//! `cargo xtask build-ui`: builds the web UI's bundle (`npm ci` and `npm
//! run build` in `ui/`, Vite writing `ui/dist`), and writes the stamp of
//! its sources into it, which the agent crate's build script checks
//! before it embeds the bundle (a stale bundle is a build error there).
//!
//! Skipped when the bundle's stamp matches the sources (and `npm ci` when
//! `node_modules` is newer than the lockfile). npm's output goes to stderr,
//! like every step's: stdout carries only the bundle's path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, ui_sources};

/// The npm project's directory.
pub fn project_dir() -> PathBuf {
    cmd::repo_root().join("ui")
}

/// The bundle's directory.
pub fn dist_dir() -> PathBuf {
    cmd::repo_root().join(ui_sources::DIST)
}

/// Builds the bundle unless it is current; returns its directory.
pub fn build() -> Result<PathBuf> {
    let root = cmd::repo_root();
    let dist = dist_dir();
    let stamp = ui_sources::stamp(root).context("hashing the web UI's sources")?;
    let current = std::fs::read_to_string(ui_sources::stamp_path(&dist))
        .is_ok_and(|s| s.trim() == stamp)
        && dist.join("index.html").is_file();
    if current {
        eprintln!("build-ui: {} is up to date ({stamp})", dist.display());
        return Ok(dist);
    }
    install()?;
    cmd::run(&mut npm(&["run", "build"])).context("building the web UI (npm run build)")?;
    if !dist.join("index.html").is_file() {
        bail!(
            "npm run build succeeded but {} has no index.html",
            dist.display()
        );
    }
    let stamp_path = ui_sources::stamp_path(&dist);
    std::fs::write(&stamp_path, format!("{stamp}\n"))
        .with_context(|| format!("cannot write {}", stamp_path.display()))?;
    eprintln!("build-ui: {} ({stamp})", dist.display());
    Ok(dist)
}

/// `npm ci` in `ui/` unless `node_modules` was installed from the
/// lockfile as it is (npm's own record, `node_modules/.package-lock.json`,
/// is newer than `package.json` and `package-lock.json`).
pub fn install() -> Result<()> {
    let dir = project_dir();
    if !dir.join("package.json").is_file() {
        bail!("{} has no package.json: no web UI to build", dir.display());
    }
    let installed = dir.join("node_modules/.package-lock.json");
    if newer_than(
        &installed,
        &[dir.join("package.json"), dir.join("package-lock.json")],
    ) {
        eprintln!(
            "build-ui: {} is up to date",
            dir.join("node_modules").display()
        );
        return Ok(());
    }
    cmd::run(&mut npm(&["ci", "--no-audit", "--no-fund"]))
        .context("installing the web UI's npm packages (npm ci)")
}

/// `npm test` in `ui/`: the front end's unit tests (node's test runner).
pub fn test() -> Result<()> {
    install()?;
    cmd::run(&mut npm(&["test"])).context("the web UI's unit tests (npm test)")
}

/// Whether `file` exists and is newer than every one of `than`.
fn newer_than(file: &Path, than: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(t) = modified(file) else {
        return false;
    };
    than.iter().all(|p| modified(p).is_some_and(|s| s <= t))
}

/// `npm ARGS` in `ui/`, its output on stderr.
fn npm(args: &[&str]) -> Command {
    let mut c = cmd::clean("npm");
    c.current_dir(project_dir())
        .args(args)
        .stdout(Stdio::from(std::io::stderr()));
    c
}
