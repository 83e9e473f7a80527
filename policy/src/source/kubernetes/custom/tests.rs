//! CRD tracking: which CRDs serve a kind, the 404 that means "not
//! served", and the start/stop decisions on CRD events.

use kube::core::Status;
use serde_json::json;

use super::*;

fn crd(version: &str, served: bool, established: &str) -> Value {
    json!({
        "metadata": {"name": "adminnetworkpolicies.policy.networking.k8s.io"},
        "spec": {"versions": [{"name": version, "served": served}]},
        "status": {"conditions": [{"type": "Established", "status": established}]},
    })
}

#[test]
fn a_crd_serves_a_kind_when_its_version_is_served_and_it_is_established() {
    let kind = Kind::AdminNetworkPolicy;
    assert!(serves(&crd("v1alpha1", true, "True"), kind));
    assert!(!serves(&crd("v1alpha1", false, "True"), kind));
    assert!(!serves(&crd("v1alpha1", true, "False"), kind));
    assert!(!serves(&crd("v1alpha2", true, "True"), kind));
    assert!(serves(
        &crd("v1alpha2", true, "True"),
        Kind::ClusterNetworkPolicy
    ));
    assert_eq!(
        crd_name(Kind::BaselineAdminNetworkPolicy).as_deref(),
        Some("baselineadminnetworkpolicies.policy.networking.k8s.io")
    );
    assert_eq!(crd_name(Kind::Pod), None);
}

#[test]
fn only_the_apis_404_means_not_served() {
    let api = |code| kube::Error::Api(Status::failure("x", "NotFound").with_code(code).boxed());
    assert!(not_found(&watcher::Error::InitialListFailed(api(404))));
    assert!(not_found(&watcher::Error::WatchStartFailed(api(404))));
    assert!(!not_found(&watcher::Error::InitialListFailed(api(403))));
    assert!(!not_found(&watcher::Error::InitialListFailed(api(500))));
    assert!(!not_found(&watcher::Error::NoResourceVersion));
}

#[tokio::test]
async fn crd_events_start_and_stop_the_kinds_watch() {
    // A client that is never used to connect: the started stream is only
    // built, not polled.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let kind = Kind::AdminNetworkPolicy;
    let mut custom = Custom::default();
    // Listed without the CRD: absent.
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::Init),
        Change::None
    ));
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::InitDone),
        Change::Absent
    ));
    // Created, not yet established: still absent; established: started once.
    let pending = crd("v1alpha1", true, "False");
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::Apply(pending)),
        Change::Absent
    ));
    let ready = crd("v1alpha1", true, "True");
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::Apply(ready.clone())),
        Change::Start(_)
    ));
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::Apply(ready.clone())),
        Change::None
    ));
    // A relist that still has it changes nothing; deleted: stopped.
    custom.apply(&client, kind, watcher::Event::Init);
    custom.apply(&client, kind, watcher::Event::InitApply(ready.clone()));
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::InitDone),
        Change::None
    ));
    assert!(matches!(
        custom.apply(&client, kind, watcher::Event::Delete(ready)),
        Change::Absent
    ));
    assert!(custom.running.is_empty());
}
