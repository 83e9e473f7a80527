//! Running child commands: a clean environment, echoing, timed steps.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the directory of the top-level `Cargo.toml`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// Variables that `cargo run` (through rustup) sets for the xtask process and
/// that would leak into a child cargo: they pin the toolchain (so `+nightly`
/// would be ignored or mixed with stable's rustc) or describe the xtask crate.
const LEAKED_VARS: &[&str] = &[
    "CARGO",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_TOOLCHAIN_SOURCE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_MAKEFLAGS",
    "OUT_DIR",
];

/// Build-configuration variables removed for the eBPF build only: flags and
/// directories meant for host builds must not reach the BPF target.
const HOST_BUILD_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTFLAGS",
];

/// A command with the variables that `cargo run` leaked removed, and
/// `LD_LIBRARY_PATH` stripped of the entries cargo prepended (stable's
/// toolchain libraries and our target directory).
pub fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if LEAKED_VARS.contains(&key)
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("__CARGO")
        {
            cmd.env_remove(key);
        }
    }
    if let Some(paths) = env::var_os("LD_LIBRARY_PATH") {
        let rustup_toolchains = rustup_home().join("toolchains");
        let target = repo_root().join("target");
        let kept: Vec<PathBuf> = env::split_paths(&paths)
            .filter(|p| !p.starts_with(&rustup_toolchains) && !p.starts_with(&target))
            .collect();
        if kept.is_empty() {
            cmd.env_remove("LD_LIBRARY_PATH");
        } else {
            cmd.env(
                "LD_LIBRARY_PATH",
                env::join_paths(kept).expect("paths came from a path list"),
            );
        }
    }
    cmd
}

/// Like [`clean`], and also without host build flags and target directories:
/// for cargo invocations that build for another target or toolchain.
pub fn clean_for_cross(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = clean(program);
    for key in HOST_BUILD_VARS {
        cmd.env_remove(key);
    }
    cmd
}

/// `PATH` with `dir` put first.
pub fn path_with(dir: &Path) -> Result<OsString> {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = env::var_os("PATH") {
        paths.extend(env::split_paths(&old));
    }
    env::join_paths(paths).context("PATH entry contains a separator")
}

fn rustup_home() -> PathBuf {
    env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".rustup"))
}

/// The user's home directory (`$HOME`).
pub fn home() -> PathBuf {
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio, echoing it to stderr; fails unless it
/// exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    eprintln!("+ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout if it exits 0, `None` if it
/// cannot start or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs one named step, printing its name and elapsed time to stderr; a
/// failure names the step.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> {name}");
    let start = Instant::now();
    let result = f();
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(v) => {
            eprintln!("<== {name}: ok ({secs:.1}s)");
            Ok(v)
        }
        Err(e) => {
            eprintln!("<== {name}: FAILED ({secs:.1}s)");
            Err(e.context(format!("step `{name}` failed")))
        }
    }
}

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
