use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, ChunkedReader, ClientError};
use super::server::{FlowsQuery, parse_flows_query};
use super::*;

/// A fake pipeline: a history of records and bounded, lossy subscriptions.
#[derive(Default)]
struct Fake {
    records: Mutex<Vec<String>>,
    subs: Mutex<Vec<(SyncSender<String>, Arc<AtomicU64>)>>,
    live: Arc<AtomicUsize>,
    failing: bool,
    queries: Mutex<Vec<String>>,
    /// What `/v1/history` answers: `None` is an agent without a history.
    history: Option<Result<String, String>>,
}

fn record(n: u32) -> String {
    format!(r#"{{"type":"flow","n":{n}}}"#)
}

impl Fake {
    fn check(&self, query: &str) -> Result<(), String> {
        self.queries.lock().unwrap().push(query.to_owned());
        match query.split('&').find(|p| p.starts_with("bad")) {
            Some(p) => Err(format!("unknown filter {p}")),
            None => Ok(()),
        }
    }

    fn publish(&self, rec: String) {
        self.records.lock().unwrap().push(rec.clone());
        self.subs
            .lock()
            .unwrap()
            .retain(|(tx, lost)| match tx.try_send(rec.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    lost.fetch_add(1, Ordering::SeqCst);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    fn lose(&self, n: u64) {
        for (_, lost) in self.subs.lock().unwrap().iter() {
            lost.fetch_add(n, Ordering::SeqCst);
        }
    }

    fn end_subscriptions(&self) {
        self.subs.lock().unwrap().clear();
    }
}

impl ApiBackend for Fake {
    fn metrics(&self) -> String {
        "# HELP fake Things.\n# TYPE fake counter\nfake_total 7\n# EOF\n".to_owned()
    }

    fn health(&self) -> Health {
        Health {
            status: if self.failing {
                HealthStatus::Failing
            } else {
                HealthStatus::Ok
            },
            detail: serde_json::json!({ "revision": 3 }),
        }
    }

    fn recent_flows(&self, query: &str, limit: usize) -> Result<Vec<String>, String> {
        self.check(query)?;
        let r = self.records.lock().unwrap();
        Ok(r[r.len().saturating_sub(limit)..].to_vec())
    }

    fn follow(&self, query: &str, last: usize) -> Result<Box<dyn FlowStream>, String> {
        self.check(query)?;
        let (tx, rx) = sync_channel(4);
        let lost = Arc::new(AtomicU64::new(0));
        let records = self.records.lock().unwrap();
        let backlog = records[records.len().saturating_sub(last)..].to_vec();
        self.subs.lock().unwrap().push((tx, Arc::clone(&lost)));
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeStream {
            backlog,
            rx,
            lost,
            live: Arc::clone(&self.live),
        }))
    }

    fn accounting(&self) -> serde_json::Value {
        serde_json::json!({ "balanced": true })
    }

    fn history(&self) -> Result<String, HistoryError> {
        match &self.history {
            None => Err(HistoryError::NotKept),
            Some(Ok(json)) => Ok(json.clone()),
            Some(Err(why)) => Err(HistoryError::Read(why.clone().into())),
        }
    }
}

struct FakeStream {
    backlog: Vec<String>,
    rx: Receiver<String>,
    lost: Arc<AtomicU64>,
    live: Arc<AtomicUsize>,
}

impl FlowStream for FakeStream {
    fn next(&mut self, timeout: Duration) -> Next {
        if !self.backlog.is_empty() {
            return Next::Record(self.backlog.remove(0));
        }
        let lost = self.lost.swap(0, Ordering::SeqCst);
        if lost > 0 {
            return Next::Lost(lost);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Next::Record(r),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fake(n: u32) -> Arc<Fake> {
    let f = Arc::new(Fake::default());
    for i in 0..n {
        f.publish(record(i));
    }
    f
}

fn unix_config(dir: &Path) -> ApiConfig {
    ApiConfig {
        socket: Some(dir.join("run/agent.sock")),
        tcp: None,
        heartbeat: Duration::from_millis(100),
        ..ApiConfig::default()
    }
}

fn tcp_config(all: bool) -> ApiConfig {
    ApiConfig {
        socket: None,
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        tcp_all_endpoints: all,
        heartbeat: Duration::from_millis(100),
        ..ApiConfig::default()
    }
}

fn get_unix(path: &Path, target: &str) -> Result<(String, String), ClientError> {
    let mut resp = client::get(UnixStream::connect(path)?, target)?;
    let ct = resp.header("content-type").unwrap_or_default().to_owned();
    let mut body = String::new();
    resp.read_to_string(&mut body)?;
    Ok((ct, body))
}

fn get_tcp(addr: SocketAddr, target: &str) -> Result<(String, String), ClientError> {
    let mut resp = client::get(TcpStream::connect(addr)?, target)?;
    let ct = resp.header("content-type").unwrap_or_default().to_owned();
    let mut body = String::new();
    resp.read_to_string(&mut body)?;
    Ok((ct, body))
}

fn status_of(r: Result<(String, String), ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Status { status, message }) => (status, message),
        Ok(_) => (200, String::new()),
        Err(e) => panic!("{e}"),
    }
}

/// Sends a raw request and returns the whole raw answer.
fn raw(path: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_endpoint_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(5);
    let api = Api::start(unix_config(dir.path()), backend.clone()).unwrap();
    let sock = api.socket_path().unwrap().to_owned();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let (ct, body) = get_unix(&sock, "/healthz").unwrap();
    assert_eq!(ct, "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["detail"]["revision"], 3);

    let (ct, body) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(ct, PROMETHEUS_TEXT);
    assert!(
        body.starts_with("# HELP fake_total Things.\n# TYPE fake_total counter\nfake_total 7\n")
    );
    assert!(body.contains("\n# TYPE bulkhead_api_requests_total counter\n"));
    assert!(body.contains("bulkhead_api_requests_total{code=\"200\"} 1\n"));
    assert!(body.contains("\nbulkhead_api_connections "), "{body}");
    assert!(!body.contains("# EOF"));
    let answer = raw(
        &sock,
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert!(
        answer.contains(&format!("\r\nContent-Type: {OPENMETRICS_TEXT}\r\n")),
        "{answer}"
    );
    assert!(answer.contains("\r\n\r\n# HELP fake Things.\n# TYPE fake counter\nfake_total 7\n"));
    assert!(answer.contains("\n# TYPE bulkhead_api_requests counter\n"));
    assert!(answer.ends_with("\n# EOF\n"), "{answer}");

    let (_, body) = get_unix(&sock, "/v1/accounting").unwrap();
    assert_eq!(body, "{\"balanced\":true}\n");

    let (ct, body) = get_unix(&sock, "/v1/flows?limit=2&pod=x%2Fa").unwrap();
    assert_eq!(ct, JSON_LINES);
    assert_eq!(body, format!("{}\n{}\n", record(3), record(4)));
    assert_eq!(backend.queries.lock().unwrap().last().unwrap(), "pod=x%2Fa");
    let (_, body) = get_unix(&sock, "/v1/flows").unwrap();
    assert_eq!(body.lines().count(), 5);

    let (status, msg) = status_of(get_unix(&sock, "/v1/flows?bad=1"));
    assert_eq!((status, msg.as_str()), (400, "unknown filter bad=1"));
    let (status, msg) = status_of(get_unix(&sock, "/v1/flows?limit=x"));
    assert_eq!(status, 400);
    assert!(msg.contains("limit"), "{msg}");
    let (status, msg) = status_of(get_unix(&sock, "/v1/flows?follow=1&bad=2"));
    assert_eq!((status, msg.as_str()), (400, "unknown filter bad=2"));
    let (status, msg) = status_of(get_unix(&sock, "/nope"));
    assert_eq!(status, 404);
    assert!(msg.contains("/nope"), "{msg}");

    let answer = raw(
        &sock,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(answer.contains("\r\nAllow: GET\r\n"), "{answer}");
    assert!(answer.ends_with("\"status\":405}\n"), "{answer}");
    let answer = raw(&sock, "nonsense\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    api.stop();
    assert!(!sock.exists(), "the socket is removed at stop");
}

#[test]
fn tcp_serves_metrics_and_health_and_the_rest_only_when_asked() {
    let backend = fake(3);
    let api = Api::start(tcp_config(false), backend.clone()).unwrap();
    let addr = api.tcp_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let (ct, body) = get_tcp(addr, "/metrics").unwrap();
    assert_eq!(ct, PROMETHEUS_TEXT);
    assert!(
        body.starts_with(
            "# HELP fake_total Things.\n# TYPE fake_total counter\nfake_total 7\n# HELP"
        )
    );
    assert!(get_tcp(addr, "/healthz").is_ok());
    let (status, msg) = status_of(get_tcp(addr, "/v1/flows"));
    assert_eq!(status, 404);
    assert!(msg.contains("Unix socket"), "{msg}");
    api.stop();

    let api = Api::start(tcp_config(true), backend).unwrap();
    let addr = api.tcp_addr().unwrap();
    let (_, body) = get_tcp(addr, "/v1/flows?limit=1").unwrap();
    assert_eq!(body, format!("{}\n", record(2)));
    let (_, body) = get_tcp(addr, "/v1/accounting").unwrap();
    assert!(body.contains("balanced"));
}

#[test]
fn history_is_served_on_the_unix_socket_or_says_how_to_keep_one() {
    let dir = tempfile::tempdir().unwrap();
    let kept = Arc::new(Fake {
        history: Some(Ok(r#"{"schema":"bulkhead.history/v1"}"#.to_owned())),
        ..Fake::default()
    });
    let api = Api::start(unix_config(dir.path()), kept.clone()).unwrap();
    let sock = api.socket_path().unwrap().to_owned();
    let (ct, body) = get_unix(&sock, "/v1/history").unwrap();
    assert_eq!(ct, "application/json");
    assert_eq!(body, "{\"schema\":\"bulkhead.history/v1\"}\n");
    api.stop();

    let api = Api::start(unix_config(dir.path()), fake(0)).unwrap();
    let (status, msg) = status_of(get_unix(api.socket_path().unwrap(), "/v1/history"));
    assert_eq!(status, 404);
    assert!(msg.contains("start it with --history-db PATH"), "{msg}");
    api.stop();

    let broken = Arc::new(Fake {
        history: Some(Err("disk on fire".to_owned())),
        ..Fake::default()
    });
    let api = Api::start(unix_config(dir.path()), broken).unwrap();
    let (status, msg) = status_of(get_unix(api.socket_path().unwrap(), "/v1/history"));
    assert_eq!(
        (status, msg.as_str()),
        (500, "reading the flow history: disk on fire")
    );
    api.stop();

    // Over TCP only with every endpoint.
    let api = Api::start(tcp_config(false), kept).unwrap();
    let (status, _) = status_of(get_tcp(api.tcp_addr().unwrap(), "/v1/history"));
    assert_eq!(status, 404);
}

#[test]
fn failing_health_is_503() {
    let backend = Arc::new(Fake {
        failing: true,
        ..Fake::default()
    });
    let api = Api::start(tcp_config(false), backend).unwrap();
    let (status, _) = status_of(get_tcp(api.tcp_addr().unwrap(), "/healthz"));
    assert_eq!(status, 503);
}

/// Reads the next non-heartbeat line of a follow stream.
fn next_line(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            return Some(line.trim_end().to_owned());
        }
    }
}

#[test]
fn follow_streams_records_as_they_appear_and_ends_with_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(3);
    let api = Api::start(unix_config(dir.path()), backend.clone()).unwrap();
    let sock = api.socket_path().unwrap().to_owned();
    let resp = client::get(
        UnixStream::connect(&sock).unwrap(),
        "/v1/flows?follow=1&limit=1&verdict=denied",
    )
    .unwrap();
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(backend.live.load(Ordering::SeqCst), 1);
    assert_eq!(
        backend.queries.lock().unwrap().last().unwrap(),
        "verdict=denied"
    );
    let mut r = BufReader::new(resp);
    assert_eq!(next_line(&mut r).unwrap(), record(2), "the backlog first");
    for i in 10..13 {
        backend.publish(record(i));
        assert_eq!(next_line(&mut r).unwrap(), record(i));
    }
    // Records the subscription dropped are reported.
    backend.lose(6);
    backend.publish(record(20));
    let mut lines: Vec<String> = (0..2).map(|_| next_line(&mut r).unwrap()).collect();
    lines.sort();
    assert_eq!(
        lines,
        [r#"{"type":"flow","n":20}"#, r#"{"type":"lost","lost":6}"#]
    );
    drop(r);
    wait_until("the subscription to end", || {
        backend.live.load(Ordering::SeqCst) == 0
    });
    wait_until("the connection to end", || {
        get_unix(&sock, "/metrics")
            .unwrap()
            .1
            .contains("bulkhead_api_follow_streams 0\n")
    });
}

#[test]
fn follow_sends_heartbeats_and_ends_when_the_subscription_or_the_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(0);
    let api = Api::start(unix_config(dir.path()), backend.clone()).unwrap();
    let sock = api.socket_path().unwrap().to_owned();

    let resp = client::get(UnixStream::connect(&sock).unwrap(), "/v1/flows?follow=1").unwrap();
    let mut r = BufReader::new(resp);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "\n", "a heartbeat while idle");
    backend.end_subscriptions();
    assert_eq!(next_line(&mut r), None, "the stream ends cleanly");

    let resp = client::get(UnixStream::connect(&sock).unwrap(), "/v1/flows?follow").unwrap();
    let mut r = BufReader::new(resp);
    let started = Instant::now();
    api.stop();
    assert_eq!(next_line(&mut r), None, "stop ends follow streams");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!sock.exists());
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(0);
    let config = ApiConfig {
        max_connections: 1,
        ..unix_config(dir.path())
    };
    let api = Api::start(config, backend.clone()).unwrap();
    let sock = api.socket_path().unwrap().to_owned();
    let held = client::get(UnixStream::connect(&sock).unwrap(), "/v1/flows?follow=1").unwrap();
    let (status, msg) = status_of(get_unix(&sock, "/healthz"));
    assert_eq!(status, 503);
    assert!(msg.contains("too many"), "{msg}");
    drop(held);
    // (A connection's slot frees just after its answer: retry.)
    let mut body = String::new();
    wait_until("the slot to free", || {
        get_unix(&sock, "/metrics").map(|(_, b)| body = b).is_ok()
    });
    let rejected: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("bulkhead_api_connections_rejected_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rejected >= 1, "{body}");
}

#[test]
fn stale_sockets_are_replaced_and_live_ones_and_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let config = ApiConfig {
        socket: Some(path.clone()),
        tcp: None,
        ..ApiConfig::default()
    };
    let api = Api::start(config.clone(), fake(0)).unwrap();
    assert!(matches!(
        Api::start(config.clone(), fake(0)),
        Err(ApiError::SocketInUse { .. })
    ));
    assert!(
        get_unix(&path, "/healthz").is_ok(),
        "the first still serves"
    );
    drop(api);
    assert!(!path.exists());

    std::fs::write(&path, "not a socket").unwrap();
    assert!(matches!(
        Api::start(config, fake(0)),
        Err(ApiError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[test]
fn stop_leaves_a_newer_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(unix_config(dir.path()), fake(0)).unwrap();
    let sock = api.socket_path().unwrap().to_owned();
    std::fs::remove_file(&sock).unwrap();
    let _other = UnixListener::bind(&sock).unwrap();
    api.stop();
    assert!(sock.exists());
}

#[test]
fn flows_query_splits_off_limit_and_follow() {
    assert_eq!(
        parse_flows_query("pod=x%2Fa&limit=5&follow=1&ip=10.0.0.1").unwrap(),
        FlowsQuery {
            limit: Some(5),
            follow: true,
            filter: "pod=x%2Fa&ip=10.0.0.1".to_owned(),
        }
    );
    assert_eq!(
        parse_flows_query("").unwrap(),
        FlowsQuery {
            limit: None,
            follow: false,
            filter: String::new(),
        }
    );
    assert!(parse_flows_query("limit=-1").is_err());
    assert!(parse_flows_query("follow=maybe").is_err());
}

#[test]
fn request_heads_parse() {
    let req = http::read_request(
        &mut &b"GET /v1/flows?a=1&b=%2F HTTP/1.1\r\nHost: x\r\nX-Y:  z \r\n\r\ntrailing"[..],
    )
    .unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/v1/flows");
    assert_eq!(req.query, "a=1&b=%2F");
    assert_eq!(req.header("x-y"), Some("z"));
    assert!(matches!(
        http::read_request(&mut &b"GET / HTTP/1.1\r\n"[..]),
        Err(http::RequestError::Malformed(_))
    ));
    assert!(matches!(
        http::read_request(&mut &b""[..]),
        Err(http::RequestError::Closed)
    ));
    assert!(matches!(
        http::read_request(&mut &b"GET http://h/ HTTP/1.1\r\n\r\n"[..]),
        Err(http::RequestError::Malformed(_))
    ));
    let big = format!(
        "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(http::MAX_HEAD)
    );
    assert!(matches!(
        http::read_request(&mut big.as_bytes()),
        Err(http::RequestError::TooLarge)
    ));
}

#[test]
fn chunked_bodies_round_trip() {
    let mut wire = Vec::new();
    for part in [&b"hello "[..], b"", b"world\n", &[b'x'; 5000]] {
        http::write_chunk(&mut wire, part).unwrap();
    }
    http::write_last_chunk(&mut wire).unwrap();
    let mut out = Vec::new();
    ChunkedReader::new(&wire[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out.len(), 12 + 5000);
    assert!(out.starts_with(b"hello world\nxxx"));
    let mut truncated = Vec::new();
    let err = ChunkedReader::new(&wire[..20])
        .read_to_end(&mut truncated)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}
