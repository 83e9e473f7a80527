//! `bulkhead lab up` serves each node agent's web UI on the host's
//! loopback (the agent binds its UI listener before it enters its node's
//! namespace): `lab ui` and `lab status` name the URL, the UI listener
//! answers from the host with its read-only routes and Host guard, `--ui`
//! refuses what a lab cannot serve, and `--no-ui` serves none.

mod lab_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lab_support::{Lab, bulkhead, pods_yaml, privileged, serial};

/// `GET path` at `addr` with `Host: host`: the status and the body.
fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the UI");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn lab_agents_serve_their_ui_on_the_hosts_loopback() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let lab = Lab::new("tui", &pods_yaml());
    // What a lab cannot serve is refused before anything is made.
    let out = lab.up(&["--ui", "0.0.0.0:9618"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
    let out = lab.up(&["--nodes", "2", "--ui", "127.0.0.1:9618"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ui 127.0.0.1:9618 names one port"), "{err}");
    assert!(!lab.state_path().exists());

    let up = lab.up(&[]);
    assert!(up.status.success(), "lab up failed");
    assert!(String::from_utf8_lossy(&up.stderr).contains("web UI of node-0: http://127.0.0.1:"));
    let uis = json(&lab.ok("ui", &["--output", "json"]));
    assert_eq!(uis["lab"], "tui");
    let ui = &uis["uis"][0];
    assert_eq!(uis["uis"].as_array().unwrap().len(), 1, "{uis}");
    let addr: SocketAddr = ui["addr"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let url = format!("http://{addr}/ui/");
    assert_eq!(ui["url"], url.as_str());
    assert!(lab.ok("ui", &[]).contains(&url));
    let status = json(&lab.ok("status", &["--output", "json"]));
    assert_eq!(status["ui_url"], url.as_str());
    assert_eq!(status["nodes"][0]["ui_url"], url.as_str());

    // The agent runs in the node's namespace; its UI answers here.
    let pid = status["agent_pid"].as_u64().unwrap();
    let agent_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let our_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(agent_ns, our_ns, "the agent is in its node's namespace");
    let (code, body) = get(addr, "/healthz", "localhost");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\""), "{body}");
    let (code, body) = get(addr, "/v1/map", &addr.to_string());
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["schema"], "bulkhead.map/v1");
    assert_eq!(get(addr, "/v1/flows", "localhost").0, 404);
    assert_eq!(get(addr, "/v1/quarantine", "localhost").0, 404);
    assert_eq!(get(addr, "/healthz", "rebound.example").0, 403);
    drop(lab);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the UI is gone with the lab"
    );

    let lab = Lab::new("tnui", &pods_yaml());
    assert!(
        lab.up(&["--no-ui"]).status.success(),
        "lab up --no-ui failed"
    );
    let uis = json(&lab.ok("ui", &["--output", "json"]));
    assert!(uis["uis"][0]["url"].is_null(), "{uis}");
    let status = json(&lab.ok("status", &["--output", "json"]));
    assert!(status["ui_url"].is_null());
    drop(lab);
    let out = bulkhead(&["lab", "ui", "--name", "tnui"]);
    assert_eq!(out.status.code(), Some(2), "no lab, no UI");
}
