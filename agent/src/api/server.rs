//! Starting and stopping the API: listeners, the accept loop with its
//! connection cap, and one hyper HTTP/1 connection per client.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listen::{BoundSocket, Listener, bind_unix, unix_err};
use super::{ApiBackend, ApiConfig, ApiError, MAX_HEAD, routes, ui};

/// Status codes counted in `bulkhead_api_requests_total`.
const CODES: [u16; 13] = [
    200, 302, 303, 400, 401, 403, 404, 405, 409, 431, 500, 503, 504,
];

/// How long [`ApiHandle::stop`] waits for open connections to end before
/// closing them.
const DRAIN: Duration = Duration::from_secs(3);

/// Longest a client answered 503 (busy) may take to send its request head.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The API server.
pub struct Api;

impl Api {
    /// Binds the configured listeners (here, so errors are the caller's)
    /// and serves `backend` on them from tasks on `runtime` (which must
    /// have its IO and time drivers enabled) until [`ApiHandle::stop`] or
    /// the handle is dropped.
    pub fn start(
        config: ApiConfig,
        backend: Arc<dyn ApiBackend>,
        runtime: &Handle,
    ) -> Result<ApiHandle, ApiError> {
        // Converting std listeners to tokio's registers them with the
        // runtime's IO driver.
        let _entered = runtime.enter();
        if let Some(ui) = &config.ui
            && ui.token.is_none()
            && !ui.listener.local_addr().ip().is_loopback()
        {
            return Err(ApiError::UiNotLoopback {
                addr: ui.listener.local_addr(),
            });
        }
        let unix = match config.socket.as_deref() {
            Some(path) => {
                let (listener, bound) = bind_unix(path, config.socket_mode)?;
                let listener = listener
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixListener::from_std(listener))
                    .map_err(|source| unix_err("listening on", path, source))?;
                Some((listener, bound))
            }
            None => None,
        };
        let tcp = config.tcp.map(bind_tcp).transpose()?;
        let ui = config.ui.as_ref().map(take_ui).transpose()?;
        let shared = Arc::new(Shared::new(config, backend));
        let mut handle = ApiHandle {
            shared: Arc::clone(&shared),
            socket: None,
            tcp_addr: None,
            ui_addr: None,
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            runtime: runtime.clone(),
            stopped: false,
        };
        if let Some((listener, bound)) = unix {
            tracing::info!(socket = %bound.path.display(), "API listening");
            handle.socket = Some(bound);
            let router = routes::router(Arc::clone(&shared), true);
            handle.spawn_accept(listener, router, shared.api_slots.clone());
        }
        if let Some((listener, addr)) = tcp {
            tracing::info!(%addr, "API listening");
            handle.tcp_addr = Some(addr);
            let full = shared.config.tcp_all_endpoints;
            let router = routes::router(Arc::clone(&shared), full);
            handle.spawn_accept(listener, router, shared.api_slots.clone());
        }
        if let Some((listener, token)) = ui {
            let addr = listener.local_addr().ok();
            tracing::info!(addr = ?addr, token = token.is_some(), "web UI listening");
            handle.ui_addr = addr;
            let router = ui::router(Arc::clone(&shared), token);
            handle.spawn_accept(listener, router, shared.ui_slots.clone());
        }
        Ok(handle)
    }
}

/// The UI's listener taken from its config (once), ready for tokio.
fn take_ui(ui: &ui::UiConfig) -> Result<(tokio::net::TcpListener, Option<ui::UiToken>), ApiError> {
    let addr = ui.listener.local_addr();
    let listener = ui
        .listener
        .take()
        .ok_or(ApiError::UiListenerTaken { addr })?;
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|source| ApiError::Tcp { addr, source })?;
    Ok((listener, ui.token.clone()))
}

fn bind_tcp(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ApiError> {
    let bind = || {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let local = l.local_addr()?;
        Ok((tokio::net::TcpListener::from_std(l)?, local))
    };
    bind().map_err(|source| ApiError::Tcp { addr, source })
}

/// The running API; dropping it stops it too (without waiting).
pub struct ApiHandle {
    shared: Arc<Shared>,
    socket: Option<BoundSocket>,
    tcp_addr: Option<SocketAddr>,
    ui_addr: Option<SocketAddr>,
    /// The accept loops and every connection.
    tracker: TaskTracker,
    /// Cancelled when connections outlive [`DRAIN`]: drops them.
    abort: CancellationToken,
    runtime: Handle,
    stopped: bool,
}

impl ApiHandle {
    /// The Unix socket served, if any.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_ref().map(|b| b.path.as_path())
    }

    /// The TCP address served (with the port the OS chose for port 0), if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The web UI's address served, if any.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui_addr
    }

    /// Stops accepting, ends follow streams, waits up to 3 s for open
    /// connections to finish their answers (then closes them), and removes
    /// the socket file if it is still ours.
    pub async fn stop(mut self) {
        self.shared.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(DRAIN, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("API connections still open after {DRAIN:?}; closing them");
            self.abort.cancel();
            self.tracker.wait().await;
        }
        self.remove_socket();
        // (Set last: a stop abandoned half-way leaves the rest to `drop`.)
        self.stopped = true;
        tracing::debug!("API stopped");
    }

    fn spawn_accept<L: Listener>(&self, listener: L, router: Router, slots: Slots) {
        let (shared, abort) = (Arc::clone(&self.shared), self.abort.clone());
        let tracker = self.tracker.clone();
        self.tracker.spawn_on(
            accept_loop(listener, router, shared, slots, tracker, abort),
            &self.runtime,
        );
    }

    fn remove_socket(&self) {
        let Some(b) = &self.socket else { return };
        let ours =
            std::fs::symlink_metadata(&b.path).is_ok_and(|m| m.dev() == b.dev && m.ino() == b.ino);
        if ours && let Err(e) = std::fs::remove_file(&b.path) {
            tracing::warn!(socket = %b.path.display(), error = %e, "removing the API socket");
        }
    }
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.shared.stop.cancel();
        self.tracker.close();
        // Bound the drain as `stop` does, without waiting for it here (a
        // runtime shut down meanwhile drops the connections anyway).
        let (tracker, abort) = (self.tracker.clone(), self.abort.clone());
        self.runtime.spawn(async move {
            if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
                abort.cancel();
            }
        });
        self.remove_socket();
    }
}

/// State shared by the accept loops, connections and handlers.
pub(super) struct Shared {
    /// The configuration.
    pub config: ApiConfig,
    /// What is served.
    pub backend: Arc<dyn ApiBackend>,
    /// Cancelled at stop: no more connections, follow streams end.
    pub stop: CancellationToken,
    /// The connections of the Unix socket and the TCP listener.
    api_slots: Slots,
    /// The UI listener's own (browsers cannot take the others').
    ui_slots: Slots,
    /// Open follow streams.
    pub follows: AtomicUsize,
    rejected: AtomicU64,
    requests: [AtomicU64; CODES.len()],
}

impl Shared {
    fn new(config: ApiConfig, backend: Arc<dyn ApiBackend>) -> Self {
        let n = config.max_connections;
        Shared {
            config,
            backend,
            stop: CancellationToken::new(),
            api_slots: Slots::new(n),
            ui_slots: Slots::new(n),
            follows: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            requests: Default::default(),
        }
    }

    /// Counts an answer in `bulkhead_api_requests_total`.
    pub fn count(&self, status: u16) {
        if let Some(i) = CODES.iter().position(|&c| c == status) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The API's own metrics (OpenMetrics, no `# EOF`).
    pub fn own_metrics(&self) -> String {
        let mut s = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            let sample = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            for (labels, v) in samples {
                s.push_str(&format!("{sample}{labels} {v}\n"));
            }
        };
        let active = 2 * self.config.max_connections
            - self.api_slots.serve.available_permits()
            - self.ui_slots.serve.available_permits();
        family(
            "bulkhead_api_connections",
            "gauge",
            "Connections the local API is serving.",
            &[(String::new(), active as u64)],
        );
        family(
            "bulkhead_api_follow_streams",
            "gauge",
            "Open flow follow streams.",
            &[(String::new(), self.follows.load(Ordering::Relaxed) as u64)],
        );
        family(
            "bulkhead_api_connections_rejected",
            "counter",
            "Connections answered 503 because the most allowed were busy.",
            &[(String::new(), self.rejected.load(Ordering::Relaxed))],
        );
        let requests: Vec<(String, u64)> = CODES
            .iter()
            .zip(&self.requests)
            .map(|(c, n)| (format!("{{code=\"{c}\"}}"), n.load(Ordering::Relaxed)))
            .collect();
        family(
            "bulkhead_api_requests",
            "counter",
            "Requests answered by the local API, by status code.",
            &requests,
        );
        s
    }
}

/// The connection slots of a group of listeners.
#[derive(Clone)]
pub(super) struct Slots {
    /// One permit per connection served (`max_connections`).
    serve: Arc<Semaphore>,
    /// Connections being answered 503 at once (as many again); beyond
    /// them a connection is closed unanswered.
    busy: Arc<Semaphore>,
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            serve: Arc::new(Semaphore::new(n)),
            busy: Arc::new(Semaphore::new(n.max(1))),
        }
    }
}

/// Accepts connections until stop: each is served on its own task while
/// it holds one of `max_connections` slots; without a free slot it is
/// answered 503.
async fn accept_loop<L: Listener>(
    listener: L,
    router: Router,
    shared: Arc<Shared>,
    slots: Slots,
    tracker: TaskTracker,
    abort: CancellationToken,
) {
    let busy_router = routes::busy();
    loop {
        let conn = tokio::select! {
            () = shared.stop.cancelled() => break,
            conn = listener.next_conn() => conn,
        };
        let io = match conn {
            Ok(io) => io,
            Err(e) => {
                // E.g. out of file descriptors: let some close.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = Conn {
            shared: Arc::clone(&shared),
            abort: abort.clone(),
        };
        if let Ok(slot) = Arc::clone(&slots.serve).try_acquire_owned() {
            let timeout = shared.config.io_timeout;
            tracker.spawn(conn.serve(io, router.clone(), timeout, slot));
            continue;
        }
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        shared.count(503);
        if let Ok(slot) = Arc::clone(&slots.busy).try_acquire_owned() {
            let timeout = shared.config.io_timeout.min(BUSY_TIMEOUT);
            tracker.spawn(conn.serve(io, busy_router.clone(), timeout, slot));
        }
    }
}

/// What a connection's task needs besides its stream.
struct Conn {
    shared: Arc<Shared>,
    abort: CancellationToken,
}

impl Conn {
    /// Answers one request on `io` with `router`, holding `_slot`. At stop
    /// the answer under way is finished (follow streams end on their own)
    /// unless the drain runs out.
    async fn serve<I>(self, io: I, router: Router, timeout: Duration, _slot: OwnedSemaphorePermit)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let mut io = tokio_io_timeout::TimeoutStream::new(io);
        io.set_write_timeout(Some(timeout));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .max_header_size(MAX_HEAD)
            .keep_alive(false)
            .title_case_headers(true)
            .serve_connection(TokioIo::new(Box::pin(io)), TowerToHyperService::new(router));
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = self.shared.stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    () = self.abort.cancelled() => return,
                }
            }
        };
        let Err(e) = result else { return };
        // hyper answered a head it could not parse itself.
        if e.is_parse_too_large() {
            self.shared.count(431);
        } else if e.is_parse() {
            self.shared.count(400);
        }
        tracing::debug!(error = %e, "API connection");
    }
}
