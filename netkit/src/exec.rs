//! Running inside a namespace, and finding and stopping what runs there.
//!
//! [`NsHandle::command`] is `ip netns exec NAME PROGRAM` minus its mount
//! handling: `ip` also unshares a mount namespace, remounts `/sys` so that
//! `/sys/class/net` lists the namespace's devices, and bind-mounts
//! `/etc/netns/NAME/*` over `/etc`. A command started here sees the
//! caller's `/sys` (and `/sys/fs/bpf`, which `ip netns exec` hides) and
//! `/etc`; everything that goes through sockets, netlink, ioctls or
//! `/proc/sys/net` (ping, iptables, sysctl, iproute2 itself, the agent)
//! sees the namespace. Use `ip netns exec` for a program that reads
//! `/sys/class/net`.
//!
//! [`pids`] finds processes as `ip netns pids` does: a process whose
//! `/proc/PID/ns/net` is the namespace (its main thread; threads of a
//! process that entered a namespace on their own are not listed).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use nix::sched::CloneFlags;

use crate::ns::{NetnsError, NsHandle};

/// How long killed processes get to exit (a loaded 2-core machine).
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

impl NsHandle {
    /// A [`Command`] for `program` that runs inside this namespace (see the
    /// module doc for how it differs from `ip netns exec`). The child
    /// enters the namespace between fork and exec; the caller's threads do
    /// not move.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.put_in(&mut cmd);
        cmd
    }

    /// Makes `cmd` run inside this namespace (as [`Self::command`]).
    pub fn put_in(&self, cmd: &mut Command) {
        // Cloned here, before fork: between fork and exec only
        // async-signal-safe calls are allowed (setns is a system call).
        let fd = self.clone_fd();
        // A failure to clone the descriptor (out of descriptors) shows as
        // EBADF from `spawn`.
        // SAFETY: the closure makes one system call and allocates nothing.
        unsafe {
            cmd.pre_exec(move || match &fd {
                Ok(fd) => nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(Into::into),
                Err(_) => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            });
        }
    }

    /// Runs `f` on a scoped thread inside this namespace and returns its
    /// result; a panic in `f` is resumed in the caller. Sockets `f` opens
    /// stay in the namespace wherever they are used afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// PIDs of the processes inside this namespace (`ip netns pids`),
    /// this process excluded.
    pub fn pids(&self) -> Result<Vec<u32>, NetnsError> {
        let id = self.id()?;
        let me = std::process::id();
        let proc = std::fs::read_dir("/proc").map_err(|source| NetnsError::List {
            dir: "/proc",
            source,
        })?;
        let mut pids: Vec<u32> = proc
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me && in_netns(pid, id))
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }
}

/// Whether process `pid`'s network namespace is `id` (device, inode).
/// A process that exited (or a zombie) is in none.
fn in_netns(pid: u32, id: (u64, u64)) -> bool {
    std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| (m.dev(), m.ino()) == id)
}

/// PIDs of the processes inside named namespace `name` (`ip netns pids`).
pub fn pids(name: &str) -> Result<Vec<u32>, NetnsError> {
    NsHandle::open(name)?.pids()
}

/// SIGKILLs every process inside `ns` and waits (bounded) until each has
/// exited. Each is signalled through a pidfd opened while it was seen in the
/// namespace, so a recycled PID is never hit, and its exit is awaited on the
/// pidfd (readable once the process has exited; no polling of /proc).
pub(crate) fn kill_all(ns: &NsHandle) -> Result<(), NetnsError> {
    let id = ns.id()?;
    let mut waiting: Vec<(u32, OwnedFd)> = Vec::new();
    for pid in ns.pids()? {
        let Some(fd) = pidfd_open(pid) else { continue };
        // Opened after the listing: make sure it is still the same process.
        if !in_netns(pid, id) {
            continue;
        }
        if pidfd_kill(&fd) {
            waiting.push((pid, fd));
        }
    }
    let deadline = std::time::Instant::now() + EXIT_DEADLINE;
    let survivors: Vec<u32> = waiting
        .iter()
        .filter(|(_, fd)| !wait_exit(fd, deadline))
        .map(|(pid, _)| *pid)
        .collect();
    if survivors.is_empty() {
        Ok(())
    } else {
        Err(NetnsError::Busy {
            name: ns.name().to_owned(),
            pids: survivors,
        })
    }
}

/// A pidfd of `pid`, or `None` if it has exited.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative return is a descriptor this process now owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends SIGKILL through a pidfd; false if the process is already gone.
fn pidfd_kill(fd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// Waits until the pidfd's process has exited or `deadline` passes.
fn wait_exit(fd: &OwnedFd, deadline: std::time::Instant) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd as _;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_zero() => return false,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}
