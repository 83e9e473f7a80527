//! Taking, accepting into, writing and reading baselines.

use super::*;
use crate::edge::{EdgeStats, SideCounts};
use bulkhead_flows::record::Timestamp;

fn w(ns: &str, name: &str) -> End {
    End::Workload(WorkloadId {
        namespace: ns.into(),
        workload: format!("Deployment/{name}"),
    })
}

fn edge(src: End, dst: End, port: u16) -> EdgeKey {
    EdgeKey {
        src,
        dst,
        protocol: 6,
        port,
    }
}

/// shop: web → api:8080, api → db:5432; other: x → y:80.
pub(super) fn history() -> History {
    let mut h = History::default();
    let stats = EdgeStats {
        first_seen: Timestamp(1),
        last_seen: Timestamp(2),
        at_src: SideCounts {
            flows: 1,
            packets: 2,
            bytes: 3,
        },
        at_dst: SideCounts::default(),
        denied: None,
    };
    for k in [
        edge(w("shop", "web"), w("shop", "api"), 8080),
        edge(w("shop", "api"), w("shop", "db"), 5432),
        edge(w("other", "x"), w("other", "y"), 80),
    ] {
        h.edges.insert(k, stats.clone());
    }
    h
}

#[test]
fn a_baseline_holds_the_edges_of_its_scope_and_accepting_makes_a_version() {
    let scope = vec![Scope::parse("shop").unwrap()];
    let mut b = Baseline::take("shop", scope, &history(), 1000).unwrap();
    assert_eq!(b.version(), 1);
    assert_eq!(b.edges().len(), 2, "other's edge is out of scope");
    assert!(b.holds(&edge(w("shop", "web"), w("shop", "api"), 8080)));
    assert!(b.knows_pair(&w("shop", "api"), &w("shop", "db")));
    let new = edge(w("shop", "web"), w("shop", "db"), 5432);
    assert!(!b.holds(&new));
    assert_eq!(b.accept([new.clone(), new.clone()], "reviewed", 2000), 1);
    assert_eq!(b.version(), 2);
    assert!(b.holds(&new));
    assert_eq!(b.accept([new.clone()], "again", 3000), 0, "nothing new");
    assert_eq!(b.version(), 2);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.json");
    b.write(&path).unwrap();
    let read = Baseline::read(&path).unwrap();
    assert_eq!(read, b);
    assert!(read.holds(&new), "edges are rebuilt from the versions");
}

#[test]
fn scopes_parse_and_bad_files_say_why() {
    assert_eq!(
        Scope::parse("shop/Deployment/web").unwrap(),
        Scope::Workload(WorkloadId {
            namespace: "shop".into(),
            workload: "Deployment/web".into()
        })
    );
    for bad in ["", "shop/web", "a/b/c/d", "shop//web"] {
        assert!(Scope::parse(bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        Baseline::take("x", vec![], &history(), 0),
        Err(BaselineError::NoScope)
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.json");
    std::fs::write(
        &path,
        r#"{"schema": "other/v9", "name": "x", "scope": [], "versions": []}"#,
    )
    .unwrap();
    let err = Baseline::read(&path).unwrap_err().to_string();
    assert!(err.contains("b.json") && err.contains("other/v9"), "{err}");
}

/// A record of `src` → `dst` (`None`: an external address) on TCP `port`,
/// seen at the source; a `Pod/` workload is a bare pod.
fn live(
    src: (&str, &str),
    dst: Option<(&str, &str)>,
    port: u16,
) -> bulkhead_flows::record::FlowRecord {
    use bulkhead_flows::record::PodInfo;
    use std::sync::Arc;
    let info = |(ns, w): (&str, &str)| {
        let bare = w.strip_prefix("Pod/");
        Some(Arc::new(PodInfo {
            namespace: ns.into(),
            pod: bare.map_or_else(|| format!("{w}-1"), str::to_owned).into(),
            workload: if bare.is_some() {
                None
            } else {
                Some(format!("Deployment/{w}").into())
            },
            labels: Default::default(),
        }))
    };
    let mut r = bulkhead_testkit::flows::flow_record();
    r.src.pod = info(src);
    r.endpoint = r.src.pod.clone();
    r.dst.pod = dst.and_then(info);
    r.dst.external = dst.is_none();
    r.dst.ip = "192.0.2.7".parse().unwrap();
    r.dst.port = port;
    r
}

#[test]
fn the_live_lookup_agrees_with_the_owned_one() {
    let mut h = history();
    let bare = End::Workload(WorkloadId {
        namespace: "shop".into(),
        workload: "Pod/debug".into(),
    });
    let ext = End::External("192.0.2.7".parse().unwrap());
    for k in [
        edge(bare.clone(), w("shop", "db"), 5432),
        edge(w("shop", "web"), ext, 443),
    ] {
        h.add_edge(k, &h.edges.values().next().cloned().unwrap());
    }
    let b = Baseline::take("shop", vec![Scope::Namespace("shop".into())], &h, 0).unwrap();
    let scoped = Baseline::take(
        "web",
        vec![
            Scope::parse("shop/Deployment/web").unwrap(),
            Scope::parse("shop/Pod/debug").unwrap(),
        ],
        &h,
        0,
    )
    .unwrap();
    let records = [
        live(("shop", "web"), Some(("shop", "api")), 8080),
        live(("shop", "web"), Some(("shop", "api")), 8081),
        live(("shop", "api"), Some(("shop", "web")), 8080),
        live(("shop", "Pod/debug"), Some(("shop", "db")), 5432),
        live(("shop", "Pod/debug"), Some(("shop", "db")), 22),
        live(("shop", "Pod/other"), Some(("shop", "db")), 5432),
        live(("shop", "web"), None, 443),
        live(("shop", "web"), None, 444),
        live(("other", "x"), Some(("other", "y")), 80),
        live(("other", "x"), Some(("shop", "db")), 5432),
    ];
    let mut held = 0;
    for r in &records {
        let (owned, borrowed) = (
            crate::edge::key_of(r).unwrap(),
            crate::edge::key_ref(r).unwrap(),
        );
        assert_eq!(borrowed.to_key(), owned);
        for b in [&b, &scoped] {
            assert_eq!(
                b.holds_ref(&borrowed),
                b.holds(&owned),
                "{owned:?} in {}",
                b.name
            );
            assert_eq!(
                b.watches_ref(&borrowed),
                b.watches_edge(&owned),
                "{owned:?} in {}",
                b.name
            );
        }
        held += usize::from(b.holds(&owned));
    }
    assert_eq!(held, 3, "the cases above cover both answers");
}
