//! `--since`/`--until` and `--include-denied`: parsed, resolved at the
//! edge, and read from every source (flow logs exactly, a database and an
//! agent's socket by buckets, alike).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use super::super::tests::{args, serve, serve_agent};
use super::super::*;
use super::*;
use bulkhead_agent::flows::HistorySource;
use bulkhead_flows::record::FlowVerdict;
use bulkhead_learn::{HistoryStore, StoreConfig};
use bulkhead_testkit::learn::{T0, conn, demo, write_jsonl};

const MINUTE: u64 = 60_000;

fn parse(argv: &[&str]) -> crate::cli::Command {
    crate::cli::Cli::try_parse_from(argv).unwrap().command
}

#[test]
fn since_and_until_parse_as_instants_or_durations_before_now() {
    let crate::cli::Command::Propose(p) = parse(&[
        "bulkhead",
        "propose",
        "--manifests",
        "m",
        "--flows",
        "f.jsonl",
        "--since",
        "2h",
        "--until",
        "2026-12-07T14:00:00Z",
        "--include-denied",
    ]) else {
        panic!("not propose");
    };
    assert!(p.include_denied);
    assert_eq!(
        p.window.since,
        Some(TimeArg::Ago(Duration::from_secs(7200)))
    );
    let until = Timestamp(1_796_652_000_000);
    assert_eq!(p.window.until, Some(TimeArg::At(until)));
    let now = Timestamp(1_796_652_000_000 + 1_000);
    assert_eq!(
        p.window.window_at(now),
        Window {
            since: Some(Timestamp(now.0 - 7_200_000)),
            until: Some(until),
        }
    );
    for bad in ["yesterday", "2026-13-01T00:00:00Z"] {
        let err = crate::cli::Cli::try_parse_from([
            "bulkhead",
            "propose",
            "--manifests",
            "m",
            "--flows",
            "f",
            "--since",
            bad,
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("neither RFC 3339"), "{bad}: {err}");
    }
    // Neither: the whole history, as before.
    let crate::cli::Command::Propose(p) =
        parse(&["bulkhead", "propose", "--manifests", "m", "--flows", "f"])
    else {
        panic!("not propose");
    };
    assert!(!p.include_denied);
    assert!(p.window.window().is_all());

    let crate::cli::Command::Baseline(b) = parse(&[
        "bulkhead",
        "baseline",
        "take",
        "shop",
        "--scope",
        "shop",
        "--flows",
        "f",
        "-o",
        "b.json",
        "--since",
        "30m",
        "--include-denied",
    ]) else {
        panic!("not baseline");
    };
    let crate::cli::baseline::BaselineCommand::Take(t) = b.command else {
        panic!("not take");
    };
    assert!(t.include_denied);
    assert_eq!(
        t.window.since,
        Some(TimeArg::Ago(Duration::from_secs(1800)))
    );
}

/// frontend → api in minutes 0..10, api → db in minutes 30..40, and a
/// denied frontend → db attempt in minute 35.
fn records() -> Vec<bulkhead_flows::record::FlowRecord> {
    let d = demo();
    let mut v = Vec::new();
    for m in 0..10 {
        v.extend(conn(T0 + m * MINUTE, &d.frontend, &d.api, 6, 8080));
    }
    for m in 30..40 {
        v.extend(conn(T0 + m * MINUTE, &d.api, &d.db, 6, 5432));
    }
    let mut denied = conn(T0 + 35 * MINUTE, &d.frontend, &d.db, 6, 5432);
    for r in &mut denied {
        r.verdict = FlowVerdict::Denied;
        r.policies = vec![bulkhead_flows::record::PolicyRef {
            name: "shop/db".into(),
            ..Default::default()
        }]
        .into();
    }
    v.extend(denied);
    v
}

fn windowed(db: Option<&Path>, socket: Option<&Path>, since: u64, until: u64) -> ProposeArgs {
    let mut a = args(db, socket, ProposeOutput::Json, None);
    a.window = WindowArgs {
        since: Some(TimeArg::At(Timestamp(since))),
        until: Some(TimeArg::At(Timestamp(until))),
    };
    a
}

/// The JSON `propose` prints for `a`.
fn json_of(a: &ProposeArgs) -> serde_json::Value {
    let (history, window) = read_history(a).unwrap();
    let model = a.manifests.load().unwrap();
    let (proposal, mut proof) = propose(a, &history, &model);
    proof.window = window;
    assert!(proof.complete());
    serde_json::from_slice(&rendered(a, &proposal, &proof).stdout).unwrap()
}

#[test]
fn windows_pick_the_edges_of_their_time_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("f.jsonl");
    write_jsonl(&log, &records());
    let db = dir.path().join("h.redb");
    {
        let store = HistoryStore::open(
            &db,
            StoreConfig {
                bucket_ms: MINUTE,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        // One batch per record, as the agent writes them.
        for r in records() {
            let mut h = History::default();
            h.add_record(&r);
            store.merge(&h).unwrap();
        }
    }
    // A window on whole minutes: exact in every source.
    let (since, until) = (
        T0 - T0 % MINUTE + 30 * MINUTE,
        T0 - T0 % MINUTE + 40 * MINUTE,
    );
    let mut from_log = windowed(None, None, since, until);
    from_log.flows = vec![log.clone()];
    let log_json = json_of(&from_log);
    let db_json = json_of(&windowed(Some(&db), None, since, until));
    let store = HistoryStore::open(&db, StoreConfig::default()).unwrap();
    assert_eq!(store.bucket_ms(), MINUTE, "the store keeps its width");
    let api = serve(dir.path(), HistorySource::Open(Arc::new(store)));
    let agent_json = json_of(&windowed(None, api.socket_path(), since, until));
    for v in [&log_json, &db_json, &agent_json] {
        let p = &v["proof"];
        assert_eq!(p["edges"], 1, "{p}");
        let yaml: String = v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["yaml"].as_str().unwrap().to_owned())
            .collect();
        assert!(yaml.contains("5432"), "api → db is in the window");
        assert!(!yaml.contains("8080"), "frontend → api is not");
        let attempts = p["denied_attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{p}");
        assert_eq!(attempts[0]["policies"][0], "shop/db");
        assert!(
            attempts[0]["edge"]
                .as_str()
                .unwrap()
                .contains("Deployment/frontend → shop/StatefulSet/db")
        );
        assert_eq!(p["window"]["partial"], false);
        assert_eq!(p["window"]["rounded"], false);
    }
    // Whole buckets: the same proposal and proof, byte for byte.
    assert_eq!(log_json, agent_json);
    assert_eq!(db_json, agent_json);

    // An earlier window, off the minute: the database rounds outward and
    // says so; the log is exact.
    let (since, until) = (T0, T0 + 5 * MINUTE + 1);
    let mut from_log = windowed(None, None, since, until);
    from_log.flows = vec![log];
    let v = json_of(&from_log);
    assert_eq!(v["proof"]["edges"], 1);
    assert_eq!(v["proof"]["window"]["rounded"], false);
    let v = json_of(&windowed(None, api.socket_path(), since, until));
    assert_eq!(v["proof"]["edges"], 1);
    let w = &v["proof"]["window"];
    assert_eq!(w["rounded"], true, "{w}");
    assert!(
        w["notes"][0]
            .as_str()
            .unwrap()
            .contains("rounded outward to whole buckets of 1m")
    );
    bulkhead_testkit::runtime().block_on(api.stop());

    // An agent of an earlier version answers the whole history: refused.
    let old = tempfile::tempdir().unwrap();
    let store = HistoryStore::open(&old.path().join("h.redb"), StoreConfig::default()).unwrap();
    let api = serve_agent(old.path(), HistorySource::Open(Arc::new(store)), false);
    let err = read_history(&windowed(None, api.socket_path(), since, until)).unwrap_err();
    assert!(
        matches!(err, ProposeError::AgentWithoutWindows { .. }),
        "{err}"
    );
    let mut whole = windowed(None, api.socket_path(), since, until);
    whole.window = WindowArgs::default();
    assert!(read_history(&whole).is_ok(), "without a window it reads");
    bulkhead_testkit::runtime().block_on(api.stop());

    // An empty window is bad usage.
    let err = read_history(&windowed(Some(&db), None, T0, T0)).unwrap_err();
    assert!(matches!(err, ProposeError::EmptyWindow { .. }), "{err}");
}
