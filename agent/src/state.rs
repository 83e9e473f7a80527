//! The agent's state file: what it last enforced, for `bulkhead status`,
//! `--cleanup` and tools that wait for a sync (`lab sync`). The pinned maps
//! are the truth about enforcement; this file adds names (pods, devices)
//! and the agent's view (content hash enforced, last error).
//!
//! Path: `/run/bulkhead/agent/<pin dir, '/' as '_'>.json`, written
//! atomically (temporary file and rename), owner-only (0600, in a 0700
//! directory; see [`bulkhead_policy::private`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use bulkhead_policy::source::SourceStatus;

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/bulkhead/agent";

/// One local endpoint as the agent knows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointState {
    /// `namespace/name`.
    pub pod: String,
    /// ifindex of the host-side veth.
    pub ifindex: u32,
    /// Its name.
    pub ifname: String,
}

/// The state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentState {
    /// PID of the agent.
    pub pid: u32,
    /// The manifest directory (empty in Kubernetes mode).
    #[serde(default)]
    pub manifests: PathBuf,
    /// The pin directory (as given).
    pub pin_dir: PathBuf,
    /// The source's revision as last read: for a manifest directory its
    /// content hash ([`bulkhead_policy::source::manifest::content_hash`]), for the
    /// Kubernetes API the resourceVersion up to which every watched kind
    /// is seen. The "done" token tools wait for.
    #[serde(alias = "content_hash")]
    pub source_revision: String,
    /// Source revision whose policy is in force (`None` before the first
    /// successful sync).
    #[serde(alias = "enforced_hash")]
    pub enforced_revision: Option<String>,
    /// Where the model comes from and how that source is doing.
    #[serde(default)]
    pub source: SourceStatus,
    /// Revision in force.
    pub revision: u64,
    /// The last error (invalid manifests, rejected image), if the content on
    /// disk is not what is enforced.
    pub error: Option<String>,
    /// Warnings about the manifests in force (`Model::warnings`: accepted,
    /// but part of an object is ineffective).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Local endpoints.
    pub endpoints: Vec<EndpointState>,
    /// The quarantines in force (the agent's store's and the pods'
    /// labels'), as of the last successful sync.
    #[serde(default)]
    pub quarantines: Vec<crate::quarantine::QuarantineState>,
    /// Whether XDP is attached.
    pub xdp: bool,
    /// Whether host routing is on.
    #[serde(default)]
    pub host_routing: bool,
    /// Devices with netlink TC filters (fallback mode).
    pub netlink_devices: Vec<String>,
    /// Where the web UI listener serves (`--ui-addr`, the port the OS
    /// chose for port 0), if the agent has one: `lab ui` prints it.
    #[serde(default)]
    pub ui_addr: Option<std::net::SocketAddr>,
    /// Milliseconds since the epoch of this write.
    pub updated_unix_ms: u64,
}

/// The state file of the agent pinning under `pin_dir`.
pub fn state_path(pin_dir: &Path) -> PathBuf {
    let pin_dir = bulkhead_dataplane::pins::absolute(pin_dir);
    let name: String = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

impl AgentState {
    /// Reads the state file; `None` if absent or unreadable.
    pub fn read(pin_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(state_path(pin_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the state file atomically.
    pub fn write(&self) -> std::io::Result<()> {
        self.write_at(&state_path(&self.pin_dir))
    }

    /// Writes the state to `path` atomically, owner-only; its directory
    /// (Bulkhead's own) is made or tightened to 0700.
    pub(crate) fn write_at(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            bulkhead_policy::private::own_dir(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bulkhead_policy::private::write_atomic(path, &tmp, &bytes)
    }

    /// Removes the state file of `pin_dir`, its CNI registrations, its
    /// quarantines and its activated baselines (absent is fine: `--cleanup` leaves nothing), and the
    /// state directories when they are left empty.
    pub fn remove(pin_dir: &Path) -> std::io::Result<()> {
        for file in [
            state_path(pin_dir),
            crate::cni::Registry::path_for(pin_dir),
            crate::quarantine::QuarantineStore::path_for(pin_dir),
            crate::alerts::active::ActiveBaselines::path_for(pin_dir),
        ] {
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let dir = Path::new(STATE_DIR);
        for d in [dir, dir.parent().unwrap_or(dir)] {
            // Fails (and is left) when not empty.
            let _ = std::fs::remove_dir(d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
