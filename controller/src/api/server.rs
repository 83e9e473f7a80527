//! Listeners, connection threads, routing and the follow stream.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{self, Request, RequestError};
use super::listen::{BoundSocket, Conn, Waker, bind_unix, unix_err};
use super::{
    ApiBackend, ApiConfig, ApiError, FlowStream, HealthStatus, JSON_LINES, LOST_TYPE, Next,
    OPENMETRICS_TEXT, PROMETHEUS_TEXT, metrics,
};

/// Status codes counted in `bulkhead_api_requests_total`.
const CODES: [u16; 7] = [200, 400, 404, 405, 431, 500, 503];

/// Longest a follow stream waits on its subscription before checking the
/// client and the stop flag.
const TICK: Duration = Duration::from_millis(250);

/// Bytes of records gathered into one chunk at most.
const BATCH: usize = 64 * 1024;

/// How long [`ApiHandle::stop`] waits for open connections to end.
const DRAIN: Duration = Duration::from_secs(3);

/// The API server.
pub struct Api;

impl Api {
    /// Binds the configured listeners and serves `backend` on them until
    /// [`ApiHandle::stop`] (or the handle is dropped).
    pub fn start(config: ApiConfig, backend: Arc<dyn ApiBackend>) -> Result<ApiHandle, ApiError> {
        let unix = config
            .socket
            .as_deref()
            .map(|p| bind_unix(p, config.socket_mode))
            .transpose()?;
        let tcp = config
            .tcp
            .map(|addr| {
                TcpListener::bind(addr)
                    .and_then(|l| Ok((l.local_addr()?, l)))
                    .map_err(|source| ApiError::Tcp { addr, source })
            })
            .transpose()?;
        let shared = Arc::new(Shared {
            config,
            backend,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            follows: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            requests: Default::default(),
        });
        let mut handle = ApiHandle {
            shared: Arc::clone(&shared),
            socket: None,
            tcp_addr: None,
            wakers: Vec::new(),
            threads: Vec::new(),
        };
        if let Some((listener, bound)) = unix {
            let waker = listener
                .try_clone()
                .map_err(|source| unix_err("cloning the listener of", &bound.path, source))?;
            handle.wakers.push(Waker::Unix(waker, bound.path.clone()));
            handle.socket = Some(bound);
            let shared = Arc::clone(&shared);
            let t = spawn("bulkhead-api-unix", move || {
                accept_loop(&shared, true, || {
                    listener.accept().map(|(s, _)| Conn::Unix(s))
                })
            })?;
            handle.threads.push(t);
            tracing::info!(socket = %handle.socket.as_ref().map(|b| b.path.display().to_string()).unwrap_or_default(), "API listening");
        }
        if let Some((addr, listener)) = tcp {
            let waker = listener
                .try_clone()
                .map_err(|source| ApiError::Tcp { addr, source })?;
            handle.wakers.push(Waker::Tcp(waker, addr));
            handle.tcp_addr = Some(addr);
            let full = shared.config.tcp_all_endpoints;
            let shared = Arc::clone(&shared);
            let t = spawn("bulkhead-api-tcp", move || {
                accept_loop(&shared, full, || {
                    listener.accept().map(|(s, _)| Conn::Tcp(s))
                })
            })?;
            handle.threads.push(t);
            tracing::info!(%addr, "API listening");
        }
        Ok(handle)
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ApiError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(ApiError::Thread)
}

/// The running API; stops it when dropped.
pub struct ApiHandle {
    shared: Arc<Shared>,
    socket: Option<BoundSocket>,
    tcp_addr: Option<SocketAddr>,
    wakers: Vec<Waker>,
    threads: Vec<JoinHandle<()>>,
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

    /// Stops accepting, ends follow streams, waits (briefly) for open
    /// connections, and removes the socket file if it is still ours.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        for w in &self.wakers {
            w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let deadline = Instant::now() + DRAIN;
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(b) = &self.socket {
            let ours = std::fs::symlink_metadata(&b.path)
                .is_ok_and(|m| m.dev() == b.dev && m.ino() == b.ino);
            if ours && let Err(e) = std::fs::remove_file(&b.path) {
                tracing::warn!(socket = %b.path.display(), error = %e, "removing the API socket");
            }
        }
        tracing::debug!("API stopped");
    }
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State shared by the accept and connection threads.
struct Shared {
    config: ApiConfig,
    backend: Arc<dyn ApiBackend>,
    stop: AtomicBool,
    active: AtomicUsize,
    follows: AtomicUsize,
    rejected: AtomicU64,
    requests: [AtomicU64; CODES.len()],
}

impl Shared {
    fn count(&self, status: u16) {
        if let Some(i) = CODES.iter().position(|&c| c == status) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The API's own metrics (OpenMetrics, no `# EOF`).
    fn own_metrics(&self) -> String {
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
        family(
            "bulkhead_api_connections",
            "gauge",
            "Connections the local API is serving.",
            &[(String::new(), self.active.load(Ordering::Relaxed) as u64)],
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

/// Decrements the connection count when a connection thread ends (even by panic).
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts an open follow stream.
struct Following<'a>(&'a Shared);

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.0.follows.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until the stop flag; each gets a thread, at most
/// `max_connections` at once (more are answered 503 here).
fn accept_loop(shared: &Arc<Shared>, full_api: bool, accept: impl Fn() -> io::Result<Conn>) {
    loop {
        let conn = accept();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.config.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            shared.count(503);
            let _ = conn.set_timeouts(Duration::from_millis(500));
            let _ = http::write_error(
                &mut conn,
                503,
                "too many connections to the agent's API; retry",
                &[("Retry-After", "1")],
            );
            // Take what already came of the request, so closing does not
            // reset the connection before the client reads the answer.
            let _ = conn.client_gone();
            continue;
        }
        let active = Active(Arc::clone(shared));
        let spawned = std::thread::Builder::new()
            .name("bulkhead-api-conn".to_owned())
            .spawn(move || {
                let shared = Arc::clone(&active.0);
                serve(&shared, conn, full_api);
                drop(active);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "API connection thread");
        }
    }
}

/// Answers one request.
fn serve(shared: &Shared, mut conn: Conn, full_api: bool) {
    let timeout = shared.config.io_timeout;
    if conn.set_timeouts(timeout).is_err() {
        return;
    }
    let req = match http::read_request(&mut conn) {
        Ok(r) => r,
        Err(RequestError::Closed | RequestError::Io(_)) => return,
        Err(RequestError::TooLarge) => {
            return respond_error(shared, &mut conn, 431, "request head too large");
        }
        Err(e @ RequestError::Malformed(_)) => {
            return respond_error(shared, &mut conn, 400, &e.to_string());
        }
    };
    tracing::debug!(method = %req.method, path = %req.path, query = %req.query, "API request");
    let known = [
        "/healthz",
        "/metrics",
        "/v1/flows",
        "/v1/accounting",
        "/v1/history",
    ];
    if !known.contains(&req.path.as_str()) {
        let msg = format!(
            "no endpoint {}; the API serves {}",
            req.path,
            known.join(", ")
        );
        return respond_error(shared, &mut conn, 404, &msg);
    }
    if !full_api && !matches!(req.path.as_str(), "/healthz" | "/metrics") {
        let msg = format!(
            "{} is served on the agent's Unix socket only; over TCP: /healthz, /metrics",
            req.path
        );
        return respond_error(shared, &mut conn, 404, &msg);
    }
    if req.method != "GET" {
        shared.count(405);
        let body = http::error_body(405, &format!("{} does not allow {}", req.path, req.method));
        let _ = http::write_response(
            &mut conn,
            405,
            "application/json",
            &[("Allow", "GET")],
            &body,
        );
        return;
    }
    let backend = &shared.backend;
    match req.path.as_str() {
        "/healthz" => {
            let health = backend.health();
            let status = if health.status == HealthStatus::Failing {
                503
            } else {
                200
            };
            let mut body = serde_json::to_vec(&health).unwrap_or_default();
            body.push(b'\n');
            respond(shared, &mut conn, status, "application/json", &body);
        }
        "/metrics" => {
            let text = metrics::join_openmetrics(&backend.metrics(), &shared.own_metrics());
            if metrics::accepts_openmetrics(req.header("accept")) {
                respond(shared, &mut conn, 200, OPENMETRICS_TEXT, text.as_bytes());
            } else {
                let text = metrics::to_prometheus(&text);
                respond(shared, &mut conn, 200, PROMETHEUS_TEXT, text.as_bytes());
            }
        }
        "/v1/accounting" => {
            let mut body = serde_json::to_vec(&backend.accounting()).unwrap_or_default();
            body.push(b'\n');
            respond(shared, &mut conn, 200, "application/json", &body);
        }
        "/v1/history" => match backend.history() {
            Ok(mut body) => {
                body.push('\n');
                respond(shared, &mut conn, 200, "application/json", body.as_bytes());
            }
            Err(e) => respond_error(shared, &mut conn, e.status(), &error_chain(&e)),
        },
        _ => flows(shared, conn, &req),
    }
}

/// An error and its causes, `: `-separated (a store error names the file,
/// its source says what failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn respond(shared: &Shared, conn: &mut Conn, status: u16, content_type: &str, body: &[u8]) {
    shared.count(status);
    let _ = http::write_response(conn, status, content_type, &[], body);
}

fn respond_error(shared: &Shared, conn: &mut Conn, status: u16, message: &str) {
    shared.count(status);
    let _ = http::write_error(conn, status, message, &[]);
}

/// The parameters of `/v1/flows` the server handles itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FlowsQuery {
    /// `limit`, if given.
    pub limit: Option<usize>,
    /// `follow`.
    pub follow: bool,
    /// The rest, re-encoded, for the backend's filter.
    pub filter: String,
}

/// Splits `limit` and `follow` off a `/v1/flows` query.
pub(super) fn parse_flows_query(query: &str) -> Result<FlowsQuery, String> {
    let mut limit = None;
    let mut follow = false;
    let mut rest = Vec::new();
    for (k, v) in http::query_pairs(query) {
        match k.as_str() {
            "limit" => {
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("limit must be a non-negative integer, not {v:?}"))?,
                );
            }
            "follow" => {
                follow = match v.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("follow must be 1 or 0, not {v:?}")),
                };
            }
            _ => rest.push((k, v)),
        }
    }
    Ok(FlowsQuery {
        limit,
        follow,
        filter: http::encode_query(rest.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    })
}

fn flows(shared: &Shared, mut conn: Conn, req: &Request) {
    let q = match parse_flows_query(&req.query) {
        Ok(q) => q,
        Err(msg) => return respond_error(shared, &mut conn, 400, &msg),
    };
    let cfg = &shared.config;
    if q.follow {
        let last = q.limit.unwrap_or(0).min(cfg.max_limit);
        match shared.backend.follow(&q.filter, last) {
            Ok(stream) => {
                shared.count(200);
                follow(shared, conn, stream);
            }
            Err(msg) => respond_error(shared, &mut conn, 400, &msg),
        }
    } else {
        let limit = q.limit.unwrap_or(cfg.default_limit).min(cfg.max_limit);
        match shared.backend.recent_flows(&q.filter, limit) {
            Ok(lines) => {
                let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
                for l in &lines {
                    body.extend_from_slice(l.as_bytes());
                    body.push(b'\n');
                }
                respond(shared, &mut conn, 200, JSON_LINES, &body);
            }
            Err(msg) => respond_error(shared, &mut conn, 400, &msg),
        }
    }
}

/// The line reporting `n` records lost for this follower.
fn lost_line(buf: &mut Vec<u8>, n: u64) {
    let line = serde_json::json!({ "type": LOST_TYPE, "lost": n });
    if serde_json::to_writer(&mut *buf, &line).is_ok() {
        buf.push(b'\n');
    }
}

/// Streams `stream` to the client as chunked JSON Lines until the client
/// goes away, the subscription closes, or the API stops. A heartbeat (an
/// empty line) follows every `heartbeat` without records, so a dead client
/// is noticed by the write failing.
fn follow(shared: &Shared, mut conn: Conn, mut stream: Box<dyn FlowStream>) {
    shared.follows.fetch_add(1, Ordering::SeqCst);
    let _following = Following(shared);
    if http::write_chunked_head(&mut conn, 200, JSON_LINES).is_err() {
        return;
    }
    let heartbeat = shared.config.heartbeat;
    let tick = heartbeat.min(TICK);
    let mut last_write = Instant::now();
    let mut buf = Vec::new();
    let mut closed = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let mut wait = tick;
        while buf.len() < BATCH {
            match stream.next(wait) {
                Next::Record(r) => {
                    buf.extend_from_slice(r.as_bytes());
                    buf.push(b'\n');
                }
                Next::Lost(n) => lost_line(&mut buf, n),
                Next::Idle => break,
                Next::Closed => {
                    closed = true;
                    break;
                }
            }
            // Gather what is ready without waiting.
            wait = Duration::ZERO;
        }
        if !buf.is_empty() {
            if http::write_chunk(&mut conn, &buf).is_err() {
                return;
            }
            buf.clear();
            last_write = Instant::now();
        } else if last_write.elapsed() >= heartbeat {
            if http::write_chunk(&mut conn, b"\n").is_err() {
                return;
            }
            last_write = Instant::now();
        }
        if closed || conn.client_gone() {
            break;
        }
    }
    let _ = http::write_last_chunk(&mut conn);
}
