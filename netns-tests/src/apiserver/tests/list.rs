use std::collections::HashMap;

use serde_json::{Value, json};

use super::super::error::ApiServerError;
use super::super::list::{self, ListQuery, decode_continue, encode_continue};
use super::super::registry::RESOURCES;
use super::super::selector::Selector;
use super::super::store::{Preconditions, Store, WriteMode};
use super::super::watch::{Start, parse_params};
use super::{names, pod, pods};

/// A store with pods p00..p{n-1} in namespace `shop`, labelled by parity.
fn store_with(n: usize) -> Store {
    let mut s = Store::new(1000);
    for i in 0..n {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        let p = pod("shop", &format!("p{i:02}"), json!({"parity": parity}));
        s.write(pods(), p, WriteMode::Create).expect("created");
    }
    s
}

fn list(s: &Store, q: &ListQuery, labels: Option<&str>) -> Result<Value, ApiServerError> {
    let sel = Selector::parse(labels, None, &RESOURCES[pods()]).expect("selector");
    let body = list::list(s, pods(), Some("shop"), q, &sel)?;
    Ok(serde_json::to_value(body).expect("serializable"))
}

fn item_names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().expect("named").to_owned())
        .collect()
}

fn paged(limit: usize, token: Option<&str>) -> ListQuery {
    ListQuery {
        limit: Some(limit),
        continue_token: token.map(str::to_owned),
        ..ListQuery::default()
    }
}

#[test]
fn list_body_has_kind_and_resource_version() {
    let s = store_with(3);
    let body = list(&s, &ListQuery::default(), None).expect("listed");
    assert_eq!(body["kind"], "PodList");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["metadata"]["resourceVersion"], s.rv().to_string());
    assert!(body["metadata"].get("continue").is_none());
    assert_eq!(item_names(&body), ["p00", "p01", "p02"]);
}

#[test]
fn pages_follow_continue_tokens_to_the_end() {
    let s = store_with(7);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = list(&s, &paged(3, token.as_deref()), None).expect("page");
        seen.extend(item_names(&body));
        pages += 1;
        match body["metadata"]["continue"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("p{i:02}")).collect::<Vec<_>>());
}

#[test]
fn a_continue_token_pins_the_snapshot() {
    let mut s = store_with(6);
    let first = list(&s, &paged(2, None), None).expect("page");
    let rv = first["metadata"]["resourceVersion"].clone();
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("more")
        .to_owned();
    // Changes after the first page: delete a later pod, add one, relabel one.
    s.delete(
        pods(),
        &("shop".into(), "p04".into()),
        &Preconditions::default(),
    )
    .expect("ok");
    s.write(pods(), pod("shop", "p03a", json!({})), WriteMode::Create)
        .expect("ok");
    s.write(
        pods(),
        pod("shop", "p05", json!({"parity": "changed"})),
        WriteMode::Apply,
    )
    .expect("ok");
    let rest = list(&s, &paged(10, Some(&token)), None).expect("page");
    assert_eq!(rest["metadata"]["resourceVersion"], rv, "same snapshot");
    assert_eq!(item_names(&rest), ["p02", "p03", "p04", "p05"]);
    assert_eq!(rest["items"][3]["metadata"]["labels"]["parity"], "odd");
    // A new list sees the changes.
    let now = list(&s, &ListQuery::default(), None).expect("list");
    assert_eq!(
        item_names(&now),
        ["p00", "p01", "p02", "p03", "p03a", "p05"]
    );
}

#[test]
fn pages_with_a_selector_hold_only_selected_objects() {
    let s = store_with(9);
    let first = list(&s, &paged(2, None), Some("parity=odd")).expect("page");
    assert_eq!(item_names(&first), ["p01", "p03"]);
    let token = first["metadata"]["continue"].as_str().expect("more");
    let rest = list(&s, &paged(10, Some(token)), Some("parity=odd")).expect("page");
    assert_eq!(item_names(&rest), ["p05", "p07"]);
    assert!(rest["metadata"].get("continue").is_none());
}

#[test]
fn an_expired_continue_token_is_gone_with_an_inconsistent_token() {
    let mut s = store_with(5);
    let first = list(&s, &paged(2, None), None).expect("page");
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("more")
        .to_owned();
    s.write(pods(), pod("shop", "p09", json!({})), WriteMode::Create)
        .expect("ok");
    s.compact();
    let err = list(&s, &paged(2, Some(&token)), None).expect_err("expired");
    assert_eq!((err.code(), err.reason()), (410, "Expired"));
    let status = err.to_status();
    let retry = status["metadata"]["continue"]
        .as_str()
        .expect("a token to go on with");
    // Going on from the latest snapshot includes what changed since.
    let rest = list(&s, &paged(10, Some(retry)), None).expect("page");
    assert_eq!(item_names(&rest), ["p02", "p03", "p04", "p09"]);
    assert_eq!(rest["metadata"]["resourceVersion"], s.rv().to_string());
}

#[test]
fn resource_version_semantics() {
    let mut s = store_with(2);
    let old = s.rv();
    s.write(pods(), pod("shop", "p02", json!({})), WriteMode::Create)
        .expect("ok");
    let q = |rv: &str, m: Option<&str>, limit: Option<usize>| ListQuery {
        resource_version: Some(rv.into()),
        resource_version_match: m.map(str::to_owned),
        limit,
        continue_token: None,
    };
    let old_s = old.to_string();
    // NotOlderThan (explicit, or legacy unpaged) and "0" serve the latest.
    for query in [
        q(&old_s, Some("NotOlderThan"), None),
        q(&old_s, None, None),
        q("0", None, Some(1)),
    ] {
        let body = list(&s, &query, None).expect("listed");
        assert_eq!(body["metadata"]["resourceVersion"], s.rv().to_string());
    }
    // Exact (explicit, or legacy paged) serves the old state.
    for query in [q(&old_s, Some("Exact"), None), q(&old_s, None, Some(10))] {
        let body = list(&s, &query, None).expect("listed");
        assert_eq!(body["metadata"]["resourceVersion"], old_s);
        assert_eq!(item_names(&body), ["p00", "p01"]);
    }
    let future = (s.rv() + 5).to_string();
    assert_eq!(
        list(&s, &q(&future, Some("NotOlderThan"), None), None)
            .unwrap_err()
            .code(),
        504
    );
    s.compact();
    assert_eq!(
        list(&s, &q(&old_s, Some("Exact"), None), None)
            .unwrap_err()
            .code(),
        410
    );
    assert_eq!(
        list(&s, &q(&old_s, Some("NotOlderThan"), None), None)
            .map(|_| ())
            .ok(),
        Some(())
    );
}

#[test]
fn malformed_list_requests_are_bad_requests() {
    let s = store_with(3);
    let token = encode_continue(s.rv(), &("shop".into(), "p00".into()));
    let bad = [
        ListQuery {
            resource_version_match: Some("Exact".into()),
            ..ListQuery::default()
        },
        ListQuery {
            resource_version: Some("0".into()),
            resource_version_match: Some("Exact".into()),
            ..ListQuery::default()
        },
        ListQuery {
            resource_version: Some("2".into()),
            resource_version_match: Some("Sometime".into()),
            ..ListQuery::default()
        },
        ListQuery {
            resource_version: Some("x".into()),
            ..ListQuery::default()
        },
        ListQuery {
            resource_version: Some("2".into()),
            continue_token: Some(token),
            ..ListQuery::default()
        },
        ListQuery {
            continue_token: Some("bm90IGEgdG9rZW4=".into()),
            ..ListQuery::default()
        },
    ];
    for q in bad {
        let err = list(&s, &q, None).expect_err("bad");
        assert_eq!(err.code(), 400, "{q:?}: {err}");
    }
}

#[test]
fn continue_tokens_round_trip() {
    let key = ("shop".to_owned(), "web-1".to_owned());
    assert_eq!(
        decode_continue(&encode_continue(42, &key)).expect("valid"),
        (42, key)
    );
    let cluster = (String::new(), "shop".to_owned());
    assert_eq!(
        decode_continue(&encode_continue(7, &cluster)).expect("valid"),
        (7, cluster)
    );
}

#[test]
fn page_of_the_store_rolls_back_changes() {
    let mut s = store_with(3);
    let at = s.rv();
    s.delete(
        pods(),
        &("shop".into(), "p01".into()),
        &Preconditions::default(),
    )
    .expect("ok");
    s.write(pods(), pod("shop", "p00a", json!({})), WriteMode::Create)
        .expect("ok");
    let all = |_: &Value| true;
    let then = s
        .page(pods(), Some("shop"), at, None, None, &all)
        .expect("kept");
    assert_eq!(names(&then.items), ["p00", "p01", "p02"]);
    let now = s.page(pods(), None, s.rv(), None, None, &all).expect("now");
    assert_eq!(names(&now.items), ["p00", "p00a", "p02"]);
    let other_ns = s
        .page(pods(), Some("sho"), at, None, None, &all)
        .expect("kept");
    assert!(other_ns.items.is_empty());
}

#[test]
fn watch_parameters() {
    let p = |pairs: &[(&str, &str)]| {
        let q: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_params(&q)
    };
    assert_eq!(
        p(&[]).expect("ok").0,
        Start::Initial {
            end_bookmark: false
        }
    );
    assert_eq!(
        p(&[("resourceVersion", "0")]).expect("ok").0,
        Start::Initial {
            end_bookmark: false
        }
    );
    assert_eq!(
        p(&[("resourceVersion", "12")]).expect("ok").0,
        Start::From(12)
    );
    let streaming = p(&[
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", "5"),
    ])
    .expect("ok");
    assert_eq!(streaming.0, Start::Initial { end_bookmark: true });
    assert!(streaming.1);
    assert_eq!(streaming.2, Some(std::time::Duration::from_secs(5)));
    let no_initial = [
        ("sendInitialEvents", "false"),
        ("resourceVersionMatch", "NotOlderThan"),
    ];
    assert_eq!(p(&no_initial).expect("ok").0, Start::Now);
    for bad in [
        &[("resourceVersion", "x")][..],
        &[("sendInitialEvents", "true")][..],
        &[
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
        ][..],
        &[("resourceVersionMatch", "NotOlderThan")][..],
        &[("timeoutSeconds", "soon")][..],
    ] {
        assert_eq!(p(bad).expect_err("bad").code(), 400, "{bad:?}");
    }
}
