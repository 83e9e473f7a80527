//! The two bpf(2) operations aya 0.14 does not offer, by raw system call:
//!
//! - [`RcuBarrier`]: wait until every BPF program that was running has
//!   finished (a full RCU grace period). There is no bpf(2) command for
//!   that, but updating an element of a map-in-map is one: the kernel's
//!   `maybe_wait_bpf_programs()` (kernel/bpf/syscall.c) calls
//!   `synchronize_rcu()` after every successful update or delete of a
//!   `BPF_MAP_TYPE_ARRAY_OF_MAPS`/`HASH_OF_MAPS` element, "so that
//!   userspace, when we return to it, knows that all non-sleepable programs
//!   that could be running use the new map value" (true from 4.14 to the
//!   6.x kernels; the kernel's own selftests use the same trick). TC and
//!   XDP programs are non-sleepable and run under RCU (also under
//!   `BPF_PROG_TEST_RUN`), so after the update no program run that started
//!   before it is still running.
//! - [`lookup_and_delete_batch`]: `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (5.6+),
//!   which empties a hash table in a few system calls instead of three per
//!   entry.
//! - [`pinned_tcx_link`]: where a pinned tcx link is attached (its device
//!   and direction, from `BPF_OBJ_GET` and `BPF_OBJ_GET_INFO_BY_FD`). aya's
//!   `LinkInfo` has no tcx target, and its `query_tcx` opens every attached
//!   program by id, which needs `CAP_SYS_ADMIN`: more than the DaemonSet's
//!   capabilities (`BPF`, `NET_ADMIN`, `PERFMON`).
//!
//! Written by hand because no maintained crate at the aya version in use
//! wraps them; the attribute layouts come from `aya_obj::generated`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_link_info, bpf_map_type};
use nix::libc;

/// `bpf(cmd, attr)`.
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` that the kernel may
    // read and write (size passed along); pointers inside it are the
    // caller's responsibility.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A zeroed `bpf_attr` (every command requires unused fields zero).
fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a plain C union of integers; all zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An all-zero `T` (valid: `Pod` types have no invalid bit patterns).
fn zeroed<T: aya::Pod>() -> T {
    // SAFETY: `aya::Pod` types are plain bytes.
    unsafe { std::mem::zeroed() }
}

/// Creates a map of `map_type` with 4-byte keys and values.
fn create_map(
    map_type: bpf_map_type,
    max_entries: u32,
    inner: Option<BorrowedFd<'_>>,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the BPF_MAP_CREATE member of a zeroed union.
    let create = unsafe { &mut attr.__bindgen_anon_1 };
    create.map_type = map_type as u32;
    create.key_size = 4;
    create.value_size = 4;
    create.max_entries = max_entries;
    if let Some(inner) = inner {
        create.inner_map_fd = inner.as_raw_fd() as u32;
    }
    let fd = sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for an RCU grace period on demand: an `ARRAY_OF_MAPS` of one
/// element whose update makes the kernel call `synchronize_rcu()` (see the
/// module docs). Created once; each [`RcuBarrier::wait`] is one update.
#[derive(Debug)]
pub struct RcuBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl RcuBarrier {
    /// Creates the inner `ARRAY` and the outer `ARRAY_OF_MAPS`.
    pub fn new() -> io::Result<Self> {
        let inner = create_map(bpf_map_type::BPF_MAP_TYPE_ARRAY, 1, None)?;
        let outer = create_map(
            bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS,
            1,
            Some(inner.as_fd()),
        )?;
        Ok(Self { outer, inner })
    }

    /// Returns once every BPF program run that started before the call has
    /// finished (a grace period: typically milliseconds).
    pub fn wait(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        let mut attr = zeroed_attr();
        // SAFETY: writing the element-command member of a zeroed union.
        let elem = unsafe { &mut attr.__bindgen_anon_2 };
        elem.map_fd = self.outer.as_raw_fd() as u32;
        elem.key = std::ptr::from_ref(&key) as u64;
        elem.__bindgen_anon_1.value = std::ptr::from_ref(&value) as u64;
        sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

/// The kernel-internal `ENOTSUPP` that bpf(2) returns for a batch
/// operation the map type lacks.
const ENOTSUPP: i32 = 524;

/// Entries per `BPF_MAP_LOOKUP_AND_DELETE_BATCH` call (more than any hash
/// bucket holds, so the kernel never answers `ENOSPC`).
pub const BATCH: usize = 4096;

/// Result of [`lookup_and_delete_batch`].
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// The map is now empty; this many entries were appended.
    Done(usize),
    /// The kernel does not support the batch operation on this map: use
    /// per-key operations.
    Unsupported,
}

/// Looks up and deletes every entry of the hash map `map` (keys `K`,
/// values `V`, as the map was created), appending them to `keys` and
/// `values`. Exact only while nothing else writes the map.
pub fn lookup_and_delete_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &mut Vec<K>,
    values: &mut Vec<V>,
) -> io::Result<Batch> {
    let mut kbuf = vec![zeroed::<K>(); BATCH];
    let mut vbuf = vec![zeroed::<V>(); BATCH];
    // The hash table's cursor is a bucket index (u32); 8 bytes to be safe.
    let mut cursor: u64 = 0;
    let mut next: u64 = 0;
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = zeroed_attr();
        // SAFETY: writing the batch member of a zeroed union.
        let batch = unsafe { &mut attr.batch };
        batch.in_batch = if first {
            0
        } else {
            std::ptr::from_mut(&mut cursor) as u64
        };
        batch.out_batch = std::ptr::from_mut(&mut next) as u64;
        batch.keys = kbuf.as_mut_ptr() as u64;
        batch.values = vbuf.as_mut_ptr() as u64;
        batch.count = BATCH as u32;
        batch.map_fd = map.as_raw_fd() as u32;
        let ret = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
        // SAFETY: the kernel wrote back how many entries it copied.
        let n = (unsafe { attr.batch.count } as usize).min(BATCH);
        match ret {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                keys.extend_from_slice(&kbuf[..n]);
                values.extend_from_slice(&vbuf[..n]);
                return Ok(Batch::Done(total + n));
            }
            Err(e)
                if first
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
                    ) =>
            {
                return Ok(Batch::Unsupported);
            }
            Err(e) => return Err(e),
        }
        keys.extend_from_slice(&kbuf[..n]);
        values.extend_from_slice(&vbuf[..n]);
        total += n;
        cursor = next;
        first = false;
    }
}

/// Where a tcx link is attached, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcxLinkTarget {
    /// The program behind the link.
    pub prog_id: u32,
    /// The device (0 once the device is gone: the link is then defunct).
    pub ifindex: u32,
    /// `BPF_TCX_INGRESS` or `BPF_TCX_EGRESS` (as `bpf_attach_type`).
    pub attach_type: u32,
}

/// The target of the tcx link pinned at `pin`; `Ok(None)` when nothing is
/// pinned there or the pinned object is not a tcx link.
pub fn pinned_tcx_link(pin: &std::path::Path) -> io::Result<Option<TcxLinkTarget>> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    // The obj member; `path` outlives the call.
    attr.__bindgen_anon_4.pathname = path.as_ptr() as u64;
    let fd = match sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: BPF_OBJ_GET returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: `bpf_link_info` is a plain C struct of integers; zero is valid.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    // The info member; `info` outlives the call.
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_link_info>() as u32;
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    match sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) {
        Ok(_) => {}
        // Not a link (a map or program pinned there).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    }
    if info.type_ != aya_obj::generated::bpf_link_type::BPF_LINK_TYPE_TCX as u32 {
        return Ok(None);
    }
    // SAFETY: the kernel filled the tcx member for a tcx link.
    let tcx = unsafe { info.__bindgen_anon_1.tcx };
    Ok(Some(TcxLinkTarget {
        prog_id: info.prog_id,
        ifindex: tcx.ifindex,
        attach_type: tcx.attach_type,
    }))
}
