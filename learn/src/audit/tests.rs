//! Grouping, ordering, summaries, filters, rendering and reading.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::filter::parse_policy;
use super::*;
use bulkhead_flows::record::{AuditVerdict, FlowRecord, Timestamp};

/// A record of `web` (prod, Deployment/web) opening TCP to `api` (prod,
/// Deployment/api) port 8080, audited by `prod/audit-web` as would-deny;
/// `patch` overrides top-level fields.
fn record(patch: Value) -> FlowRecord {
    let web = json!({"namespace": "prod", "pod": "web-1", "workload": "Deployment/web",
                     "labels": {"app": "web"}});
    let mut base = json!({
        "schema": "bulkhead.flow/v1", "type": "flow", "node": "n1",
        "start": "2024-11-22T17:40:00.000Z", "end": "2024-11-22T17:40:01.000Z",
        "end_reason": "closed", "ifindex": 7,
        "endpoint": web,
        "direction": "egress",
        "src": {"ip": "10.0.0.1", "port": 43512, "namespace": "prod", "pod": "web-1",
                "workload": "Deployment/web", "labels": {"app": "web"}},
        "dst": {"ip": "10.0.0.2", "port": 8080, "namespace": "prod", "pod": "api-1",
                "workload": "Deployment/api", "labels": {"app": "api"}},
        "protocol": "TCP",
        "packets": {"orig": 3, "reply": 2}, "bytes": {"orig": 180, "reply": 120},
        "dropped": {"packets": 0, "bytes": 0},
        "verdict": "allowed", "drop_reason": null, "policies": [], "revision": 4,
        "audit": {"verdict": "would_deny", "policies": [{"name": "prod/audit-web"}]}
    });
    for (k, v) in patch.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

/// An external peer for `dst`.
fn external(ip: &str, port: u16) -> Value {
    json!({"ip": ip, "port": port, "external": true})
}

fn allowed_by(policy: &str) -> Value {
    json!({"verdict": "allowed", "policies": [{"name": policy}]})
}

fn at(t: &str) -> Value {
    json!(t)
}

fn report_of(filter: Filter, records: &[FlowRecord]) -> Report {
    let mut r = Report::new(filter);
    for rec in records {
        r.add(rec);
    }
    r
}

/// A fixture with two policies: `prod/audit-web` would deny two peers
/// and allows one; `prod/audit-db` allows everything.
fn fixture() -> Vec<FlowRecord> {
    vec![
        // Two flows web -> api:8080 (would deny), one of them a minute later.
        record(json!({})),
        record(
            json!({"start": at("2024-11-22T17:41:00.000Z"), "end": at("2024-11-22T17:41:02.500Z"),
                      "src": {"ip": "10.0.0.1", "port": 43600, "namespace": "prod", "pod": "web-2",
                              "workload": "Deployment/web", "labels": {}}}),
        ),
        // One flow web -> 192.0.2.7:443 (would deny).
        record(json!({"dst": external("192.0.2.7", 443),
                      "packets": {"orig": 10, "reply": 9}})),
        // web -> DNS, allowed.
        record(
            json!({"protocol": "UDP", "dst": {"ip": "10.0.0.53", "port": 53, "namespace": "kube-system",
                      "pod": "coredns-1", "workload": "Deployment/coredns", "labels": {}},
                      "audit": allowed_by("prod/audit-web"),
                      "packets": {"orig": 1, "reply": 1}}),
        ),
        // Ingress to db from api, allowed by the other policy.
        record(json!({"direction": "ingress",
                      "endpoint": {"namespace": "prod", "pod": "db-0", "workload": "StatefulSet/db", "labels": {}},
                      "src": {"ip": "10.0.0.2", "port": 50000, "namespace": "prod", "pod": "api-1",
                              "workload": "Deployment/api", "labels": {}},
                      "dst": {"ip": "10.0.0.3", "port": 5432, "namespace": "prod", "pod": "db-0",
                              "workload": "StatefulSet/db", "labels": {}},
                      "audit": allowed_by("prod/audit-db"),
                      "end": at("2024-11-22T17:45:00.000Z")})),
        // Not counted: an event, and a flow no audit-mode policy covers.
        record(json!({"type": "event", "event": "new_flow", "end_reason": null})),
        record(json!({"audit": null})),
    ]
}

#[test]
fn groups_by_policy_subject_direction_peer_protocol_and_port() {
    let report = report_of(Filter::default(), &fixture());
    let c = report.counts();
    assert_eq!((c.records, c.events, c.unaudited, c.grouped), (7, 1, 1, 5));
    let policies = report.policies();
    let names: Vec<_> = policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["prod/audit-db", "prod/audit-web"]);

    let web = &policies[1];
    assert_eq!(web.would_deny.len(), 2);
    let api = &web.would_deny[0];
    assert_eq!(api.key.subject.to_string(), "prod/Deployment/web");
    assert_eq!(api.key.peer.to_string(), "prod/Deployment/api");
    assert_eq!(api.key.port, Some(8080));
    assert_eq!(api.stats.flows, 2);
    assert_eq!(api.stats.packets, 10);
    assert_eq!(api.stats.first.to_string(), "2024-11-22T17:40:00.000Z");
    assert_eq!(api.stats.last.to_string(), "2024-11-22T17:41:02.500Z");
    assert_eq!(web.would_deny[1].key.peer.to_string(), "192.0.2.7");
    assert_eq!(web.allowed.len(), 1);
    assert_eq!(web.allowed[0].key.verdict, AuditVerdict::Allowed);

    let db = &policies[0].allowed[0];
    assert_eq!(db.key.subject.to_string(), "prod/StatefulSet/db");
    assert_eq!(db.key.peer.to_string(), "prod/Deployment/api");
    assert_eq!(db.key.direction.as_str(), "ingress");
}

#[test]
fn summaries_say_whether_a_policy_is_ready() {
    let policies = report_of(Filter::default(), &fixture()).policies();
    let db = &policies[0].summary;
    assert_eq!(db.readiness(), Readiness::Ready);
    assert_eq!((db.audited_flows, db.would_deny_flows), (1, 0));
    assert_eq!(db.last_would_deny, None);
    let web = &policies[1].summary;
    assert_eq!(web.readiness(), Readiness::WouldBreak);
    assert_eq!((web.audited_flows, web.would_deny_flows), (4, 3));
    assert_eq!((web.would_deny_groups, web.allowed_groups), (2, 1));
    assert_eq!(
        web.last_would_deny.unwrap().to_string(),
        "2024-11-22T17:41:02.500Z"
    );
    assert_eq!(Summary::default().readiness(), Readiness::NoData);
}

#[test]
fn most_flows_first_and_ties_in_key_order_whatever_the_input_order() {
    let peer = |ip: &str, end: &str| record(json!({"dst": external(ip, 443), "end": at(end)}));
    let records = vec![
        peer("192.0.2.9", "2024-11-22T17:40:01.000Z"),
        peer("192.0.2.1", "2024-11-22T17:40:01.000Z"),
        peer("192.0.2.5", "2024-11-22T17:40:01.000Z"),
        // Another connection to the same peer (not a duplicate record).
        peer("192.0.2.5", "2024-11-22T17:40:02.000Z"),
    ];
    let order = |records: &[FlowRecord]| -> Vec<String> {
        report_of(Filter::default(), records).policies()[0]
            .would_deny
            .iter()
            .map(|g| format!("{}x{}", g.key.peer, g.stats.flows))
            .collect()
    };
    let want = ["192.0.2.5x2", "192.0.2.1x1", "192.0.2.9x1"];
    assert_eq!(order(&records), want);
    let mut reversed = records.clone();
    reversed.reverse();
    assert_eq!(order(&reversed), want);
}

#[test]
fn counts_a_record_once_across_sources_and_policies() {
    let mut both = record(json!({}));
    // Listed twice by a confused producer: still one flow.
    both.audit = Some(
        serde_json::from_value(json!({"verdict": "would_deny",
            "policies": [{"name": "prod/a"}, {"name": "prod/b"}, {"name": "prod/a"}]}))
        .unwrap(),
    );
    let report = report_of(Filter::default(), &[both.clone(), both]);
    assert_eq!(report.counts().duplicates, 1);
    let policies = report.policies();
    assert_eq!(policies.len(), 2);
    for p in &policies {
        assert_eq!(p.summary.audited_flows, 1, "{}", p.policy);
    }
}

#[test]
fn icmp_groups_ignore_the_echo_identifier() {
    let ping = |id: u16| {
        record(json!({"protocol": "ICMP", "dst": external("192.0.2.1", id), "tcp_flags": null}))
    };
    let policies = report_of(Filter::default(), &[ping(1), ping(2)]).policies();
    let groups = &policies[0].would_deny;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].key.port, None);
    assert_eq!(groups[0].stats.flows, 2);
}

#[test]
fn policy_and_since_filters() {
    let filter = Filter {
        policies: BTreeSet::from(["prod/audit-db".to_owned(), "prod/typo".to_owned()]),
        since: Some(
            Since::parse("2024-11-22T17:42:00Z")
                .unwrap()
                .resolve(UNIX_EPOCH),
        ),
    };
    let report = report_of(filter, &fixture());
    let c = report.counts();
    assert_eq!((c.before_since, c.other_policies, c.grouped), (4, 0, 1));
    let policies = report.policies();
    let names: Vec<_> = policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["prod/audit-db", "prod/typo"]);
    assert_eq!(policies[1].summary.readiness(), Readiness::NoData);

    let only_web = Filter {
        policies: BTreeSet::from(["prod/audit-web".to_owned()]),
        since: None,
    };
    let report = report_of(only_web, &fixture());
    assert_eq!(report.counts().other_policies, 1);
    assert_eq!(report.policies().len(), 1);
}

#[test]
fn parses_since_and_policy_values() {
    assert_eq!(
        Since::parse("2024-11-22T17:42:00.5Z").unwrap(),
        Since::At(Timestamp(1_732_297_320_500))
    );
    let now = UNIX_EPOCH + Duration::from_secs(10_000);
    assert_eq!(
        Since::parse("2h").unwrap().resolve(now),
        Timestamp(2_800_000)
    );
    assert_eq!(
        Since::parse("1h 30m").unwrap(),
        Since::Ago(Duration::from_secs(5400))
    );
    assert!(matches!(
        Since::parse("yesterday"),
        Err(FilterError::Since { .. })
    ));
    assert_eq!(parse_policy("prod/p").unwrap(), "prod/p");
    assert_eq!(
        parse_policy("ClusterNetworkPolicy/no-db").unwrap(),
        "ClusterNetworkPolicy/no-db"
    );
    for bad in ["p", "/p", "prod/", "a/b/c"] {
        assert!(
            matches!(parse_policy(bad), Err(FilterError::Policy { .. })),
            "{bad}"
        );
    }
}

const TEXT: &str = "\
policy prod/audit-db
  no would-deny in 1 audited flow (2024-11-22T17:40:00.000Z..2024-11-22T17:45:00.000Z): ready to promote
  1 allowed group (1 flow)

policy prod/audit-web
  3 would-deny flows of 4 audited, the last ending 2024-11-22T17:41:02.500Z: promoting would break them
  SUBJECT              DIRECTION  PEER                 PROTOCOL  PORT  FLOWS  PACKETS  FIRST                     LAST
  prod/Deployment/web  egress     prod/Deployment/api  TCP       8080      2       10  2024-11-22T17:40:00.000Z  2024-11-22T17:41:02.500Z
  prod/Deployment/web  egress     192.0.2.7            TCP        443      1       19  2024-11-22T17:40:00.000Z  2024-11-22T17:40:01.000Z
  1 allowed group (1 flow)
";

#[test]
fn renders_text() {
    let policies = report_of(Filter::default(), &fixture()).policies();
    let text = render::text(&policies);
    assert_eq!(text, TEXT, "\n{text}");
    assert!(render::text(&[]).starts_with("no flow records with an audit verdict"));
    let typo = Filter {
        policies: BTreeSet::from(["prod/typo".to_owned()]),
        since: None,
    };
    let text = render::text(&report_of(typo, &fixture()).policies());
    assert!(
        text.starts_with("policy prod/typo\n  no audited flows: "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn renders_json_lines() {
    let policies = report_of(Filter::default(), &fixture()).policies();
    let out = render::json_lines(&policies);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<_> = lines
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["type"].as_str().unwrap(),
                l["policy"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "summary prod/audit-db",
            "group prod/audit-db",
            "summary prod/audit-web",
            "group prod/audit-web",
            "group prod/audit-web",
            "group prod/audit-web",
        ]
    );
    assert_eq!(
        lines[2],
        json!({"schema": "bulkhead.audit/v1", "type": "summary", "policy": "prod/audit-web",
               "readiness": "would_break", "audited_flows": 4, "would_deny_flows": 3,
               "would_deny_groups": 2, "allowed_groups": 1,
               "first": "2024-11-22T17:40:00.000Z", "last": "2024-11-22T17:41:02.500Z",
               "last_would_deny": "2024-11-22T17:41:02.500Z"})
    );
    assert_eq!(
        lines[3],
        json!({"schema": "bulkhead.audit/v1", "type": "group", "policy": "prod/audit-web",
               "verdict": "would_deny", "direction": "egress",
               "subject": {"namespace": "prod", "workload": "Deployment/web"},
               "peer": {"namespace": "prod", "workload": "Deployment/api"},
               "protocol": "TCP", "port": 8080, "flows": 2, "packets": 10,
               "first": "2024-11-22T17:40:00.000Z", "last": "2024-11-22T17:41:02.500Z"})
    );
    assert_eq!(lines[4]["peer"], json!({"ip": "192.0.2.7"}));
    assert_eq!(lines[5]["verdict"], "allowed");
    assert_eq!(lines[5]["protocol"], "UDP");
    assert!(render::json_lines(&[]).is_empty());
}

#[test]
fn malformed_lines_are_named_by_source_and_line() {
    let good = serde_json::to_string(&record(json!({}))).unwrap();
    let input = format!("{good}\n\n{{\"schema\": \"bulkhead.flow/v1\"}}\n{good}\n");
    let mut n = 0;
    let e = read_lines(input.as_bytes(), "flows.jsonl", |_| n += 1).unwrap_err();
    assert!(matches!(e, ReadError::Malformed { line: 3, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "flows.jsonl:3: not a bulkhead.flow/v1 record"
    );
    assert_eq!(n, 1);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    std::fs::write(&path, format!("{good}\n{good}\n")).unwrap();
    let mut report = Report::new(Filter::default());
    read_file(&path, |r| report.add(&r)).unwrap();
    assert_eq!(
        report.counts().grouped,
        1,
        "the same record twice counts once"
    );
    let missing = dir.path().join("missing.jsonl");
    let e = read_file(&missing, |_| {}).unwrap_err();
    assert!(matches!(e, ReadError::Io { .. }));
    assert!(e.to_string().contains("missing.jsonl"), "{e}");
}

/// A staged guardrail as the agent names it in the records it audits
/// (`Kind/name` with its tier): reported under its name, its would-deny
/// groups listed, selectable with `--policy Kind/name`.
#[test]
fn a_staged_cluster_admin_policy_is_reported_by_name() {
    let guard = json!({"verdict": "would_deny", "policies": [
        {"name": "ClusterNetworkPolicy/no-db", "tier": "Admin"}]});
    let mut records = fixture();
    records.push(record(
        json!({"audit": guard, "start": at("2024-11-22T17:50:00.000Z"),
                               "end": at("2024-11-22T17:50:01.000Z")}),
    ));
    records.push(record(json!({"audit": {"verdict": "allowed", "policies": [
        {"name": "ClusterNetworkPolicy/no-db", "tier": "Admin"}]},
        "dst": external("192.0.2.8", 80)})));
    let filter = Filter {
        policies: BTreeSet::from([parse_policy("ClusterNetworkPolicy/no-db").unwrap()]),
        since: None,
    };
    let policies = report_of(filter, &records).policies();
    assert_eq!(policies.len(), 1);
    let p = &policies[0];
    assert_eq!(p.policy, "ClusterNetworkPolicy/no-db");
    assert_eq!(p.summary.readiness(), Readiness::WouldBreak);
    assert_eq!((p.would_deny.len(), p.allowed.len()), (1, 1));
    let text = render::text(&policies);
    assert!(
        text.starts_with("policy ClusterNetworkPolicy/no-db\n"),
        "{text}"
    );
    assert!(text.contains("prod/Deployment/api"), "{text}");
    let json = render::json_lines(&policies);
    assert!(
        json.lines()
            .all(|l| l.contains(r#""policy":"ClusterNetworkPolicy/no-db""#)),
        "{json}"
    );
    // Beside the NetworkPolicies when nothing is filtered.
    let all = report_of(Filter::default(), &records).policies();
    let names: Vec<&str> = all.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(
        names,
        [
            "ClusterNetworkPolicy/no-db",
            "prod/audit-db",
            "prod/audit-web"
        ]
    );
}
