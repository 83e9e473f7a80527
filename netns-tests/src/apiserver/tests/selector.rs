use serde_json::json;

use super::super::error::ApiServerError;
use super::super::registry::RESOURCES;
use super::super::selector::{FieldSelector, LabelSelector, Selector};
use super::{pod, pods};

fn labels(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().expect("a map").clone()
}

fn selects(selector: &str, l: serde_json::Value) -> bool {
    LabelSelector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?}: {e}"))
        .matches(Some(&labels(l)))
}

#[test]
fn equality_operators() {
    let web = json!({"app": "web", "tier": "front"});
    assert!(selects("app=web", web.clone()));
    assert!(selects("app==web", web.clone()));
    assert!(!selects("app=db", web.clone()));
    assert!(selects("app!=db", web.clone()));
    assert!(!selects("app!=web", web.clone()));
    // `!=` also selects objects without the label.
    assert!(selects("zone!=a", web.clone()));
    assert!(selects(" app = web , tier == front ", web.clone()));
    assert!(!selects("app=web,tier=back", web));
}

#[test]
fn set_operators() {
    let web = json!({"app": "web", "tier": "front"});
    assert!(selects("app in (web, db)", web.clone()));
    assert!(!selects("app in (db)", web.clone()));
    assert!(selects("app notin (db,cache)", web.clone()));
    assert!(!selects("app notin (web)", web.clone()));
    assert!(
        selects("zone notin (a)", web.clone()),
        "notin selects a missing label"
    );
    assert!(!selects("zone in (a)", web.clone()));
    assert!(selects("app", web.clone()));
    assert!(!selects("zone", web.clone()));
    assert!(selects("!zone", web.clone()));
    assert!(!selects("!app", web.clone()));
    assert!(selects("app in (web),tier,!zone,tier notin (back)", web));
}

#[test]
fn prefixed_keys_and_empty_values() {
    let l = json!({"kubernetes.io/metadata.name": "shop", "empty": ""});
    assert!(selects("kubernetes.io/metadata.name=shop", l.clone()));
    assert!(selects("empty=", l.clone()));
    assert!(selects("empty", l));
}

#[test]
fn empty_selector_selects_everything() {
    let s = LabelSelector::parse("").expect("empty parses");
    assert!(s.is_empty());
    assert!(s.matches(None));
    assert!(!LabelSelector::parse("app").expect("parses").matches(None));
    assert!(LabelSelector::parse("!app").expect("parses").matches(None));
}

#[test]
fn malformed_label_selectors_are_bad_requests() {
    for bad in [
        "app in ()",
        "app in (a",
        "app in a",
        "=web",
        "app web",
        "app=web,",
        ",app",
        "-app=web",
        "app=we b",
        "app=-web",
        "a/b/c=d",
        "app=web)",
        "app<3",
    ] {
        match LabelSelector::parse(bad) {
            Err(ApiServerError::BadRequest { .. }) => {}
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn field_selectors_of_pods() {
    let rt = &RESOURCES[pods()];
    let p = pod("shop", "web-1", json!({}));
    let sel = |s: &str| FieldSelector::parse(s, rt).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(sel("metadata.name=web-1").matches(&p));
    assert!(sel("metadata.name==web-1,metadata.namespace=shop").matches(&p));
    assert!(!sel("metadata.namespace!=shop").matches(&p));
    assert!(sel("spec.nodeName=node-a,status.phase=Running").matches(&p));
    assert!(sel("status.phase!=Pending").matches(&p));
    // A missing field reads as the empty string.
    assert!(sel("spec.nodeName=").matches(&json!({"metadata": {"name": "x"}})));
    assert!(sel("").is_empty());
}

#[test]
fn field_selector_values_may_escape() {
    let rt = &RESOURCES[pods()];
    let p = json!({"metadata": {"name": "a,b=c"}});
    let s = FieldSelector::parse(r"metadata.name=a\,b\=c", rt).expect("parses");
    assert!(s.matches(&p));
}

#[test]
fn unsupported_field_labels_are_bad_requests() {
    let netpol = RESOURCES
        .iter()
        .find(|r| r.kind == "NetworkPolicy")
        .expect("served");
    match FieldSelector::parse("spec.nodeName=a", netpol) {
        Err(ApiServerError::BadRequest { message }) => {
            assert!(message.contains("field label not supported"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(FieldSelector::parse("metadata.name", &RESOURCES[pods()]).is_err());
}

#[test]
fn selector_combines_labels_and_fields() {
    let rt = &RESOURCES[pods()];
    let p = pod("shop", "web-1", json!({"app": "web"}));
    let s = Selector::parse(Some("app=web"), Some("metadata.name=web-1"), rt).expect("parses");
    assert!(s.matches(&p));
    let s = Selector::parse(Some("app=web"), Some("metadata.name=web-2"), rt).expect("parses");
    assert!(!s.matches(&p));
    assert!(Selector::parse(None, None, rt).expect("parses").is_empty());
}
