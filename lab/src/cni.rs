//! The lab's pods are wired as a container runtime wires them: through
//! each node's CNI chain, `[ptp (host-local IPAM), bulkhead-cni]`, run the
//! way the CNI spec ("Execution of network configurations") says a
//! runtime runs it, on a node whose agent already runs (as kubelet adds
//! pods on a running node). `ptp` makes the pod's `eth0` and the node's
//! veth end, `host-local` reserves the pod's addresses in the node's data
//! directory, and `bulkhead-cni` returns only once the node's agent
//! enforces the pod on that veth. `lab down` runs DEL through the same
//! chain for every pod.
//!
//! # Invocation
//!
//! Each plugin is an executable found in `CNI_PATH` (Debian's reference
//! plugins in [`PLUGIN_DIR`], `bulkhead-cni` beside the `bulkhead`
//! binary), started with the node's network namespace as its own (the
//! host end of the veth lives there), `CNI_COMMAND`, `CNI_CONTAINERID`,
//! `CNI_NETNS` (the pod's namespace file), `CNI_IFNAME=eth0`, `CNI_ARGS`
//! (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`...) and `CNI_PATH`; on stdin its
//! entry of the list with the list's `cniVersion` and `name`, the previous
//! plugin's result as `prevResult` and, for each capability the entry
//! declares, the runtime's value under `runtimeConfig`; its result on
//! stdout. ADD runs the plugins in order; DEL in reverse, with the final
//! ADD result. The pod's loopback is brought up by the `loopback` plugin
//! beforehand, as containerd does.
//!
//! Hand-written, because no maintained Rust crate runs CNI plugins as a
//! runtime (libcni is Go); it is the few rules above.
//!
//! # Addresses
//!
//! The lab is the runtime that knows each node's pod CIDRs (as kubelet
//! knows `spec.podCIDRs`): every ADD and DEL hands `host-local` its node's
//! ranges through the `ipRanges` capability, and the pod's planned
//! addresses (the model's) through the `ips` capability (CNI conventions;
//! `host-local`'s documented ways to take ranges from the runtime and to
//! request specific addresses). A node's ranges are its share of each pod
//! CIDR ([`super::nodes::node_cidr`]), as ranges of the whole pod CIDR so
//! the gateway is the lab's ([`super::plan::gateway`]), plus a one-address
//! range for each of its pods whose address lies outside the share (see
//! [`super::cniconf::range_sets`]); a pod gets the range sets of its own families only, so
//! one declared with a single family in a dual-stack lab gets nothing more.
//!
//! # Files
//!
//! `cni/` in each node's directory holds the node's list
//! (`bulkhead-lab.conflist`) and `host-local`'s `dataDir` (`ipam/`), so
//! `lab down` (and any cleanup that removes the lab's directory) removes
//! every reservation. Plugins run under umask 077, so what they write is
//! owner-only like the rest of the lab's directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use super::cniconf::{
    IFNAME, NETWORK, capability_args, cni_dir, conflist, loopback, plugin_conf, wiring,
};
use super::state::{Host, LabState};
use super::{LabError, net};

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Environment variable naming the directories (`:`-separated) to find
/// the reference plugins in instead of [`PLUGIN_DIR`].
pub const PLUGIN_PATH_ENV: &str = "BULKHEAD_CNI_PATH";

/// The reference plugins the lab runs.
pub const REFERENCE_PLUGINS: [&str; 3] = ["ptp", "host-local", "loopback"];

/// Checks that the reference plugins are in `cni_path`.
pub fn check_plugins(cni_path: &[PathBuf]) -> Result<(), LabError> {
    for kind in REFERENCE_PLUGINS {
        if !cni_path.iter().any(|d| d.join(kind).is_file()) {
            return Err(LabError::CniPlugin {
                plugin: kind.to_owned(),
                path: join_path(cni_path),
            });
        }
    }
    Ok(())
}

/// `CNI_PATH`'s value.
fn join_path(cni_path: &[PathBuf]) -> String {
    cni_path
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Pods added (or deleted) at once.
const PARALLEL: usize = 8;

/// The `bulkhead-cni` binary, if there is one: `$BULKHEAD_CNI`, or beside
/// the `bulkhead` binary (cargo builds both into one directory; the image
/// installs both).
pub fn plugin(exe: &Path) -> Option<PathBuf> {
    std::env::var_os("BULKHEAD_CNI")
        .map(PathBuf::from)
        .or_else(|| Some(exe.with_file_name(bulkhead_cni::install::PLUGIN_TYPE)))
        .filter(|p| p.is_file())
}

/// The directories of `CNI_PATH`: the reference plugins', then
/// `bulkhead-cni`'s (if any).
pub fn cni_path(bulkhead_cni: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::env::var(PLUGIN_PATH_ENV) {
        Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
        _ => vec![PathBuf::from(PLUGIN_DIR)],
    };
    if let Some(dir) = bulkhead_cni.and_then(Path::parent) {
        dirs.push(dir.to_owned());
    }
    dirs
}

/// Writes every node's list into its [`cni_dir`] and records where.
pub fn write_conflists(state: &mut LabState, bulkhead_cni: bool) -> Result<(), LabError> {
    for i in 0..state.nodes.len() {
        let dir = cni_dir(state, i);
        bulkhead_policy::private::create_dir_all(&dir).map_err(LabError::io(&dir))?;
        let path = dir.join(format!("{NETWORK}.conflist"));
        let text = serde_json::to_string_pretty(&conflist(state, i, bulkhead_cni))
            .expect("JSON values serialise");
        bulkhead_policy::private::write(&path, (text + "\n").as_bytes())
            .map_err(LabError::io(&path))?;
        state.nodes[i].cni_conf = Some(path);
    }
    Ok(())
}

/// One attachment: a pod on its node, as the runtime describes it to the
/// plugins.
struct Attachment<'a> {
    state: &'a LabState,
    host: &'a Host,
    cni_path: &'a [PathBuf],
}

impl Attachment<'_> {
    fn node_name(&self) -> &str {
        &self.state.node_of(self.host).name
    }

    fn container_id(&self) -> String {
        format!("lab-{}", self.host.netns)
    }

    fn netns_path(&self) -> PathBuf {
        Path::new(bulkhead_netkit::NETNS_DIR).join(&self.host.netns)
    }

    fn cni_args(&self) -> String {
        let (ns, name) = self
            .host
            .name
            .split_once('/')
            .unwrap_or(("default", &self.host.name));
        // IgnoreUnknown: plugins that know none of these keys (host-local)
        // must not refuse them (what kubelet and containerd pass too).
        format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}")
    }

    fn capability_args(&self) -> serde_json::Map<String, Value> {
        capability_args(self.state, self.host)
    }

    fn fail(&self, command: &'static str, plugin: &str, why: String) -> LabError {
        LabError::Cni {
            command,
            pod: self.host.name.clone(),
            node: self.node_name().to_owned(),
            plugin: plugin.to_owned(),
            why,
        }
    }

    /// Finds a plugin's executable in `CNI_PATH`.
    fn find(&self, kind: &str) -> Result<PathBuf, LabError> {
        self.cni_path
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| LabError::CniPlugin {
                plugin: kind.to_owned(),
                path: self.joined_path(),
            })
    }

    fn joined_path(&self) -> String {
        join_path(self.cni_path)
    }

    /// Runs one plugin, `entry` of `list` (with `prev` as `prevResult`),
    /// for `command` on interface `ifname`; its stdout.
    fn exec(
        &self,
        command: &'static str,
        list: &Value,
        entry: &Value,
        ifname: &str,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, LabError> {
        let kind = entry["type"].as_str().unwrap_or_default().to_owned();
        let conf = plugin_conf(list, entry, prev, self.capability_args());
        let bin = self.find(&kind)?;
        let node = net::open(&self.state.node_of(self.host).netns)?;
        let mut cmd = node.command(&bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id())
            .env("CNI_NETNS", self.netns_path())
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", self.cni_args())
            .env("CNI_PATH", self.joined_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(command, plugin = %kind, pod = %self.host.name, %conf, "CNI");
        let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failing plugin may close stdin early; its status says why.
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        let out = child.wait_with_output().map_err(|source| LabError::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
        let stdout: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let why = match &stdout {
                Some(e) => format!(
                    "{} ({}; code {})",
                    e["msg"].as_str().unwrap_or("?"),
                    e["details"].as_str().unwrap_or(""),
                    e["code"]
                ),
                None => format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            };
            return Err(self.fail(command, &kind, why));
        }
        Ok(stdout)
    }

    /// ADD through the loopback plugin (`lo`), then the node's chain; the
    /// final result.
    fn add(&self, list: &Value) -> Result<Value, LabError> {
        self.exec("ADD", &loopback(), &loopback()["plugins"][0], "lo", None)?;
        let mut prev: Option<Value> = None;
        for entry in list["plugins"].as_array().into_iter().flatten() {
            let out = self.exec("ADD", list, entry, IFNAME, prev.as_ref())?;
            prev = Some(out.unwrap_or(Value::Null));
        }
        prev.ok_or_else(|| self.fail("ADD", "?", "the list has no plugins".into()))
    }

    /// DEL through the chain, last plugin first, then loopback; every
    /// plugin is tried, the first failure returned.
    fn del(&self, list: &Value) -> Result<(), LabError> {
        let mut first = None;
        for entry in list["plugins"].as_array().into_iter().flatten().rev() {
            if let Err(e) = self.exec("DEL", list, entry, IFNAME, self.host.cni.as_ref()) {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.exec("DEL", &loopback(), &loopback()["plugins"][0], "lo", None) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

/// The list node `index` writes ([`write_conflists`]), read back.
fn read_list(state: &LabState, index: usize) -> Result<Option<Value>, LabError> {
    let Some(path) = &state.nodes[index].cni_conf else {
        return Ok(None);
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LabError::State {
                path: path.clone(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path)(e)),
    }
}

/// While alive, files the CNI plugins started meanwhile create are
/// owner-only, as everything in the lab's directory (`host-local` makes
/// its reservations 0644 in 0755 directories under the usual umask). The
/// umask is the process's; `lab` starts nothing else while plugins run.
struct OwnerOnly(nix::sys::stat::Mode);

impl OwnerOnly {
    fn set() -> Self {
        Self(nix::sys::stat::umask(
            nix::sys::stat::Mode::from_bits_truncate(0o077),
        ))
    }
}

impl Drop for OwnerOnly {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// ADDs every pod of nodes `nodes` through its node's chain (a few at
/// once), records each result (veth, MAC, the result itself) in `state`
/// and checks that each pod got the addresses planned; how many.
pub fn add_pods(
    state: &mut LabState,
    nodes: &[usize],
    cni_path: &[PathBuf],
) -> Result<usize, LabError> {
    let lists: Vec<Option<Value>> = (0..state.nodes.len())
        .map(|i| read_list(state, i))
        .collect::<Result<_, _>>()?;
    let pods: Vec<usize> = (0..state.hosts.len())
        .filter(|&i| state.hosts[i].is_pod() && nodes.contains(&state.hosts[i].node))
        .collect();
    let _owner_only = OwnerOnly::set();
    for chunk in pods.chunks(PARALLEL) {
        let snapshot: &LabState = state;
        let results: Vec<Result<(usize, Value), LabError>> = std::thread::scope(|s| {
            let runs: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let lists = &lists;
                    s.spawn(move || {
                        let host = &snapshot.hosts[i];
                        let a = Attachment {
                            state: snapshot,
                            host,
                            cni_path,
                        };
                        let list = lists[host.node].as_ref().ok_or_else(|| {
                            a.fail("ADD", "?", "the node has no CNI configuration".into())
                        })?;
                        a.add(list).map(|r| (i, r))
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for r in results {
            let (i, result) = r?;
            record(state, i, result)?;
        }
        state.save()?;
    }
    Ok(pods.len())
}

/// Records pod `i`'s ADD result, checking it has the planned addresses.
fn record(state: &mut LabState, i: usize, result: Value) -> Result<(), LabError> {
    let h = &state.hosts[i];
    let sandbox = Path::new(bulkhead_netkit::NETNS_DIR).join(&h.netns);
    let fail = |why: String| LabError::Cni {
        command: "ADD",
        pod: h.name.clone(),
        node: state.node_of(h).name.clone(),
        plugin: "ptp".into(),
        why,
    };
    let w = wiring(&result, IFNAME, &sandbox)
        .ok_or_else(|| fail(format!("a result without the pod's interfaces: {result}")))?;
    let mut want = h.ips.clone();
    want.sort_unstable();
    if w.ips != want {
        return Err(fail(format!(
            "gave addresses {:?}, not the planned {:?}",
            w.ips, want
        )));
    }
    let h = &mut state.hosts[i];
    h.veth = w.veth;
    h.mac = w.mac;
    h.cni = Some(result);
    Ok(())
}

/// DELs every pod of `state` through its node's chain (a few at once), as
/// a runtime removes a sandbox: plugins last first, with the pod's ADD
/// result. Failures are logged, not returned (`lab down` goes on and
/// removes what is left); how many pods were deleted cleanly.
pub fn del_pods(state: &LabState, exe: Option<&Path>) -> usize {
    let lists: Vec<Option<Value>> = (0..state.nodes.len())
        .map(|i| {
            read_list(state, i).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading a node's CNI configuration");
                None
            })
        })
        .collect();
    let plugin = exe.and_then(plugin);
    let cni_path = cni_path(plugin.as_deref());
    let list_of = |h: &Host| lists.get(h.node).and_then(Option::as_ref);
    let pods: Vec<(&Host, &Value)> = state
        .hosts
        .iter()
        .filter(|h| h.is_pod())
        .filter_map(|h| Some((h, list_of(h)?)))
        .collect();
    let mut ok = 0;
    let _owner_only = OwnerOnly::set();
    for chunk in pods.chunks(PARALLEL) {
        std::thread::scope(|s| {
            let runs: Vec<_> = chunk
                .iter()
                .map(|&(host, list)| {
                    let cni_path = &cni_path;
                    s.spawn(move || {
                        let a = Attachment {
                            state,
                            host,
                            cni_path,
                        };
                        a.del(list)
                    })
                })
                .collect();
            for r in runs {
                match r.join() {
                    Ok(Ok(())) => ok += 1,
                    Ok(Err(e)) => tracing::warn!(error = %e, "CNI DEL"),
                    Err(_) => tracing::warn!("a CNI DEL thread panicked"),
                }
            }
        });
    }
    ok
}
