//! The learner's demo: the shop of `policies/demo` as flow records (one
//! node's, two nodes', JSON Lines flow logs), and histories over it, for
//! the tests of the learner and of `bulkhead propose`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bulkhead_flows::record::{
    Address, Backend, FlowDirection, FlowRecord, IpProtocol, PodInfo, ServiceInfo, Timestamp,
};
use bulkhead_learn::edge::{
    EdgeKey, EdgeStats, End, History, SideCounts, Skipped, WorkloadId, WorkloadInfo,
};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Model, Policy};

use crate::flow_record as sample;

/// The demo's first timestamp (Unix milliseconds).
pub const T0: u64 = 1_795_887_601_000;

/// One end of a synthetic connection.
#[derive(Clone)]
pub enum Peer {
    /// A pod, at its address.
    Pod(Arc<PodInfo>, IpAddr),
    /// An address outside the cluster.
    Ext(IpAddr),
}

/// A pod end: `workload` in `ns` with `labels` at `ip`.
pub fn pod(ns: &str, name: &str, workload: &str, labels: &[(&str, &str)], ip: &str) -> Peer {
    Peer::Pod(
        Arc::new(PodInfo {
            namespace: ns.into(),
            pod: name.into(),
            workload: Some(workload.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
        ip.parse().unwrap(),
    )
}

/// The record address of `p` at `port`.
pub fn addr(p: &Peer, port: u16) -> Address {
    match p {
        Peer::Pod(i, ip) => Address {
            ip: *ip,
            port,
            pod: Some(i.clone()),
            external: false,
        },
        Peer::Ext(ip) => Address {
            ip: *ip,
            port,
            pod: None,
            external: true,
        },
    }
}

/// The records of one connection: one per pod end (as one node sees it).
pub fn conn(t: u64, src: &Peer, dst: &Peer, proto: u8, port: u16) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (dir, local) in [(FlowDirection::Egress, src), (FlowDirection::Ingress, dst)] {
        let Peer::Pod(info, _) = local else { continue };
        let mut r = sample();
        r.start = Timestamp(t);
        r.end = Timestamp(t + 500);
        r.direction = dir;
        r.endpoint = Some(info.clone());
        r.src = addr(src, 40000);
        r.dst = addr(dst, port);
        r.protocol = IpProtocol(proto);
        r.tcp_flags = None;
        out.push(r);
    }
    out
}

/// The records of one connection from `src` through a Service frontend
/// (`frontend`:`port`) that the node translated to `backend`:`target`:
/// the client's egress record (to the frontend, naming the Service
/// `namespace/name` and the backend) and the backend's ingress record (on
/// the translated connection), as the agent writes them.
pub fn via_service(
    t: u64,
    src: &Peer,
    service: (&str, &str, IpAddr, u16),
    backend: &Peer,
    target: u16,
) -> Vec<FlowRecord> {
    let (namespace, name, frontend, port) = service;
    let mut out = conn(t, src, backend, 6, target);
    for r in out
        .iter_mut()
        .filter(|r| r.direction == FlowDirection::Egress)
    {
        r.dst = addr(&Peer::Ext(frontend), port);
        r.service = Some(ServiceInfo {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ip: frontend,
            port,
            backend: Some(Backend {
                address: addr(backend, target),
                allowed: true,
            }),
        });
    }
    out
}

/// Every pod of `model` as a connection end (a bare pod: workload
/// `Pod/<name>`, its labels, its first address), then two external
/// addresses: the ends of the learner's random histories.
pub fn model_peers(model: &Model) -> Vec<Peer> {
    model
        .pods
        .iter()
        .map(|p| {
            Peer::Pod(
                Arc::new(PodInfo {
                    namespace: p.namespace.as_str().into(),
                    pod: p.name.as_str().into(),
                    workload: Some(format!("Pod/{}", p.name).into()),
                    labels: p.labels.clone(),
                }),
                p.ips[0],
            )
        })
        .chain(["198.51.100.9", "192.0.2.77"].map(|a| Peer::Ext(a.parse().unwrap())))
        .collect()
}

/// The demo shop's pods (`policies/demo`) as connection ends.
pub struct Demo {
    /// shop/frontend.
    pub frontend: Peer,
    /// shop/api.
    pub api: Peer,
    /// shop/db.
    pub db: Peer,
    /// kube-system/coredns.
    pub dns: Peer,
}

/// The demo shop's pods.
pub fn demo() -> Demo {
    Demo {
        frontend: pod(
            "shop",
            "frontend-7d9c-abcde",
            "Deployment/frontend",
            &[
                ("app", "frontend"),
                ("tier", "web"),
                ("pod-template-hash", "7d9c"),
            ],
            "10.244.0.3",
        ),
        api: pod(
            "shop",
            "api-5f6b-xyz12",
            "Deployment/api",
            &[
                ("app", "api"),
                ("tier", "backend"),
                ("pod-template-hash", "5f6b"),
            ],
            "10.244.0.2",
        ),
        db: pod(
            "shop",
            "db-0",
            "StatefulSet/db",
            &[
                ("app", "db"),
                ("tier", "data"),
                ("statefulset.kubernetes.io/pod-name", "db-0"),
            ],
            "10.244.0.4",
        ),
        dns: pod(
            "kube-system",
            "coredns-1",
            "Deployment/coredns",
            &[("k8s-app", "kube-dns"), ("pod-template-hash", "abc")],
            "10.244.0.1",
        ),
    }
}

/// The demo's connections as one node records them.
pub fn demo_records() -> Vec<FlowRecord> {
    let d = demo();
    let ext_in = Peer::Ext("203.0.113.10".parse().unwrap());
    let ext_out = Peer::Ext("2001:db8::7".parse().unwrap());
    let mut v = Vec::new();
    for i in 0..3 {
        v.extend(conn(T0 + i * 60_000, &d.frontend, &d.api, 6, 8080));
    }
    v.extend(conn(T0 + 10_000, &d.api, &d.db, 6, 5432));
    for w in [&d.frontend, &d.api, &d.db] {
        v.extend(conn(T0 + 5_000, w, &d.dns, 17, 53));
    }
    v.extend(conn(T0 + 20_000, &ext_in, &d.frontend, 6, 8080));
    v.extend(conn(T0 + 30_000, &d.api, &ext_out, 6, 443));
    v.extend(conn(T0 + 40_000, &d.frontend, &ext_out, 1, 0));
    v
}

/// The demo's manifests (`policies/demo`).
pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/demo")
}

/// The demo's model, loaded from its manifests.
pub fn demo_model() -> Model {
    bulkhead_policy::source::manifest::load_dir(&demo_dir(), &AddressPlan::default()).unwrap()
}

/// The demo's records as two nodes see them: each node records only the
/// connections of its own pods (a cross-node connection once on each).
pub fn demo_records_on_two_nodes() -> (Vec<FlowRecord>, Vec<FlowRecord>) {
    let on_first = |r: &FlowRecord| {
        r.endpoint
            .as_ref()
            .is_some_and(|e| ["frontend-7d9c-abcde", "coredns-1"].contains(&&*e.pod))
    };
    demo_records().into_iter().partition(on_first)
}

/// The policy `key` (`namespace/name`) as the loader read it back into
/// `applied`, its origin cleared (to compare with a proposed one).
pub fn read_back(applied: &Model, key: &str) -> Policy {
    let loaded = applied
        .policies
        .iter()
        .find(|x| x.key() == key)
        .unwrap_or_else(|| panic!("{key} not read back"));
    Policy {
        origin: Default::default(),
        ..loaded.clone()
    }
}

/// Writes `records` as JSON Lines to `path`.
pub fn write_jsonl(path: &std::path::Path, records: &[FlowRecord]) {
    let lines: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// The demo's records split over two nodes' flow logs in `dir`, and the
/// whole in a third: (node logs, one-node log).
pub fn demo_flow_logs(dir: &std::path::Path) -> ([PathBuf; 2], PathBuf) {
    let (first, second) = demo_records_on_two_nodes();
    let logs = [dir.join("node-0.jsonl"), dir.join("node-1.jsonl")];
    write_jsonl(&logs[0], &first);
    write_jsonl(&logs[1], &second);
    let whole = dir.join("one-node.jsonl");
    write_jsonl(&whole, &demo_records());
    (logs, whole)
}

// Histories the store's tests (and `bulkhead propose`'s) merge.

fn wid(ns: &str, w: &str) -> WorkloadId {
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
pub fn batches() -> [History; 2] {
    let (fe, api, db) = (
        wid("shop", "Deployment/frontend"),
        wid("shop", "Deployment/api"),
        wid("shop", "StatefulSet/db"),
    );
    let dns = wid("kube-system", "Deployment/coredns");
    let ext4 = End::External("203.0.113.10".parse().unwrap());
    let ext6 = End::External("2001:db8::7".parse().unwrap());
    let w = |id: &WorkloadId| End::Workload(id.clone());
    let batch = |t: u64, edges: &[(End, End, u8, u16)], labels: &[(&WorkloadId, &str)]| {
        let mut h = History {
            records: 2 * edges.len() as u64,
            skipped: Skipped {
                events: 3,
                unknown_endpoint: 1,
                untranslated_service: 0,
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
                denied: None,
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

/// A synthetic cluster's traffic for the network map's benchmark and
/// tests: `workloads` Deployments (`w-NNN`, labelled `app`) spread evenly
/// over `namespaces` namespaces (`ns-NN`), and `edges` distinct edges
/// between them (and to a few external /24s: one in ten), each one
/// connection seen at its source, ending within the 30 s before `now_ms`.
/// Verdicts vary: most allowed, one in seven denied (by
/// `<ns>/default-deny`), one in eleven would-deny in audit (by
/// `<ns>/staged`), one in thirteen revoked. Deterministic.
pub fn synthetic_map(
    namespaces: usize,
    workloads: usize,
    edges: usize,
    now_ms: u64,
) -> Vec<FlowRecord> {
    use bulkhead_flows::record::{Audit, AuditVerdict, FlowVerdict, PolicyRef};
    let namespaces = namespaces.max(1);
    let peers: Vec<Peer> = (0..workloads.max(1))
        .map(|i| {
            let ns = format!("ns-{:02}", i % namespaces);
            let name = format!("w-{i:03}");
            let ip = format!("10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256);
            pod(
                &ns,
                &format!("{name}-0"),
                &format!("Deployment/{name}"),
                &[("app", &name)],
                &ip,
            )
        })
        .collect();
    let n = peers.len();
    let policy = |name: String| -> Arc<[PolicyRef]> {
        vec![PolicyRef {
            name: name.into(),
            ..Default::default()
        }]
        .into()
    };
    let mut out = Vec::with_capacity(edges);
    for e in 0..edges {
        let src = &peers[e % n];
        // Distinct (src, dst, port) for every e: the destination steps
        // by the edge's round, the port by how many rounds wrapped.
        let round = e / n;
        let dst = if e % 10 == 9 {
            Peer::Ext(
                format!("203.0.{}.{}", 100 + round % 20, 1 + e % 250)
                    .parse()
                    .unwrap(),
            )
        } else {
            peers[(e % n + 1 + round % (n - 1).max(1)) % n].clone()
        };
        let port = 8000 + (round / (n - 1).max(1)) as u16;
        let t = now_ms - 30_000 + (e as u64 * 7) % 29_000;
        let mut r = conn(t, src, &dst, 6, port).remove(0);
        let ns = match src {
            Peer::Pod(p, _) => p.namespace.to_string(),
            Peer::Ext(_) => unreachable!("sources are pods"),
        };
        if e % 7 == 3 {
            r.verdict = FlowVerdict::Denied;
            r.policies = policy(format!("{ns}/default-deny"));
        } else if e % 11 == 5 {
            r.audit = Some(Audit {
                verdict: AuditVerdict::WouldDeny,
                policies: policy(format!("{ns}/staged")),
            });
        } else if e % 13 == 6 {
            r.verdict = FlowVerdict::Revoked;
            r.policies = policy(format!("{ns}/default-deny"));
        } else {
            r.policies = policy(format!("{ns}/allow-all"));
        }
        out.push(r);
    }
    out
}
