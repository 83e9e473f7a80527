//! Files and directories only their owner can read: everything Bulkhead
//! creates that holds flows, logs or state (flow logs, the agent's and the
//! lab's state files and logs, the history database), like the agent's
//! API socket (0600).
//!
//! Files are created 0600 and directories 0700 from the start (the mode is
//! given to `open(2)` and `mkdir(2)`, so there is no moment with a looser
//! one). A regular file opened again, to append or to rewrite, is tightened
//! to 0600 if group or others had any access, so files made by an older
//! version are fixed on upgrade; devices and other non-regular files (a
//! flow log on `/dev/stdout`) are left alone.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the files: read and write for the owner only.
pub const FILE_MODE: u32 = 0o600;

/// Mode of the directories: the owner only.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each new one 0700; existing
/// directories are left as they are (a parent may be shared, like `/run`).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// [`create_dir_all`], then `dir` itself set to 0700 if it was looser: for
/// directories that are Bulkhead's own (a lab's directory, the agent's
/// state directory).
pub fn own_dir(dir: &Path) -> io::Result<()> {
    create_dir_all(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it 0600 (tightened if it existed).
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Creates or truncates `path`, 0600 (tightened if it existed).
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Opens `path` for reading and writing without truncating it, creating
/// it 0600 (tightened if it existed): for a database file.
pub fn open_rw(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Writes `bytes` as the whole content of `path`, 0600.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create(path)?.write_all(bytes)
}

/// Replaces `path` atomically: `bytes` go to `tmp` (0600, in the same
/// directory), which is then renamed over `path`; `tmp` is removed if
/// anything fails.
pub fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let result = write(tmp, bytes).and_then(|()| std::fs::rename(tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Sets an open regular file to 0600 if group or others have any access.
pub fn tighten(file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    if meta.is_file() && meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
