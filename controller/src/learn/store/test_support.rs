//! Histories the store's tests (and other modules' tests) merge.

use super::*;
use crate::learn::edge::{End, SideCounts};

const T0: u64 = 1_795_887_601_000;

fn wl(ns: &str, w: &str) -> WorkloadId {
    WorkloadId {
        namespace: ns.into(),
        workload: w.into(),
    }
}

fn side(flows: u64) -> SideCounts {
    SideCounts {
        flows,
        packets: 7 * flows,
        bytes: 700 * flows,
    }
}

/// Two overlapping batches over the demo shop (`policies/demo`): the
/// second sees old edges again later, a new one, and changed labels.
pub(crate) fn batches() -> [History; 2] {
    let (fe, api, db) = (
        wl("shop", "Deployment/frontend"),
        wl("shop", "Deployment/api"),
        wl("shop", "StatefulSet/db"),
    );
    let dns = wl("kube-system", "Deployment/coredns");
    let ext4 = End::External("203.0.113.10".parse().unwrap());
    let ext6 = End::External("2001:db8::7".parse().unwrap());
    let w = |id: &WorkloadId| End::Workload(id.clone());
    let batch = |t: u64, edges: &[(End, End, u8, u16)], labels: &[(&WorkloadId, &str)]| {
        let mut h = History {
            records: 2 * edges.len() as u64,
            skipped: Skipped {
                events: 3,
                unknown_endpoint: 1,
            },
            ..History::default()
        };
        for (i, (src, dst, protocol, port)) in edges.iter().enumerate() {
            let key = EdgeKey {
                src: src.clone(),
                dst: dst.clone(),
                protocol: *protocol,
                port: *port,
            };
            let t = t + 1_000 * i as u64;
            let stats = EdgeStats {
                first_seen: Timestamp(t),
                last_seen: Timestamp(t + 500),
                at_src: side(1 + i as u64 % 2),
                at_dst: side(i as u64 % 3),
            };
            h.add_edge(key, &stats);
        }
        for (id, app) in labels {
            let info = WorkloadInfo {
                labels: [("app", *app), ("pod-template-hash", "7d9c")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
                local: id.namespace == "shop",
                last_seen: Timestamp(t + 60_000),
            };
            h.add_workload((*id).clone(), &info);
        }
        h
    };
    [
        batch(
            T0,
            &[
                (w(&fe), w(&api), 6, 8080),
                (w(&api), w(&db), 6, 5432),
                (w(&fe), w(&dns), 17, 53),
                (w(&api), w(&dns), 17, 53),
                (ext4, w(&fe), 6, 8080),
            ],
            &[(&fe, "frontend"), (&api, "api"), (&db, "db"), (&dns, "x")],
        ),
        batch(
            T0 + 120_000,
            &[
                (w(&fe), w(&api), 6, 8080),
                (w(&api), ext6.clone(), 6, 443),
                (w(&fe), ext6, 58, 0),
            ],
            &[(&fe, "frontend"), (&api, "api")],
        ),
    ]
}
