//! The UI listener in a real Chromium (skipped without one, as
//! `bulkhead_testkit::browser` says): the token's URL sets a cookie the
//! browser then sends, the page's own scripts run and reach the API, and
//! the Content-Security-Policy holds (an inline script does not run).

use bulkhead_testkit::browser::Browser;

use super::*;
use crate::api::ui::{Bundle, UiConfig, UiListener, UiToken};

const INDEX: &str = r#"<!doctype html><html><head><title>map</title>
<link rel="icon" href="data:,">
<script type="module" src="/ui/assets/app-1a2b.js"></script>
<script>window.inline = true;</script>
</head><body><h1 id="t">loading</h1></body></html>"#;

const APP: &str = "document.getElementById('t').textContent = 'map at ' + location.pathname;\n\
fetch('/healthz').then(r => r.json()).then(j => { document.getElementById('t').dataset.health = j.status; });";

/// Waits in the page for the app's health check to have answered.
const HEALTH: &str = "new Promise(r => { const t = () => { const v = document.getElementById('t').dataset.health; v ? r(v) : setTimeout(t, 20); }; t(); })";

#[test]
fn a_browser_logs_in_with_the_token_url_and_runs_the_bundle_under_its_csp() {
    if Browser::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("index.html"), INDEX).unwrap();
    std::fs::write(dir.path().join("assets/app-1a2b.js"), APP).unwrap();
    let token = "Tok3n_for-the-map";
    let config = ApiConfig {
        socket: None,
        ui: Some(UiConfig {
            listener: UiListener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            token: Some(UiToken::new(token).unwrap()),
        }),
        ui_bundle: Some(Arc::new(Bundle::from_dir(dir.path()).unwrap())),
        ..ApiConfig::default()
    };
    let api = start(config, fake(0));
    let port = api.ui_addr().unwrap().port();

    let mut b = Browser::launch().unwrap();
    let base = format!("http://localhost:{port}");
    assert_eq!(b.goto(&format!("{base}/ui/")).unwrap(), Some(401));
    assert_eq!(
        b.goto(&format!("{base}/ui/?token={token}")).unwrap(),
        Some(200),
        "redirected to /ui/ with the cookie"
    );
    let path: String = b.eval("location.pathname + location.search").unwrap();
    assert_eq!(path, "/ui/", "the token leaves the address bar");
    let health: String = b.eval(HEALTH).unwrap();
    assert_eq!(health, "ok", "the page's fetch carried the cookie");
    assert_eq!(b.text("#t").unwrap(), "map at /ui/");
    let cookie: String = b.eval("document.cookie").unwrap();
    assert_eq!(cookie, "", "HttpOnly: scripts cannot read the token");
    let inline: bool = b.eval("window.inline === true").unwrap();
    assert!(!inline, "the CSP keeps inline scripts from running");
    // Besides the first visit's 401s, the only error is the CSP's refusal.
    // The 401 answer is no page with an icon link, so Chromium may also
    // ask for /favicon.ico after it (a 404), or not, as it races the
    // redirect: a flake in CI until this was allowed.
    let errors = b.console_errors().unwrap();
    let first_visit = |e: &&String| e.contains("401") || e.contains("status of 404");
    let others: Vec<&String> = errors.iter().filter(|e| !first_visit(e)).collect();
    assert!(
        others.len() == 1 && others[0].contains("Content Security Policy"),
        "{errors:?}"
    );
    // A later visit needs no token in the URL.
    assert_eq!(b.goto(&format!("{base}/ui/")).unwrap(), Some(200));
    b.close().unwrap();
    stop(api);
}
