//! The HTTP API: discovery, and get/list/watch/create/update/patch/delete
//! on `/api/v1/...` and `/apis/{group}/{version}/...` paths.
//!
//! Resource paths are parsed by hand (one catch-all route per group
//! version) because `namespaces/{name}` and `namespaces/{ns}/{plural}`
//! share a prefix that a router cannot tell apart by pattern alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::error::ApiServerError;
use super::list::{self, ListQuery};
use super::registry::{self, RESOURCES, ResId};
use super::selector::Selector;
use super::store::{Key, Preconditions, WriteMode};
use super::watch::{self, WatchRequest};

type Params = HashMap<String, String>;

/// The router of the whole server.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(|| async { Json(registry::version_info()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/api",
            get(
                |State(s): State<Arc<Shared>>| async move { Json(registry::core_versions(s.addr)) },
            ),
        )
        .route("/api/v1", get(|| async { discovery("", "v1") }))
        .route("/api/v1/{*rest}", any(core_resource))
        .route("/apis", get(|| async { Json(registry::group_list()) }))
        .route("/apis/{group}", get(group))
        .route(
            "/apis/{group}/{version}",
            get(|Path((g, v)): Path<(String, String)>| async move { discovery(&g, &v) }),
        )
        .route("/apis/{group}/{version}/{*rest}", any(group_resource))
        .fallback(|uri: axum::http::Uri| async move {
            error(ApiServerError::NotFound {
                resource: String::new(),
                name: uri.path().to_owned(),
            })
        })
        .with_state(shared)
}

/// A Status response for an error.
fn error(e: ApiServerError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(e.to_status())).into_response()
}

fn discovery(group: &str, version: &str) -> Response {
    match registry::resource_list(group, version) {
        Some(list) => Json(list).into_response(),
        None => error(ApiServerError::NotFound {
            resource: String::new(),
            name: format!("{group}/{version}"),
        }),
    }
}

async fn group(Path(group): Path<String>) -> Response {
    let list = registry::group_list();
    let found = list["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == *group));
    match found {
        Some(g) => {
            let mut g = g.clone();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Json(g).into_response()
        }
        None => error(ApiServerError::NotFound {
            resource: String::new(),
            name: group,
        }),
    }
}

/// What a resource path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A collection, across namespaces (`ns` none) or in one.
    Collection { res: ResId, ns: Option<String> },
    /// One object.
    Object { res: ResId, key: Key },
}

fn parse_target(group: &str, version: &str, rest: &str) -> Option<Target> {
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let res = |plural: &str| registry::by_path(group, version, plural);
    let namespaced = |r: ResId| RESOURCES[r].namespaced;
    match segs.as_slice() {
        [plural] => Some(Target::Collection {
            res: res(plural)?,
            ns: None,
        }),
        [plural, name] => res(plural)
            .filter(|&r| !namespaced(r))
            .map(|res| Target::Object {
                res,
                key: (String::new(), (*name).to_owned()),
            }),
        ["namespaces", ns, plural] => {
            res(plural)
                .filter(|&r| namespaced(r))
                .map(|res| Target::Collection {
                    res,
                    ns: Some((*ns).to_owned()),
                })
        }
        ["namespaces", ns, plural, name] => {
            res(plural)
                .filter(|&r| namespaced(r))
                .map(|res| Target::Object {
                    res,
                    key: ((*ns).to_owned(), (*name).to_owned()),
                })
        }
        _ => None,
    }
}

/// Everything a resource request carries.
struct Request {
    method: Method,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
}

async fn core_resource(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    method: Method,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Request {
        method,
        params,
        headers,
        body,
    };
    resource(s, "", "v1", &rest, req).unwrap_or_else(error)
}

async fn group_resource(
    State(s): State<Arc<Shared>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Request {
        method,
        params,
        headers,
        body,
    };
    resource(s, &group, &version, &rest, req).unwrap_or_else(error)
}

fn resource(
    s: Arc<Shared>,
    group: &str,
    version: &str,
    rest: &str,
    req: Request,
) -> Result<Response, ApiServerError> {
    let target = parse_target(group, version, rest).ok_or_else(|| ApiServerError::NotFound {
        resource: String::new(),
        name: format!("{group}/{version}/{rest}"),
    })?;
    // A CRD's kind is served only while its CRD exists.
    let res = match &target {
        Target::Collection { res, .. } | Target::Object { res, .. } => *res,
    };
    if let Some(crd) = registry::crd_name(res) {
        let crds = registry::by_name("customresourcedefinitions").expect("served");
        if s.store().get(crds, &(String::new(), crd)).is_none() {
            return Err(ApiServerError::NotFound {
                resource: String::new(),
                name: format!("{group}/{version}/{rest}"),
            });
        }
    }
    if req.method != Method::GET && req.params.get("dryRun").is_some_and(|d| !d.is_empty()) {
        // Better refused than silently persisted.
        return Err(ApiServerError::bad_request(
            "dryRun is not supported by this test server",
        ));
    }
    match (target, req.method.clone()) {
        (Target::Collection { res, ns }, Method::GET) => {
            let selector = Selector::parse(
                req.params.get("labelSelector").map(String::as_str),
                req.params.get("fieldSelector").map(String::as_str),
                &RESOURCES[res],
            )?;
            if matches!(
                req.params.get("watch").map(String::as_str),
                Some("true" | "1")
            ) {
                let (start, bookmarks, timeout) = watch::parse_params(&req.params)?;
                let watch = WatchRequest {
                    res,
                    ns,
                    selector,
                    start,
                    bookmarks,
                    timeout,
                };
                let body = watch::start(s, watch);
                return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
            }
            list_collection(&s, res, ns.as_deref(), &req.params, &selector)
        }
        (Target::Collection { res, ns: Some(ns) }, Method::POST) => {
            let obj = in_namespace(json_body(&req.body)?, res, &ns)?;
            let created = s.write(|st| st.write(res, obj, WriteMode::Create))?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (Target::Collection { res, ns: None }, Method::POST) if !RESOURCES[res].namespaced => {
            let created = s.write(|st| st.write(res, json_body(&req.body)?, WriteMode::Create))?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (Target::Object { res, key }, Method::GET) => {
            let obj = s.store().get(res, &key);
            obj.map(|o| Json(o).into_response())
                .ok_or_else(|| ApiServerError::NotFound {
                    resource: RESOURCES[res].plural.to_owned(),
                    name: key.1,
                })
        }
        (Target::Object { res, key }, Method::PUT) => {
            let obj = json_body(&req.body)?;
            if obj["metadata"]["name"].as_str() != Some(&key.1) {
                return Err(ApiServerError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    obj["metadata"]["name"], key.1
                )));
            }
            let obj = in_namespace(obj, res, &key.0)?;
            Ok(Json(s.write(|st| st.write(res, obj, WriteMode::Replace))?).into_response())
        }
        (Target::Object { res, key }, Method::PATCH) => {
            let patch = Patch::parse(&req.headers, &req.body)?;
            Ok(Json(s.write(|st| st.modify(res, &key, |old| patch.apply(old)))?).into_response())
        }
        (Target::Object { res, key }, Method::DELETE) => {
            let pre = delete_options(&req.body)?;
            Ok(Json(s.write(|st| st.delete(res, &key, &pre))?).into_response())
        }
        _ => Err(ApiServerError::MethodNotAllowed),
    }
}

fn list_collection(
    s: &Shared,
    res: ResId,
    ns: Option<&str>,
    params: &Params,
    selector: &Selector,
) -> Result<Response, ApiServerError> {
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(
            l.parse()
                .map_err(|_| ApiServerError::bad_request(format!("invalid limit: {l:?}")))?,
        ),
    };
    let q = ListQuery {
        resource_version: params.get("resourceVersion").cloned(),
        resource_version_match: params.get("resourceVersionMatch").cloned(),
        limit,
        continue_token: params.get("continue").cloned(),
    };
    s.stats.lists.fetch_add(1, Ordering::Relaxed);
    let body = list::list(&s.store(), res, ns, &q, selector).inspect_err(|e| {
        if matches!(e, ApiServerError::Expired { .. }) {
            s.stats.gone_sent.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok(Json(body).into_response())
}

fn json_body(body: &Bytes) -> Result<Value, ApiServerError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiServerError::bad_request(format!("the request body is not valid JSON: {e}"))
    })
}

/// Puts `obj` into namespace `ns` of the request path (for a namespaced
/// resource); an object naming another namespace is a bad request.
fn in_namespace(mut obj: Value, res: ResId, ns: &str) -> Result<Value, ApiServerError> {
    if !RESOURCES[res].namespaced {
        return Ok(obj);
    }
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != ns => Err(ApiServerError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ if obj.get("metadata").is_some_and(Value::is_object) => {
            obj["metadata"]["namespace"] = json!(ns);
            Ok(obj)
        }
        _ => Err(ApiServerError::bad_request(
            "metadata is missing or not an object",
        )),
    }
}

/// A PATCH body by content type.
enum Patch {
    /// RFC 7386 JSON merge patch; also used for strategic merge patches,
    /// which act the same on maps such as labels and annotations (lists are
    /// replaced whole instead of merged by key).
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
}

impl Patch {
    fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Self, ApiServerError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        match content_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                Ok(Self::Merge(json_body(body)?))
            }
            "application/json-patch+json" => serde_json::from_slice(body)
                .map(Self::Json)
                .map_err(|e| ApiServerError::bad_request(format!("invalid JSON patch: {e}"))),
            _ => Err(ApiServerError::UnsupportedMediaType {
                accepted: "application/json-patch+json, application/merge-patch+json, \
                           application/strategic-merge-patch+json",
            }),
        }
    }

    fn apply(&self, old: &Value) -> Result<Value, ApiServerError> {
        let mut doc = old.clone();
        match self {
            Self::Merge(p) => json_patch::merge(&mut doc, p),
            Self::Json(p) => json_patch::patch(&mut doc, &p.0)
                .map_err(|e| ApiServerError::bad_request(format!("the JSON patch failed: {e}")))?,
        }
        Ok(doc)
    }
}

#[derive(Deserialize, Default)]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<WirePreconditions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WirePreconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(body: &Bytes) -> Result<Preconditions, ApiServerError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let opts: DeleteOptions = serde_json::from_slice(body)
        .map_err(|e| ApiServerError::bad_request(format!("invalid DeleteOptions: {e}")))?;
    let p = opts.preconditions.unwrap_or_default();
    Ok(Preconditions {
        uid: p.uid,
        resource_version: p.resource_version,
    })
}
