//! The lab's API mode without root: the agent's source arguments and their
//! record in the state file, when the agent's state counts as in sync,
//! which lab pods the API leaves without an endpoint, how the API's pods
//! are compared with the lab's, and asking an API server for its
//! resourceVersion (a canned HTTP answer; an unreachable server).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{current_revision, endpoint_warning, judge, missing_endpoints};
use crate::LabError;
use crate::agent::{Sync, its_word};
use crate::plan::{LabSpec, plan};
use crate::state::{AgentSource, LabAgent, LabState};
use crate::verify::address_mismatch;
use bulkhead_agent::{AgentState, EndpointState};
use bulkhead_policy::model::{Labels, Model, Origin, Pod, Workload};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn api() -> AgentSource {
    AgentSource::Kubernetes {
        kubeconfig: PathBuf::from("/etc/kube/config"),
    }
}

/// A lab of pods x/a (10.244.0.2) and x/b (10.244.0.3) whose agent reads `source`.
fn lab(source: AgentSource) -> LabState {
    let pods = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, n)| Pod {
            namespace: "x".into(),
            name: (*n).into(),
            source: Workload {
                kind: "Pod".into(),
                name: (*n).into(),
            },
            owner: None,
            labels: Labels::new(),
            ports: Vec::new(),
            ips: vec![ip(&format!("10.244.0.{}", i + 2))],
            claim: Default::default(),
            node: None,
            off_network: None,
            origin: Origin::default(),
        })
        .collect();
    let model = Model {
        pods,
        ..Model::default()
    };
    let spec = LabSpec {
        name: "t".into(),
        manifests: PathBuf::from("/m"),
        pod_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        agent: true,
        source,
        ..LabSpec::default()
    };
    plan(&model, &spec).unwrap()
}

fn state(source_revision: &str, enforced: Option<&str>, error: Option<&str>) -> AgentState {
    AgentState {
        pid: 7,
        source_revision: source_revision.into(),
        enforced_revision: enforced.map(Into::into),
        error: error.map(Into::into),
        ..AgentState::default()
    }
}

#[test]
fn the_agent_gets_its_source_arguments_and_the_lab_records_them() {
    let watched = Path::new("/run/bulkhead/lab/t/manifests");
    assert_eq!(
        AgentSource::Manifests.agent_args(watched),
        ["--manifests", "/run/bulkhead/lab/t/manifests"].map(std::ffi::OsString::from)
    );
    assert_eq!(
        api().agent_args(watched),
        ["--kubernetes", "--kubeconfig", "/etc/kube/config"].map(std::ffi::OsString::from)
    );
    let s = lab(api());
    let agent = s.agent.as_ref().unwrap();
    assert_eq!(agent.source, api());
    let json = serde_json::to_value(agent).unwrap();
    assert_eq!(
        json["source"],
        serde_json::json!({"kind": "kubernetes", "kubeconfig": "/etc/kube/config"})
    );
    assert_eq!(serde_json::from_value::<LabAgent>(json).unwrap(), *agent);
    // A lab recorded before the API source: the watched manifests.
    let mut old = serde_json::to_value(agent).unwrap();
    old.as_object_mut().unwrap().remove("source");
    let old: LabAgent = serde_json::from_value(old).unwrap();
    assert_eq!(old.source, AgentSource::Manifests);
    assert_eq!(old.source.kubeconfig(), None);
    assert!(api().describe(watched).contains("/etc/kube/config"));
    assert!(
        AgentSource::Manifests
            .describe(watched)
            .contains("/run/bulkhead/lab/t/manifests")
    );
}

#[test]
fn the_agent_is_in_sync_once_it_enforces_the_api_s_revision_without_error() {
    let enforced = |s: &AgentState, rv| matches!(judge(s, rv), Sync::Enforced(_));
    let ok = state("12", Some("12"), None);
    assert!(enforced(&ok, 12));
    assert!(
        enforced(&ok, 9),
        "a later revision includes an earlier change"
    );
    assert!(matches!(judge(&ok, 13), Sync::Pending { error: None }));
    // Read as far as asked, but the sync failed: rejected, the old one stays.
    let failed = state("13", Some("12"), Some("map full"));
    match judge(&failed, 13) {
        Sync::Rejected {
            error,
            enforced_revision,
        } => {
            assert_eq!(error, "map full");
            assert_eq!(enforced_revision.as_deref(), Some("12"));
        }
        other => panic!("{other:?}"),
    }
    // Not read that far yet: an error of before is no verdict on it.
    assert!(matches!(
        judge(&state("12", Some("11"), Some("old")), 13),
        Sync::Pending { error: Some(_) }
    ));
    // Enforced, but with an error (hooks failed to attach): not done.
    assert!(matches!(
        judge(&state("13", Some("13"), Some("attach")), 13),
        Sync::Pending { .. }
    ));
    // A content hash (the manifest source) is no resourceVersion.
    assert!(matches!(
        judge(&state("0a1b2c", Some("0a1b2c"), None), 1),
        Sync::Pending { .. }
    ));
}

#[test]
fn only_the_word_of_the_agent_started_last_counts() {
    let pins = tempfile::tempdir().unwrap();
    let mut agent = lab(api()).agent.unwrap();
    agent.pin_dir = pins.path().to_owned();
    let written_by = |pid| AgentState {
        pid,
        ..AgentState::default()
    };
    agent.pid = None;
    assert!(its_word(&written_by(5), &agent));
    // No such agent runs (this test is not one): its own state, or one
    // left by an agent that stopped.
    agent.pid = Some(std::process::id());
    assert!(its_word(&written_by(std::process::id()), &agent));
    assert!(its_word(&written_by(0), &agent));
    assert!(!its_word(&written_by(5), &agent), "an agent of before");
    // While the agent started last runs, a stopped agent's state is stale.
    let mut running = std::process::Command::new("sh")
        .args(["-c", "sleep 60; true", "agent", "--bpffs"])
        .arg(pins.path())
        .spawn()
        .unwrap();
    agent.pid = Some(running.id());
    // Until the child has exec'd, its command line is this test's.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while crate::agent::running(&agent).is_none() {
        assert!(std::time::Instant::now() < deadline, "sh never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!its_word(&written_by(0), &agent));
    assert!(its_word(&written_by(running.id()), &agent));
    running.kill().unwrap();
    running.wait().unwrap();
}

#[test]
fn lab_pods_without_an_endpoint_are_named_in_api_mode_only() {
    let s = lab(api());
    let mut agent = state("5", Some("5"), None);
    agent.endpoints = vec![EndpointState {
        pod: "x/a".into(),
        ifindex: 3,
        ifname: "bh0".into(),
    }];
    let one = |a: &bulkhead_agent::AgentState| vec![(0, a.clone())];
    assert_eq!(missing_endpoints(&s, &one(&agent)), ["x/b"]);
    let w = endpoint_warning(&s, &one(&agent)).unwrap();
    assert!(w.contains("x/b") && !w.contains("x/a"), "{w}");
    assert_eq!(
        endpoint_warning(&lab(AgentSource::Manifests), &one(&agent)),
        None
    );
    agent.endpoints.push(EndpointState {
        pod: "x/b".into(),
        ifindex: 4,
        ifname: "bh1".into(),
    });
    assert_eq!(endpoint_warning(&s, &one(&agent)), None);
}

#[test]
fn the_api_may_hold_more_pods_but_must_give_the_lab_s_pods_their_addresses() {
    let p = |k: &str, ips: &[&str]| (k.to_owned(), ips.iter().map(|i| ip(i)).collect());
    let lab = vec![
        p("x/a", &["10.244.0.2", "fd00:10:244::2"]),
        p("x/b", &["10.244.0.3"]),
    ];
    let mut api = vec![
        p("x/a", &["fd00:10:244::2", "10.244.0.2"]),
        p("x/b", &["10.244.0.3"]),
        p("y/elsewhere", &["10.244.1.9"]),
        p("y/pending", &[]),
    ];
    assert_eq!(address_mismatch(&api, &lab, false), None);
    assert!(
        address_mismatch(&api, &lab, true).is_some(),
        "manifests: exactly"
    );
    api[1] = p("x/b", &["10.244.0.4"]);
    let m = address_mismatch(&api, &lab, false).unwrap();
    assert!(m.contains("x/b"), "{m}");
    api[1] = p("x/b", &["10.244.0.3"]);
    api.push(p("y/dup", &["10.244.0.3"]));
    let m = address_mismatch(&api, &lab, false).unwrap();
    assert!(m.contains("y/dup") && m.contains("x/b"), "{m}");
    api.pop();
    api.remove(0);
    let m = address_mismatch(&api, &lab, false).unwrap();
    assert!(m.contains("no pod x/a"), "{m}");
}

fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
             current-context: x\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_api_s_resource_version_is_that_of_a_one_item_namespace_list() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request = String::new();
        reader.read_line(&mut request).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let body = r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"42"},"items":[]}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request
    });
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{addr}"));
    assert_eq!(
        current_revision(None, &config, Duration::from_secs(60)).unwrap(),
        42
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /api/v1/namespaces?") && request.contains("limit=1"),
        "{request}"
    );
}

#[test]
fn an_api_that_does_not_answer_or_a_missing_kubeconfig_is_an_error() {
    // A port nothing listens on (bound, then closed).
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{addr}"));
    match current_revision(None, &config, Duration::from_millis(500)) {
        Err(LabError::ApiUnreachable { last_error, .. }) => assert!(last_error.is_some()),
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("missing");
    assert!(matches!(
        current_revision(None, &missing, Duration::from_secs(1)),
        Err(LabError::Kube(_))
    ));
}
