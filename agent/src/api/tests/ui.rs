//! The web UI: the UI listener's routes, token, Host guard, headers and
//! connection slots, and the bundle on the Unix socket.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::*;
use crate::api::ui::{
    self as api_ui, Bundle, CSP, IMMUTABLE, NO_BUNDLE, UiConfig, UiListener, UiToken,
};

/// A bundle as Vite leaves it, in a temporary directory.
pub(super) fn dist() -> (tempfile::TempDir, Arc<Bundle>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>map</title>").unwrap();
    std::fs::write(root.join("assets/index-3f2a.js"), "console.log('map')").unwrap();
    std::fs::write(root.join("assets/index-9b1c.css"), "body{margin:0}").unwrap();
    std::fs::write(root.join("favicon.svg"), "<svg/>").unwrap();
    std::fs::write(root.join(".sources"), "fnv1a64:0").unwrap();
    let bundle = Arc::new(Bundle::from_dir(root).unwrap());
    (dir, bundle)
}

pub(super) fn ui_config(token: Option<&str>, bundle: Option<Arc<Bundle>>) -> ApiConfig {
    ApiConfig {
        socket: None,
        tcp: None,
        heartbeat: Duration::from_millis(100),
        ui: Some(UiConfig {
            listener: UiListener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            token: token.map(|t| UiToken::new(t).unwrap()),
        }),
        ui_bundle: bundle,
        ..ApiConfig::default()
    }
}

/// An answer: status, headers (names lowercased) and body.
pub(super) struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        v["error"].as_str().unwrap().to_owned()
    }
}

/// `method target` with `Host: host` (none when empty) and `extra` header
/// lines, over TCP.
pub(super) fn ask(
    addr: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    extra: &[&str],
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !host.is_empty() {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub(super) fn get(addr: SocketAddr, target: &str) -> Answer {
    ask(addr, "GET", target, "localhost", &[])
}

pub(super) fn assert_ui_headers(a: &Answer) {
    assert_eq!(a.header("content-security-policy"), CSP);
    assert_eq!(a.header("x-frame-options"), "DENY");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert_eq!(a.header("referrer-policy"), "no-referrer");
}

#[test]
fn the_ui_listener_serves_the_bundle_and_health_with_the_uis_headers() {
    let (_dir, bundle) = dist();
    let api = start(ui_config(None, Some(bundle)), fake(2));
    let addr = api.ui_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert_eq!(api.tcp_addr(), None);

    let a = get(addr, "/ui/");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(a.header("cache-control"), "no-cache");
    assert_eq!(a.body, "<!doctype html><title>map</title>");
    assert_ui_headers(&a);

    let a = get(addr, "/ui/assets/index-3f2a.js");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(a.header("cache-control"), IMMUTABLE);
    assert_eq!(a.body, "console.log('map')");
    assert_ui_headers(&a);
    let a = get(addr, "/ui/assets/index-9b1c.css");
    assert_eq!(a.header("content-type"), "text/css; charset=utf-8");
    let a = get(addr, "/ui/favicon.svg");
    assert_eq!(
        (
            a.status,
            a.header("content-type"),
            a.header("cache-control")
        ),
        (200, "image/svg+xml", "no-cache")
    );
    let a = get(addr, "/ui/.sources");
    assert_eq!(a.status, 404, "dot files are not served");
    let a = get(addr, "/ui/assets/gone.js");
    assert_eq!(a.status, 404);
    assert!(a.error().contains("/ui/assets/gone.js"), "{}", a.body);
    assert_eq!(a.header("cache-control"), "no-store");
    assert_ui_headers(&a);
    let a = ask(addr, "HEAD", "/ui/", "localhost", &[]);
    assert_eq!((a.status, a.body.as_str()), (200, ""));

    for (path, to) in [("/", "/ui/"), ("/ui", "/ui/")] {
        let a = get(addr, path);
        assert_eq!((a.status, a.header("location")), (302, to), "{path}");
    }
    let a = get(addr, "/healthz");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("\"status\":\"ok\""), "{}", a.body);
    assert_ui_headers(&a);
    assert_eq!(get(addr, "/readyz").status, 200);
    stop(api);
}

#[test]
fn the_ui_listener_routes_nothing_that_changes_state_nor_the_rest_of_the_api() {
    let (_dir, bundle) = dist();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ui_config(None, Some(bundle));
    config.socket = Some(dir.path().join("agent.sock"));
    let api = start(config, fake(2));
    let addr = api.ui_addr().unwrap();
    for (method, path) in [
        ("POST", "/v1/quarantine"),
        ("GET", "/v1/quarantine"),
        ("DELETE", "/v1/quarantine/x/a"),
        ("GET", "/v1/flows"),
        ("GET", "/v1/flows?follow=1"),
        ("GET", "/v1/history"),
        ("GET", "/v1/timeline?pod=x/a"),
        ("GET", "/v1/accounting"),
        ("PUT", "/v1/baselines"),
        ("POST", "/v1/cni/endpoints"),
        ("POST", "/v1/cni/gc"),
        ("GET", "/metrics"),
    ] {
        let a = ask(addr, method, path, "localhost", &[]);
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
        assert!(a.error().contains("UI listener"), "{}", a.body);
    }
    let a = ask(addr, "POST", "/ui/", "localhost", &[]);
    assert_eq!(a.status, 405);
    // The same agent's Unix socket still serves them.
    let sock = api.socket_path().unwrap().to_owned();
    assert!(get_unix(&sock, "/v1/flows").is_ok());
    stop(api);
}

#[test]
fn without_a_token_only_requests_addressed_to_loopback_are_answered() {
    let (_dir, bundle) = dist();
    let api = start(ui_config(None, Some(bundle)), fake(0));
    let addr = api.ui_addr().unwrap();
    let port = addr.port();
    for host in [
        "localhost".to_owned(),
        format!("localhost:{port}"),
        format!("LOCALHOST.:{port}"),
        "ui.localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.1.2.3".to_owned(),
        format!("[::1]:{port}"),
        "[::1]".to_owned(),
    ] {
        let a = ask(addr, "GET", "/ui/", &host, &[]);
        assert_eq!(a.status, 200, "Host: {host}: {}", a.body);
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
        "10.0.0.1".to_owned(),
        format!("[::2]:{port}"),
        "127.0.0.1:x".to_owned(),
        "[::1]x".to_owned(),
        String::new(),
    ] {
        let a = ask(addr, "GET", "/ui/", &host, &[]);
        assert_eq!(a.status, 403, "Host: {host:?}: {}", a.body);
        assert!(a.error().contains("loopback"), "{}", a.body);
        assert_ui_headers(&a);
        let a = ask(addr, "GET", "/healthz", &host, &[]);
        assert_eq!(a.status, 403, "Host: {host:?}");
    }
    stop(api);
}

#[test]
fn with_a_token_every_request_needs_it_in_a_header_or_the_cookie_the_url_sets() {
    let (_dir, bundle) = dist();
    let token = "s3cret-Token_0123456789";
    let api = start(ui_config(Some(token), Some(bundle)), fake(0));
    let addr = api.ui_addr().unwrap();

    for path in ["/ui/", "/ui/assets/index-3f2a.js", "/healthz", "/", "/nope"] {
        let a = get(addr, path);
        assert_eq!(a.status, 401, "{path}: {}", a.body);
        assert_eq!(a.header("www-authenticate"), "Bearer realm=\"bulkhead-ui\"");
        assert!(a.error().contains("token"), "{}", a.body);
        assert_ui_headers(&a);
    }
    let bearer = format!("Authorization: Bearer {token}");
    let a = ask(addr, "GET", "/ui/", "localhost", &[&bearer]);
    assert_eq!((a.status, a.body.contains("map")), (200, true));
    let a = ask(
        addr,
        "GET",
        "/ui/",
        "localhost",
        &["Authorization: bearer  wrong"],
    );
    assert_eq!(a.status, 401);
    let a = ask(
        addr,
        "GET",
        "/ui/",
        "localhost",
        &[&format!("Authorization: Basic {token}")],
    );
    assert_eq!(a.status, 401, "only the Bearer scheme");
    let a = ask(
        addr,
        "GET",
        "/ui/",
        "localhost",
        &[&format!("Authorization: Bearer {token}x")],
    );
    assert_eq!(a.status, 401, "a longer token is not it");

    // The URL form sets the cookie and redirects to the bare /ui/.
    let a = get(addr, &format!("/ui/?token={token}"));
    assert_eq!((a.status, a.header("location")), (303, "/ui/"));
    assert_eq!(
        a.header("set-cookie"),
        format!("bulkhead_ui={token}; HttpOnly; SameSite=Strict; Path=/")
    );
    assert_ui_headers(&a);
    let a = get(addr, "/ui/?token=wrong");
    assert_eq!(a.status, 401);
    assert_eq!(a.header("set-cookie"), "");
    let a = ask(
        addr,
        "POST",
        &format!("/ui/?token={token}"),
        "localhost",
        &[],
    );
    assert_eq!(a.status, 401, "only a GET logs in");
    assert_eq!(a.header("set-cookie"), "");
    let a = get(addr, &format!("/ui/assets/index-3f2a.js?token={token}"));
    assert_eq!(a.status, 401, "only /ui/ takes the token in the URL");

    let cookie = format!("Cookie: theme=dark; bulkhead_ui={token}");
    for path in ["/ui/", "/ui/assets/index-3f2a.js", "/healthz", "/readyz"] {
        let a = ask(addr, "GET", path, "localhost", &[&cookie]);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    let a = ask(addr, "GET", "/", "localhost", &[&cookie]);
    assert_eq!(a.status, 302);
    let a = ask(
        addr,
        "GET",
        "/ui/",
        "localhost",
        &["Cookie: bulkhead_ui=wrong"],
    );
    assert_eq!(a.status, 401);
    // With a token the Host is not checked (the token is the guard).
    let a = ask(addr, "GET", "/healthz", "bulkhead.example:8080", &[&bearer]);
    assert_eq!(a.status, 200);
    // A wrong method or a path it does not serve stays refused with the token too.
    let a = ask(addr, "POST", "/v1/quarantine", "localhost", &[&bearer]);
    assert_eq!(a.status, 404);
    stop(api);
}

#[test]
fn without_a_bundle_the_ui_answers_503_saying_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ui_config(None, None);
    config.socket = Some(dir.path().join("agent.sock"));
    let api = start(config, fake(0));
    let addr = api.ui_addr().unwrap();
    for path in ["/ui/", "/ui/assets/index-3f2a.js"] {
        let a = get(addr, path);
        assert_eq!(a.status, 503, "{path}");
        assert_eq!(a.error(), NO_BUNDLE);
        assert_eq!(
            NO_BUNDLE,
            "this agent was built without its web UI: run cargo xtask build-ui"
        );
        assert_ui_headers(&a);
    }
    assert_eq!(get(addr, "/healthz").status, 200);
    let sock = api.socket_path().unwrap().to_owned();
    let (status, msg) = status_of(get_unix(&sock, "/ui/"));
    assert_eq!((status, msg.as_str()), (503, NO_BUNDLE));
    stop(api);
}

#[test]
fn the_full_api_serves_the_bundle_too() {
    let (_dir, bundle) = dist();
    let dir = tempfile::tempdir().unwrap();
    let config = ApiConfig {
        ui_bundle: Some(bundle),
        ..unix_config(dir.path())
    };
    let api = start(config, fake(0));
    let sock = api.socket_path().unwrap().to_owned();
    let answer = raw(
        &sock,
        "GET /ui/assets/index-3f2a.js HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let a = parse(&answer);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("cache-control"), IMMUTABLE);
    assert_ui_headers(&a);
    assert_eq!(a.body, "console.log('map')");
    stop(api);
}

#[test]
fn a_ui_listener_off_loopback_needs_a_token_and_serves_one_api() {
    let wide = || UiListener::bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let config = ApiConfig {
        socket: None,
        ui: Some(UiConfig {
            listener: wide(),
            token: None,
        }),
        ..ApiConfig::default()
    };
    assert!(matches!(
        Api::start(config, fake(0), test_runtime().handle()),
        Err(ApiError::UiNotLoopback { addr }) if addr.ip().is_unspecified()
    ));
    let config = ApiConfig {
        socket: None,
        ui: Some(UiConfig {
            listener: wide(),
            token: Some(UiToken::new("t0k3n").unwrap()),
        }),
        ..ApiConfig::default()
    };
    let api = start(config.clone(), fake(0));
    assert!(matches!(
        Api::start(config, fake(0), test_runtime().handle()),
        Err(ApiError::UiListenerTaken { .. })
    ));
    let port = api.ui_addr().unwrap().port();
    let a = ask(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/healthz",
        "node-a:9000",
        &["Authorization: Bearer t0k3n"],
    );
    assert_eq!(a.status, 200);
    stop(api);
}

#[test]
fn browsers_cannot_take_the_connections_of_the_rest_of_the_api() {
    let (_dir, bundle) = dist();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ui_config(None, Some(bundle));
    config.socket = Some(dir.path().join("agent.sock"));
    config.max_connections = 2;
    let api = start(config, fake(0));
    let addr = api.ui_addr().unwrap();
    // Two connections that never send their request hold the UI's slots.
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    wait_until("the UI's slots are taken", || {
        get(addr, "/ui/").status == 503
    });
    let a = get(addr, "/ui/");
    assert_eq!(a.header("retry-after"), "1");
    let sock = api.socket_path().unwrap().to_owned();
    let (_, body) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(sample(&body, "bulkhead_api_connections"), 3, "{body}");
    assert!(sample(&body, "bulkhead_api_connections_rejected_total") >= 1);
    drop(held);
    wait_until("the UI answers again", || get(addr, "/ui/").status == 200);
    stop(api);
}

#[test]
fn tokens_are_cookie_safe_and_read_from_the_first_line_of_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  abc-DEF_123.~!  \nsecond line\n").unwrap();
    let t = UiToken::read_file(&file).unwrap();
    assert_eq!(t.expose(), "abc-DEF_123.~!");
    assert_eq!(format!("{t:?}"), "UiToken(…)", "Debug hides it");
    assert!(t.matches("abc-DEF_123.~!") && !t.matches("abc-DEF_123.~") && !t.matches(""));
    for bad in ["", "   \n", "\nsecond"] {
        std::fs::write(&file, bad).unwrap();
        let e = UiToken::read_file(&file).unwrap_err();
        assert!(
            matches!(e, api_ui::TokenError::Empty { .. }),
            "{bad:?}: {e}"
        );
        assert!(e.to_string().contains("empty"), "{e}");
    }
    for bad in ["a b", "a;b", "a,b", "a\"b", "a\\b", "é"] {
        assert!(
            matches!(
                UiToken::new(bad),
                Err(api_ui::TokenError::BadCharacter { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        UiToken::read_file(&dir.path().join("missing")),
        Err(api_ui::TokenError::Read { .. })
    ));
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(&file, "t").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(api_ui::loose_permissions(&file), None);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(api_ui::loose_permissions(&file), Some(0o640));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert_eq!(api_ui::loose_permissions(&file), Some(0o604));
}

#[test]
fn the_embedded_bundle_is_there_exactly_when_the_build_found_one() {
    let embedded = Bundle::embedded();
    if cfg!(bulkhead_embedded_ui) {
        let b = embedded.expect("built with a bundle");
        assert!(b.get("index.html").is_some());
        assert!(b.get(".sources").is_none(), "the stamp is not embedded");
    } else {
        assert!(embedded.is_none());
        assert!(ApiConfig::default().ui_bundle.is_none());
    }
    assert!(matches!(
        Bundle::from_dir(tempfile::tempdir().unwrap().path()),
        Err(api_ui::BundleError::NoIndex { .. })
    ));
}
