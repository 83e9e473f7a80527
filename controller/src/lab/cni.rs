//! Registers the lab's pods with its agent exactly as a runtime's CNI chain
//! would: the real `bulkhead-cni` binary runs ADD in the node namespace
//! with the `CNI_*` environment and a `prevResult` describing the pod's
//! own wiring (its `eth0` with MAC and sandbox, the node-side veth, its
//! addresses), so the agent learns each pod's MAC and checks it.
//!
//! The plugin is found beside the `bulkhead` binary (cargo builds both
//! into one directory; the image installs both), or at `$BULKHEAD_CNI`;
//! without it the pods stay enforced by address only, and `lab up` says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

use super::state::{Host, LabState};
use super::{LabError, net};

/// How long each ADD may wait for the agent.
const TIMEOUT: &str = "30s";

/// ADDs run at once.
const PARALLEL: usize = 8;

/// The plugin binary, if there is one.
pub fn plugin(exe: &Path) -> Option<PathBuf> {
    std::env::var_os("BULKHEAD_CNI")
        .map(PathBuf::from)
        .or_else(|| Some(exe.with_file_name(bulkhead_cni::install::PLUGIN_TYPE)))
        .filter(|p| p.is_file())
}

/// Runs the chained plugin's ADD for every pod (not external host) on
/// nodes `nodes` of `state`, each with its node's agent; how many were
/// registered.
pub fn register_pods(state: &LabState, nodes: &[usize], plugin: &Path) -> Result<usize, LabError> {
    let pods: Vec<&Host> = state
        .hosts
        .iter()
        .filter(|h| !h.external && nodes.contains(&h.node))
        .filter(|h| state.nodes[h.node].agent.is_some())
        .collect();
    for chunk in pods.chunks(PARALLEL) {
        std::thread::scope(|s| {
            let runs: Vec<_> = chunk
                .iter()
                .map(|h| s.spawn(move || add(state, h, plugin)))
                .collect();
            runs.into_iter()
                .map(|r| {
                    r.join()
                        .unwrap_or_else(|_| Err(("?".into(), "the ADD thread panicked".into())))
                })
                .collect::<Result<Vec<()>, (PathBuf, String)>>()
        })
        .map_err(|(log, why)| LabError::Agent {
            why: format!("did not take the pods' CNI ADD: {why}"),
            log,
        })?;
    }
    Ok(pods.len())
}

/// The previous result a ptp-like plugin would have printed for `h`.
fn prev_result(h: &Host) -> serde_json::Value {
    let ips: Vec<serde_json::Value> = h
        .ips
        .iter()
        .map(|ip| {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            json!({"interface": 1, "address": format!("{ip}/{len}")})
        })
        .collect();
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": h.veth},
            {"name": "eth0", "mac": h.mac, "sandbox": format!("/run/netns/{}", h.netns)},
        ],
        "ips": ips,
    })
}

/// ADD of pod `h` with its node's agent; on failure, that agent's log and why.
fn add(state: &LabState, h: &Host, plugin: &Path) -> Result<(), (PathBuf, String)> {
    let node = &state.nodes[h.node];
    let agent = node
        .agent
        .as_ref()
        .expect("only pods of nodes with an agent");
    let fail = |why: String| (agent.log.clone(), why);
    let (ns, name) = h.name.split_once('/').unwrap_or(("default", &h.name));
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "bulkhead-lab",
        "type": bulkhead_cni::install::PLUGIN_TYPE,
        "socket": agent.api_socket,
        "timeout": TIMEOUT,
        "prevResult": prev_result(h),
    });
    let mut cmd = net::exec_in(&node.netns, plugin, &[]);
    cmd.env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("lab-{}", h.netns))
        .env("CNI_NETNS", format!("/run/netns/{}", h.netns))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("running {}: {e}", plugin.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| fail(format!("writing to {}: {e}", plugin.display())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for {}: {e}", plugin.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(fail(format!(
        "{}: {}{}",
        h.name,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
