//! The web UI's files: the bundle embedded at build time (see the crate's
//! `build.rs`), or one read from a directory (tests, benchmarks), served
//! under `/ui/` with their content types and cache headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// The embedded bundle: a copy of `ui/dist` made by `build.rs`.
#[cfg(bulkhead_embedded_ui)]
static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$OUT_DIR/ui-dist");

/// The web UI's files by path relative to the bundle's root (`index.html`,
/// `assets/index-3f2a.js`), each with its content type.
pub struct Bundle {
    files: BTreeMap<String, Asset>,
}

/// One file of a [`Bundle`].
#[derive(Clone, Debug)]
pub struct Asset {
    /// Its content.
    pub bytes: Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Why a bundle could not be read from a directory.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading a file or directory failed.
    #[error("reading the web UI bundle at {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no `index.html`.
    #[error("{} is not a web UI bundle: it has no index.html (run `cargo xtask build-ui`)", dir.display())]
    NoIndex {
        /// The directory.
        dir: PathBuf,
    },
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("files", &self.files.len())
            .finish()
    }
}

impl Bundle {
    /// The bundle built into this binary, if it was built with one.
    pub fn embedded() -> Option<Arc<Bundle>> {
        static BUNDLE: OnceLock<Option<Arc<Bundle>>> = OnceLock::new();
        BUNDLE.get_or_init(embedded_files).clone()
    }

    /// Reads the bundle in `dir` (what `npm run build` leaves in
    /// `ui/dist`); dot files are left out, as the embedded one leaves them.
    pub fn from_dir(dir: &Path) -> Result<Bundle, BundleError> {
        let mut files = BTreeMap::new();
        read_tree(dir, "", &mut files)?;
        if !files.contains_key("index.html") {
            return Err(BundleError::NoIndex {
                dir: dir.to_owned(),
            });
        }
        Ok(Bundle { files })
    }

    /// The file at `path` (relative, `/`-separated), if any.
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    /// How many files it has.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it has no files (never, for one with an `index.html`).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn insert(files: &mut BTreeMap<String, Asset>, path: String, bytes: Bytes) {
        let content_type = content_type(&path);
        files.insert(
            path,
            Asset {
                bytes,
                content_type,
            },
        );
    }
}

#[cfg(bulkhead_embedded_ui)]
fn embedded_files() -> Option<Arc<Bundle>> {
    fn walk(dir: &'static include_dir::Dir<'static>, files: &mut BTreeMap<String, Asset>) {
        for f in dir.files() {
            let path = f.path().to_string_lossy().replace('\\', "/");
            Bundle::insert(files, path, Bytes::from_static(f.contents()));
        }
        for d in dir.dirs() {
            walk(d, files);
        }
    }
    let mut files = BTreeMap::new();
    walk(&EMBEDDED, &mut files);
    Some(Arc::new(Bundle { files }))
}

#[cfg(not(bulkhead_embedded_ui))]
fn embedded_files() -> Option<Arc<Bundle>> {
    None
}

fn read_tree(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, Asset>,
) -> Result<(), BundleError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        if entry.file_type().map_err(err(&path))?.is_dir() {
            read_tree(&path, &format!("{rel}/"), files)?;
        } else {
            let bytes = std::fs::read(&path).map_err(err(&path))?;
            Bundle::insert(files, rel, Bytes::from(bytes));
        }
    }
    Ok(())
}

/// The content type of a bundle file, by its extension (the few kinds a
/// Vite build emits; anything else is `application/octet-stream`, which
/// `X-Content-Type-Options: nosniff` keeps a browser from running).
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}
