//! List requests: which snapshot a `resourceVersion` /
//! `resourceVersionMatch` / `continue` combination asks for (the table of
//! "Semantics for get and list" in the Kubernetes API concepts), paging with
//! `limit`, and continue tokens that pin the snapshot.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiServerError;
use super::registry::{RESOURCES, ResId};
use super::selector::Selector;
use super::store::{Key, Store};

/// The list parameters of a request (absent and empty are the same).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A list response body (`PodList` and so on).
#[derive(Debug, Serialize)]
pub(crate) struct ListBody {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: ListMeta,
    items: Vec<Arc<Value>>,
}

#[derive(Debug, Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<String>,
}

/// What a continue token holds (the real server's fields: the snapshot's
/// revision and the key to start at; `rv` 0 means "the latest snapshot").
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Token {
    v: String,
    rv: u64,
    start: String,
}

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// Encodes a token that continues after `key` in the snapshot at `rv`.
pub(crate) fn encode_continue(rv: u64, key: &Key) -> String {
    let token = Token {
        v: TOKEN_VERSION.into(),
        rv,
        // The least key after `key`, as etcd spells it.
        start: format!("{}/{}\0", key.0, key.1),
    };
    STANDARD.encode(serde_json::to_vec(&token).expect("serializable"))
}

/// Decodes a continue token into its revision and the key it continues after.
pub(crate) fn decode_continue(token: &str) -> Result<(u64, Key), ApiServerError> {
    let bad = || ApiServerError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = STANDARD.decode(token).map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let key = t.start.strip_suffix('\0').and_then(|s| s.split_once('/'));
    match key {
        Some((ns, name)) if t.v == TOKEN_VERSION => Ok((t.rv, (ns.to_owned(), name.to_owned()))),
        _ => Err(bad()),
    }
}

fn parse_rv(s: &str) -> Result<u64, ApiServerError> {
    s.parse()
        .map_err(|_| ApiServerError::bad_request(format!("invalid resource version: {s:?}")))
}

/// The snapshot a list is served from, and where in it to start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Revision of the snapshot.
    pub rv: u64,
    /// Continue after this key.
    pub after: Option<Key>,
    /// Whether the request asked for exactly `rv` (errors say so).
    pub exact: bool,
}

/// Resolves the snapshot a list request asks for against the store.
pub(crate) fn snapshot(store: &Store, q: &ListQuery) -> Result<Snapshot, ApiServerError> {
    let rv = q.resource_version.as_deref().filter(|s| !s.is_empty());
    let rv_match = q
        .resource_version_match
        .as_deref()
        .filter(|s| !s.is_empty());
    if let Some(token) = q.continue_token.as_deref().filter(|s| !s.is_empty()) {
        if rv.is_some() || rv_match.is_some() {
            return Err(ApiServerError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (at, after) = decode_continue(token)?;
        if at != 0 && at < store.compacted() {
            return Err(ApiServerError::Expired {
                message: "The provided continue parameter is too old to display a consistent list \
                          result. You can start a new list without the continue parameter, or use \
                          the continue token in this response to retrieve the remainder of the \
                          results. Continuing with the provided token results in an inconsistent \
                          list - objects that were created, modified, or deleted between the time \
                          the first chunk was returned and now may show up in the list."
                    .into(),
                continue_token: Some(encode_continue(0, &after)),
            });
        }
        let rv = if at == 0 { store.rv() } else { at };
        return Ok(Snapshot {
            rv,
            after: Some(after),
            exact: true,
        });
    }
    let latest = Snapshot {
        rv: store.rv(),
        after: None,
        exact: false,
    };
    let not_older_than = |n: u64| {
        if n > store.rv() {
            Err(ApiServerError::TooLargeResourceVersion {
                requested: n,
                current: store.rv(),
            })
        } else {
            Ok(Snapshot {
                rv: store.rv(),
                after: None,
                exact: false,
            })
        }
    };
    let exact = |n: u64| {
        not_older_than(n).map(|_| Snapshot {
            rv: n,
            after: None,
            exact: true,
        })
    };
    match (rv_match, rv) {
        (Some(_), None) => Err(ApiServerError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (Some("NotOlderThan") | None, Some("0")) | (None, None) => Ok(latest),
        (Some("NotOlderThan"), Some(n)) => not_older_than(parse_rv(n)?),
        (Some("Exact"), Some("0")) => Err(ApiServerError::bad_request(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        (Some("Exact"), Some(n)) => exact(parse_rv(n)?),
        (Some(other), Some(_)) => Err(ApiServerError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
        // Legacy: a paged list at a given version is exact, an unpaged one not-older-than.
        (None, Some(n)) if q.limit.is_some() => exact(parse_rv(n)?),
        (None, Some(n)) => not_older_than(parse_rv(n)?),
    }
}

/// Serves one list request (one page of it) from the store.
pub(crate) fn list(
    store: &Store,
    res: ResId,
    ns: Option<&str>,
    q: &ListQuery,
    selector: &Selector,
) -> Result<ListBody, ApiServerError> {
    let snap = snapshot(store, q)?;
    let filter = |obj: &Value| selector.matches(obj);
    let limit = q.limit.filter(|&l| l > 0);
    let page = store
        .page(res, ns, snap.rv, snap.after.as_ref(), limit, &filter)
        .map_err(|e| match e {
            ApiServerError::Expired { .. } if snap.exact && snap.after.is_none() => {
                ApiServerError::Expired {
                    message: "The resourceVersion for the provided list is too old.".into(),
                    continue_token: None,
                }
            }
            e => e,
        })?;
    let rt = &RESOURCES[res];
    Ok(ListBody {
        kind: rt.list_kind(),
        api_version: rt.api_version(),
        metadata: ListMeta {
            resource_version: page.rv.to_string(),
            continue_token: page.next.as_ref().map(|k| encode_continue(page.rv, k)),
        },
        items: page.items,
    })
}
