//! Named network namespaces, made and removed the way iproute2 makes them,
//! so `ip netns`, CNI plugins (`CNI_NETNS=/run/netns/NAME`) and other
//! processes see the same namespaces.
//!
//! `ip netns add NAME`:
//! 1. makes [`NETNS_DIR`] a shared mount point (bind-mounting it on itself
//!    first if it is not a mount point), so the per-namespace mounts below
//!    propagate to mount namespaces created later (`ip netns exec`, the
//!    containers of a runtime) and their unmount propagates back, which is
//!    what lets a deleted namespace actually be freed;
//! 2. creates the empty file `NETNS_DIR/NAME` (`O_EXCL`: an existing name is
//!    an error);
//! 3. `unshare(CLONE_NEWNET)` and bind-mounts its own `/proc/self/ns/net`
//!    on that file; the mount holds the namespace alive with no process in it.
//!
//! iproute2 does step 3 in the `ip` process. The toolkit does it on a
//! short-lived thread (network namespaces are per thread), and therefore
//! bind-mounts `/proc/thread-self/ns/net`: `/proc/self` is the thread group
//! leader, which stays in the caller's namespace. rtnetlink's
//! `NetworkNamespace::add` forks instead, which is unsafe in a
//! multi-threaded process (the child allocates and logs).
//!
//! `ip netns del NAME` is `umount2(MNT_DETACH)` and `unlink`; the kernel
//! frees the namespace (and the veths in it) once nothing else holds it: no
//! process, socket or open file. [`destroy`] and the [`Netns`] guard first
//! kill the processes inside (as `ip netns pids` finds them).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::exec;

/// Where named network namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of namespace handling; each names the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name cannot be a file name in [`NETNS_DIR`].
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Creating a namespace whose name is taken.
    #[error("network namespace {name} already exists")]
    Exists {
        /// The name.
        name: String,
    },
    /// The namespace does not exist.
    #[error("network namespace {name} does not exist")]
    NotFound {
        /// The name.
        name: String,
    },
    /// [`NETNS_DIR`] could not be made a shared mount point.
    #[error("preparing {NETNS_DIR} as a shared mount point: {source}")]
    RunDir {
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// A step of creating a namespace failed (what was made is undone).
    #[error("creating network namespace {name}: {step}: {source}")]
    Create {
        /// The name.
        name: String,
        /// The failed step.
        step: &'static str,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// A step of deleting a namespace failed.
    #[error("deleting network namespace {name}: {step}: {source}")]
    Delete {
        /// The name.
        name: String,
        /// The failed step.
        step: &'static str,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// Opening the namespace file failed.
    #[error("opening network namespace {name}: {source}")]
    Open {
        /// The name.
        name: String,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// `setns` into the namespace failed.
    #[error("entering network namespace {name}: {source}")]
    Enter {
        /// The name.
        name: String,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// Listing [`NETNS_DIR`] or `/proc` failed.
    #[error("listing {dir}: {source}")]
    List {
        /// The directory.
        dir: &'static str,
        /// The failed call.
        #[source]
        source: io::Error,
    },
    /// Processes inside the namespace were signalled but did not exit.
    #[error("processes {pids:?} in network namespace {name} did not exit after SIGKILL")]
    Busy {
        /// The name.
        name: String,
        /// The survivors.
        pids: Vec<u32>,
    },
    /// Writing a sysctl inside the namespace failed.
    #[error("setting sysctl {key}={value} in network namespace {name}: {source}")]
    Sysctl {
        /// The name.
        name: String,
        /// The key as given.
        key: String,
        /// The value.
        value: String,
        /// The failed call.
        #[source]
        source: io::Error,
    },
}

/// Checks that `name` is one file name (what iproute2 accepts).
fn validate(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('/') || name.contains('\0') {
        "contains '/' or NUL"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(NetnsError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// The file of namespace `name`.
fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Makes [`NETNS_DIR`] exist and be a shared mount point, as `ip netns add`
/// does (serialised within the process; concurrent processes at worst stack
/// a second identical bind mount, as two `ip` processes would).
fn prepare_run_dir() -> Result<(), NetnsError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let run_dir = |source: Errno| NetnsError::RunDir {
        source: source.into(),
    };
    match nix::unistd::mkdir(NETNS_DIR, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(run_dir(e)),
    }
    let shared = || {
        nix::mount::mount(
            Some("none"),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: make it one, then share it.
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(run_dir)?;
            shared().map_err(run_dir)
        }
        Err(e) => Err(run_dir(e)),
    }
}

/// Creates named namespace `name` (`ip netns add`); its loopback is down,
/// as with `ip`. Fails with [`NetnsError::Exists`] if the name is taken.
fn create(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    prepare_run_dir()?;
    let path = path_of(name);
    let err = |step, source: Errno| NetnsError::Create {
        name: name.to_owned(),
        step,
        source: source.into(),
    };
    let flags = OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
    match nix::fcntl::open(&path, flags, Mode::empty()) {
        Ok(fd) => drop(fd),
        Err(Errno::EEXIST) => {
            return Err(NetnsError::Exists {
                name: name.to_owned(),
            });
        }
        Err(e) => return Err(err("creating the mount point", e)),
    }
    // A fresh thread: unshare moves only it into the new namespace, and it
    // exits right after, so nothing of the caller's changes namespace.
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| err("unshare", e))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| err("bind-mounting the namespace", e))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Deletes named namespace `name` as `ip netns del` does (unmount, remove
/// the file), without touching processes inside: they keep the namespace
/// alive until they exit. For a name that does not exist:
/// [`NetnsError::NotFound`]. This is the lab's `down` for a namespace
/// another process made; [`destroy`] also kills what runs inside.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    validate(name)?;
    let path = path_of(name);
    let err = |step, source: Errno| NetnsError::Delete {
        name: name.to_owned(),
        step,
        source: source.into(),
    };
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: a file left without its mount (a creation cut short).
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(Errno::ENOENT) => {
            return Err(NetnsError::NotFound {
                name: name.to_owned(),
            });
        }
        Err(e) => return Err(err("unmounting", e)),
    }
    match nix::unistd::unlink(&path) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(err("removing the mount point", e)),
    }
}

/// Kills every process inside namespace `name` (SIGKILL, waiting until they
/// have exited) and then deletes it: what the [`Netns`] guard does on drop,
/// for a namespace known only by name (a crashed run's leftovers).
pub fn destroy(name: &str) -> Result<(), NetnsError> {
    let handle = NsHandle::open(name)?;
    exec::kill_all(&handle)?;
    drop(handle);
    delete(name)
}

/// Whether named namespace `name` exists.
pub fn exists(name: &str) -> bool {
    validate(name).is_ok() && path_of(name).exists()
}

/// Names of every named namespace (`ip netns list`), sorted.
pub fn list() -> Result<Vec<String>, NetnsError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetnsError::List {
                dir: NETNS_DIR,
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// An open named namespace that this handle does not own: operate inside
/// it ([`NsHandle::netlink`], [`NsHandle::command`], [`NsHandle::run`],
/// [`NsHandle::sysctl`]) without deleting it. The open file pins the
/// namespace itself: a name deleted and made again still means the old one
/// here.
#[derive(Debug)]
pub struct NsHandle {
    name: String,
    file: File,
}

impl NsHandle {
    /// Opens existing namespace `name`.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        validate(name)?;
        let file = File::open(path_of(name)).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound {
                name: name.to_owned(),
            },
            _ => NetnsError::Open {
                name: name.to_owned(),
                source,
            },
        })?;
        Ok(Self {
            name: name.to_owned(),
            file,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file (`/run/netns/NAME`): what `CNI_NETNS` and `ip -n` name.
    pub fn path(&self) -> PathBuf {
        path_of(&self.name)
    }

    /// The namespace file, open (for `setns`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// A second descriptor of the namespace (owned by the caller).
    pub(crate) fn clone_fd(&self) -> Result<OwnedFd, NetnsError> {
        self.file
            .try_clone()
            .map(OwnedFd::from)
            .map_err(|source| NetnsError::Open {
                name: self.name.clone(),
                source,
            })
    }

    /// The namespace's (device, inode): how `/proc/PID/ns/net` is matched.
    pub(crate) fn id(&self) -> Result<(u64, u64), NetnsError> {
        let m = self.file.metadata().map_err(|source| NetnsError::Open {
            name: self.name.clone(),
            source,
        })?;
        Ok((m.dev(), m.ino()))
    }

    /// Moves the calling thread into the namespace, for good (only that
    /// thread; sockets it opens from then on belong to the namespace). For a
    /// thread made to live there, such as a server loop; everything else
    /// uses [`NsHandle::run`], which leaves the caller's thread alone.
    pub fn enter(&self) -> Result<(), NetnsError> {
        nix::sched::setns(self.fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
            name: self.name.clone(),
            source: e.into(),
        })
    }

    /// Sets sysctl `key` to `value` inside the namespace by writing
    /// `/proc/sys` from a thread in it. `key` is dotted
    /// (`net.ipv4.ip_forward`, `net.ipv4.conf.vp0.proxy_arp`) or, for a
    /// device name with dots in it, a path under `/proc/sys`
    /// (`net/ipv4/conf/eth0.1/forwarding`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let rel = if key.contains('/') {
            key.to_owned()
        } else {
            key.replace('.', "/")
        };
        let path = Path::new("/proc/sys").join(rel);
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Sysctl {
                name: self.name.clone(),
                key: key.to_owned(),
                value: value.to_owned(),
                source,
            })
    }
}

/// A named namespace this process created and owns: on drop the processes
/// inside are killed and the namespace is deleted (errors are printed,
/// since drop cannot return them; [`Netns::delete`] returns them). It
/// dereferences to its [`NsHandle`]. [`Netns::keep`] leaves it in place for
/// another process to delete by name ([`delete`], [`destroy`]).
#[derive(Debug)]
pub struct Netns {
    handle: Option<NsHandle>,
}

impl Netns {
    /// Creates named namespace `name`; fails with [`NetnsError::Exists`] if
    /// the name is taken.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        create(name)?;
        match NsHandle::open(name) {
            Ok(handle) => Ok(Self {
                handle: Some(handle),
            }),
            Err(e) => {
                let _ = delete(name);
                Err(e)
            }
        }
    }

    /// Creates `name` after destroying a namespace of that name left by an
    /// earlier run (a test's fixed name after a crash).
    pub fn recreate(name: &str) -> Result<Self, NetnsError> {
        match destroy(name) {
            Ok(()) | Err(NetnsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        Self::create(name)
    }

    /// Disarms the guard: the namespace outlives this value and the
    /// process; the returned handle still operates inside it.
    pub fn keep(mut self) -> NsHandle {
        self.handle.take().expect("armed until kept or deleted")
    }

    /// Kills the processes inside and deletes the namespace, returning
    /// what failed.
    pub fn delete(mut self) -> Result<(), NetnsError> {
        let handle = self.handle.take().expect("armed until kept or deleted");
        Self::teardown(handle)
    }

    fn teardown(handle: NsHandle) -> Result<(), NetnsError> {
        let killed = exec::kill_all(&handle);
        let name = handle.name.clone();
        // Our own descriptor must not keep the namespace alive.
        drop(handle);
        let deleted = delete(&name);
        killed.and(deleted)
    }
}

impl std::ops::Deref for Netns {
    type Target = NsHandle;

    fn deref(&self) -> &NsHandle {
        self.handle.as_ref().expect("armed until kept or deleted")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Err(e) = Self::teardown(handle)
        {
            eprintln!("bulkhead-netkit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_file_names() {
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(
                matches!(validate(bad), Err(NetnsError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        for good in ["a", "bh-lab-node0", "x.y", &"x".repeat(255)] {
            validate(good).unwrap();
        }
    }

    #[test]
    fn errors_name_the_namespace() {
        let e = NetnsError::Exists {
            name: "pod-a".into(),
        };
        assert_eq!(e.to_string(), "network namespace pod-a already exists");
        let e = NetnsError::Sysctl {
            name: "n".into(),
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(
            e.to_string()
                .contains("net.ipv4.ip_forward=1 in network namespace n")
        );
    }

    #[test]
    fn operations_on_a_bad_name_fail_before_any_system_call() {
        assert!(!exists("../etc"));
        assert!(matches!(delete("a/b"), Err(NetnsError::InvalidName { .. })));
        assert!(matches!(
            NsHandle::open(""),
            Err(NetnsError::InvalidName { .. })
        ));
    }
}
