use serde_json::json;

use super::super::error::ApiServerError;
use super::super::store::{EventType, Preconditions, Store, WriteMode};
use super::{namespaces, pod, pods};

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

#[test]
fn create_fills_in_server_owned_metadata() {
    let mut s = Store::new(100);
    let rv0 = s.rv();
    let mut p = pod("", "web-1", json!({"app": "web"}));
    p.as_object_mut().expect("object").remove("kind");
    p["metadata"]
        .as_object_mut()
        .expect("object")
        .remove("namespace");
    let created = s.write(pods(), p, WriteMode::Create).expect("created");
    let m = &created["metadata"];
    assert_eq!(created["kind"], "Pod");
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["resourceVersion"], (rv0 + 1).to_string());
    assert_eq!(m["generation"], 1);
    let uid = m["uid"].as_str().expect("uid");
    assert_eq!(uid.len(), 36);
    assert_eq!(&uid[14..15], "4", "a version-4 UUID: {uid}");
    assert!(
        m["creationTimestamp"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z')
    );
    assert_eq!(s.rv(), rv0 + 1);
}

#[test]
fn uids_and_generated_names_are_unique() {
    let mut s = Store::new(100);
    let mut uids = std::collections::HashSet::new();
    for _ in 0..50 {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}});
        let created = s.write(pods(), p, WriteMode::Create).expect("created");
        let name = created["metadata"]["name"].as_str().expect("named");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(uids.insert(created["metadata"]["uid"].clone()));
    }
    assert_eq!(s.len(pods()), 50);
}

#[test]
fn errors_of_writes() {
    let mut s = Store::new(100);
    let p = pod("shop", "web-1", json!({}));
    s.write(pods(), p.clone(), WriteMode::Create)
        .expect("created");
    assert!(matches!(
        s.write(pods(), p.clone(), WriteMode::Create),
        Err(ApiServerError::AlreadyExists { .. })
    ));
    let mut stale = p.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    assert!(matches!(
        s.write(pods(), stale.clone(), WriteMode::Replace),
        Err(ApiServerError::Conflict { .. })
    ));
    // Apply ignores the stale resourceVersion.
    s.write(pods(), stale, WriteMode::Apply).expect("applied");
    assert!(matches!(
        s.write(pods(), pod("shop", "other", json!({})), WriteMode::Replace),
        Err(ApiServerError::NotFound { .. })
    ));
    let mut wrong = p;
    wrong["kind"] = json!("Namespace");
    assert!(matches!(
        s.write(pods(), wrong, WriteMode::Apply),
        Err(ApiServerError::BadRequest { .. })
    ));
    let nameless = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}});
    assert_eq!(
        s.write(pods(), nameless, WriteMode::Create)
            .unwrap_err()
            .code(),
        422
    );
}

#[test]
fn replace_keeps_identity_and_bumps_generation_on_spec_only() {
    let mut s = Store::new(100);
    let first = s
        .write(
            pods(),
            pod("shop", "web-1", json!({"app": "web"})),
            WriteMode::Create,
        )
        .expect("created");
    let relabeled = s
        .write(
            pods(),
            pod("shop", "web-1", json!({"app": "db"})),
            WriteMode::Apply,
        )
        .expect("replaced");
    assert_eq!(relabeled["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(
        relabeled["metadata"]["creationTimestamp"],
        first["metadata"]["creationTimestamp"]
    );
    assert_eq!(relabeled["metadata"]["generation"], 1);
    let mut moved = pod("shop", "web-1", json!({"app": "db"}));
    moved["spec"]["nodeName"] = json!("node-b");
    let moved = s.write(pods(), moved, WriteMode::Apply).expect("replaced");
    assert_eq!(moved["metadata"]["generation"], 2);
}

#[test]
fn a_replace_that_changes_nothing_makes_no_event() {
    let mut s = Store::new(100);
    let p = pod("shop", "web-1", json!({"app": "web"}));
    let first = s
        .write(pods(), p.clone(), WriteMode::Create)
        .expect("created");
    let rv = s.rv();
    let again = s.write(pods(), p, WriteMode::Apply).expect("applied");
    assert_eq!(again, first);
    assert_eq!(s.rv(), rv);
    assert!(s.events_after(rv, 10).expect("kept").is_empty());
}

#[test]
fn events_record_each_change_with_its_previous_state() {
    let mut s = Store::new(100);
    let rv0 = s.rv();
    s.write(
        pods(),
        pod("shop", "web-1", json!({"app": "web"})),
        WriteMode::Create,
    )
    .expect("ok");
    s.write(
        pods(),
        pod("shop", "web-1", json!({"app": "db"})),
        WriteMode::Apply,
    )
    .expect("ok");
    let deleted = s
        .delete(pods(), &key("shop", "web-1"), &Preconditions::default())
        .expect("ok");
    let events = s.events_after(rv0, 10).expect("kept");
    let kinds: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );
    let rvs: Vec<u64> = events.iter().map(|e| e.rv).collect();
    assert_eq!(rvs, [rv0 + 1, rv0 + 2, rv0 + 3]);
    assert_eq!(
        events[1].prev.as_ref().expect("prev")["metadata"]["labels"]["app"],
        "web"
    );
    // A deletion carries the last state at the deletion's resourceVersion.
    assert_eq!(events[2].object["metadata"]["labels"]["app"], "db");
    assert_eq!(
        deleted["metadata"]["resourceVersion"],
        (rv0 + 3).to_string()
    );
    assert_eq!(s.events_after(rv0 + 1, 1).expect("kept").len(), 1);
    assert!(s.get(pods(), &key("shop", "web-1")).is_none());
}

#[test]
fn delete_preconditions() {
    let mut s = Store::new(100);
    let p = s
        .write(pods(), pod("shop", "web-1", json!({})), WriteMode::Create)
        .expect("ok");
    let k = key("shop", "web-1");
    let wrong_uid = Preconditions {
        uid: Some("nope".into()),
        resource_version: None,
    };
    assert!(matches!(
        s.delete(pods(), &k, &wrong_uid),
        Err(ApiServerError::Conflict { .. })
    ));
    let right = Preconditions {
        uid: p["metadata"]["uid"].as_str().map(str::to_owned),
        resource_version: p["metadata"]["resourceVersion"].as_str().map(str::to_owned),
    };
    s.delete(pods(), &k, &right).expect("deleted");
    assert!(matches!(
        s.delete(pods(), &k, &right),
        Err(ApiServerError::NotFound { .. })
    ));
}

#[test]
fn namespaces_are_labelled_with_their_name_and_delete_their_contents() {
    let mut s = Store::new(100);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "x"}});
    let ns = s.write(namespaces(), ns, WriteMode::Apply).expect("ok");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "shop"
    );
    assert!(ns["metadata"].get("namespace").is_none(), "cluster-scoped");
    s.write(pods(), pod("shop", "a", json!({})), WriteMode::Create)
        .expect("ok");
    s.write(pods(), pod("shop", "b", json!({})), WriteMode::Create)
        .expect("ok");
    s.write(pods(), pod("shopping", "c", json!({})), WriteMode::Create)
        .expect("ok");
    let rv = s.rv();
    s.delete(namespaces(), &key("", "shop"), &Preconditions::default())
        .expect("ok");
    assert_eq!(
        s.len(pods()),
        1,
        "only the pod of another namespace is left"
    );
    let events = s.events_after(rv, 10).expect("kept");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kind == EventType::Deleted));
    assert_eq!(events[2].res, namespaces());
}

#[test]
fn history_is_bounded_and_compaction_forgets() {
    let mut s = Store::new(3);
    let rv0 = s.rv();
    for i in 0..5 {
        s.write(
            pods(),
            pod("shop", &format!("p{i}"), json!({})),
            WriteMode::Create,
        )
        .expect("ok");
    }
    assert_eq!(s.compacted(), rv0 + 2);
    assert!(s.events_after(rv0 + 1, 10).is_none(), "forgotten");
    assert_eq!(s.events_after(rv0 + 2, 10).expect("kept").len(), 3);
    s.compact();
    assert_eq!(s.compacted(), s.rv());
    assert!(s.events_after(s.rv() - 1, 10).is_none());
    assert!(s.events_after(s.rv(), 10).expect("now").is_empty());
}
