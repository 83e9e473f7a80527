//! Follow streams and the connection cap.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use super::*;

/// A connection whose reads fail after a generous 30 s, so a record held
/// back fails the test instead of hanging it.
fn connect(sock: &Path) -> UnixStream {
    let conn = UnixStream::connect(sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn
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
    let api = start(unix_config(dir.path()), backend.clone());
    let sock = api.socket_path().unwrap().to_owned();
    let resp = client::get(connect(&sock), "/v1/flows?follow=1&limit=1&verdict=denied").unwrap();
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
    let api = start(unix_config(dir.path()), backend.clone());
    let sock = api.socket_path().unwrap().to_owned();

    let resp = client::get(connect(&sock), "/v1/flows?follow=1").unwrap();
    let mut r = BufReader::new(resp);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "\n", "a heartbeat while idle");
    backend.end_subscriptions();
    assert_eq!(next_line(&mut r), None, "the stream ends cleanly");

    let resp = client::get(connect(&sock), "/v1/flows?follow").unwrap();
    let mut r = BufReader::new(resp);
    stop(api);
    // Ended cleanly (the last chunk came: a connection closed at the end
    // of the drain would fail the read).
    assert_eq!(next_line(&mut r), None, "stop ends follow streams");
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
    let api = start(config, backend.clone());
    let sock = api.socket_path().unwrap().to_owned();
    let held = client::get(connect(&sock), "/v1/flows?follow=1").unwrap();
    let (status, msg) = status_of(get_unix(&sock, "/healthz"));
    assert_eq!(status, 503);
    assert!(msg.contains("too many"), "{msg}");
    drop(held);
    // (A connection's slot frees just after its answer: retry.)
    let mut body = String::new();
    wait_until("the slot to free", || {
        get_unix(&sock, "/metrics").map(|(_, b)| body = b).is_ok()
    });
    assert!(sample(&body, "bulkhead_api_connections_rejected_total") >= 1);
    assert!(sample(&body, "bulkhead_api_requests_total{code=\"503\"}") >= 1);
}

#[test]
fn a_follower_gets_each_record_before_the_next_is_produced() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(0);
    // No heartbeat within the test: only a record can bring data.
    let config = ApiConfig {
        heartbeat: Duration::from_secs(3600),
        ..unix_config(dir.path())
    };
    let api = start(config, backend.clone());
    let resp = client::get(connect(api.socket_path().unwrap()), "/v1/flows?follow=1").unwrap();
    let mut r = BufReader::new(resp);
    wait_until("the subscription", || {
        backend.live.load(Ordering::SeqCst) == 1
    });
    for i in 0..5 {
        backend.publish(record(i));
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            format!("{}\n", record(i)),
            "record {i} alone, at once"
        );
    }
    stop(api);
}

#[test]
fn a_follower_that_stops_reading_is_dropped_after_the_io_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fake(0);
    let config = ApiConfig {
        io_timeout: Duration::from_millis(200),
        ..unix_config(dir.path())
    };
    let api = start(config, backend.clone());
    let sock = api.socket_path().unwrap().to_owned();
    // Takes the head, then reads nothing more.
    let _stalled = client::get(connect(&sock), "/v1/flows?follow=1").unwrap();
    let big = format!(r#"{{"type":"flow","pad":"{}"}}"#, "x".repeat(60_000));
    // Socket and server buffers fill, the write stalls, and the timeout
    // ends the connection and so the subscription.
    wait_until("the stalled follower to be dropped", || {
        backend.publish(big.clone());
        backend.live.load(Ordering::SeqCst) == 0
    });
    let (_, body) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(sample(&body, "bulkhead_api_follow_streams"), 0);
    stop(api);
}
