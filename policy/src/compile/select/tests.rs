use super::*;
use crate::model::Labels;
use crate::model::addressing::AddressPlan;
use crate::model::{Namespace, Origin, Pod, Workload};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn model() -> Model {
    let pod = |ns: &str, name: &str, l: &[(&str, &str)]| Pod {
        namespace: ns.into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner: None,
        labels: labels(l),
        ports: vec![],
        ips: vec![],
        claim: Default::default(),
        node: None,
        off_network: None,
        origin: Origin::default(),
    };
    let mut m = Model {
        pods: vec![
            pod("x", "a", &[("app", "web"), ("tier", "front")]),
            pod("x", "b", &[("app", "db")]),
            pod("y", "a", &[("app", "web")]),
            pod("y", "c", &[]),
        ],
        ..Default::default()
    };
    m.namespaces.insert(
        "y".into(),
        Namespace {
            name: "y".into(),
            labels: labels(&[("team", "blue")]),
            origin: None,
            mode: None,
        },
    );
    m.normalize();
    AddressPlan::default().assign(&mut m.pods).unwrap();
    m
}

fn req_in(k: &str, vs: &[&str]) -> Requirement {
    Requirement::In(k.into(), vs.iter().map(|v| v.to_string()).collect())
}

#[test]
fn bitset_selection_agrees_with_direct_matching() {
    let m = model();
    let mut s = Selection::new(&m);
    let selectors = vec![
        Selector::everything(),
        Selector::new(vec![req_in("app", &["web"])]),
        Selector::new(vec![req_in("app", &["web", "db"])]),
        Selector::new(vec![Requirement::NotIn("app".into(), vec!["web".into()])]),
        Selector::new(vec![Requirement::Exists("tier".into())]),
        Selector::new(vec![Requirement::DoesNotExist("app".into())]),
        Selector::new(vec![
            req_in("app", &["web"]),
            Requirement::DoesNotExist("tier".into()),
        ]),
        Selector::new(vec![req_in("missing", &["x"])]),
    ];
    for sel in &selectors {
        let got: Vec<usize> = s.pods(sel).iter().collect();
        let want: Vec<usize> = (0..m.pods.len())
            .filter(|&i| sel.matches(&m.pods[i].labels))
            .collect();
        assert_eq!(got, want, "{sel}");
    }
    // NotIn also selects pods without the key.
    let not_web = s.pods(&selectors[3]);
    assert!(not_web.contains(m.pod("y/c").unwrap().0));
}

#[test]
fn peers_scope_namespaces() {
    let m = model();
    let mut s = Selection::new(&m);
    let web = Selector::new(vec![req_in("app", &["web"])]);
    let same: Vec<usize> = s
        .peer(&NamespaceScope::Same("x".into()), &web)
        .iter()
        .collect();
    assert_eq!(same, vec![m.pod("x/a").unwrap().0]);
    let blue = Selector::new(vec![req_in("team", &["blue"])]);
    let sel: Vec<usize> = s
        .peer(&NamespaceScope::Selected(blue), &web)
        .iter()
        .collect();
    assert_eq!(sel, vec![m.pod("y/a").unwrap().0]);
    let by_name = Selector::new(vec![req_in("kubernetes.io/metadata.name", &["x"])]);
    let all_x: Vec<usize> = s
        .peer(&NamespaceScope::Selected(by_name), &Selector::everything())
        .iter()
        .collect();
    assert_eq!(all_x.len(), 2);
}
