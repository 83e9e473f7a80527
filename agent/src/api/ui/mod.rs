//! The web UI: its bundle under `/ui/` (on every listener that serves the
//! full API, and on the UI listener), and the **UI listener**, a TCP
//! listener (`bulkhead agent --ui-addr`) that serves only what the UI
//! reads:
//!
//! | method and path            | answer                                                   |
//! |----------------------------|----------------------------------------------------------|
//! | `GET /`                    | 302 to `/ui/`                                             |
//! | `GET /ui/`                 | the bundle's `index.html` (`Cache-Control: no-cache`);    |
//! |                            | `?token=T` (with a token): sets the `bulkhead_ui` cookie  |
//! |                            | and answers 303 to `/ui/`, or 401 for a wrong token       |
//! | `GET /ui/assets/{file}`    | a hashed asset (`Cache-Control: public, max-age=31536000, |
//! |                            | immutable`); other files of the bundle's root `no-cache`  |
//! | `GET /healthz`, `/readyz`  | as on the other listeners                                 |
//! | `GET /v1/map…`             | the map (see the map routes)                              |
//!
//! Nothing that changes state is routed here (404, as for any path the
//! UI listener does not serve). Without an embedded bundle `/ui/…` answers
//! 503 `{"error": NO_BUNDLE}`.
//!
//! Who may ask: with a [`UiToken`] every request needs it (`Authorization:
//! Bearer T` or the cookie; else 401). Without one the listener must be on
//! loopback ([`super::ApiError::UiNotLoopback`]), and a request's `Host`
//! must name loopback (else 403: the DNS-rebinding guard). Every answer of
//! the UI listener, and every `/ui/` answer, carries a strict
//! `Content-Security-Policy` ([`CSP`]: the page may load only from its own
//! origin, so nothing is fetched elsewhere), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//!
//! The listener is bound by the caller ([`UiListener::bind`]) and handed
//! in: `bulkhead agent` binds it before entering `--netns`, so a lab's
//! agent serves its UI on the host's loopback. It is served by the same
//! accept loop, with the same timeouts and limits, as the other listeners,
//! and its own `max_connections` slots, so browsers cannot take the
//! connections the CNI plugin and the CLI need.

mod auth;
mod bundle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SET_COOKIE,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

pub use auth::{COOKIE_NAME, TokenError, UiToken, loose_permissions};
pub use bundle::{Asset, Bundle, BundleError, content_type};

use super::map::{self, MAP_PATHS};
use super::query;
use super::routes::{self, error, response};
use super::server::Shared;

/// The answer (503) to `/ui/` of an agent built without the bundle.
pub const NO_BUNDLE: &str = "this agent was built without its web UI: run cargo xtask build-ui";

/// `Content-Security-Policy` of the UI's answers.
pub const CSP: &str =
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'";

/// `Cache-Control` of hashed assets (`/ui/assets/…`).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The paths the UI listener serves besides the map's (for its 404 message).
const UI_PATHS: [&str; 4] = ["/", "/ui/", "/healthz", "/readyz"];

/// The UI listener: where, and who may use it.
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// The bound listener.
    pub listener: UiListener,
    /// The token every request must carry; `None`: none, and then the
    /// listener must be on loopback and requests must name it as `Host`.
    pub token: Option<UiToken>,
}

/// A TCP listener bound by the caller for the UI (handed to the API,
/// which takes it at [`super::Api::start`]; clones share it).
#[derive(Clone)]
pub struct UiListener {
    addr: SocketAddr,
    listener: Arc<Mutex<Option<std::net::TcpListener>>>,
}

impl std::fmt::Debug for UiListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiListener")
            .field("addr", &self.addr)
            .finish()
    }
}

impl UiListener {
    /// Binds `addr` (port 0: the OS chooses; see [`UiListener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<UiListener> {
        Self::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// A listener bound elsewhere.
    pub fn from_std(listener: std::net::TcpListener) -> std::io::Result<UiListener> {
        Ok(UiListener {
            addr: listener.local_addr()?,
            listener: Arc::new(Mutex::new(Some(listener))),
        })
    }

    /// The bound address (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener, to serve; `None` once an API has taken it.
    pub(in crate::api) fn take(&self) -> Option<std::net::TcpListener> {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The bundle's routes (`/ui`, `/ui/`, `/ui/{*path}`), with the UI's
/// headers: merged into the full API's router and the UI listener's.
pub(super) fn bundle_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ui", get(|| async { redirect(StatusCode::FOUND, "/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
        .layer(middleware::from_fn(headers))
}

/// The UI listener's router: the bundle, health, and the map, behind the
/// token or the Host guard.
pub(super) fn router(shared: Arc<Shared>, token: Option<UiToken>) -> Router {
    let routes = Router::new()
        .route("/", get(|| async { redirect(StatusCode::FOUND, "/ui/") }))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz));
    map::routes(routes)
        .merge(bundle_routes())
        .fallback(|uri: Uri| async move {
            let paths: Vec<&str> = UI_PATHS.iter().chain(&MAP_PATHS).copied().collect();
            let msg = format!(
                "no endpoint {} on the agent's UI listener; it serves {}",
                uri.path(),
                paths.join(", ")
            );
            error(StatusCode::NOT_FOUND, &msg)
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            let msg = format!("{} does not allow {method}", uri.path());
            error(StatusCode::METHOD_NOT_ALLOWED, &msg)
        })
        .layer(middleware::from_fn_with_state(Arc::new(token), guard))
        .layer(middleware::from_fn(headers))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            routes::count,
        ))
        .with_state(shared)
}

/// Adds the UI's security headers to an answer.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Lets a request through if it carries the token (or, without one, if
/// its `Host` is loopback); answers `GET /ui/?token=` itself.
async fn guard(State(token): State<Arc<Option<UiToken>>>, req: Request, next: Next) -> Response {
    let Some(token) = token.as_ref() else {
        if auth::loopback_host(req.headers()) {
            return next.run(req).await;
        }
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)");
        let msg = format!(
            "the agent's UI answers only requests addressed to loopback (Host: localhost or \
             127.0.0.1, not {host}); open it as http://localhost:PORT/ui/"
        );
        return error(StatusCode::FORBIDDEN, &msg);
    };
    let login = matches!(*req.method(), Method::GET | Method::HEAD) && req.uri().path() == "/ui/";
    if login && let Some(given) = query_token(req.uri().query()) {
        if !token.matches(&given) {
            return unauthorized("the token in the URL is not this agent's UI token");
        }
        let mut r = redirect(StatusCode::SEE_OTHER, "/ui/");
        if let Ok(v) = HeaderValue::from_str(&token.set_cookie()) {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        return r;
    }
    if token.admits(req.headers()) {
        return next.run(req).await;
    }
    unauthorized(
        "the agent's UI needs its token: open /ui/?token=TOKEN once (it sets a cookie), \
         or send Authorization: Bearer TOKEN",
    )
}

fn query_token(query: Option<&str>) -> Option<String> {
    query::query_pairs(query?)
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v))
}

fn unauthorized(msg: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"bulkhead-ui\""),
    );
    r
}

fn redirect(status: StatusCode, to: &'static str) -> Response {
    let mut r = response(status, "text/plain; charset=utf-8", to.into());
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    r
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    serve(&shared, "index.html")
}

async fn file(State(shared): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    serve(&shared, &path)
}

/// The bundle's file at `path`, or 404 (503 without a bundle).
fn serve(shared: &Shared, path: &str) -> Response {
    let Some(bundle) = shared.config.ui_bundle.as_ref() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, NO_BUNDLE);
    };
    let Some(asset) = bundle.get(path) else {
        let msg = format!("no file /ui/{path} in the agent's web UI");
        return error(StatusCode::NOT_FOUND, &msg);
    };
    let mut r = response(
        StatusCode::OK,
        asset.content_type,
        asset.bytes.clone().into(),
    );
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        "no-cache"
    };
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}
