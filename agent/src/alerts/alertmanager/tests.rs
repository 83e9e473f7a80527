use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;

fn alert(n: u32) -> PostableAlert {
    PostableAlert {
        labels: [("alertname".to_owned(), format!("A{n}"))].into(),
        annotations: [("summary".to_owned(), "s".to_owned())].into(),
        starts_at: rfc3339(UNIX_EPOCH + Duration::from_millis(1_765_000_000_123)),
        ends_at: rfc3339(UNIX_EPOCH + Duration::from_millis(1_765_003_600_123)),
        generator_url: None,
    }
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 answering every request with
/// `status`, handing each (path, body) to the returned channel.
fn server(status: u16, requests: usize) -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = tx.send((path, String::from_utf8(body).unwrap()));
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (port, rx)
}

fn config(port: u16) -> AlertmanagerConfig {
    let mut cfg =
        AlertmanagerConfig::new(Endpoint::parse(&format!("http://127.0.0.1:{port}/am/")).unwrap());
    cfg.backoff = Duration::from_millis(10);
    cfg.timeout = Duration::from_secs(2);
    cfg
}

#[test]
fn endpoint_parses_host_port_and_prefix() {
    let e = Endpoint::parse("http://am.monitoring:9094/prefix/").unwrap();
    assert_eq!(
        e,
        Endpoint {
            host: "am.monitoring".into(),
            port: 9094,
            path: "/prefix/api/v2/alerts".into(),
        }
    );
    let e = Endpoint::parse("http://[::1]").unwrap();
    assert_eq!(
        (e.connect_host(), e.port, e.path.as_str()),
        ("::1", 9093, "/api/v2/alerts")
    );
    for bad in [
        "https://am:9093",
        "am:9093",
        "http://u:p@am",
        "http://am/?x=1",
        "::",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn serializes_as_postable_alerts() {
    let mut a = alert(1);
    let v = serde_json::to_value([&a]).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "labels": {"alertname": "A1"},
            "annotations": {"summary": "s"},
            "startsAt": "2025-12-06T05:46:40.123Z",
            "endsAt": "2025-12-06T06:46:40.123Z",
        }])
    );
    a.generator_url = Some("http://node/x".into());
    assert_eq!(
        serde_json::to_value(&a).unwrap()["generatorURL"],
        "http://node/x"
    );
}

#[test]
fn posts_batches_to_the_v2_path() {
    let (port, rx) = server(200, 1);
    let am = Alertmanager::start(config(port)).unwrap();
    assert!(am.send(alert(1)));
    let (path, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(path, "/am/api/v2/alerts");
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent[0]["labels"]["alertname"], "A1");
    wait_until(|| am.stats().delivered == 1);
    let stats = am.stop();
    assert_eq!(stats.lost_total(), 0);
    assert_eq!(stats.requests, 1);
}

#[test]
fn a_client_error_is_not_retried_a_server_error_is() {
    let (port, rx) = server(400, 1);
    let am = Alertmanager::start(config(port)).unwrap();
    am.send(alert(1));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    wait_until(|| am.stats().lost["status"] == 1);
    assert_eq!(am.stop().requests, 1);

    let (port, rx) = server(503, 4);
    let am = Alertmanager::start(config(port)).unwrap();
    am.send(alert(1));
    for _ in 0..4 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    wait_until(|| am.stats().lost["status"] == 1);
    let stats = am.stop();
    assert_eq!((stats.requests, stats.retries, stats.delivered), (4, 3, 0));
}

#[test]
fn nobody_listening_loses_counted_and_never_blocks() {
    // A port that was free a moment ago: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(port);
    cfg.queue = 8;
    cfg.batch = 1;
    cfg.backoff = Duration::from_millis(200);
    let am = Alertmanager::start(cfg).unwrap();
    let started = Instant::now();
    let queued = (0..1_000).filter(|&i| am.send(alert(i))).count();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "send waited"
    );
    assert!(queued <= 9 + 1, "queued {queued}");
    let stats = am.stats();
    assert_eq!(stats.lost["queue_full"], 1_000 - queued as u64);
    let stats = am.stop();
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.lost["connect"], queued as u64, "{stats:?}");
    assert_eq!(stats.lost_total(), 1_000);
}
