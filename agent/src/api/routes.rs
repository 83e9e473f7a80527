//! The routes: handlers over the [`ApiBackend`], JSON errors, and the
//! per-status request counter.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use bulkhead_cni::wire::{ENDPOINTS_PATH, GC_PATH};
use bulkhead_flows::record::Timestamp;
use bulkhead_learn::Window;

use super::baselines::{self, BASELINES_PATH};
use super::map::{self, MAP_PATHS};
use super::quarantine::{self, QUARANTINE_PATH};
use super::server::Shared;
use super::{
    ApiBackend, HealthStatus, JSON_LINES, OPENMETRICS_TEXT, PROMETHEUS_TEXT, TimelineQuery, cni,
    follow, metrics, query,
};

/// Paths on every listener.
const BASIC: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Paths on the Unix socket (and on TCP with `tcp_all_endpoints`).
const FULL: [&str; 9] = [
    "/ui/",
    "/v1/flows",
    "/v1/accounting",
    "/v1/history",
    "/v1/timeline",
    ENDPOINTS_PATH,
    GC_PATH,
    QUARANTINE_PATH,
    BASELINES_PATH,
];

pub(super) type Api = State<Arc<Shared>>;

/// The routes of one listener: all of them, or only [`BASIC`].
pub(super) fn router(shared: Arc<Shared>, full: bool) -> Router {
    let mut routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if full {
        routes = routes
            .route("/v1/flows", get(flows))
            .route("/v1/accounting", get(accounting))
            .route("/v1/history", get(history))
            .route("/v1/timeline", get(timeline))
            .route(ENDPOINTS_PATH, post(cni::add))
            .route(
                &format!("{ENDPOINTS_PATH}/{{id}}"),
                get(cni::status).delete(cni::forget),
            )
            .route(GC_PATH, post(cni::gc))
            .route(QUARANTINE_PATH, get(quarantine::list).post(quarantine::set))
            .route(
                &format!("{QUARANTINE_PATH}/{{namespace}}/{{pod}}"),
                delete(quarantine::remove),
            )
            .route(
                BASELINES_PATH,
                get(baselines::list).put(baselines::activate),
            )
            .route(
                &format!("{BASELINES_PATH}/{{name}}"),
                delete(baselines::deactivate),
            );
        routes = map::routes(routes);
    }
    if full {
        routes = routes.merge(super::ui::bundle_routes());
    }
    routes
        .fallback(move |uri: Uri| async move { not_found(uri.path(), full) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            let msg = format!("{} does not allow {method}", uri.path());
            error(StatusCode::METHOD_NOT_ALLOWED, &msg)
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), count))
        .with_state(shared)
}

/// What a connection beyond `max_connections` is answered.
pub(super) fn busy() -> Router {
    Router::new().fallback(|| async {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections to the agent's API; retry",
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        r
    })
}

/// Counts each answer by status and marks it not cacheable (unless it
/// says how to cache it: the UI's files).
pub(super) async fn count(State(shared): Api, req: Request, next: Next) -> Response {
    tracing::debug!(method = %req.method(), uri = %req.uri(), "API request");
    let mut resp = next.run(req).await;
    shared.count(resp.status().as_u16());
    resp.headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

fn not_found(path: &str, full: bool) -> Response {
    let msg = if !full && (FULL.contains(&path) || MAP_PATHS.contains(&path)) {
        format!(
            "{path} is served on the agent's Unix socket only; over TCP: {}",
            BASIC.join(", ")
        )
    } else {
        let known: Vec<&str> = BASIC
            .iter()
            .chain(&FULL)
            .chain(&MAP_PATHS)
            .copied()
            .collect();
        format!("no endpoint {path}; the API serves {}", known.join(", "))
    };
    error(StatusCode::NOT_FOUND, &msg)
}

/// A response of `status` with `body`.
pub(super) fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `value` as JSON and a newline.
pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    response(status, "application/json", body.into())
}

/// The JSON error `{"error": message, "status": status}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() });
    json(status, &body)
}

/// Runs `f` on the backend on the blocking pool (it may take locks the
/// agent holds, or read a store for seconds); a panic in it is a 500.
pub(super) async fn blocking<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&dyn ApiBackend) -> T + Send + 'static,
) -> Result<T, Response> {
    let backend = Arc::clone(&shared.backend);
    tokio::task::spawn_blocking(move || f(&*backend))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the API backend failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the agent's API backend failed",
            )
        })
}

pub(super) async fn healthz(State(shared): Api) -> Response {
    match blocking(&shared, |b| b.health()).await {
        Ok(health) if health.status == HealthStatus::Failing => {
            json(StatusCode::SERVICE_UNAVAILABLE, &health)
        }
        Ok(health) => json(StatusCode::OK, &health),
        Err(r) => r,
    }
}

pub(super) async fn readyz(State(shared): Api) -> Response {
    match blocking(&shared, |b| b.ready()).await {
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({ "ready": true })),
        Ok(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        Err(r) => r,
    }
}

async fn metrics(State(shared): Api, headers: HeaderMap) -> Response {
    let text = match blocking(&shared, |b| {
        let quarantines = b.quarantine().map(|s| quarantine::metrics(&s));
        (b.metrics(), quarantines)
    })
    .await
    {
        Ok((t, q)) => {
            let own = shared.own_metrics() + q.as_deref().unwrap_or_default();
            metrics::join_openmetrics(&t, &own)
        }
        Err(r) => return r,
    };
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if metrics::accepts_openmetrics(accept) {
        response(StatusCode::OK, OPENMETRICS_TEXT, text.into())
    } else {
        let text = metrics::to_prometheus(&text);
        response(StatusCode::OK, PROMETHEUS_TEXT, text.into())
    }
}

async fn accounting(State(shared): Api) -> Response {
    match blocking(&shared, |b| b.accounting()).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(r) => r,
    }
}

async fn history(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let window = match parse_history_query(raw.as_deref().unwrap_or_default()) {
        Ok(w) => w,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    json_text(blocking(&shared, move |b| b.history(window)).await, |e| {
        e.status()
    })
}

/// `since=MS&until=MS` of `/v1/history` (both optional, milliseconds since
/// the epoch, `since` before `until`).
pub(super) fn parse_history_query(raw: &str) -> Result<Window, String> {
    let mut w = Window::ALL;
    for (k, v) in query::query_pairs(raw) {
        let t = v
            .parse::<u64>()
            .map(Timestamp)
            .map_err(|_| format!("{k} must be a non-negative integer, not {v:?}"));
        match k.as_str() {
            "since" => w.since = Some(t?),
            "until" => w.until = Some(t?),
            _ => return Err(format!("unknown parameter {k:?} (since, until)")),
        }
    }
    if let (Some(s), Some(u)) = (w.since, w.until)
        && s >= u
    {
        return Err(format!("since ({}) is not before until ({})", s.0, u.0));
    }
    Ok(w)
}

/// A backend's JSON text answer (a newline added), or its error with the
/// status it names.
fn json_text<E: std::error::Error>(
    answer: Result<Result<String, E>, Response>,
    status: impl Fn(&E) -> u16,
) -> Response {
    match answer {
        Ok(Ok(mut body)) => {
            body.push('\n');
            response(StatusCode::OK, "application/json", body.into())
        }
        Ok(Err(e)) => {
            let code =
                StatusCode::from_u16(status(&e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(code, &error_chain(&e))
        }
        Err(r) => r,
    }
}

/// `limit` of `/v1/timeline` when the query has none.
pub(super) const TIMELINE_LIMIT: usize = 1_000;

async fn timeline(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let mut q = match parse_timeline_query(raw.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    q.limit = q.limit.min(shared.config.max_limit);
    json_text(blocking(&shared, move |b| b.timeline(&q)).await, |e| {
        e.status()
    })
}

/// The parameters of `/v1/timeline`: `pod` (required, `namespace/name`),
/// `since` and `until` (milliseconds since the epoch), `limit`.
pub(super) fn parse_timeline_query(raw: &str) -> Result<TimelineQuery, String> {
    let mut q = TimelineQuery {
        pod: String::new(),
        since_unix_ms: 0,
        until_unix_ms: u64::MAX,
        limit: TIMELINE_LIMIT,
    };
    let number = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{k} must be a non-negative integer, not {v:?}"))
    };
    for (k, v) in query::query_pairs(raw) {
        match k.as_str() {
            "pod" => match v.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    q.pod = v.clone();
                }
                _ => return Err(format!("pod must be namespace/name, not {v:?}")),
            },
            "since" => q.since_unix_ms = number(&k, &v)?,
            "until" => q.until_unix_ms = number(&k, &v)?,
            "limit" => q.limit = number(&k, &v)? as usize,
            _ => {
                return Err(format!(
                    "unknown parameter {k:?} (pod, since, until, limit)"
                ));
            }
        }
    }
    if q.pod.is_empty() {
        return Err("pod=namespace/name is required".to_owned());
    }
    if q.since_unix_ms > q.until_unix_ms {
        return Err(format!(
            "since ({}) is after until ({})",
            q.since_unix_ms, q.until_unix_ms
        ));
    }
    Ok(q)
}

/// An error and its causes, `: `-separated (a store error names the file,
/// its source says what failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

async fn flows(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_flows_query(raw.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let cfg = &shared.config;
    if q.follow {
        let last = q.limit.unwrap_or(0).min(cfg.max_limit);
        return follow::follow(shared, q.filter, last).await;
    }
    let limit = q.limit.unwrap_or(cfg.default_limit).min(cfg.max_limit);
    match blocking(&shared, move |b| b.recent_flows(&q.filter, limit)).await {
        Ok(Ok(lines)) => {
            let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in &lines {
                body.extend_from_slice(l.as_bytes());
                body.push(b'\n');
            }
            response(StatusCode::OK, JSON_LINES, body.into())
        }
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, &msg),
        Err(r) => r,
    }
}

/// The parameters of `/v1/flows` the server handles itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FlowsQuery {
    /// `limit`, if given.
    pub limit: Option<usize>,
    /// `follow`.
    pub follow: bool,
    /// The rest, re-encoded, for the backend's filter.
    pub filter: String,
}

/// Splits `limit` and `follow` off a `/v1/flows` query.
pub(super) fn parse_flows_query(raw: &str) -> Result<FlowsQuery, String> {
    let mut limit = None;
    let mut follow = false;
    let mut rest = Vec::new();
    for (k, v) in query::query_pairs(raw) {
        match k.as_str() {
            "limit" => {
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("limit must be a non-negative integer, not {v:?}"))?,
                );
            }
            "follow" => {
                follow = match v.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("follow must be 1 or 0, not {v:?}")),
                };
            }
            _ => rest.push((k, v)),
        }
    }
    Ok(FlowsQuery {
        limit,
        follow,
        filter: query::encode_query(rest.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    })
}
