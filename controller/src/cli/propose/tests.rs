use std::sync::Arc;

use clap::Parser;

use super::*;
use bulkhead_agent::api::{
    Api, ApiBackend, ApiConfig, ApiHandle, FlowStream, Health, HealthStatus, HistoryError,
};
use bulkhead_agent::flows::HistorySource;
use bulkhead_learn::{HistoryStore, StoreConfig};
use bulkhead_testkit::learn as test_support;

/// An agent's API backend with only a history, served as the agent does
/// (`.1`: with windows; without, as an agent of an earlier version that
/// ignores the query).
struct Agent(HistorySource, bool);

impl ApiBackend for Agent {
    fn metrics(&self) -> String {
        String::new()
    }
    fn health(&self) -> Health {
        Health {
            status: HealthStatus::Ok,
            detail: serde_json::Value::Null,
        }
    }
    fn recent_flows(&self, _: &str, _: usize) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    fn follow(&self, _: &str, _: usize) -> Result<Box<dyn FlowStream>, String> {
        Err("no flows here".to_owned())
    }
    fn accounting(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn history(&self, window: Window) -> Result<String, HistoryError> {
        self.0.json(if self.1 { window } else { Window::ALL })
    }
}

pub(super) fn serve(dir: &Path, source: HistorySource) -> ApiHandle {
    serve_agent(dir, source, true)
}

/// [`serve`], with windows or as an agent of an earlier version.
pub(super) fn serve_agent(dir: &Path, source: HistorySource, windows: bool) -> ApiHandle {
    let config = ApiConfig {
        socket: Some(dir.join("run/agent.sock")),
        tcp: None,
        ..ApiConfig::default()
    };
    let runtime = bulkhead_testkit::runtime().handle();
    Api::start(config, Arc::new(Agent(source, windows)), runtime).unwrap()
}

pub(super) fn args(
    history_db: Option<&Path>,
    socket: Option<&Path>,
    output: ProposeOutput,
    mode: Option<Mode>,
) -> ProposeArgs {
    ProposeArgs {
        manifests: ManifestArgs {
            manifests: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/demo"),
            pod_cidr: Vec::new(),
            assign_pod_ips: false,
            service_cidr: Vec::new(),
        },
        flows: Vec::new(),
        history_db: history_db.into_iter().map(Path::to_owned).collect(),
        socket: socket.into_iter().map(Path::to_owned).collect(),
        lab: None,
        output_dir: None,
        output,
        mode,
        include_admin_accepted: false,
        rare_below: 3,
        recent_share: 10,
        min_flows: 1,
        include_denied: false,
        window: WindowArgs::default(),
        infra: InfraArgs::default(),
        scan_targets: 10,
        keep_scans: false,
    }
}

/// What `propose` prints for `args`, in every output form.
fn outputs(db: Option<&Path>, socket: Option<&Path>) -> Vec<(Vec<u8>, String)> {
    let (history, _) = read_history(&args(db, socket, ProposeOutput::Yaml, None)).unwrap();
    [
        (ProposeOutput::Yaml, None),
        (ProposeOutput::Json, None),
        (ProposeOutput::Yaml, Some(Mode::Audit)),
    ]
    .into_iter()
    .map(|(output, mode)| {
        let args = args(db, socket, output, mode);
        let model = args.manifests.load().unwrap();
        let proposal = learn::propose(&history, &model);
        let proof = learn::prove(&history, &model, &proposal);
        assert!(proof.complete());
        let r = rendered(&args, &proposal, &proof);
        (r.stdout, r.stderr)
    })
    .collect()
}

#[test]
fn socket_and_history_db_propose_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.redb");
    {
        let store = HistoryStore::open(&db, StoreConfig::default()).unwrap();
        for b in test_support::batches() {
            store.merge(&b).unwrap();
        }
    }
    // The file while no agent holds it, then the agent's API over it.
    let from_file = outputs(Some(&db), None);
    let store = HistoryStore::open(&db, StoreConfig::default()).unwrap();
    let api = serve(dir.path(), HistorySource::Open(Arc::new(store)));
    let from_agent = outputs(None, api.socket_path());
    assert!(from_file[0].0.starts_with(b"# Proposed by"), "policies");
    for (file, agent) in from_file.iter().zip(&from_agent) {
        assert_eq!(
            String::from_utf8_lossy(&file.0),
            String::from_utf8_lossy(&agent.0)
        );
        assert_eq!(file.1, agent.1);
    }
    // The file is held now: --history-db says so, --socket works.
    let held = read_history(&args(Some(&db), None, ProposeOutput::Yaml, None));
    assert!(matches!(
        held,
        Err(ProposeError::History(StoreError::Locked { .. }))
    ));
}

#[test]
fn flow_logs_of_several_nodes_propose_what_one_node_would() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, whole) = bulkhead_testkit::learn::demo_flow_logs(dir.path());
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/demo");
    let parse = |argv: &[&str]| {
        let mut all = vec!["bulkhead", "propose", "--manifests", demo];
        all.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(all).unwrap().command {
            crate::cli::Command::Propose(args) => args,
            other => panic!("{other:?}"),
        }
    };
    let (a, b) = (logs[0].to_str().unwrap(), logs[1].to_str().unwrap());
    let merged = parse(&["--flows", a, "--flows", b]);
    let one = parse(&["--flows", whole.to_str().unwrap()]);
    let run = |args: &ProposeArgs| {
        let (history, _) = read_history(args).unwrap();
        let model = one.manifests.load().unwrap();
        let proposal = learn::propose(&history, &model);
        let proof = learn::prove(&history, &model, &proposal);
        rendered(args, &proposal, &proof).stdout
    };
    assert_eq!(
        String::from_utf8(run(&merged)).unwrap(),
        String::from_utf8(run(&one)).unwrap()
    );
}

#[test]
fn socket_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let err = from_agent(&missing, Window::ALL).unwrap_err();
    assert!(matches!(err, ProposeError::SocketMissing { .. }), "{err}");

    let api = serve(dir.path(), HistorySource::None);
    let err = from_agent(api.socket_path().unwrap(), Window::ALL).unwrap_err();
    let ProposeError::Agent {
        source: ClientError::Status { status, message },
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*status, 404);
    assert!(
        message.contains("start it with --history-db PATH"),
        "{message}"
    );
    bulkhead_testkit::runtime().block_on(api.stop());

    let source = HistorySource::NotOpen {
        path: dir.path().join("h.redb"),
        reason: "flow visibility is off".to_owned(),
    };
    let api = serve(dir.path(), source);
    let err = from_agent(api.socket_path().unwrap(), Window::ALL).unwrap_err();
    assert!(
        matches!(
            &err,
            ProposeError::Agent { source: ClientError::Status { status: 503, message }, .. }
                if message.ends_with("h.redb is not open: flow visibility is off")
        ),
        "{err:?}"
    );
}

#[test]
fn socket_defaults_to_the_agents_and_sources_add_up() {
    let parse = |extra: &[&str]| {
        let mut argv = vec!["bulkhead", "propose", "--manifests", "m"];
        argv.extend_from_slice(extra);
        crate::cli::Cli::try_parse_from(argv).map(|cli| match cli.command {
            crate::cli::Command::Propose(a) => (a.socket, a.flows),
            _ => unreachable!(),
        })
    };
    assert_eq!(
        parse(&["--socket"]).unwrap().0,
        [PathBuf::from(DEFAULT_SOCKET)]
    );
    assert_eq!(
        parse(&["--socket", "/tmp/a.sock", "--socket", "/tmp/b.sock"])
            .unwrap()
            .0,
        [PathBuf::from("/tmp/a.sock"), PathBuf::from("/tmp/b.sock")]
    );
    let (sockets, flows) = parse(&["--socket", "--flows", "f.jsonl"]).unwrap();
    assert_eq!(sockets, [PathBuf::from(DEFAULT_SOCKET)]);
    assert_eq!(flows, [PathBuf::from("f.jsonl")]);
    assert!(parse(&[]).is_err(), "a history source is required");
}

/// A guardrail denying api → db and one accepting DNS at coredns: both
/// are reported in the proof (text and JSON) and left out of the YAML;
/// `--include-admin-accepted` proposes the accepted DNS ingress.
#[test]
fn admin_tiers_are_reported_and_the_flag_proposes_accepted_traffic() {
    use bulkhead_policy::model::{
        Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, NAMESPACE_NAME_LABEL, Origin,
        Requirement, Selector, Subject, Tier,
    };
    let sel = |k: &str, v: &str| Selector::new(vec![Requirement::In(k.into(), vec![v.into()])]);
    let guard = |name: &str, subject: Subject, action: Action, peer: AdminPeer| AdminPolicy {
        kind: AdminKind::ClusterNetworkPolicy,
        name: name.into(),
        tier: Tier::Admin,
        priority: 1,
        subject,
        ingress: vec![AdminRule {
            name: Some(name.into()),
            action,
            peers: vec![peer],
            ports: None,
        }],
        egress: vec![],
        origin: Origin::default(),
        mode: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, whole) = bulkhead_testkit::learn::demo_flow_logs(dir.path());
    let parse = |extra: &[&str]| parse_demo(&whole, extra).unwrap();
    let args = parse(&[]);
    let mut model = args.manifests.load().unwrap();
    model.admin_policies = vec![
        guard(
            "db-guard",
            Subject::selecting(sel(NAMESPACE_NAME_LABEL, "shop"), sel("app", "db")),
            Action::Deny,
            AdminPeer::Pods {
                namespaces: Selector::everything(),
                pods: sel("app", "api"),
            },
        ),
        guard(
            "dns",
            Subject::selecting(
                sel(NAMESPACE_NAME_LABEL, "kube-system"),
                Selector::everything(),
            ),
            Action::Accept,
            AdminPeer::Pods {
                namespaces: Selector::everything(),
                pods: Selector::everything(),
            },
        ),
    ];
    model.normalize();
    let (history, _) = read_history(&args).unwrap();
    let (proposal, proof) = propose(&args, &history, &model);
    assert!(proof.complete(), "{:?}", proof.denied);
    let text = rendered(&args, &proposal, &proof);
    let yaml = String::from_utf8(text.stdout).unwrap();
    assert!(!yaml.contains("port: 5432"), "{yaml}");
    assert!(yaml.contains("# cluster-admin tier: shop/Deployment/api → shop/StatefulSet/db"));
    assert!(
        text.stderr
            .contains("denied by the Admin tier: ClusterNetworkPolicy/db-guard rule db-guard"),
        "{}",
        text.stderr
    );
    assert!(
        text.stderr
            .contains("accepted by the Admin tier: ClusterNetworkPolicy/dns rule dns"),
        "{}",
        text.stderr
    );
    let json_args = parse(&["--output", "json"]);
    let json = rendered(&json_args, &proposal, &proof).stdout;
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["proof"]["guardrail_denied"], 1);
    assert_eq!(
        v["proof"]["tier_denied"][0]["policy"],
        "ClusterNetworkPolicy/db-guard"
    );
    assert_eq!(v["proof"]["admin_accepted"].as_array().unwrap().len(), 3);
    let dns_ingress = |p: &Proposal| {
        p.policies
            .iter()
            .find(|p| p.key() == "kube-system/bulkhead-coredns")
            .unwrap()
            .ingress
            .len()
    };
    assert_eq!(dns_ingress(&proposal), 0);
    let flagged = parse(&["--include-admin-accepted"]);
    let (proposal, proof) = propose(&flagged, &history, &model);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(dns_ingress(&proposal), 1);
    assert!(
        rendered(&flagged, &proposal, &proof)
            .stderr
            .contains("proposed anyway where NetworkPolicy can express them")
    );
}

/// `bulkhead propose --manifests policies/demo --flows FLOWS ARGV...`,
/// parsed.
fn parse_demo(flows: &Path, argv: &[&str]) -> Result<ProposeArgs, clap::Error> {
    let demo_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/demo");
    let mut all = vec!["bulkhead", "propose", "--manifests", demo_dir];
    all.extend_from_slice(&["--flows", flows.to_str().unwrap()]);
    all.extend_from_slice(argv);
    crate::cli::Cli::try_parse_from(all).map(|cli| match cli.command {
        crate::cli::Command::Propose(args) => args,
        other => panic!("{other:?}"),
    })
}

/// What `propose` prints for `args` (stdout, stderr), its proof complete
/// and 100%.
fn run_demo(args: &ProposeArgs) -> (String, String) {
    let (history, _) = read_history(args).unwrap();
    let model = args.manifests.load().unwrap();
    let (proposal, proof) = propose(args, &history, &model);
    assert!(proof.complete());
    assert_eq!(proof.coverage_percent, 100.0);
    let r = rendered(args, &proposal, &proof);
    (String::from_utf8(r.stdout).unwrap(), r.stderr)
}

#[test]
fn a_stray_edge_is_flagged_and_min_flows_leaves_it_out() {
    use test_support::{T0, conn, demo, write_jsonl};
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows.jsonl");
    let d = demo();
    let mut records = Vec::new();
    for i in 0..200 {
        records.extend(conn(T0 + i * 60_000, &d.frontend, &d.api, 6, 8080));
    }
    records.extend(conn(T0 + 100 * 60_000, &d.api, &d.db, 6, 5432));
    write_jsonl(&flows, &records);
    let parse = |argv: &[&str]| parse_demo(&flows, argv);

    let (yaml, proof) = run_demo(&parse(&[]).unwrap());
    assert_eq!(yaml.matches(" — RARE: seen once\n").count(), 2, "{yaml}");
    assert!(proof.contains("Rare or recent: 2 rare (below --rare-below 3 flows)"));
    assert!(!proof.contains("Left out"));

    let (yaml, proof) = run_demo(&parse(&["--min-flows", "2"]).unwrap());
    assert!(!yaml.contains("TCP/5432"), "{yaml}");
    assert!(yaml.contains("200 flows"));
    assert!(proof.contains("Left out: below --min-flows 2"), "{proof}");
    assert!(
        proof.contains(
            "Coverage: 1/1 replayed edges allowed (100.0%); 1 more left out below --min-flows 2"
        ),
        "{proof}"
    );

    let (json, _) = run_demo(&parse(&["--min-flows", "2", "--output", "json"]).unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["proof"]["left_out_edges"], 1);
    assert_eq!(v["proof"]["left_out"][0]["flows"], 1);

    // Fewer than two flows is rare now: the stray and nothing else.
    let (yaml, _) = run_demo(&parse(&["--rare-below", "2", "--recent-share", "0"]).unwrap());
    assert_eq!(yaml.matches(" — ").count(), 2, "{yaml}");
    assert!(parse(&["--recent-share", "101"]).is_err());
}

/// `--dns-server`, `--api-server` and `--keep-observed-sources` parse
/// (repeatable; bad values refused naming the form) and reach the
/// proposal: the JSON proof has `infrastructure` and `internet_facing`.
#[test]
fn infrastructure_flags_parse_and_reach_the_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (_, whole) = bulkhead_testkit::learn::demo_flow_logs(dir.path());
    let parse = |extra: &[&str]| parse_demo(&whole, extra);
    let args = parse(&[
        "--dns-server",
        "shop/app=db",
        "--dns-server",
        "sandbox/app=debug",
        "--api-server",
        "172.18.0.2/32,fd00::/64",
        "--api-server",
        "10.0.0.1/32",
        "--keep-observed-sources",
        "--output",
        "json",
    ])
    .unwrap();
    let o = args.infra.options();
    assert_eq!(
        o.dns_servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["shop/app=db", "sandbox/app=debug"]
    );
    assert_eq!(o.api_servers.len(), 3);
    assert!(o.keep_observed_sources);
    let defaults = parse(&[]).unwrap().infra.options();
    assert_eq!(defaults, learn::InfraOptions::default());
    let e = parse(&["--dns-server", "kube-dns"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("NAMESPACE/LABEL=VALUE"), "{e}");
    assert!(parse(&["--api-server", "not-a-cidr"]).is_err());

    let (history, _) = read_history(&args).unwrap();
    let model = args.manifests.load().unwrap();
    let (proposal, proof) = propose(&args, &history, &model);
    assert!(proof.complete(), "{:?}", proof.denied);
    let r = rendered(&args, &proposal, &proof);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let roles: Vec<(&str, &str)> = v["proof"]["infrastructure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["workload"].as_str().unwrap(), f["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("kube-system/Deployment/coredns", "dns_server"),
            ("sandbox/Pod/stray", "dns_server"),
            ("shop/StatefulSet/db", "dns_server"),
            ("10.0.0.1", "api_server"),
            ("172.18.0.2", "api_server"),
            ("fd00::/64", "api_server"),
        ]
    );
    assert_eq!(v["proof"]["internet_facing"], serde_json::json!([]));
}

#[test]
fn scans_are_left_out_unless_kept_and_unseen_workloads_named() {
    use bulkhead_flows::record::Counts;
    use test_support::{Peer, T0, conn, demo, demo_records, write_jsonl};
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows.jsonl");
    let d = demo();
    let scanner = Peer::Ext("198.51.100.66".parse().unwrap());
    let mut records = demo_records();
    for port in 1..=12 {
        // A connect to a closed port: SYN and RST, no payload.
        records.extend(
            conn(T0 + 90_000 + port, &scanner, &d.api, 6, port as u16)
                .into_iter()
                .map(|mut r| {
                    r.packets = Counts { orig: 1, reply: 1 };
                    r.bytes = Counts {
                        orig: 74,
                        reply: 54,
                    };
                    r
                }),
        );
    }
    write_jsonl(&flows, &records);
    let parse = |argv: &[&str]| parse_demo(&flows, argv);

    let (yaml, proof) = run_demo(&parse(&[]).unwrap());
    assert!(!yaml.contains("198.51.100.66"), "{yaml}");
    assert!(
        proof.contains("  scan from 198.51.100.66: 12 probes to 1 peer, ports 1-12, "),
        "{proof}"
    );
    assert!(
        proof.contains("left out, --keep-scans to include"),
        "{proof}"
    );
    assert!(
        proof.contains("; 12 scan probe edges left out (on purpose)."),
        "{proof}"
    );
    assert!(
        proof.contains("Workloads without a proposal: ")
            && proof.contains("  sandbox/Pod/stray: not seen (no flow in the window)"),
        "{proof}"
    );

    let (json, _) = run_demo(&parse(&["--output", "json"]).unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["proof"]["scans"][0]["source"], "198.51.100.66");
    assert_eq!(v["proof"]["scans"][0]["probes"], 12);
    assert_eq!(
        v["proof"]["scans"][0]["edges"].as_array().unwrap().len(),
        12
    );
    assert_eq!(v["proof"]["unproposed_workloads"][0]["reason"], "not_seen");

    let (yaml, proof) = run_demo(&parse(&["--keep-scans"]).unwrap());
    assert!(yaml.contains("198.51.100.66/32"), "{yaml}");
    assert!(proof.contains("; proposed (--keep-scans)"), "{proof}");

    // 12 targets are no scan when it takes 13.
    let (yaml, proof) = run_demo(&parse(&["--scan-targets", "13"]).unwrap());
    assert!(yaml.contains("198.51.100.66/32"), "{yaml}");
    assert!(!proof.contains("scan from"), "{proof}");
    assert!(parse(&["--scan-targets", "0"]).is_err());
}
