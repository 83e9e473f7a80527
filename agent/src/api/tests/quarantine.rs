//! The `/v1/quarantine` routes over a store and a fake reconciler.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::fake::Fake;
use super::*;
use crate::quarantine::{
    Enforced, QuarantineOrigin, QuarantineRequest, QuarantineState, QuarantineStore,
};

/// A pod the fake reconciler reports quarantined by its label.
const LABELLED: (&str, &str) = ("shop", "labelled");

/// Plays the reconciler: after each change, publishes the store's
/// generation as enforced, with the stored quarantines (local, enforced)
/// and [`LABELLED`].
fn reconcile(store: Arc<QuarantineStore>) {
    test_runtime().spawn(async move {
        loop {
            let (generation, stored) = store.snapshot();
            let mut quarantines: Vec<QuarantineState> = stored
                .iter()
                .map(|q| QuarantineState {
                    namespace: q.namespace.clone(),
                    pod: q.pod.clone(),
                    reason: q.reason.clone(),
                    allow_dns: q.allow_dns,
                    origin: QuarantineOrigin::Store,
                    labelled: false,
                    since_unix_ms: Some(1),
                    in_model: true,
                    local: true,
                    enforced: true,
                })
                .collect();
            quarantines.push(QuarantineState {
                namespace: LABELLED.0.into(),
                pod: LABELLED.1.into(),
                reason: "label bulkhead.io/quarantine=true".into(),
                allow_dns: false,
                origin: QuarantineOrigin::Label,
                labelled: true,
                since_unix_ms: None,
                in_model: true,
                local: false,
                enforced: false,
            });
            store.publish(Enforced {
                generation: Some(generation),
                applied: stored,
                quarantines,
            });
            store.changed().await;
        }
    });
}

fn request(namespace: &str, pod: &str) -> QuarantineRequest {
    QuarantineRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        reason: Some("exfiltration".into()),
        allow_dns: true,
    }
}

fn connect(sock: &Path) -> UnixStream {
    UnixStream::connect(sock).unwrap()
}

fn post_raw(sock: &Path, body: &str) -> (u16, String) {
    let r = client::request(
        connect(sock),
        "POST",
        crate::api::QUARANTINE_PATH,
        Some(body.as_bytes()),
    );
    match r {
        Ok(resp) => {
            let mut body = String::new();
            let status = resp.status;
            let mut resp = resp;
            resp.read_to_string(&mut body).unwrap();
            (status, body)
        }
        Err(ClientError::Status { status, message }) => (status, message),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn set_list_and_remove_answer_what_is_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(QuarantineStore::open(None));
    reconcile(Arc::clone(&store));
    let backend = Arc::new(Fake {
        quarantine: Some(Arc::clone(&store)),
        ..Fake::default()
    });
    let api = start(unix_config(dir.path()), backend);
    let sock = api.socket_path().unwrap().to_owned();
    wait_until("the first publication", || {
        store.enforced().generation.is_some()
    });

    let list = client::quarantines(connect(&sock)).unwrap();
    assert_eq!(list.quarantines.len(), 1, "only the labelled pod: {list:?}");

    let list = client::quarantine(connect(&sock), &request("shop", "web")).unwrap();
    let q = list.find("shop", "web").expect("in force once answered");
    assert!(q.enforced && q.allow_dns);
    assert_eq!(q.reason, "exfiltration");
    assert_eq!(list.enforced_generation, Some(list.generation));
    assert!(list.pending.is_empty());
    assert_eq!(
        client::quarantines(connect(&sock)).unwrap(),
        list,
        "GET answers the same"
    );

    let (_, metrics) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(
        sample(&metrics, "bulkhead_quarantined_pods{origin=\"store\"}"),
        1
    );
    assert_eq!(
        sample(&metrics, "bulkhead_quarantined_pods{origin=\"label\"}"),
        1
    );
    assert_eq!(sample(&metrics, "bulkhead_quarantined_local_pods"), 1);
    assert_eq!(sample(&metrics, "bulkhead_quarantines_pending"), 0);

    let gone = client::unquarantine(connect(&sock), "shop", "web").unwrap();
    assert!(gone.removed);
    assert!(gone.in_force.find("shop", "web").is_none());
    let again = client::unquarantine(connect(&sock), "shop", "web").unwrap();
    assert!(!again.removed, "lifting twice is fine");

    match client::unquarantine(connect(&sock), LABELLED.0, LABELLED.1) {
        Err(ClientError::Status {
            status: 409,
            message,
        }) => assert!(
            message.contains("kubectl label pod -n shop labelled bulkhead.io/quarantine-"),
            "{message}"
        ),
        other => panic!("{:?}", other.map(|a| a.removed)),
    }
    stop(api);
}

#[test]
fn bad_requests_are_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(QuarantineStore::open(None));
    let backend = Arc::new(Fake {
        quarantine: Some(Arc::clone(&store)),
        ..Fake::default()
    });
    let api = start(unix_config(dir.path()), backend);
    let sock = api.socket_path().unwrap().to_owned();
    for (body, field) in [
        ("not json", "expected"),
        (r#"{"namespace":"shop"}"#, "missing field `pod`"),
        (
            r#"{"namespace":"shop","pod":"web","colour":1}"#,
            "unknown field `colour`",
        ),
        (r#"{"namespace":"Shop","pod":"web"}"#, "namespace \"Shop\""),
        (r#"{"namespace":"shop","pod":"a/b"}"#, "pod \"a/b\""),
        (
            r#"{"namespace":"shop","pod":"web","reason":"a\nb"}"#,
            "reason",
        ),
    ] {
        let (status, message) = post_raw(&sock, body);
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(field), "{body}: {message}");
    }
    assert!(store.list().is_empty());
    stop(api);
}

#[test]
fn a_change_not_enforced_in_time_is_504_and_stays_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(QuarantineStore::open(None));
    let backend = Arc::new(Fake {
        quarantine: Some(Arc::clone(&store)),
        ..Fake::default()
    });
    let config = ApiConfig {
        quarantine_wait: Duration::from_millis(100),
        ..unix_config(dir.path())
    };
    let api = start(config, backend);
    let sock = api.socket_path().unwrap().to_owned();
    match client::quarantine(connect(&sock), &request("shop", "web")) {
        Err(ClientError::Status {
            status: 504,
            message,
        }) => {
            assert!(message.contains("next successful sync"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let list = client::quarantines(connect(&sock)).unwrap();
    assert!(list.quarantines.is_empty());
    assert_eq!(list.pending.len(), 1, "stored, pending: {list:?}");
    let (_, metrics) = get_unix(&sock, "/metrics").unwrap();
    assert_eq!(sample(&metrics, "bulkhead_quarantines_pending"), 1);
    stop(api);
}

#[test]
fn an_agent_without_a_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(unix_config(dir.path()), Arc::new(Fake::default()));
    let sock = api.socket_path().unwrap().to_owned();
    match client::quarantines(connect(&sock)) {
        Err(ClientError::Status {
            status: 404,
            message,
        }) => {
            assert!(message.contains("keeps no quarantines"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let (_, metrics) = get_unix(&sock, "/metrics").unwrap();
    assert!(!metrics.contains("bulkhead_quarantined_pods"));
    stop(api);
}

#[test]
fn quarantine_routes_are_on_the_unix_socket_only() {
    let api = start(tcp_config(false), Arc::new(Fake::default()));
    let (status, message) = status_of(get_tcp(api.tcp_addr().unwrap(), "/v1/quarantine"));
    assert_eq!(status, 404);
    assert!(message.contains("Unix socket only"), "{message}");
    stop(api);
}

#[test]
fn path_segments_are_encoded() {
    assert_eq!(client::path_segment("web-1.x"), "web-1.x");
    assert_eq!(client::path_segment("a/b c"), "a%2Fb%20c");
}
