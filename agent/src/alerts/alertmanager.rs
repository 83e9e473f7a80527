//! A client of Alertmanager's v2 API: `POST /api/v2/alerts` with a JSON
//! array of `postableAlert`s (`labels`, `annotations`, `startsAt`,
//! `endsAt`, `generatorURL`; see Alertmanager's `api/v2/openapi.yaml`).
//!
//! [`Alertmanager::send`] never waits: it puts the alert on a bounded queue
//! that the client's own thread (one current-thread tokio runtime, hyper's
//! HTTP/1 client) drains in batches. A slow or absent Alertmanager fills
//! the queue and loses alerts there, counted; a batch that cannot be
//! delivered (connection refused, timeout, an error status) is retried a
//! bounded number of times with a doubling backoff, then counted lost by
//! the reason of its last attempt. Alertmanager deduplicates by the label
//! set, so a retry that in fact arrived twice is harmless.
//!
//! Only `http://` is spoken (no TLS): point it at an Alertmanager on the
//! node or the cluster network, or at a local TLS-terminating proxy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::mpsc;

/// The API path alerts are posted to, after the URL's own path prefix.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// One alert as Alertmanager's v2 API takes it (`postableAlert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PostableAlert {
    /// Identify the alert: Alertmanager groups, deduplicates and routes by
    /// them.
    pub labels: BTreeMap<String, String>,
    /// Describe it (not part of its identity).
    pub annotations: BTreeMap<String, String>,
    /// When it started (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When Alertmanager should consider it resolved unless it is sent
    /// again (RFC 3339).
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// A link back to what raised it.
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// RFC 3339 with milliseconds, UTC (`2026-12-07T10:15:16.123Z`), as
/// Alertmanager's `date-time` fields take it.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Why alerts were not delivered (the `reason` label of
/// `bulkhead_alerts_lost_total{sink="alertmanager"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossReason {
    /// The queue was full (the receiver is slower than the alerts come).
    QueueFull,
    /// No connection could be made.
    Connect,
    /// No answer in time.
    Timeout,
    /// The exchange failed midway (closed connection, malformed answer).
    Http,
    /// Alertmanager answered a non-2xx status.
    Status,
    /// The client had stopped.
    Stopped,
}

impl LossReason {
    /// Every reason, in label order.
    pub const ALL: [LossReason; 6] = [
        LossReason::QueueFull,
        LossReason::Connect,
        LossReason::Timeout,
        LossReason::Http,
        LossReason::Status,
        LossReason::Stopped,
    ];

    /// The label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::QueueFull => "queue_full",
            LossReason::Connect => "connect",
            LossReason::Timeout => "timeout",
            LossReason::Http => "http",
            LossReason::Status => "status",
            LossReason::Stopped => "stopped",
        }
    }

    /// Whether trying again may help (a 4xx status will not).
    fn retryable(self, status: Option<u16>) -> bool {
        match self {
            LossReason::Connect | LossReason::Timeout | LossReason::Http => true,
            LossReason::Status => status.is_none_or(|s| s >= 500 || s == 429),
            LossReason::QueueFull | LossReason::Stopped => false,
        }
    }
}

/// The client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// The URL is not `http://HOST[:PORT][/PREFIX]`.
    #[error("Alertmanager URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The sender thread could not be started.
    #[error("starting the Alertmanager sender: {0}")]
    Start(#[source] std::io::Error),
}

/// Where Alertmanager is: host, port and the path alerts are posted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (an IPv6 address in brackets).
    pub host: String,
    /// TCP port (9093 unless the URL says).
    pub port: u16,
    /// The URL's path prefix followed by [`ALERTS_PATH`].
    pub path: String,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT][/PREFIX]` (Alertmanager's
    /// `--web.route-prefix` goes in PREFIX).
    pub fn parse(url: &str) -> Result<Self, AlertmanagerError> {
        let bad = |reason| AlertmanagerError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// is supported")),
            None => return Err(bad("expected http://HOST[:PORT]")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not supported"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Endpoint {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(9093),
            path: format!("{prefix}{ALERTS_PATH}"),
        })
    }

    /// `HOST:PORT` for the `Host` header.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host to connect to (brackets of an IPv6 address removed).
    fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// How the client queues, batches and retries.
#[derive(Clone, Debug)]
pub struct AlertmanagerConfig {
    /// Where to post.
    pub endpoint: Endpoint,
    /// Alerts queued at most; beyond, they are lost ([`LossReason::QueueFull`]).
    pub queue: usize,
    /// Alerts per request at most.
    pub batch: usize,
    /// Further attempts of a failed request.
    pub retries: u32,
    /// Wait before the first retry (doubling after each).
    pub backoff: Duration,
    /// Connecting and the whole exchange, each attempt.
    pub timeout: Duration,
}

impl AlertmanagerConfig {
    /// The defaults for `endpoint`: 4096 queued, 64 per request, 3 retries
    /// from 500 ms, 5 s timeout.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            queue: 4_096,
            batch: 64,
            retries: 3,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Delivery counters.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    lost: [AtomicU64; LossReason::ALL.len()],
}

impl Counters {
    fn lose(&self, reason: LossReason, n: u64) {
        let i = LossReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.lost[i].fetch_add(n, Ordering::Relaxed);
    }
}

/// What the client did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Alerts Alertmanager accepted (a 2xx answer to their request).
    pub delivered: u64,
    /// Requests made (attempts, retries included).
    pub requests: u64,
    /// Of which retries.
    pub retries: u64,
    /// Alerts lost, by reason (every reason listed, zeros included).
    pub lost: BTreeMap<&'static str, u64>,
}

impl DeliveryStats {
    /// Alerts lost for any reason.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }
}

/// A running client: a bounded queue and the thread that sends it.
pub struct Alertmanager {
    tx: Option<mpsc::Sender<PostableAlert>>,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    endpoint: Endpoint,
}

impl Alertmanager {
    /// Starts the sender thread.
    pub fn start(cfg: AlertmanagerConfig) -> Result<Self, AlertmanagerError> {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let counters = Arc::new(Counters::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AlertmanagerError::Start)?;
        let endpoint = cfg.endpoint.clone();
        let sender = Sender {
            cfg,
            counters: Arc::clone(&counters),
            stopping: Arc::clone(&stopping),
        };
        let thread = std::thread::Builder::new()
            .name("bulkhead-alertmanager".into())
            .spawn(move || runtime.block_on(sender.run(rx)))
            .map_err(AlertmanagerError::Start)?;
        Ok(Self {
            tx: Some(tx),
            counters,
            stopping,
            thread: Some(thread),
            endpoint,
        })
    }

    /// Where it posts.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Queues `alert` without waiting; whether it was queued (if not, it
    /// is counted lost: the queue was full, or the client stopped).
    pub fn send(&self, alert: PostableAlert) -> bool {
        let reason = match &self.tx {
            Some(tx) => match tx.try_send(alert) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => LossReason::QueueFull,
                Err(mpsc::error::TrySendError::Closed(_)) => LossReason::Stopped,
            },
            None => LossReason::Stopped,
        };
        self.counters.lose(reason, 1);
        false
    }

    /// The counters so far.
    pub fn stats(&self) -> DeliveryStats {
        let c = &self.counters;
        DeliveryStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            lost: LossReason::ALL
                .iter()
                .zip(&c.lost)
                .map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Sends what is queued (one attempt each, no more retries) and stops
    /// the thread; the final counters.
    pub fn stop(mut self) -> DeliveryStats {
        self.shut_down();
        self.stats()
    }

    fn shut_down(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the Alertmanager sender panicked");
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The sender thread's side.
struct Sender {
    cfg: AlertmanagerConfig,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
}

/// One failed attempt.
struct Failure {
    reason: LossReason,
    status: Option<u16>,
    detail: String,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<PostableAlert>) {
        let mut batch = Vec::with_capacity(self.cfg.batch.max(1));
        while rx.recv_many(&mut batch, self.cfg.batch.max(1)).await > 0 {
            self.deliver(&batch).await;
            batch.clear();
        }
    }

    /// Posts `batch`, retrying; counts the outcome.
    async fn deliver(&self, batch: &[PostableAlert]) {
        let n = batch.len() as u64;
        let body = Bytes::from(serde_json::to_vec(batch).expect("alerts serialize"));
        let mut backoff = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let failure =
                match tokio::time::timeout(self.cfg.timeout, self.post(body.clone())).await {
                    Ok(Ok(())) => {
                        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                    Ok(Err(f)) => f,
                    Err(_) => Failure {
                        reason: LossReason::Timeout,
                        status: None,
                        detail: format!("no answer within {:?}", self.cfg.timeout),
                    },
                };
            let again = attempt < self.cfg.retries
                && failure.reason.retryable(failure.status)
                && !self.stopping.load(Ordering::Relaxed);
            if !again {
                tracing::warn!(
                    alerts = n,
                    reason = failure.reason.as_str(),
                    error = %failure.detail,
                    attempts = attempt + 1,
                    endpoint = %self.cfg.endpoint.authority(),
                    "alerts not delivered to Alertmanager"
                );
                self.counters.lose(failure.reason, n);
                return;
            }
            tracing::debug!(reason = failure.reason.as_str(), error = %failure.detail, "retrying Alertmanager");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            attempt += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One request on a new connection.
    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let ep = &self.cfg.endpoint;
        let fail = |reason, detail: String| Failure {
            reason,
            status: None,
            detail,
        };
        let stream = tokio::net::TcpStream::connect((ep.connect_host(), ep.port))
            .await
            .map_err(|e| fail(LossReason::Connect, e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(LossReason::Http, e.to_string()))?;
        let driver = tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::POST)
            .uri(ep.path.as_str())
            .header(hyper::header::HOST, ep.authority())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("bulkhead/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .expect("a well-formed request");
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| fail(LossReason::Http, e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(LossReason::Http, e.to_string()))?
                .to_bytes();
            if status.is_success() {
                Ok(())
            } else {
                Err(Failure {
                    reason: LossReason::Status,
                    status: Some(status.as_u16()),
                    detail: format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
                    ),
                })
            }
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests;
