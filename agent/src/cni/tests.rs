use std::time::Duration;

use super::*;

fn reg(id: &str, pod: &str) -> Registration {
    Registration {
        container_id: id.into(),
        pod_namespace: "shop".into(),
        pod_name: pod.into(),
        ips: vec!["10.244.0.5".parse().unwrap()],
        mac: Some("0a:58:0a:f4:00:05".into()),
        host_interfaces: vec!["veth1".into()],
        netns: "/run/netns/x".into(),
        ifname: "eth0".into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn registrations_persist_and_a_new_registry_adopts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent").join("x.cni.json");
    let r = Registry::open(Some(path.clone()));
    let g0 = r.register(reg("c1", "web")).unwrap();
    let g1 = r.register(reg("c2", "db")).unwrap();
    assert!(g1 > g0);
    assert!(r.forget("c2").unwrap());
    assert!(!r.forget("c2").unwrap(), "forgetting twice is fine");
    let again = Registry::open(Some(path));
    let ids: Vec<String> = again
        .snapshot()
        .iter()
        .map(|s| s.registration.container_id.clone())
        .collect();
    assert_eq!(ids, ["c1"]);
    assert!(
        again.register(reg("c3", "x")).unwrap() > g1,
        "generations keep growing"
    );
}

#[test]
fn bad_registrations_are_refused_and_change_nothing() {
    let r = Registry::open(None);
    for bad in [
        Registration {
            container_id: String::new(),
            ..reg("c", "p")
        },
        Registration {
            container_id: "../x".into(),
            ..reg("c", "p")
        },
        Registration {
            pod_name: String::new(),
            ..reg("c", "p")
        },
        Registration {
            ips: vec![],
            ..reg("c", "p")
        },
        Registration {
            host_interfaces: vec![],
            ..reg("c", "p")
        },
        Registration {
            mac: Some("nope".into()),
            ..reg("c", "p")
        },
    ] {
        assert!(matches!(r.register(bad), Err(CniError::Invalid { .. })));
    }
    assert!(r.snapshot().is_empty());
}

#[test]
fn a_wait_ends_on_the_publication_that_enforces_its_generation() {
    let rt = runtime();
    let r = Arc::new(Registry::open(None));
    rt.block_on(async {
        let old = r.register(reg("c1", "web")).unwrap();
        r.publish(BTreeMap::from([(
            "c1".to_owned(),
            (
                old,
                Binding::Enforced {
                    ifname: "veth1".into(),
                    ifindex: 7,
                },
            ),
        )]));
        // A new ADD of the same container: the older publication is not its answer.
        let g = r.register(reg("c1", "web")).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let s = r.wait("c1", g, deadline).await.unwrap();
        assert!(!s.enforced);
        assert_eq!(
            s.waiting_for.as_deref(),
            Some("the agent has not reconciled it yet")
        );
        let (r2, waiter) = (
            Arc::clone(&r),
            tokio::spawn({
                let r = Arc::clone(&r);
                async move {
                    r.wait("c1", g, Instant::now() + Duration::from_secs(60))
                        .await
                }
            }),
        );
        r2.publish(BTreeMap::from([(
            "c1".to_owned(),
            (g, Binding::Waiting("no pod".into())),
        )]));
        tokio::task::yield_now().await;
        r2.publish(BTreeMap::from([(
            "c1".to_owned(),
            (
                g,
                Binding::Enforced {
                    ifname: "veth1".into(),
                    ifindex: 9,
                },
            ),
        )]));
        let s = waiter.await.unwrap().unwrap();
        assert!(s.enforced);
        assert_eq!(
            (s.host_interface.as_deref(), s.ifindex),
            (Some("veth1"), Some(9))
        );
        assert_eq!(r.status("c1").unwrap().pod, "shop/web");
        assert!(r.status("nope").is_none());
    });
}

#[test]
fn a_change_wakes_the_reconciler_even_when_made_before_it_listens() {
    let rt = runtime();
    let r = Registry::open(None);
    r.register(reg("c1", "web")).unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), r.changed())
            .await
            .expect("woken");
        assert_eq!(r.retain(&["c1".into()]).unwrap(), Vec::<String>::new());
        assert_eq!(r.retain(&[]).unwrap(), ["c1"]);
        tokio::time::timeout(Duration::from_secs(5), r.changed())
            .await
            .expect("woken");
    });
}
