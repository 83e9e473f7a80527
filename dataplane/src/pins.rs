//! Where the dataplane is pinned, and making sure that place is a bpffs
//! that outlives the agent.
//!
//! Layout under the pin directory (default [`DEFAULT_PIN_DIR`]):
//!
//! ```text
//! DIR/maps/{IDENTITIES,IDENTITIES_EXACT,POLICY_V4,POLICY_NODES,ENDPOINTS_V6,CONFIG,CT,FRAGS,DROPS,
//!           FLOWS_0,FLOWS_1,FLOW_CONFIG,FLOW_STATS,EVENTS,DELIVER,
//!           SERVICES,SERVICE_CT,SERVICE_PENDING,SERVICE_PENDING_BY_CLIENT,SERVICE_MASQ,
//!           TAILS}
//! DIR/progs/{from_pod,to_pod,xdp_prefilter,deliver,leave_node,to_backend,
//!            open_from_pod,open_to_pod}
//! DIR/links/<ifindex>-{from_pod,to_pod,xdp,leave_node}   (tcx and XDP bpf_links)
//! ```
//!
//! Link names carry the ifindex of the host-side veth in the agent's network
//! namespace, so one pin directory serves one namespace (one node): give
//! each node its own `--bpffs` directory.
//!
//! `ip netns exec` runs a command in a private mount namespace with its own
//! `/sys`, where `/sys/fs/bpf` is not mounted; a bpffs mounted there would
//! vanish with the agent and take every pin (and so the enforcement) with it.
//! So: a directory already on a bpffs is used as is; in a private mount
//! namespace the host's view (`/proc/1/root/DIR`) is used when that is a
//! bpffs; the agent mounts bpffs at `/sys/fs/bpf` itself only in the host's
//! mount namespace. Otherwise it refuses, saying why.

use std::path::{Component, Path, PathBuf};

use super::DataplaneError;

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/bulkhead";

/// Where distributions mount bpffs.
const SYS_FS_BPF: &str = "/sys/fs/bpf";

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The policy map of the ABI in use (renamed on incompatible changes).
pub const POLICY_MAP: &str = "POLICY_V4";

/// The array of non-root policy tree nodes (ABI v4).
pub const POLICY_NODES_MAP: &str = "POLICY_NODES";

/// Maps of earlier ABI versions that this one replaced: their pins are
/// removed when the ELF is loaded (programs still attached keep their own
/// reference until replaced).
pub const RETIRED_MAPS: [&str; 3] = ["POLICY", "POLICY_V3", "ENDPOINTS"];

/// The pinned maps, in the ELF's names. A pin set that lacks one (an
/// earlier ABI: v4 had no flow maps) makes the agent load the ELF, reusing
/// the maps that are pinned and pinning the new ones.
pub const MAPS: [&str; 21] = [
    "IDENTITIES",
    bulkhead_common::IDENTITIES_EXACT_MAP,
    POLICY_MAP,
    POLICY_NODES_MAP,
    bulkhead_common::ENDPOINTS_MAP,
    "CONFIG",
    "CT",
    "FRAGS",
    "DROPS",
    "FLOWS_0",
    "FLOWS_1",
    "FLOW_CONFIG",
    "FLOW_STATS",
    "EVENTS",
    "DELIVER",
    "SERVICES",
    "SERVICE_CT",
    "SERVICE_PENDING",
    "SERVICE_PENDING_BY_CLIENT",
    "SERVICE_MASQ",
    "TAILS",
];

/// A pin directory on a bpffs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    /// The directory as the user named it.
    pub requested: PathBuf,
    /// The path this process uses (differs in a private mount namespace).
    pub root: PathBuf,
}

impl PinDir {
    /// A pinned map.
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }
    /// A pinned program.
    pub fn prog(&self, name: &str) -> PathBuf {
        self.root.join("progs").join(name)
    }
    /// Directory of the pinned links.
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }
    /// The pinned link of `hook` on `ifindex`.
    pub fn link(&self, ifindex: u32, hook: &str) -> PathBuf {
        self.links().join(format!("{ifindex}-{hook}"))
    }

    /// Resolves `dir` for an agent: the directory exists afterwards, on a
    /// bpffs that outlives this process (mounting bpffs at `/sys/fs/bpf` if
    /// needed and allowed, see the module docs).
    pub fn prepare(dir: &Path) -> Result<Self, DataplaneError> {
        let dir = absolute(dir);
        let root = match Self::locate(&dir)? {
            Some(root) => root,
            None if dir.starts_with(SYS_FS_BPF) && !private_mount_ns() => {
                mount_bpffs(Path::new(SYS_FS_BPF))?;
                dir.clone()
            }
            None => return Err(not_bpffs(&dir)),
        };
        for sub in ["maps", "progs", "links"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(DataplaneError::io("creating", p))?;
        }
        Ok(Self {
            requested: dir,
            root,
        })
    }

    /// Resolves `dir` for readers (`status`, `--cleanup`): `None` when there
    /// is no bpffs there (so nothing pinned). Creates and mounts nothing.
    pub fn existing(dir: &Path) -> Result<Option<Self>, DataplaneError> {
        let dir = absolute(dir);
        Ok(Self::locate(&dir)?.filter(|r| r.is_dir()).map(|root| Self {
            requested: dir,
            root,
        }))
    }

    /// The path to use for `dir` if it lies on a bpffs, directly or (in a
    /// private mount namespace) through the host's root.
    fn locate(dir: &Path) -> Result<Option<PathBuf>, DataplaneError> {
        if on_bpffs(dir) {
            return Ok(Some(dir.to_owned()));
        }
        if private_mount_ns() {
            let host = Path::new("/proc/1/root").join(dir.strip_prefix("/").unwrap_or(dir));
            if on_bpffs(&host) {
                tracing::info!(
                    dir = %dir.display(),
                    via = %host.display(),
                    "private mount namespace: pinning in the host's bpffs"
                );
                return Ok(Some(host));
            }
        }
        Ok(None)
    }
}

fn not_bpffs(dir: &Path) -> DataplaneError {
    let reason = if private_mount_ns() {
        "not on a bpffs shared with the host mount namespace; pins made here would vanish \
         when this process exits (ip netns exec gives the process its own /sys). Mount bpffs \
         in the host first (`mount -t bpf bpf /sys/fs/bpf`), or run the agent with --netns \
         instead of under `ip netns exec`"
    } else {
        "not on a bpffs; mount one there first (`mount -t bpf bpf DIR`) or use a directory \
         under /sys/fs/bpf"
    };
    DataplaneError::Bpffs {
        path: dir.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `dir` made absolute and lexically normalised.
pub fn absolute(dir: &Path) -> PathBuf {
    let joined = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether the nearest existing ancestor of `path` (itself included) is on
/// a bpffs.
// `f_type` is a C long: i64 here, i32 on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
/// Whether `path` (or its closest existing ancestor) is on a bpffs.
pub fn on_bpffs(path: &Path) -> bool {
    path.ancestors()
        .find(|a| a.exists())
        .and_then(|a| nix::sys::statfs::statfs(a).ok())
        .is_some_and(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Whether this process runs in a mount namespace other than PID 1's (as
/// under `ip netns exec`).
pub fn private_mount_ns() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    }
}

fn mount_bpffs(at: &Path) -> Result<(), DataplaneError> {
    tracing::info!(at = %at.display(), "mounting bpffs");
    nix::mount::mount(
        Some("bpf"),
        at,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| DataplaneError::Bpffs {
        path: at.to_owned(),
        reason: format!("mounting bpffs: {e}"),
    })
}

/// Removes a pin (file) if present.
pub fn remove_pin(path: &Path) -> Result<bool, DataplaneError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DataplaneError::io("removing", path)(e)),
    }
}
