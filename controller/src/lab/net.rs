//! Every change the lab makes to the system goes through here, and all of it
//! through iproute2's `ip`: named network namespaces (`ip netns`), links,
//! addresses and routes inside them (`ip -n NS -batch -`), and commands run
//! inside them (`ip netns exec`). Nothing here addresses the root
//! namespace's links, routes or sysctls.
//!
//! `ip` rather than rtnetlink: namespace creation and `exec` need `ip`'s
//! mount-namespace handling anyway, and batch mode configures a namespace in
//! one process. This module is the one seam to replace with rtnetlink.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::LabError;

const IP: &str = "ip";

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with `input` on stdin; returns stdout, or an error with stderr.
fn run(mut cmd: Command, input: Option<&str>) -> Result<String, LabError> {
    let command = describe(&cmd);
    tracing::debug!(%command, input, "running");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: IP.to_owned(),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A failing command may close stdin early; its status says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn {
        program: IP.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates named network namespaces.
pub fn netns_add(names: &[String]) -> Result<(), LabError> {
    let lines: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
    batch(None, &lines)
}

/// Names of every named network namespace.
pub fn netns_list() -> Result<Vec<String>, LabError> {
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "list"]);
    Ok(run(cmd, None)?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes a named namespace; absent is fine.
pub fn netns_del(name: &str) -> Result<(), LabError> {
    if !netns_exists(name) {
        return Ok(());
    }
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "del", name]);
    run(cmd, None).map(drop)
}

/// PIDs of the processes inside a named namespace.
pub fn netns_pids(name: &str) -> Result<Vec<u32>, LabError> {
    if !netns_exists(name) {
        return Ok(Vec::new());
    }
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "pids", name]);
    Ok(run(cmd, None)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Runs `ip -batch` lines, inside `netns` if given.
pub fn batch(netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new(IP);
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let mut text = lines.join("\n");
    text.push('\n');
    run(cmd, Some(&text)).map(drop)
}

/// Sets sysctls inside `netns` (`key=value`, dotted keys).
pub fn sysctl(netns: &str, settings: &[&str]) -> Result<(), LabError> {
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "exec", netns, "sysctl", "-q", "-w"])
        .args(settings);
    run(cmd, None).map(drop)
}

/// A command that runs `program args` inside `netns`; `ip netns exec` execs
/// it, so the child's PID is the program's.
pub fn exec_in(netns: &str, program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "exec", netns]).arg(program).args(args);
    cmd
}

/// Starts `cmd` (from [`exec_in`]), with its stdout piped.
pub fn spawn(mut cmd: Command, stdin: Stdio, stderr: Stdio) -> Result<Child, LabError> {
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(stderr);
    cmd.spawn().map_err(|source| LabError::Spawn {
        program: IP.to_owned(),
        source,
    })
}
