//! The `/v1/quarantine` routes `bulkhead quarantine` and `unquarantine`
//! call. A change is a long poll, as a CNI ADD: it is stored, then waits
//! on the store's publications (no timer but its deadline) until the
//! reconciler reports the store generation that holds it enforced.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::time::Instant;

use super::routes::{Api, blocking, error, json};
use super::server::Shared;
use crate::quarantine::wire::label_hint;
use crate::quarantine::{
    QuarantineError, QuarantineList, QuarantineOrigin, QuarantineRequest, QuarantineStore,
    RemoveAnswer,
};

/// The path of the routes.
pub const QUARANTINE_PATH: &str = "/v1/quarantine";

/// How long a change waits to be enforced before it is answered 504 by
/// default (it stays stored, and is enforced at the agent's next
/// successful sync).
pub const QUARANTINE_WAIT: Duration = Duration::from_secs(10);

/// The store, or the 404 of an agent that keeps none.
fn store(shared: &Shared) -> Result<Arc<QuarantineStore>, Response> {
    shared
        .backend
        .quarantine()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "this agent keeps no quarantines"))
}

fn refused(e: &QuarantineError) -> Response {
    match e {
        QuarantineError::Invalid { .. } => error(StatusCode::BAD_REQUEST, &e.to_string()),
        QuarantineError::Persist { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Runs a store call that writes its file on the blocking pool.
async fn on_store<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&QuarantineStore) -> Result<T, QuarantineError> + Send + 'static,
) -> Result<T, Response> {
    let store = store(shared)?;
    match blocking(shared, move |_| f(&store)).await? {
        Ok(v) => Ok(v),
        Err(e) => Err(refused(&e)),
    }
}

/// Waits until `generation` is enforced (or the deadline, or stop).
async fn enforced(
    shared: &Shared,
    store: &QuarantineStore,
    generation: u64,
) -> Result<QuarantineList, Response> {
    let wait = shared.config.quarantine_wait;
    tokio::select! {
        (reached, list) = store.wait(generation, Instant::now() + wait) => if reached {
            Ok(list)
        } else {
            Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "stored, but not enforced within {wait:?}: the agent has not synced it \
                     (see `bulkhead status`); it takes effect at its next successful sync"
                ),
            ))
        },
        () = shared.stop.cancelled() => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is stopping; the change is stored and takes effect when it starts again",
        )),
    }
}

/// `GET /v1/quarantine`.
pub(super) async fn list(State(shared): Api) -> Response {
    match store(&shared) {
        Ok(s) => json(StatusCode::OK, &s.in_force()),
        Err(r) => r,
    }
}

/// `POST /v1/quarantine`.
pub(super) async fn set(State(shared): Api, body: Bytes) -> Response {
    let req: QuarantineRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "bad quarantine request (JSON {{\"namespace\", \"pod\", \"reason\", \"allow_dns\"}}): {e}"
                ),
            );
        }
    };
    let store = match store(&shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let generation = match on_store(&shared, move |s| s.set(req)).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match enforced(&shared, &store, generation).await {
        Ok(list) => json(StatusCode::OK, &list),
        Err(r) => r,
    }
}

/// `DELETE /v1/quarantine/{namespace}/{pod}`: 200 whether or not the
/// store held it, 409 while the pod's label still quarantines it.
pub(super) async fn remove(
    State(shared): Api,
    Path((namespace, pod)): Path<(String, String)>,
) -> Response {
    let store = match store(&shared) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (ns, name) = (namespace.clone(), pod.clone());
    let (removed, generation) = match on_store(&shared, move |s| s.remove(&ns, &name)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let in_force = if removed {
        match enforced(&shared, &store, generation).await {
            Ok(list) => list,
            Err(r) => return r,
        }
    } else {
        store.in_force()
    };
    if let Some(q) = in_force
        .find(&namespace, &pod)
        .filter(|q| q.origin == QuarantineOrigin::Label)
    {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "{} stays quarantined by its label ({}); lift it with `{}`",
                q.key(),
                q.reason,
                label_hint(&namespace, &pod)
            ),
        );
    }
    json(StatusCode::OK, &RemoveAnswer { removed, in_force })
}

/// The quarantine gauges of `/metrics` (OpenMetrics, no `# EOF`).
pub(super) fn metrics(store: &QuarantineStore) -> String {
    let list = store.in_force();
    let count = |origin| {
        list.quarantines
            .iter()
            .filter(|q| q.origin == origin)
            .count()
    };
    let here = list.quarantines.iter().filter(|q| q.enforced).count();
    format!(
        "# HELP bulkhead_quarantined_pods Pods quarantined (cut off from the network) in the policy in force, by where the quarantine comes from.\n\
         # TYPE bulkhead_quarantined_pods gauge\n\
         bulkhead_quarantined_pods{{origin=\"store\"}} {}\n\
         bulkhead_quarantined_pods{{origin=\"label\"}} {}\n\
         # HELP bulkhead_quarantined_local_pods Quarantined pods on this node, enforced on their veths.\n\
         # TYPE bulkhead_quarantined_local_pods gauge\n\
         bulkhead_quarantined_local_pods {here}\n\
         # HELP bulkhead_quarantines_pending Stored quarantines not in force yet.\n\
         # TYPE bulkhead_quarantines_pending gauge\n\
         bulkhead_quarantines_pending {}\n",
        count(QuarantineOrigin::Store),
        count(QuarantineOrigin::Label),
        list.pending.len(),
    )
}
