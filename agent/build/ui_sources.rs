//! What the web UI's bundle (`ui/dist`, built by `cargo xtask build-ui`)
//! is built from, and whether a bundle is stale.
//!
//! Shared by `agent/build.rs` (which refuses to embed a stale bundle) and
//! the xtask (which writes the stamp into the bundle it builds): both
//! include this file with `#[path]`, beside `dataplane/build/ebpf_sources.rs`
//! (the hashing, which must be a module named `ebpf_sources` next to this
//! one), so the two never disagree on the hash.
//!
//! A bundle is current when its stamp (`<dist>/.sources`) holds the hash
//! of the sources as they are now; a bundle without a stamp (built by hand
//! with `npm run build`) is current when its `index.html` is newer than
//! every source file.

use std::io;
use std::path::{Path, PathBuf};

use super::ebpf_sources::{self, Stale};

/// The sources of the bundle, relative to the repository root: what Vite
/// reads (directories walked recursively; missing entries skipped). The
/// npm project's tests (`ui/tests`) and `node_modules` are not among them.
pub const SOURCES: [&str; 8] = [
    "ui/src",
    "ui/public",
    "ui/index.html",
    "ui/package.json",
    "ui/package-lock.json",
    "ui/vite.config.js",
    "ui/vite.config.mjs",
    "ui/vite.config.ts",
];

/// The bundle's default directory, relative to the repository root.
pub const DIST: &str = "ui/dist";

/// The stamp's file name inside the bundle (a dot file: never served).
pub const STAMP_NAME: &str = ".sources";

/// The stamp file of the bundle in `dist`.
pub fn stamp_path(dist: &Path) -> PathBuf {
    dist.join(STAMP_NAME)
}

/// The stamp of the bundle's sources under `root`.
pub fn stamp(root: &Path) -> io::Result<String> {
    ebpf_sources::stamp_of(root, &SOURCES)
}

/// Whether the bundle in `dist` was built from the sources under `root`
/// as they are now.
pub fn check(dist: &Path, root: &Path) -> io::Result<Result<(), Stale>> {
    ebpf_sources::check_of(&dist.join("index.html"), &stamp_path(dist), root, &SOURCES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake checkout with the UI's sources, its tests and a bundle.
    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("ui/src")).unwrap();
        fs::create_dir_all(root.join("ui/tests/unit")).unwrap();
        fs::create_dir_all(root.join("ui/node_modules/x")).unwrap();
        fs::write(root.join("ui/src/main.js"), "export {}").unwrap();
        fs::write(root.join("ui/index.html"), "<!doctype html>").unwrap();
        fs::write(root.join("ui/package.json"), "{}").unwrap();
        fs::write(root.join("ui/vite.config.js"), "export default {}").unwrap();
        fs::write(root.join("ui/tests/unit/a.test.mjs"), "").unwrap();
        fs::write(root.join("ui/node_modules/x/index.js"), "").unwrap();
        let dist = root.join(DIST);
        fs::create_dir_all(&dist).unwrap();
        fs::write(dist.join("index.html"), "<!doctype html>").unwrap();
        (dir, dist)
    }

    #[test]
    fn a_bundle_is_current_while_what_vite_reads_is_unchanged() {
        let (dir, dist) = repo();
        let root = dir.path();
        fs::write(stamp_path(&dist), stamp(root).unwrap()).unwrap();
        assert_eq!(check(&dist, root).unwrap(), Ok(()));
        // The npm project's tests and packages are not sources of the bundle.
        fs::write(root.join("ui/tests/unit/b.test.mjs"), "").unwrap();
        fs::write(root.join("ui/node_modules/x/index.js"), "//").unwrap();
        assert_eq!(check(&dist, root).unwrap(), Ok(()));
        // Its code and configuration are.
        for (file, text) in [
            ("ui/src/main.js", "export const x = 1"),
            ("ui/vite.config.js", "export default { base: '/' }"),
            ("ui/package.json", "{\"name\":\"x\"}"),
        ] {
            let (dir, dist) = repo();
            let root = dir.path();
            fs::write(stamp_path(&dist), stamp(root).unwrap()).unwrap();
            fs::write(root.join(file), text).unwrap();
            assert!(
                matches!(check(&dist, root).unwrap(), Err(Stale::Stamp { .. })),
                "{file}"
            );
        }
    }
}
