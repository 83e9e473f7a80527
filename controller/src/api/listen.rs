//! Listeners and connections: binding the Unix socket safely, waking
//! accept threads at stop, and one type over Unix and TCP streams.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        crate::private::create_dir_all(dir)
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

/// A listener kept to wake its accept thread at stop.
pub(super) enum Waker {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener, SocketAddr),
}

impl Waker {
    /// Makes the blocked `accept` return: shuts the listening socket down
    /// (Linux wakes `accept` with an error) and, in case, connects to it.
    pub(super) fn wake(&self) {
        match self {
            Waker::Unix(l, path) => {
                let _ = socket2::SockRef::from(l).shutdown(Shutdown::Both);
                let _ = UnixStream::connect(path);
            }
            Waker::Tcp(l, addr) => {
                let _ = socket2::SockRef::from(l).shutdown(Shutdown::Both);
                let ip = match addr.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                let _ = TcpStream::connect_timeout(
                    &SocketAddr::new(ip, addr.port()),
                    Duration::from_millis(200),
                );
            }
        }
    }
}

/// A client connection.
pub(super) enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub(super) fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    pub(super) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_nonblocking(on),
            Conn::Tcp(s) => s.set_nonblocking(on),
        }
    }

    /// Whether the client closed its side (or the connection failed).
    /// Bytes it sent after its request are discarded.
    pub(super) fn client_gone(&mut self) -> bool {
        if self.set_nonblocking(true).is_err() {
            return true;
        }
        let mut buf = [0u8; 512];
        let gone = match self.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        };
        self.set_nonblocking(false).is_err() || gone
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}
