//! The agent's local HTTP API: health, Prometheus metrics, recent and live
//! flows, the accounting identity, and the durable flow history.
//!
//! | method and path                   | answer                                                      |
//! |-----------------------------------|-------------------------------------------------------------|
//! | `GET /healthz`                    | 200 (or 503 when failing) + JSON [`Health`] (liveness)      |
//! | `GET /readyz`                     | 200 `{"ready":true}` once [`ApiBackend::ready`], else 503   |
//! | `GET /metrics`                    | OpenMetrics if accepted (Prometheus does), else text 0.0.4  |
//! | `GET /v1/flows?<filter>&limit=N`  | JSON Lines, the newest `N` matching records, newest last    |
//! | `GET /v1/flows?<filter>&follow=1` | chunked JSON Lines: the last `limit` (default 0), then live; |
//! |                                   | an empty line (heartbeat) after each idle `heartbeat`       |
//! | `GET /v1/accounting`              | JSON                                                        |
//! | `GET /v1/history`                 | JSON `bulkhead.history/v1`: the committed durable history   |
//! |                                   | (404 when the agent runs without `--history-db`);           |
//! |                                   | `?since=MS&until=MS`: a time window of it (whole buckets)   |
//! | `GET /v1/timeline?pod=NS/NAME&`   | JSON `bulkhead.timeline/v1`: the pod's events from `since` |
//! | `since=MS&until=MS&limit=N`       | to `until` (ms since the epoch, inclusive; default all),    |
//! |                                   | oldest first, at most `limit` (default 1,000, clamped to    |
//! |                                   | `max_limit`; `truncated` says more are stored); 404 when    |
//! |                                   | the agent runs without `--timeline-db`                      |
//! | `POST /v1/cni/endpoints`          | a CNI ADD: registers, answers once enforced (or 504 at its  |
//! |                                   | deadline); `GET`/`DELETE /v1/cni/endpoints/{containerId}`,  |
//! |                                   | `POST /v1/cni/gc` (see `bulkhead_cni::wire`; 404 when the   |
//! |                                   | backend takes no CNI registrations)                         |
//! | `GET /v1/quarantine`              | JSON `QuarantineList` (see [`crate::quarantine`]): in force |
//! |                                   | and pending                                                 |
//! | `POST /v1/quarantine`             | JSON `QuarantineRequest`: quarantines a pod, answers the    |
//! |                                   | list once enforced (504 after `quarantine_wait`: stored, not |
//! |                                   | in force yet); 400 names the bad field                      |
//! | `DELETE /v1/quarantine/{ns}/{pod}`| lifts it, answers `RemoveAnswer` once enforced (409 while   |
//! |                                   | the pod's label still quarantines it); 404 when the backend |
//! |                                   | keeps no quarantines                                        |
//! | `GET /v1/baselines`               | JSON `[ActiveBaseline]`: the baselines alerted on           |
//! | `PUT /v1/baselines`               | a baseline file's content: activates it (persisted), in     |
//! |                                   | force when answered; 409 for a `--baseline` flag's name     |
//! | `DELETE /v1/baselines/{name}`     | deactivates it: `DeactivateAnswer`; 404 when the agent runs |
//! |                                   | no alerting (its flow pipeline is off)                      |
//! | `GET /v1/map`, `/v1/map/follow`,  | the network map (`bulkhead.map/v1`): edges by verdict class |
//! | `/v1/map/edge`, `/v1/map/workload`| in a time window, live increments, an edge's flows and      |
//! |                                   | explain, a workload's policies and proposal (see `map.rs`;  |
//! |                                   | 404 when the agent keeps no flow map)                       |
//!
//! Errors are JSON `{"error": "...", "status": N}` (400 bad query, filter
//! or body, 404, 405, 409, 500 when the history cannot be read, 503 when
//! [`ApiConfig::max_connections`] are busy, the history is not open or the
//! agent is not ready). A request head hyper cannot parse is answered by
//! hyper itself (400, or 431 beyond [`MAX_HEAD`]) with an empty body.
//! `HEAD` is answered like `GET` (without the body); other methods get 405.
//!
//! `/v1/history` is what `bulkhead propose --socket` reads: the history
//! store's content as of its last commit, read in a read transaction while
//! the exporter goes on writing. Records still queued to the exporter are
//! not in it yet (it commits every second or every 10,000 records).
//!
//! The server knows nothing of the flow pipeline: the agent implements
//! [`ApiBackend`] (strings and JSON values only). A follower is fed from a
//! bounded, lossy subscription ([`FlowStream`]); a slow or dead client loses
//! records (reported in the stream as a [`LOST_TYPE`] line) and never slows
//! the pipeline.
//!
//! Listeners: a Unix socket (the full API; mode 0600 by default, so root
//! only), optionally TCP for Prometheus and probes (only `/metrics`,
//! `/healthz` and `/readyz` unless [`ApiConfig::tcp_all_endpoints`]), and
//! optionally the web UI's TCP listener ([`ApiConfig::ui`]: the UI's
//! bundle, health and the map, read-only, behind a token or a loopback
//! `Host` guard; see [`ui`]). The full API serves the bundle under `/ui/`
//! too.
//!
//! The server is axum routes on hyper HTTP/1 connections, run on the
//! caller's tokio runtime ([`Api::start`]). The accept loop is ours (axum's
//! `serve` has no connection cap): it answers 503 beyond
//! `max_connections`, and wraps each connection in a write timeout
//! (`tokio-io-timeout`) so a client that stops reading is dropped. Each
//! connection answers one request (no keep-alive), so the cap counts
//! requests in flight. A follow stream is an axum `Body` over a channel of
//! chunks; hyper writes and flushes each chunk as it comes, so a follower
//! sees each record (or batch of what was queued together) at once.
//!
//! [`ApiBackend`] stays synchronous and every call to it runs on tokio's
//! blocking pool (`spawn_blocking`), never on a worker thread: the backend
//! takes locks the agent loop holds, `history` reads the whole store
//! (seconds), and the flow subscription is a `std::sync::mpsc` queue fed by
//! the pipeline's thread (a blocking `recv_timeout`). Making the
//! subscription async would put tokio into the flow pipeline for no gain: a
//! follower holds one blocking-pool thread for its life (it waits on its
//! subscription and hands chunks to the connection over a bounded channel),
//! and followers are bounded by `max_connections`, far below the pool's
//! limit (512 by default).

mod baselines;
pub mod client;
mod cni;
mod follow;
mod listen;
mod map;
pub mod metrics;
mod quarantine;
pub mod query;
mod routes;
mod server;
#[cfg(test)]
mod tests;
pub mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use baselines::{BASELINES_PATH, DeactivateAnswer};
pub use map::{
    EdgeQuery, MAP_EDGE_PATH, MAP_FOLLOW_PATH, MAP_PATH, MAP_PATHS, MAP_WORKLOAD_PATH, MapError,
    WorkloadQuery,
};
pub use quarantine::{QUARANTINE_PATH, QUARANTINE_WAIT};
pub use server::{Api, ApiHandle};

/// The runtime tests serve APIs from (one per test binary; the tests'
/// blocking clients run on their own threads).
#[cfg(test)]
pub(crate) fn test_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for tests")
    })
}

/// Default path of the agent's API socket (the CNI plugin's default too).
pub const DEFAULT_SOCKET: &str = bulkhead_cni::wire::DEFAULT_SOCKET;

/// File name of the API socket in a lab's state directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// Conventional TCP address for Prometheus scrapes (`--metrics-addr`).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9617";

/// Content type of the JSON Lines answers of `/v1/flows`.
pub const JSON_LINES: &str = "application/x-ndjson";

/// Content type of `/metrics` for clients that do not accept OpenMetrics
/// (Prometheus text exposition format 0.0.4).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of `/metrics` for clients that accept OpenMetrics.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Largest request head accepted (request line and headers); larger
/// ones are answered 431.
pub const MAX_HEAD: usize = 16 * 1024;

/// `type` of the line a follow stream carries when the backend dropped
/// records for this subscriber: `{"type":"lost","lost":N}`.
pub const LOST_TYPE: &str = "lost";

/// What the API serves, provided by the agent. Every method runs on the
/// runtime's blocking pool (never on a worker thread) and holds its
/// connection until it returns; none may block the pipeline.
pub trait ApiBackend: Send + Sync {
    /// The agent's metrics as OpenMetrics text (what `prometheus-client`
    /// encodes; the final `# EOF` is optional). The API adds its own
    /// metrics, and converts to Prometheus text 0.0.4 for clients that do
    /// not accept OpenMetrics.
    fn metrics(&self) -> String;
    /// The agent's health (liveness: `/healthz`).
    fn health(&self) -> Health;
    /// Whether the agent is ready (`/readyz`), or why not. By default it
    /// follows [`ApiBackend::health`]: ready unless failing.
    fn ready(&self) -> Result<(), String> {
        let health = self.health();
        match health.status {
            HealthStatus::Failing => Err(format!("the agent is failing: {}", health.detail)),
            HealthStatus::Ok | HealthStatus::Degraded => Ok(()),
        }
    }
    /// The newest `limit` records (JSON, one per string, no newline) that
    /// match `query`, oldest first. `query` is the URL query string, still
    /// form-urlencoded, without `limit` and `follow` (e.g.
    /// `pod=x%2Fa&verdict=denied`); `Err` is a message for the user when it
    /// is not a valid filter.
    fn recent_flows(&self, query: &str, limit: usize) -> Result<Vec<String>, String>;
    /// A live subscription to the records matching `query` (as in
    /// [`ApiBackend::recent_flows`]) that first yields the newest `last`
    /// matching records, then each new one, with no gap or duplicate
    /// between the two. It must be bounded and lossy (dropping, and
    /// counting for [`Next::Lost`], what the reader does not take in time).
    fn follow(&self, query: &str, last: usize) -> Result<Box<dyn FlowStream>, String>;
    /// The accounting identity and counters, as JSON.
    fn accounting(&self) -> serde_json::Value;
    /// The durable flow history as committed, as JSON text (schema
    /// `bulkhead.history/v1`), or why there is none. It reads the whole
    /// store (seconds for a million edges): slow, but it holds only its
    /// blocking-pool thread, and the store's writer does not wait for it.
    /// `window`: the part of it the query asks for (`since`, `until`;
    /// [`bulkhead_learn::Window::ALL`] without them), rounded outward to
    /// the store's time buckets.
    fn history(&self, window: bulkhead_learn::Window) -> Result<String, HistoryError>;
    /// The forensic timeline of one pod as JSON text (schema
    /// `bulkhead.timeline/v1`, `bulkhead_learn::timeline::Page`), or why
    /// there is none.
    fn timeline(&self, query: &TimelineQuery) -> Result<String, TimelineError> {
        let _ = query;
        Err(TimelineError::NotKept)
    }
    /// The registry of CNI attachments the `/v1/cni` routes serve, if the
    /// agent takes registrations from the chained plugin.
    fn cni(&self) -> Option<std::sync::Arc<crate::cni::Registry>> {
        None
    }
    /// The store of quarantined pods the `/v1/quarantine` routes serve
    /// (their count is in `/metrics` too), if the agent keeps one.
    fn quarantine(&self) -> Option<std::sync::Arc<crate::quarantine::QuarantineStore>> {
        None
    }
    /// Runs `f` on the agent's baseline alerting (the `/v1/baselines`
    /// routes); whether it runs any (`false`: `f` was not called).
    fn with_alerts(&self, f: &mut dyn FnMut(&crate::alerts::Alerts)) -> bool {
        let _ = f;
        false
    }
    /// The network map of `window` as JSON text (`bulkhead.map/v1`), or
    /// why there is none.
    fn map(&self, window: bulkhead_learn::Window) -> Result<String, MapError> {
        let _ = window;
        Err(MapError::NotKept)
    }
    /// A live stream of the map's increments (`GET /v1/map/follow` lines),
    /// after the window `since` (to now) if given. Bounded and lossy, as
    /// [`ApiBackend::follow`].
    fn map_follow(
        &self,
        since: Option<bulkhead_learn::Window>,
    ) -> Result<Box<dyn FlowStream>, MapError> {
        let _ = since;
        Err(MapError::NotKept)
    }
    /// One edge's details as JSON text (`bulkhead.map.edge/v1`).
    fn map_edge(&self, query: &EdgeQuery) -> Result<String, MapError> {
        let _ = query;
        Err(MapError::NotKept)
    }
    /// One workload's details as JSON text (`bulkhead.map.workload/v1`).
    fn map_workload(&self, query: &WorkloadQuery) -> Result<String, MapError> {
        let _ = query;
        Err(MapError::NotKept)
    }
}

/// What `GET /v1/timeline` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineQuery {
    /// The pod, `namespace/name`.
    pub pod: String,
    /// From (milliseconds since the epoch, inclusive).
    pub since_unix_ms: u64,
    /// To (inclusive).
    pub until_unix_ms: u64,
    /// At most this many events (clamped to [`ApiConfig::max_limit`]).
    pub limit: usize,
}

/// Why `GET /v1/timeline` has no timeline to serve.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The agent keeps no timeline (404).
    #[error("this agent keeps no forensic timeline: start it with --timeline-db PATH")]
    NotKept,
    /// A timeline is configured but not open (503).
    #[error("the timeline {} is not open: {reason}", path.display())]
    NotOpen {
        /// The configured file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading it failed (500).
    #[error("reading the timeline")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TimelineError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            TimelineError::NotKept => 404,
            TimelineError::NotOpen { .. } => 503,
            TimelineError::Read(_) => 500,
        }
    }
}

/// Why `GET /v1/history` has no history to serve.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The agent keeps no durable history (404).
    #[error("this agent keeps no durable flow history: start it with --history-db PATH")]
    NotKept,
    /// A history is configured but not open (503).
    #[error("the flow history {} is not open: {reason}", path.display())]
    NotOpen {
        /// The configured file.
        path: PathBuf,
        /// Why (the pipeline's or the store's error).
        reason: String,
    },
    /// Reading the store failed (500).
    #[error("reading the flow history")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HistoryError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HistoryError::NotKept => 404,
            HistoryError::NotOpen { .. } => 503,
            HistoryError::Read(_) => 500,
        }
    }
}

/// A live subscription to flow records, owned by one follower (on a
/// blocking-pool thread). Dropping it unsubscribes.
pub trait FlowStream: Send {
    /// The next record, waiting at most `timeout` for one (`Duration::ZERO`:
    /// only what is queued; the server gathers a batch that way).
    fn next(&mut self, timeout: Duration) -> Next;
}

/// What [`FlowStream::next`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// A record: one JSON object, no newline.
    Record(String),
    /// This many records were dropped for this subscriber since the last
    /// report (it did not keep up).
    Lost(u64),
    /// Nothing arrived within the timeout.
    Idle,
    /// The subscription ended (the agent is stopping).
    Closed,
}

/// The agent's health, served by `/healthz`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// Overall status; `Failing` answers 503, the others 200.
    pub status: HealthStatus,
    /// Details (checks, revision, last error), any JSON.
    pub detail: serde_json::Value,
}

/// Overall health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// Enforcement works; something else (an exporter, the flow reader) does not.
    Degraded,
    /// Enforcement is not in the state the agent wants.
    Failing,
}

/// How the API listens.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Unix socket path (the full API); `None` for no Unix listener. Its
    /// parent directory is created; a stale socket file is replaced.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file (0o600: root only).
    pub socket_mode: u32,
    /// TCP address (e.g. [`DEFAULT_METRICS_ADDR`]); `None` for no TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Serve the flow, accounting and history endpoints over TCP too, not
    /// only `/metrics`, `/healthz` and `/readyz`.
    pub tcp_all_endpoints: bool,
    /// Connections served at once; more get 503.
    pub max_connections: usize,
    /// A follow stream writes a heartbeat (an empty line) after this long
    /// without a record, so a dead client is noticed.
    pub heartbeat: Duration,
    /// Timeout reading a request head, and for each write of an answer to
    /// make progress (a client that stops reading is dropped after it).
    pub io_timeout: Duration,
    /// `limit` of `/v1/flows` when the query has none (not following).
    pub default_limit: usize,
    /// Largest `limit` honoured (larger ones are clamped).
    pub max_limit: usize,
    /// How long a quarantine change waits to be enforced before it is
    /// answered 504 ([`QUARANTINE_WAIT`]).
    pub quarantine_wait: Duration,
    /// The web UI's listener (read-only routes), if any.
    pub ui: Option<ui::UiConfig>,
    /// The web UI's files served under `/ui/`: by default the bundle built
    /// into the binary ([`ui::Bundle::embedded`]); `None` answers 503.
    pub ui_bundle: Option<std::sync::Arc<ui::Bundle>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: Some(PathBuf::from(DEFAULT_SOCKET)),
            socket_mode: 0o600,
            tcp: None,
            tcp_all_endpoints: false,
            max_connections: 32,
            heartbeat: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            default_limit: 100,
            max_limit: 100_000,
            quarantine_wait: QUARANTINE_WAIT,
            ui: None,
            ui_bundle: ui::Bundle::embedded(),
        }
    }
}

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Another process serves on the socket.
    #[error("{} is in use (is another agent running?)", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket.
    #[error("{} exists and is not a socket; not replacing it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Preparing or binding the Unix socket failed.
    #[error("{what} {}: {source}", path.display())]
    Unix {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The UI listener is not on loopback and no token guards it.
    #[error(
        "the web UI listener {addr} is not on loopback: give it a token (--ui-token-file), \
         or listen on 127.0.0.1 or [::1]"
    )]
    UiNotLoopback {
        /// Its address.
        addr: SocketAddr,
    },
    /// The UI listener was already taken by another API.
    #[error("the web UI listener {addr} is already served by another API")]
    UiListenerTaken {
        /// Its address.
        addr: SocketAddr,
    },
    /// Binding the TCP listener (or preparing the UI's) failed.
    #[error("listening on {addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
