//! The `/v1/baselines` routes `bulkhead baseline activate`, `deactivate`
//! and `list` call: the baselines the agent alerts on, changed at run time
//! (see [`crate::alerts`]). A change is in force when it is answered: the
//! detectors check the next record against it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bulkhead_learn::baseline::Baseline;
use serde::{Deserialize, Serialize};

use super::routes::{Api, blocking, error, json};
use crate::alerts::{ActiveBaseline, Alerts, AlertsError};

/// The path of the routes.
pub const BASELINES_PATH: &str = "/v1/baselines";

/// `DELETE /v1/baselines/{name}`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeactivateAnswer {
    /// Whether it was active.
    pub deactivated: bool,
    /// The baselines active now.
    pub active: Vec<ActiveBaseline>,
}

/// The answer of an agent that runs no alerting.
fn off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this agent runs no baseline alerts: its flow pipeline is off (see `bulkhead status`)",
    )
}

fn refused(e: &AlertsError) -> Response {
    let status = match e {
        AlertsError::Static(_) => StatusCode::CONFLICT,
        AlertsError::Gone | AlertsError::Start(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// Runs `f` on the agent's alerting on the blocking pool (a change waits
/// for the detectors' thread to hand over).
async fn on_alerts<T: Send + 'static>(
    shared: &super::server::Shared,
    f: impl FnOnce(&Alerts) -> Result<T, AlertsError> + Send + 'static,
) -> Result<T, Response> {
    let mut f = Some(f);
    let answer = blocking(shared, move |b| {
        let mut out = None;
        let ran = b.with_alerts(&mut |a| out = f.take().map(|f| f(a)));
        (ran, out)
    })
    .await?;
    match answer {
        (true, Some(Ok(v))) => Ok(v),
        (true, Some(Err(e))) => Err(refused(&e)),
        _ => Err(off()),
    }
}

/// `GET /v1/baselines`.
pub(super) async fn list(State(shared): Api) -> Response {
    match on_alerts(&shared, |a| Ok(a.active())).await {
        Ok(list) => json(StatusCode::OK, &list),
        Err(r) => r,
    }
}

/// `PUT /v1/baselines`: the body is a baseline file's content.
pub(super) async fn activate(State(shared): Api, body: Bytes) -> Response {
    let baseline = match Baseline::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a baseline (as `bulkhead baseline take` writes it): {e}"),
            );
        }
    };
    match on_alerts(&shared, move |a| a.activate(baseline)).await {
        Ok(list) => json(StatusCode::OK, &list),
        Err(r) => r,
    }
}

/// `DELETE /v1/baselines/{name}`: 200 whether or not it was active.
pub(super) async fn deactivate(State(shared): Api, Path(name): Path<String>) -> Response {
    match on_alerts(&shared, move |a| a.deactivate(&name)).await {
        Ok((deactivated, active)) => json(
            StatusCode::OK,
            &DeactivateAnswer {
                deactivated,
                active,
            },
        ),
        Err(r) => r,
    }
}
