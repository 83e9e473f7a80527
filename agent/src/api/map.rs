//! The network map's routes (`bulkhead.map/v1`, read-only):
//!
//! | method and path                         | answer                                                |
//! |-----------------------------------------|-------------------------------------------------------|
//! | `GET /v1/map?since=MS&until=MS`         | JSON `bulkhead.map/v1`: workloads, external ranges    |
//! |                                         | and edges of the window (whole buckets; default: the  |
//! |                                         | whole retention)                                      |
//! | `GET /v1/map/follow?since=MS`           | chunked JSON Lines: `workload`, `external`, `edge`    |
//! |                                         | (counts are increments), `lost` lines, heartbeats;    |
//! |                                         | with `since`, the window from it first                |
//! | `GET /v1/map/edge?src=ID&dst=ID&`       | JSON `bulkhead.map.edge/v1`: the edge, its newest     |
//! | `protocol=P&port=N&since=MS&until=MS`   | flow records (at most 50, newest first) and `explain` |
//! | `GET /v1/map/workload?id=ID&since=MS&`  | JSON `bulkhead.map.workload/v1`: pods, selecting      |
//! | `until=MS`                              | policies, quarantine, proposal and its diff           |
//!
//! Every follow line carries the map's `revision` after the merge it
//! comes from, and `/v1/map` the revision it shows: each merge raises it by
//! one, so a client that fetched the map at revision `r` applies only lines
//! of later revisions, and a revision it never saw (a gap: increments merged
//! before it subscribed, or `lost`) tells it to fetch the map again. The
//! map may so be fetched before or after subscribing (list, then watch).
//!
//! 404 when the agent keeps no flow map (its flow pipeline is off) or the
//! edge or workload is unknown; 400 names the bad parameter. Every backend
//! call runs on the blocking pool, as the other routes' do; a follower is
//! the same pump as `/v1/flows?follow=1`'s.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use bulkhead_flows::record::{IpProtocol, Timestamp};
use bulkhead_learn::{Window, WorkloadId};

use super::routes::{Api, blocking, error, parse_history_query, response};
use super::server::Shared;
use super::{follow, query};

/// `GET /v1/map`.
pub const MAP_PATH: &str = "/v1/map";
/// `GET /v1/map/follow`.
pub const MAP_FOLLOW_PATH: &str = "/v1/map/follow";
/// `GET /v1/map/edge`.
pub const MAP_EDGE_PATH: &str = "/v1/map/edge";
/// `GET /v1/map/workload`.
pub const MAP_WORKLOAD_PATH: &str = "/v1/map/workload";

/// Every map path.
pub const MAP_PATHS: [&str; 4] = [MAP_PATH, MAP_FOLLOW_PATH, MAP_EDGE_PATH, MAP_WORKLOAD_PATH];

/// What `GET /v1/map/edge` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeQuery {
    /// Source node id (`ns/Kind/name` or `cidr:<range>`).
    pub src: String,
    /// Destination node id.
    pub dst: String,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
    /// The time window.
    pub window: Window,
}

/// What `GET /v1/map/workload` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadQuery {
    /// The workload.
    pub id: WorkloadId,
    /// The time window (of its proposal).
    pub window: Window,
}

/// Why a map route has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The agent keeps no flow map (404).
    #[error("this agent keeps no flow map (its flow visibility is off)")]
    NotKept,
    /// No such edge or workload (404).
    #[error("{0}")]
    NotFound(String),
}

impl MapError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        404
    }
}

/// Adds the map routes to `router` (the agent's full API; the UI listener
/// mounts them too).
pub(super) fn routes(router: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    router
        .route(MAP_PATH, get(map))
        .route(MAP_FOLLOW_PATH, get(map_follow))
        .route(MAP_EDGE_PATH, get(map_edge))
        .route(MAP_WORKLOAD_PATH, get(map_workload))
}

/// A backend's JSON answer, or its error.
fn answer(result: Result<Result<String, MapError>, Response>) -> Response {
    match result {
        Ok(Ok(mut body)) => {
            body.push('\n');
            response(StatusCode::OK, "application/json", body.into())
        }
        Ok(Err(e)) => error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND),
            &e.to_string(),
        ),
        Err(r) => r,
    }
}

async fn map(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let window = match parse_history_query(raw.as_deref().unwrap_or_default()) {
        Ok(w) => w,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    answer(blocking(&shared, move |b| b.map(window)).await)
}

async fn map_follow(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let since = match parse_follow_query(raw.as_deref().unwrap_or_default()) {
        Ok(s) => s,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    follow::stream(shared, move |b| {
        b.map_follow(since).map_err(|e| {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND);
            (status, e.to_string())
        })
    })
    .await
}

async fn map_edge(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_edge_query(raw.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    answer(blocking(&shared, move |b| b.map_edge(&q)).await)
}

async fn map_workload(State(shared): Api, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_workload_query(raw.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    answer(blocking(&shared, move |b| b.map_workload(&q)).await)
}

/// `since=MS` of `/v1/map/follow`: the window from it to now.
pub(super) fn parse_follow_query(raw: &str) -> Result<Option<Window>, String> {
    let mut since = None;
    for (k, v) in query::query_pairs(raw) {
        match k.as_str() {
            "since" => since = Some(Timestamp(number(&k, &v)?)),
            _ => return Err(format!("unknown parameter {k:?} (since)")),
        }
    }
    Ok(since.map(|s| Window {
        since: Some(s),
        until: None,
    }))
}

fn number<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("{k} must be a non-negative integer, not {v:?}"))
}

/// A workload id, `namespace/Kind/name`.
pub(super) fn parse_workload_id(k: &str, v: &str) -> Result<WorkloadId, String> {
    let mut parts = v.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(kind), Some(name))
            if !ns.is_empty() && !kind.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(WorkloadId {
                namespace: ns.to_owned(),
                workload: format!("{kind}/{name}"),
            })
        }
        _ => Err(format!("{k} must be namespace/Kind/name, not {v:?}")),
    }
}

/// A node id: a workload (`namespace/Kind/name`) or an external range
/// (`cidr:<range>`), checked and normalized.
fn parse_node_id(k: &str, v: &str) -> Result<String, String> {
    if let Some(range) = v.strip_prefix("cidr:") {
        return range
            .parse::<ipnetwork::IpNetwork>()
            .map(|n| format!("cidr:{n}"))
            .map_err(|_| format!("{k} must be namespace/Kind/name or cidr:RANGE, not {v:?}"));
    }
    parse_workload_id(k, v)
        .map(|w| w.to_string())
        .map_err(|_| format!("{k} must be namespace/Kind/name or cidr:RANGE, not {v:?}"))
}

/// Splits `since` and `until` off a query (as `/v1/history` takes them),
/// the other pairs given to `each`.
fn with_window(
    raw: &str,
    mut each: impl FnMut(&str, &str) -> Result<bool, String>,
    known: &str,
) -> Result<Window, String> {
    let mut rest = Vec::new();
    for (k, v) in query::query_pairs(raw) {
        match k.as_str() {
            "since" | "until" => rest.push((k, v)),
            _ => {
                if !each(&k, &v)? {
                    return Err(format!("unknown parameter {k:?} ({known})"));
                }
            }
        }
    }
    parse_history_query(&query::encode_query(
        rest.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

/// The parameters of `/v1/map/edge`: `src`, `dst`, `protocol` (a name or
/// a number) and `port` are required.
pub(super) fn parse_edge_query(raw: &str) -> Result<EdgeQuery, String> {
    let (mut src, mut dst, mut protocol, mut port) = (None, None, None, None);
    let window = with_window(
        raw,
        |k, v| {
            match k {
                "src" => src = Some(parse_node_id(k, v)?),
                "dst" => dst = Some(parse_node_id(k, v)?),
                "protocol" => {
                    protocol = Some(IpProtocol::parse(v).map(|p| p.0).ok_or_else(|| {
                        format!(
                            "protocol must be TCP, UDP, SCTP, ICMP, ICMPv6 or a number, not {v:?}"
                        )
                    })?);
                }
                "port" => {
                    port = Some(v.parse::<u16>().map_err(|_| {
                        format!("port must be a number from 0 to 65535, not {v:?}")
                    })?);
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
        "src, dst, protocol, port, since, until",
    )?;
    let required = |name: &str| format!("{name} is required");
    Ok(EdgeQuery {
        src: src.ok_or_else(|| required("src"))?,
        dst: dst.ok_or_else(|| required("dst"))?,
        protocol: protocol.ok_or_else(|| required("protocol"))?,
        port: port.ok_or_else(|| required("port"))?,
        window,
    })
}

/// The parameters of `/v1/map/workload`: `id` is required.
pub(super) fn parse_workload_query(raw: &str) -> Result<WorkloadQuery, String> {
    let mut id = None;
    let window = with_window(
        raw,
        |k, v| {
            if k != "id" {
                return Ok(false);
            }
            id = Some(parse_workload_id(k, v)?);
            Ok(true)
        },
        "id, since, until",
    )?;
    Ok(WorkloadQuery {
        id: id.ok_or_else(|| "id=namespace/Kind/name is required".to_owned())?,
        window,
    })
}
