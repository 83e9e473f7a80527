//! The one bounded walk of a manifest tree, and bounded reads of the files
//! it finds. The loader ([`super::load_dir`]), the agent's content hash
//! ([`crate::source::manifest::content_hash`]) and the lab's copy of the manifests all
//! go through it, so they see the same files and share its guarantees:
//!
//! - **It ends.** Symbolic links are followed (a file linked into the tree
//!   is read; a Kubernetes ConfigMap volume's `key -> ..data/key` works),
//!   but every directory is entered at most once, recognised by (device,
//!   inode): a link to `.`, to an ancestor or to a directory seen before
//!   adds nothing. Directories more than [`Limits::max_depth`] levels below
//!   the root are an error.
//! - **It reads only manifests.** Entries whose name starts with `.` are
//!   skipped (editor swap files, `.git`, a ConfigMap volume's `..data` and
//!   `..<timestamp>` duplicates), and so are files without a `.yaml`,
//!   `.yml` or `.json` extension and anything that is neither a regular
//!   file nor a directory (a FIFO or device could block or never end). A
//!   root that is a file is read whatever its name.
//! - **It is bounded.** At most [`Limits::max_entries`] directory entries
//!   are examined. A file larger than [`Limits::max_file_bytes`], or files
//!   together larger than [`Limits::max_total_bytes`], are an error:
//!   checked from the metadata before anything is read, and again while
//!   reading (a [`Reader`] reads at most one byte past what is left, so a
//!   file that grows meanwhile is caught, not read whole).
//! - **It never truncates.** Every limit exceeded is a [`WalkError`] naming
//!   the file or directory and the limit; the whole load fails, as it does
//!   for an invalid manifest, so a partial view of the policy is never
//!   enforced.
//!
//! Files come in path order (each directory's entries sorted by name).

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// Bounds of a walk and of the reads after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest directory level below the root that is entered.
    pub max_depth: usize,
    /// Most directory entries examined (hidden and skipped ones included).
    pub max_entries: usize,
    /// Largest manifest file, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of the manifest files' sizes, in bytes.
    pub max_total_bytes: u64,
}

impl Limits {
    /// The limits Bulkhead uses: far beyond any real manifest tree (the
    /// Kubernetes API server refuses objects over about 1.5 MiB), small
    /// enough that a stray file cannot stall the agent or exhaust memory.
    pub const DEFAULT: Limits = Limits {
        max_depth: 16,
        max_entries: 10_000,
        max_file_bytes: 4 << 20,
        max_total_bytes: 64 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A byte count for messages: `4 MiB`, or `100 bytes` when not whole MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 20 && self.0.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", self.0 >> 20)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// Why a walk or a read stopped. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A directory or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A path that must be read is neither a regular file nor a directory.
    #[error("{}: not a regular file or directory", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// A manifest file over [`Limits::max_file_bytes`].
    #[error("{}: larger than {limit}, the limit for one manifest file", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: Bytes,
    },
    /// The manifest files together over [`Limits::max_total_bytes`].
    #[error(
        "{}: the manifest files up to this one are larger than {limit}, the limit for all of them together",
        path.display()
    )]
    TotalTooLarge {
        /// The file that went over.
        path: PathBuf,
        /// The limit.
        limit: Bytes,
    },
    /// A directory deeper than [`Limits::max_depth`].
    #[error("{}: more than {limit} directory levels deep", path.display())]
    TooDeep {
        /// The directory.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// More than [`Limits::max_entries`] directory entries.
    #[error("{}: more than {limit} directory entries in the tree", root.display())]
    TooManyEntries {
        /// The root of the walk.
        root: PathBuf,
        /// The limit.
        limit: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalkError + '_ {
    move |source| WalkError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `path` has a manifest extension.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files under `root` (or `root` itself when it is a file),
/// in path order, within `limits` (see the module documentation).
pub fn walk(root: &Path, limits: &Limits) -> Result<Vec<PathBuf>, WalkError> {
    let meta = std::fs::metadata(root).map_err(io_err(root))?;
    let mut walker = Walker {
        root,
        limits,
        visited: HashSet::new(),
        entries: 0,
        total: 0,
        files: Vec::new(),
    };
    if meta.is_dir() {
        walker.dir(root, &meta, 0)?;
    } else if meta.is_file() {
        walker.file(root, &meta)?;
    } else {
        return Err(WalkError::NotRegular {
            path: root.to_owned(),
        });
    }
    Ok(walker.files)
}

struct Walker<'a> {
    root: &'a Path,
    limits: &'a Limits,
    /// (device, inode) of every directory entered.
    visited: HashSet<(u64, u64)>,
    entries: usize,
    total: u64,
    files: Vec<PathBuf>,
}

impl Walker<'_> {
    fn dir(&mut self, path: &Path, meta: &Metadata, depth: usize) -> Result<(), WalkError> {
        if !self.visited.insert((meta.dev(), meta.ino())) {
            tracing::debug!(dir = %path.display(), "skipping a directory already walked (a link back into the tree)");
            return Ok(());
        }
        if depth > self.limits.max_depth {
            return Err(WalkError::TooDeep {
                path: path.to_owned(),
                limit: self.limits.max_depth,
            });
        }
        for name in self.names(path)? {
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            self.entry(&path.join(name), depth)?;
        }
        Ok(())
    }

    /// The names in directory `path`, sorted, counted against the bound.
    fn names(&mut self, path: &Path) -> Result<Vec<std::ffi::OsString>, WalkError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_err(path))? {
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(WalkError::TooManyEntries {
                    root: self.root.to_owned(),
                    limit: self.limits.max_entries,
                });
            }
            names.push(entry.map_err(io_err(path))?.file_name());
        }
        names.sort();
        Ok(names)
    }

    /// One (not hidden) entry of a directory at `depth`.
    fn entry(&mut self, path: &Path, depth: usize) -> Result<(), WalkError> {
        let manifest = is_manifest_name(path);
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            // A broken link or a vanished entry matters only if it was a manifest.
            Err(source) if manifest => {
                return Err(WalkError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
            Err(_) => return Ok(()),
        };
        if meta.is_dir() {
            self.dir(path, &meta, depth + 1)
        } else if manifest && meta.is_file() {
            self.file(path, &meta)
        } else {
            Ok(())
        }
    }

    fn file(&mut self, path: &Path, meta: &Metadata) -> Result<(), WalkError> {
        check_sizes(path, self.limits, meta.len(), self.total)?;
        self.total += meta.len();
        self.files.push(path.to_owned());
        Ok(())
    }
}

/// Fails when a file of `len` bytes, after `before` bytes of others, is
/// over a limit.
fn check_sizes(path: &Path, limits: &Limits, len: u64, before: u64) -> Result<(), WalkError> {
    if len > limits.max_file_bytes {
        return Err(WalkError::FileTooLarge {
            path: path.to_owned(),
            limit: Bytes(limits.max_file_bytes),
        });
    }
    if before.saturating_add(len) > limits.max_total_bytes {
        return Err(WalkError::TotalTooLarge {
            path: path.to_owned(),
            limit: Bytes(limits.max_total_bytes),
        });
    }
    Ok(())
}

/// Reads files within [`Limits::max_file_bytes`] each and
/// [`Limits::max_total_bytes`] together (counting every byte it read).
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    total: u64,
}

/// Size of the chunks [`Reader::stream`] reads.
const CHUNK: usize = 64 << 10;

impl Reader {
    /// A reader that has read nothing yet.
    pub fn new(limits: Limits) -> Self {
        Self { limits, total: 0 }
    }

    /// Bytes read so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The whole content of `path`.
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>, WalkError> {
        let (file, len) = self.open(path)?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.pump(path, file, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// Feeds the content of `path` to `sink` in chunks (never holding the
    /// whole file); the number of bytes.
    pub fn stream(&mut self, path: &Path, sink: impl FnMut(&[u8])) -> Result<u64, WalkError> {
        let (file, _) = self.open(path)?;
        self.pump(path, file, sink)
    }

    /// Opens `path` without blocking (a FIFO swapped in after the walk does
    /// not hang the caller), insists on a regular file and checks its size.
    fn open(&self, path: &Path) -> Result<(File, u64), WalkError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
            .open(path)
            .map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        if !meta.is_file() {
            return Err(WalkError::NotRegular {
                path: path.to_owned(),
            });
        }
        check_sizes(path, &self.limits, meta.len(), self.total)?;
        Ok((file, meta.len()))
    }

    /// Reads `file` through `sink`, at most one byte past what the limits
    /// leave, and fails if that byte comes.
    fn pump(
        &mut self,
        path: &Path,
        file: File,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<u64, WalkError> {
        let left = self.limits.max_total_bytes.saturating_sub(self.total);
        let allowed = self.limits.max_file_bytes.min(left);
        let mut limited = file.take(allowed.saturating_add(1));
        let mut buf = vec![0u8; CHUNK];
        let mut read = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(path)(e)),
            };
            read += n as u64;
            if read > allowed {
                check_sizes(path, &self.limits, read, self.total)?;
            }
            sink(&buf[..n]);
        }
        self.total += read;
        Ok(read)
    }
}

#[cfg(test)]
mod tests;
