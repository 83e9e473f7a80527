use std::collections::BTreeSet;
use std::time::Duration;

use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

use super::*;

fn req(namespace: &str, pod: &str, reason: &str) -> QuarantineRequest {
    QuarantineRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        reason: Some(reason.into()),
        allow_dns: false,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn quarantines_persist_and_a_new_store_adopts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent").join("x.quarantine.json");
    let s = QuarantineStore::open(Some(path.clone()));
    let g1 = s.set(req("shop", "web", "exfiltration")).unwrap();
    let since = s.list()[0].since_unix_ms;
    assert!(since > 0);
    let g2 = s
        .set(QuarantineRequest {
            allow_dns: true,
            ..req("shop", "web", "still looking")
        })
        .unwrap();
    assert!(g2 > g1);
    let g3 = s.set(req("shop", "db", "")).unwrap();
    assert_eq!(s.remove("shop", "db").unwrap(), (true, g3 + 1));
    assert_eq!(
        s.remove("shop", "db").unwrap(),
        (false, g3 + 1),
        "removing twice changes nothing"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "owner-only");

    let again = QuarantineStore::open(Some(path));
    let list = again.list();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].quarantine,
        Quarantine {
            namespace: "shop".into(),
            pod: "web".into(),
            reason: "still looking".into(),
            allow_dns: true,
        }
    );
    assert_eq!(list[0].since_unix_ms, since, "replacing keeps `since`");
    assert_eq!(again.snapshot().0, g3 + 1, "the generation is persisted");
    assert!(
        again.set(req("shop", "x", "r")).unwrap() > g3 + 1,
        "generations keep growing"
    );
}

#[test]
fn a_missing_reason_is_named_and_whitespace_trimmed() {
    let s = QuarantineStore::open(None);
    s.set(QuarantineRequest {
        reason: None,
        ..req("a", "b", "")
    })
    .unwrap();
    s.set(req("a", "c", "  lateral movement \t")).unwrap();
    let reasons: Vec<String> = s.list().into_iter().map(|q| q.quarantine.reason).collect();
    assert_eq!(reasons, [NO_REASON, "lateral movement"]);
}

#[test]
fn bad_requests_are_refused_naming_the_field_and_change_nothing() {
    let s = QuarantineStore::open(None);
    let long = "r".repeat(MAX_REASON + 1);
    let cases = [
        (req("", "web", "r"), "namespace"),
        (req("Shop", "web", "r"), "namespace"),
        (req("sh.op", "web", "r"), "namespace"),
        (req(&"n".repeat(64), "web", "r"), "namespace"),
        (req("shop", "", "r"), "pod"),
        (req("shop", "web/x", "r"), "pod"),
        (req("shop", "-web", "r"), "pod"),
        (req("shop", "web-", "r"), "pod"),
        (req("shop", &"p".repeat(254), "r"), "pod"),
        (req("shop", "web", &long), "reason"),
        (req("shop", "web", "two\nlines"), "reason"),
    ];
    for (bad, want) in cases {
        match s.set(bad.clone()) {
            Err(QuarantineError::Invalid { field, .. }) => assert_eq!(field, want, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(s.list().is_empty());
    assert_eq!(s.snapshot().0, 0, "no generation was used");
    // The longest accepted ones.
    s.set(req(
        &"n".repeat(63),
        &"p.q".repeat(84),
        &"r".repeat(MAX_REASON),
    ))
    .unwrap();
}

#[test]
fn a_change_that_cannot_be_written_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    // The store's directory is a file: nothing can be written.
    let blocker = dir.path().join("agent");
    std::fs::write(&blocker, b"").unwrap();
    let s = QuarantineStore::open(Some(blocker.join("x.quarantine.json")));
    assert!(matches!(
        s.set(req("shop", "web", "r")),
        Err(QuarantineError::Persist { .. })
    ));
    assert!(s.list().is_empty());
    assert_eq!(s.snapshot().0, 0);
}

#[test]
fn a_change_wakes_the_reconciler_even_when_made_before_it_listens() {
    let rt = runtime();
    let s = QuarantineStore::open(None);
    s.set(req("shop", "web", "r")).unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), s.changed())
            .await
            .expect("woken");
        s.remove("shop", "web").unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.changed())
            .await
            .expect("woken");
        // A removal of nothing wakes nobody.
        s.remove("shop", "web").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.changed())
                .await
                .is_err()
        );
    });
}

fn state(pod: &str, origin: QuarantineOrigin) -> QuarantineState {
    QuarantineState {
        namespace: "shop".into(),
        pod: pod.into(),
        reason: "r".into(),
        allow_dns: false,
        origin,
        labelled: false,
        since_unix_ms: None,
        in_model: true,
        local: true,
        enforced: true,
    }
}

#[test]
fn a_wait_ends_on_the_publication_of_its_generation() {
    let rt = runtime();
    let s = Arc::new(QuarantineStore::open(None));
    rt.block_on(async {
        let g = s.set(req("shop", "web", "r")).unwrap();
        let (reached, list) = s.wait(g, Instant::now() + Duration::from_millis(50)).await;
        assert!(!reached, "nothing published yet");
        assert_eq!(list.enforced_generation, None);
        assert_eq!(list.pending.len(), 1, "stored, not in force");

        let waiter = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.wait(g, Instant::now() + Duration::from_secs(60)).await }
        });
        // An older generation is not its answer.
        s.publish(Enforced {
            generation: Some(g - 1),
            applied: vec![],
            quarantines: vec![],
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.publish(Enforced {
            generation: Some(g),
            applied: s.snapshot().1,
            quarantines: vec![state("web", QuarantineOrigin::Store)],
        });
        let (reached, list) = waiter.await.unwrap();
        assert!(reached);
        assert_eq!(list.enforced_generation, Some(g));
        assert!(list.find("shop", "web").is_some_and(|q| q.enforced));
        assert!(list.pending.is_empty());
    });
}

/// Pods `shop/web` (labelled allow-dns), `shop/db` (labelled true) and
/// `shop/cache`, through the manifest source (which applies the labels).
fn model() -> Model {
    let yaml = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, \
                labels: {bulkhead.io/quarantine: allow-dns}}\nspec: {}\nstatus: {podIP: 10.0.0.1}\n\
                ---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, \
                labels: {bulkhead.io/quarantine: 'true'}}\nspec: {}\nstatus: {podIP: 10.0.0.2}\n\
                ---\napiVersion: v1\nkind: Pod\nmetadata: {name: cache, namespace: shop}\n\
                spec: {}\nstatus: {podIP: 10.0.0.3}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), yaml).unwrap();
    load_dir(dir.path(), &AddressPlan::default()).unwrap()
}

#[test]
fn states_merge_the_store_and_the_labels_as_the_model_does() {
    let mut model = model();
    assert_eq!(model.labelled_quarantines().len(), 2);
    let stored = vec![
        StoredQuarantine {
            quarantine: Quarantine {
                namespace: "shop".into(),
                pod: "web".into(),
                reason: "exfiltration".into(),
                allow_dns: false,
            },
            since_unix_ms: 42,
        },
        StoredQuarantine {
            quarantine: Quarantine {
                namespace: "shop".into(),
                pod: "gone".into(),
                reason: "r".into(),
                allow_dns: false,
            },
            since_unix_ms: 7,
        },
    ];
    let quarantines: Vec<Quarantine> = stored.iter().map(|s| s.quarantine.clone()).collect();
    model.apply_quarantines(&quarantines);
    let local = BTreeSet::from(["shop/web".to_owned()]);
    let states = wire::states(&model, &stored, &local, true);
    let summary: Vec<_> = states
        .iter()
        .map(|q| {
            (
                q.pod.as_str(),
                q.origin,
                q.labelled,
                q.allow_dns,
                q.since_unix_ms,
                q.in_model,
                q.enforced,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "db",
                QuarantineOrigin::Label,
                true,
                false,
                None,
                true,
                false
            ),
            (
                "gone",
                QuarantineOrigin::Store,
                false,
                false,
                Some(7),
                false,
                false
            ),
            (
                "web",
                QuarantineOrigin::Store,
                true,
                true,
                Some(42),
                true,
                true
            ),
        ]
    );
    assert_eq!(states[2].reason, "exfiltration", "the stored reason wins");
    assert!(
        wire::states(&model, &stored, &local, false)
            .iter()
            .all(|q| !q.enforced),
        "nothing is enforced while the hooks are not"
    );
}
