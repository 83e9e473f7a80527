//! The `/v1/cni` routes `bulkhead-cni` calls (wire types in
//! `bulkhead_cni::wire`). An ADD is a long poll: it registers, then waits
//! on the registry's publications (no timer but its deadline) until the
//! reconciler reports the pod enforced on its veth.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bulkhead_cni::wire::{AddRequest, DeleteResponse, GcRequest, GcResponse, MAX_WAIT_MS};
use tokio::time::Instant;

use super::routes::{Api, blocking, error, json};
use super::server::Shared;
use crate::cni::{CniError, Registry};

/// The registry, or the 404 of an agent that takes no registrations.
fn registry(shared: &Shared) -> Result<Arc<Registry>, Response> {
    shared.backend.cni().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "this agent takes no CNI registrations",
        )
    })
}

fn refused(e: &CniError) -> Response {
    match e {
        CniError::Invalid { .. } => error(StatusCode::BAD_REQUEST, &e.to_string()),
        CniError::Persist { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Runs a registry call that writes its file on the blocking pool.
async fn on_registry<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&Registry) -> Result<T, CniError> + Send + 'static,
) -> Result<T, Response> {
    let reg = registry(shared)?;
    match blocking(shared, move |_| f(&reg)).await? {
        Ok(v) => Ok(v),
        Err(e) => Err(refused(&e)),
    }
}

/// `POST /v1/cni/endpoints`.
pub(super) async fn add(State(shared): Api, body: Bytes) -> Response {
    let req: AddRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("bad CNI registration: {e}"),
            );
        }
    };
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS));
    let reg = match registry(&shared) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let id = req.registration.container_id.clone();
    let registration = req.registration;
    let generation = match on_registry(&shared, move |r| r.register(registration)).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    tokio::select! {
        status = reg.wait(&id, generation, deadline) => match status {
            Some(s) if s.enforced => json(StatusCode::OK, &s),
            Some(s) => error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "pod {} is not enforced yet: {}",
                    s.pod,
                    s.waiting_for.unwrap_or_default()
                ),
            ),
            None => error(StatusCode::CONFLICT, &format!("container {id} was deleted meanwhile")),
        },
        () = shared.stop.cancelled() => error(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping"),
    }
}

/// `GET /v1/cni/endpoints/{id}`.
pub(super) async fn status(State(shared): Api, Path(id): Path<String>) -> Response {
    let reg = match registry(&shared) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match reg.status(&id) {
        Some(s) => json(StatusCode::OK, &s),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no registration of container {id}"),
        ),
    }
}

/// `DELETE /v1/cni/endpoints/{id}`: 200 whether or not it was there.
pub(super) async fn forget(State(shared): Api, Path(id): Path<String>) -> Response {
    match on_registry(&shared, move |r| r.forget(&id)).await {
        Ok(forgotten) => json(StatusCode::OK, &DeleteResponse { forgotten }),
        Err(r) => r,
    }
}

/// `POST /v1/cni/gc`.
pub(super) async fn gc(State(shared): Api, body: Bytes) -> Response {
    let req: GcRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad CNI GC request: {e}")),
    };
    match on_registry(&shared, move |r| r.retain(&req.valid_container_ids)).await {
        Ok(forgotten) => json(StatusCode::OK, &GcResponse { forgotten }),
        Err(r) => r,
    }
}
