//! Writing an edited manifest: all of it or nothing, and never over a file
//! that changed since it was read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a file was not replaced.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone changed the file between reading and writing.
    #[error("{} changed on disk since it was read", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The OS refused.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Replaces the contents of `path` (a symlink's target, if it is one) with
/// `new`, if they still are `old`: a temporary file beside it with the same
/// permissions, synced, renamed over it.
pub fn replace(path: &Path, old: &str, new: &str) -> Result<(), WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    // Renaming over a symlink would replace the link, not the file.
    let real = fs::canonicalize(path).map_err(io(path))?;
    if fs::read_to_string(&real).map_err(io(&real))? != old {
        return Err(WriteError::Changed {
            path: path.to_path_buf(),
        });
    }
    let permissions = fs::metadata(&real).map_err(io(&real))?.permissions();
    let dir = real.parent().unwrap_or(Path::new("."));
    let name = real.file_name().unwrap_or_default().to_string_lossy();
    // Hidden, so a leftover is never read as a manifest.
    let tmp = dir.join(format!(
        ".{name}.bulkhead-promote-{}.tmp",
        std::process::id()
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.set_permissions(permissions)?;
        f.sync_all()?;
        fs::rename(&tmp, &real)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::Io { path: real, source });
    }
    // The rename is durable once the directory is synced; a failure here
    // leaves the new file in place, so it is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
