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
    };
    for k in [
        edge(w("shop", "web"), w("shop", "api"), 8080),
        edge(w("shop", "api"), w("shop", "db"), 5432),
        edge(w("other", "x"), w("other", "y"), 80),
    ] {
        h.edges.insert(k, stats);
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
