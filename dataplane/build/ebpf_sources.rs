//! What the eBPF ELF is built from, and whether an ELF is stale.
//!
//! Shared by `dataplane/build.rs` (which refuses to embed a stale ELF) and
//! the xtask (which writes the stamp beside the ELF it builds, and runs the
//! unit tests below): both include this file with `#[path]`, so the two
//! can never disagree on the hash. Dependency-free on purpose: a build
//! script's helpers are compiled before anything else. The `_of`
//! functions take another list of sources: the agent's build script and
//! the xtask check the web UI's bundle with them (`agent/build/ui_sources.rs`).
//!
//! An ELF is current when its stamp (`<elf>.sources`, written by `cargo
//! xtask build-ebpf`) holds the hash of the sources as they are now: a
//! content hash, so it is right after a `git clone` (every mtime "now"),
//! in another worktree with the same sources, and unmoved by a `touch`.
//! An ELF without a stamp (built before stamps, or by hand) is current
//! when it is newer than every source file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The sources of the ELF, relative to the repository root: directories
/// are walked recursively; missing entries are skipped.
pub const SOURCES: [&str; 5] = [
    "dataplane-ebpf/src",
    "dataplane-ebpf/Cargo.toml",
    "dataplane-ebpf/Cargo.lock",
    "common/src",
    "common/Cargo.toml",
];

/// The stamp's file name beside the ELF.
pub fn stamp_path(elf: &Path) -> PathBuf {
    let mut name = elf.file_name().unwrap_or_default().to_owned();
    name.push(".sources");
    elf.with_file_name(name)
}

/// Every source file under `root`, sorted by path.
pub fn source_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    source_files_of(root, &SOURCES)
}

/// Every file of `sources` (relative to `root`, directories walked) under
/// `root`, sorted by path.
pub fn source_files_of(root: &Path, sources: &[&str]) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in sources {
        collect(&root.join(entry), &mut files)?;
    }
    files.sort();
    Ok(files)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// The stamp of the sources under `root`: an FNV-1a 64 hash over each
/// file's path (relative to `root`) and content, length-prefixed.
pub fn stamp(root: &Path) -> io::Result<String> {
    stamp_of(root, &SOURCES)
}

/// The stamp of `sources` under `root` (as [`stamp`] hashes [`SOURCES`]).
pub fn stamp_of(root: &Path, sources: &[&str]) -> io::Result<String> {
    let mut h = Fnv::new();
    for file in source_files_of(root, sources)? {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        let name = rel.to_string_lossy();
        let content = std::fs::read(&file)?;
        h.write(&(name.len() as u64).to_le_bytes());
        h.write(name.as_bytes());
        h.write(&(content.len() as u64).to_le_bytes());
        h.write(&content);
    }
    Ok(format!("fnv1a64:{:016x}", h.0))
}

/// FNV-1a, 64 bits (std's hasher is unspecified across Rust releases, and
/// the stamp must not change with the toolchain).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Why an ELF must not be embedded.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    /// Its stamp records other sources than those under the root.
    Stamp {
        /// The stamp beside the ELF.
        built_from: String,
        /// The stamp of the sources now.
        now: String,
    },
    /// No stamp, and this source is newer than the ELF.
    Newer(PathBuf),
}

/// Whether `elf` was built from the sources under `root` as they are now.
pub fn check(elf: &Path, root: &Path) -> io::Result<Result<(), Stale>> {
    check_of(elf, &stamp_path(elf), root, &SOURCES)
}

/// Whether `artifact` was built from `sources` under `root` as they are
/// now: its stamp file `stamp_file` holds their stamp, or (without a
/// stamp) it is newer than each of them.
pub fn check_of(
    artifact: &Path,
    stamp_file: &Path,
    root: &Path,
    sources: &[&str],
) -> io::Result<Result<(), Stale>> {
    match std::fs::read_to_string(stamp_file) {
        Ok(built_from) => {
            let built_from = built_from.trim().to_owned();
            let now = stamp_of(root, sources)?;
            Ok(if built_from == now {
                Ok(())
            } else {
                Err(Stale::Stamp { built_from, now })
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let built = std::fs::metadata(artifact)?.modified()?;
            let files = source_files_of(root, sources)?;
            Ok(newer_than(built, &files)?.map_or(Ok(()), |p| Err(Stale::Newer(p))))
        }
        Err(e) => Err(e),
    }
}

/// The first of `files` modified after `built`, if any.
fn newer_than(built: SystemTime, files: &[PathBuf]) -> io::Result<Option<PathBuf>> {
    for f in files {
        if std::fs::metadata(f)?.modified()? > built {
            return Ok(Some(f.clone()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Duration;

    /// A fake repository with the ELF's sources and an ELF.
    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("dataplane-ebpf/src/programs")).unwrap();
        fs::create_dir_all(root.join("common/src")).unwrap();
        fs::write(root.join("dataplane-ebpf/src/main.rs"), "fn main() {}").unwrap();
        fs::write(root.join("dataplane-ebpf/src/programs/a.rs"), "// a").unwrap();
        fs::write(root.join("dataplane-ebpf/Cargo.toml"), "[package]").unwrap();
        fs::write(root.join("common/src/lib.rs"), "// abi").unwrap();
        let elf = root.join("dataplane-ebpf/target/bulkhead-ebpf");
        fs::create_dir_all(elf.parent().unwrap()).unwrap();
        fs::write(&elf, "ELF").unwrap();
        (dir, elf)
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_stamp_of_the_same_sources_is_current_whatever_the_mtimes() {
        let (dir, elf) = repo();
        fs::write(stamp_path(&elf), stamp(dir.path()).unwrap()).unwrap();
        // As after a clone: sources newer than the ELF.
        set_mtime(&elf, SystemTime::now() - Duration::from_secs(3600));
        assert_eq!(check(&elf, dir.path()).unwrap(), Ok(()));
    }

    #[test]
    fn an_edited_source_makes_the_stamp_stale() {
        let (dir, elf) = repo();
        fs::write(stamp_path(&elf), stamp(dir.path()).unwrap()).unwrap();
        fs::write(dir.path().join("common/src/lib.rs"), "// abi v2").unwrap();
        assert!(matches!(
            check(&elf, dir.path()).unwrap(),
            Err(Stale::Stamp { .. })
        ));
        // A new file counts too.
        let (dir, elf) = repo();
        fs::write(stamp_path(&elf), stamp(dir.path()).unwrap()).unwrap();
        fs::write(dir.path().join("dataplane-ebpf/src/programs/b.rs"), "").unwrap();
        assert!(check(&elf, dir.path()).unwrap().is_err());
    }

    #[test]
    fn the_stamp_depends_on_paths_and_contents_only() {
        let (dir, _) = repo();
        let before = stamp(dir.path()).unwrap();
        let lib = dir.path().join("common/src/lib.rs");
        set_mtime(&lib, SystemTime::now() + Duration::from_secs(60));
        assert_eq!(
            stamp(dir.path()).unwrap(),
            before,
            "a touch changes nothing"
        );
        fs::rename(&lib, dir.path().join("common/src/abi.rs")).unwrap();
        assert_ne!(stamp(dir.path()).unwrap(), before, "a rename does");
    }

    #[test]
    fn without_a_stamp_the_elf_must_be_newer_than_every_source() {
        let (dir, elf) = repo();
        let now = SystemTime::now();
        for f in source_files(dir.path()).unwrap() {
            set_mtime(&f, now - Duration::from_secs(60));
        }
        // Built after the clone: current.
        set_mtime(&elf, now);
        assert_eq!(check(&elf, dir.path()).unwrap(), Ok(()));
        // A source edited after the build: stale, and it is named.
        let edited = dir.path().join("dataplane-ebpf/src/programs/a.rs");
        set_mtime(&edited, now + Duration::from_secs(60));
        assert_eq!(check(&elf, dir.path()).unwrap(), Err(Stale::Newer(edited)));
    }
}
