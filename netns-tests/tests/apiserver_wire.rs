//! The fake API server on the wire: raw HTTP/1.1 (what a dropped watch and
//! an outage look like to a socket) and the real `kubectl`, when installed.
//! No root or network namespace needed: the server listens on 127.0.0.1.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use serde_json::{Value, json};

/// How long a condition may take to hold (generous: a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(30);

fn server() -> FakeApiServer {
    FakeApiServer::start(Options::default()).expect("fake apiserver starts")
}

/// Waits until `cond` holds, checking every 20 ms, for at most [`PATIENCE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(server: &FakeApiServer) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connects");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout set");
    s
}

/// Sends a GET of `path` (`close`: asking the server to close after it).
fn get(s: &mut TcpStream, path: &str, close: bool) {
    send_get(s, path, close).expect("sent");
}

/// Sends a GET of `path` in one write (`write!` would issue several, and a
/// server that closes unread answers the first with a reset the next meets).
fn send_get(s: &mut TcpStream, path: &str, close: bool) -> std::io::Result<()> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\n{connection}\r\n");
    s.write_all(request.as_bytes())
}

/// Whether `e` says the peer has closed the connection.
fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    matches!(e.kind(), ConnectionReset | BrokenPipe)
}

/// Reads until `buf` contains `needle` (or the peer closes: then panics).
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        let n = s.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the peer closes (EOF, or a reset: both are a closed connection).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading to the end: {e}"),
    }
    rest
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"}})
}

#[test]
fn a_watch_is_chunked_json_lines_and_ends_cleanly_after_its_timeout() {
    let server = server();
    server.apply(pod("a")).expect("applied");
    let mut s = connect(&server);
    get(
        &mut s,
        "/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=1",
        true,
    );
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, "\r\n\r\n");
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    buf.extend(read_to_close(&mut s));
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.contains(r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod""#),
        "{text}"
    );
    assert!(
        text.ends_with("0\r\n\r\n"),
        "a complete chunked body: {text:?}"
    );
}

#[test]
fn drop_watches_cuts_the_connection_without_a_final_chunk() {
    let server = server();
    let mut s = connect(&server);
    get(&mut s, "/api/v1/pods?watch=1", true);
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, "\r\n\r\n");
    wait_until("the watch is open", || server.stats().open_watches == 1);
    server.apply(pod("a")).expect("applied");
    read_until(&mut s, &mut buf, r#""type":"ADDED""#);
    server.drop_watches();
    buf.extend(read_to_close(&mut s));
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.ends_with("0\r\n\r\n"), "no final chunk: {text:?}");
    wait_until("the watch is closed", || server.stats().open_watches == 0);
}

#[test]
fn an_outage_closes_connections_unanswered() {
    let server = server();
    let mut open = connect(&server);
    get(&mut open, "/version", false);
    let mut buf = Vec::new();
    read_until(&mut open, &mut buf, "gitVersion");
    server.set_available(false);
    assert!(
        read_to_close(&mut open).is_empty(),
        "the open connection is closed"
    );
    let mut new = connect(&server);
    // The server may close before the request lands: a refused write is a
    // closed connection too, and then there is nothing to read.
    match send_get(&mut new, "/version", true) {
        Ok(()) => assert!(
            read_to_close(&mut new).is_empty(),
            "a new connection gets no answer"
        ),
        Err(e) => assert!(is_closed(&e), "sending: {e}"),
    }
    assert!(server.stats().connections_refused >= 1);
    server.set_available(true);
    let mut after = connect(&server);
    get(&mut after, "/version", true);
    let answer = String::from_utf8_lossy(&read_to_close(&mut after)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn errors_are_status_objects() {
    let server = server();
    let mut s = connect(&server);
    get(&mut s, "/api/v1/namespaces/shop/pods/missing", true);
    let text = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    let body: Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["code"], 404);
    assert_eq!(body["details"], json!({"name": "missing", "kind": "pods"}));
}

#[test]
fn kubectl_creates_labels_gets_and_deletes() {
    let kubectl = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    let Some(kubectl) = kubectl else {
        eprintln!("skipping: no kubectl on PATH (`cargo xtask setup` installs one)");
        return;
    };
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("written");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\n\
         spec:\n  containers: [{name: c, image: nginx}]\n",
    )
    .expect("written");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };
    // No OpenAPI documents are served, so client-side validation is off.
    let manifest = manifest.to_str().expect("UTF-8 path");
    run(&["create", "--validate=false", "-f", manifest]);
    let stored = server
        .get("Pod", Some("default"), "web")
        .expect("served")
        .expect("created");
    assert_eq!(stored["metadata"]["labels"]["app"], "web");
    run(&["label", "pod", "web", "tier=front"]);
    let got: Value =
        serde_json::from_str(&run(&["get", "pod", "web", "-o", "json"])).expect("JSON");
    assert_eq!(
        got["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
    assert_eq!(got["metadata"]["uid"], stored["metadata"]["uid"]);
    let listed: Value =
        serde_json::from_str(&run(&["get", "pods", "-l", "tier=front", "-o", "json"]))
            .expect("JSON");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    run(&["delete", "pod", "web"]);
    assert!(
        server
            .get("Pod", Some("default"), "web")
            .expect("served")
            .is_none()
    );
}
