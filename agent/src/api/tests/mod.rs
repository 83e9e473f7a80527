use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{self, ChunkedReader, ClientError};
use super::routes::{FlowsQuery, parse_flows_query};
use super::*;

mod fake;
mod follow;
mod listen;
mod map;
mod quarantine;
mod ui;
mod ui_browser;
mod ui_map;

use fake::{Fake, Probe, fake, record};

fn start(config: ApiConfig, backend: Arc<impl ApiBackend + 'static>) -> ApiHandle {
    Api::start(config, backend, test_runtime().handle()).unwrap()
}

fn stop(api: ApiHandle) {
    test_runtime().block_on(api.stop());
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

/// Waits (up to a generous 30 s) for `f`.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of the sample `name` (with its labels) in Prometheus text.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn every_endpoint_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(5);
    let api = start(unix_config(dir.path()), backend.clone());
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
    assert!(answer.contains("\r\nAllow: GET,HEAD\r\n"), "{answer}");
    assert!(answer.ends_with("\"status\":405}\n"), "{answer}");
    let answer = raw(&sock, "nonsense\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    stop(api);
    assert!(!sock.exists(), "the socket is removed at stop");
}

#[test]
fn tcp_serves_metrics_and_health_and_the_rest_only_when_asked() {
    let backend = fake(3);
    let api = start(tcp_config(false), backend.clone());
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
    stop(api);

    let api = start(tcp_config(true), backend);
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
    let api = start(unix_config(dir.path()), kept.clone());
    let sock = api.socket_path().unwrap().to_owned();
    let (ct, body) = get_unix(&sock, "/v1/history").unwrap();
    assert_eq!(ct, "application/json");
    assert_eq!(body, "{\"schema\":\"bulkhead.history/v1\"}\n");
    stop(api);

    let api = start(unix_config(dir.path()), fake(0));
    let (status, msg) = status_of(get_unix(api.socket_path().unwrap(), "/v1/history"));
    assert_eq!(status, 404);
    assert!(msg.contains("start it with --history-db PATH"), "{msg}");
    stop(api);

    let broken = Arc::new(Fake {
        history: Some(Err("disk on fire".to_owned())),
        ..Fake::default()
    });
    let api = start(unix_config(dir.path()), broken);
    let (status, msg) = status_of(get_unix(api.socket_path().unwrap(), "/v1/history"));
    assert_eq!(
        (status, msg.as_str()),
        (500, "reading the flow history: disk on fire")
    );
    stop(api);

    // Over TCP only with every endpoint.
    let api = start(tcp_config(false), kept);
    let (status, _) = status_of(get_tcp(api.tcp_addr().unwrap(), "/v1/history"));
    assert_eq!(status, 404);
}

#[test]
fn history_windows_are_parsed_and_bad_ones_refused() {
    use bulkhead_flows::record::Timestamp;
    use bulkhead_learn::Window;
    let parse = super::routes::parse_history_query;
    assert_eq!(parse(""), Ok(Window::ALL));
    assert_eq!(
        parse("since=5&until=9"),
        Ok(Window {
            since: Some(Timestamp(5)),
            until: Some(Timestamp(9)),
        })
    );
    assert_eq!(
        parse("until=9").unwrap(),
        Window {
            since: None,
            until: Some(Timestamp(9)),
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let kept = Arc::new(Fake {
        history: Some(Ok(r#"{"schema":"bulkhead.history/v1"}"#.to_owned())),
        ..Fake::default()
    });
    let api = start(unix_config(dir.path()), kept);
    let sock = api.socket_path().unwrap().to_owned();
    for (q, why) in [
        ("since=soon", "since must be a non-negative integer"),
        ("since=9&until=9", "since (9) is not before until (9)"),
        ("from=1", "unknown parameter \"from\""),
    ] {
        let (status, msg) = status_of(get_unix(&sock, &format!("/v1/history?{q}")));
        assert_eq!(status, 400, "{q}");
        assert!(msg.contains(why), "{q}: {msg}");
    }
    let (_, body) = get_unix(&sock, "/v1/history?since=1&until=2").unwrap();
    assert!(body.starts_with("{\"schema\""));
    stop(api);
}

#[test]
fn failing_health_is_503() {
    let backend = Arc::new(Fake {
        failing: true,
        ..Fake::default()
    });
    let api = start(tcp_config(false), backend);
    let (status, _) = status_of(get_tcp(api.tcp_addr().unwrap(), "/healthz"));
    assert_eq!(status, 503);
}

#[test]
fn readyz_follows_the_backend_and_by_default_health() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe {
        ready: Err("no policy enforced yet".to_owned()),
    });
    let api = start(unix_config(dir.path()), probe);
    let sock = api.socket_path().unwrap().to_owned();
    let (status, msg) = status_of(get_unix(&sock, "/readyz"));
    assert_eq!((status, msg.as_str()), (503, "no policy enforced yet"));
    assert!(get_unix(&sock, "/healthz").is_ok(), "alive while not ready");
    stop(api);

    let api = start(tcp_config(false), Arc::new(Probe { ready: Ok(()) }));
    let (ct, body) = get_tcp(api.tcp_addr().unwrap(), "/readyz").unwrap();
    assert_eq!(
        (ct.as_str(), body.as_str()),
        ("application/json", "{\"ready\":true}\n")
    );
    stop(api);

    // Not overridden: ready unless failing.
    let api = start(tcp_config(false), fake(0));
    assert!(get_tcp(api.tcp_addr().unwrap(), "/readyz").is_ok());
    stop(api);
    let failing = Arc::new(Fake {
        failing: true,
        ..Fake::default()
    });
    let api = start(tcp_config(false), failing);
    let (status, msg) = status_of(get_tcp(api.tcp_addr().unwrap(), "/readyz"));
    assert_eq!(status, 503);
    assert!(msg.contains("failing"), "{msg}");
    stop(api);
}

#[test]
fn oversized_and_malformed_heads_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(unix_config(dir.path()), fake(0));
    let sock = api.socket_path().unwrap().to_owned();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    let answer = raw(&sock, &big);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let fits = format!(
        "GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD / 2)
    );
    assert!(raw(&sock, &fits).starts_with("HTTP/1.1 200 "));
    let answer = raw(&sock, "GET /healthz HTTP/1.1\r\nno colon\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let (_, body) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(
        sample(&body, "bulkhead_api_requests_total{code=\"431\"}"),
        1
    );
    assert_eq!(
        sample(&body, "bulkhead_api_requests_total{code=\"400\"}"),
        1
    );
    stop(api);
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
fn chunked_bodies_decode() {
    let mut wire = b"6\r\nhello \r\n6;ext=1\r\nworld\n\r\n1388\r\n".to_vec();
    wire.extend_from_slice(&[b'x'; 5000]);
    wire.extend_from_slice(b"\r\n0\r\nTrailer: t\r\n\r\n");
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

#[test]
fn a_pods_timeline_is_served_in_range_within_the_limits() {
    use bulkhead_learn::timeline::{Event, EventKind, Page, Retention, Timeline};
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(Timeline::open(&dir.path().join("t.redb"), Retention::default()).unwrap());
    let events: Vec<Event> = (1..=5)
        .map(|i| Event {
            at_unix_ms: i * 1_000,
            pods: vec!["shop/web".into()],
            kind: EventKind::Unquarantined,
        })
        .collect();
    t.append(&events, 5_000).unwrap();
    let backend = Arc::new(Fake {
        timeline: Some(crate::timeline::TimelineSource::Open(t)),
        ..Fake::default()
    });
    let config = ApiConfig {
        max_limit: 3,
        ..unix_config(dir.path())
    };
    let api = start(config, backend);
    let sock = api.socket_path().unwrap().to_owned();
    let page = |q: &str| -> Page {
        let (ct, body) = get_unix(&sock, &format!("/v1/timeline?{q}")).unwrap();
        assert_eq!(ct, "application/json");
        serde_json::from_str(&body).unwrap()
    };
    let at = |p: &Page| p.events.iter().map(|e| e.at_unix_ms).collect::<Vec<_>>();
    let p = page("pod=shop/web&since=2000&until=4000");
    assert_eq!((at(&p), p.truncated), (vec![2_000, 3_000, 4_000], false));
    assert_eq!(p.schema, "bulkhead.timeline/v1");
    // Clamped to max_limit, and says so.
    let p = page("pod=shop/web&limit=10");
    assert_eq!(
        (at(&p), p.truncated, p.limit),
        (vec![1_000, 2_000, 3_000], true, 3)
    );
    let p = page("pod=shop/web&since=4000&limit=1");
    assert_eq!((at(&p), p.truncated), (vec![4_000], true));
    assert!(page("pod=shop/db").events.is_empty());
    for bad in [
        "",
        "pod=web",
        "pod=shop/web&since=soon",
        "pod=shop/web&since=5&until=4",
        "pod=shop/web&verdict=denied",
    ] {
        let (status, msg) = status_of(get_unix(&sock, &format!("/v1/timeline?{bad}")));
        assert_eq!(status, 400, "{bad}: {msg}");
    }
    stop(api);

    let api = start(unix_config(dir.path()), fake(0));
    let (status, msg) = status_of(get_unix(
        api.socket_path().unwrap(),
        "/v1/timeline?pod=shop/web",
    ));
    assert_eq!(status, 404);
    assert!(msg.contains("start it with --timeline-db PATH"), "{msg}");
    stop(api);
}
