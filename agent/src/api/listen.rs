//! Listeners: binding the Unix socket safely (never stealing a live one,
//! never exposing it with looser permissions), and one accept interface
//! over the tokio Unix and TCP listeners.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use super::ApiError;

/// The socket file the API made, to remove it at stop if still ours.
pub(super) struct BoundSocket {
    /// The path.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

/// An [`ApiError::Unix`].
pub(super) fn unix_err(what: &'static str, path: &Path, source: io::Error) -> ApiError {
    ApiError::Unix {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Binds `path` with `mode`: replaces a stale socket (nobody accepting),
/// refuses a live one or a non-socket, and makes the socket under a
/// temporary name so it never exists with looser permissions.
pub(super) fn bind_unix(path: &Path, mode: u32) -> Result<(UnixListener, BoundSocket), ApiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // New directories 0700, like the socket (an existing one, e.g.
        // /run, is not ours to change).
        bulkhead_policy::private::create_dir_all(dir)
            .map_err(|source| unix_err("creating the directory of", path, source))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(ApiError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale API socket");
                remove_if_present(path)
                    .map_err(|source| unix_err("removing the stale socket", path, source))?;
            }
        },
        Ok(_) => {
            return Err(ApiError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(unix_err("inspecting", path, source)),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    remove_if_present(&tmp).map_err(|source| unix_err("removing", &tmp, source))?;
    let listener = UnixListener::bind(&tmp).map_err(|source| unix_err("binding", &tmp, source))?;
    let finish = || -> io::Result<std::fs::Metadata> {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        std::fs::metadata(path)
    };
    let meta = finish().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        unix_err("preparing the socket", path, source)
    })?;
    Ok((
        listener,
        BoundSocket {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A listener the accept loop takes connections from.
pub(super) trait Listener: Send + Sync + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// The next connection.
    fn next_conn(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn next_conn(&self) -> io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn next_conn(&self) -> io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}
