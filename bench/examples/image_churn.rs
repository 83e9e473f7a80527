//! How much of the map image one small model change moves: compiles the
//! policy bench's 10k-pod model (1,000 policies, realistic labels) and the
//! same model with one more pod inserted in the middle of the pod list (a
//! twin of an existing pod: same namespace, labels and ports, a fresh
//! address next to the twin's), and counts the image entries that differ
//! (a key in one image only, or with another value), per map.
//!
//! `cargo run --release -p bulkhead-bench --example image_churn [PODS [POLICIES]]`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use bulkhead_bench::cluster::{ClusterSpec, LabelMode, POD_NAME_LABEL};
use bulkhead_policy::compile::compile;
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::model::Model;

/// Entries that differ between two keyed maps.
fn differ<K: Ord + std::hash::Hash, V: PartialEq>(a: &HashMap<K, V>, b: &HashMap<K, V>) -> usize {
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
        + b.keys().filter(|k| !a.contains_key(*k)).count()
}

struct Keyed {
    identities: HashMap<(u32, [u8; 16]), (u32, u32)>,
    policy: HashMap<(u32, u32, u32), bulkhead_common::PolicyNode>,
    endpoints: HashMap<String, bulkhead_common::EndpointInfo>,
}

fn keyed(m: &Model, image: &MapImage) -> Keyed {
    Keyed {
        identities: image
            .identities
            .iter()
            .map(|(len, k, v)| ((*len, k.addr), (v.identity, v.flags)))
            .collect(),
        policy: image
            .policy
            .iter()
            .map(|(k, v)| ((k.table, k.identity, k.node), *v))
            .collect(),
        endpoints: image
            .endpoints
            .iter()
            .map(|(p, e)| (m.pods[*p].key(), *e))
            .collect(),
    }
}

fn next(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let spec = ClusterSpec {
        seed: 1,
        namespaces: 50,
        apps_per_namespace: 12,
        pods: args.first().copied().unwrap_or(10_000),
        policies: args.get(1).copied().unwrap_or(1_000),
        labels: LabelMode::Realistic,
    };
    let m = spec.build().model;
    let n = m.pods.len();
    // The twin: the first pod from the middle on without a unique label.
    let twin = (n / 2..n)
        .find(|&i| !m.pods[i].labels.contains_key(POD_NAME_LABEL))
        .expect("a replica pod");
    let used: BTreeSet<IpAddr> = m.pods.iter().flat_map(|p| p.ips.clone()).collect();
    let mut pod = m.pods[twin].clone();
    pod.name = format!("{}-twin", pod.name);
    pod.source.name = pod.name.clone();
    pod.ips = pod
        .ips
        .iter()
        .map(|&a| {
            let mut b = next(a);
            while used.contains(&b) {
                b = next(b);
            }
            b
        })
        .collect();
    let mut m2 = m.clone();
    m2.pods.insert(twin + 1, pod.clone());
    let t = Instant::now();
    let (c1, c2) = (compile(&m), compile(&m2));
    let compile_ms = t.elapsed().as_secs_f64() * 1e3 / 2.0;
    let (a, b) = (keyed(&m, &c1.map_image(0)), keyed(&m2, &c2.map_image(0)));
    let rows: BTreeMap<&str, (usize, usize, usize)> = [
        (
            "IDENTITIES",
            (
                a.identities.len(),
                b.identities.len(),
                differ(&a.identities, &b.identities),
            ),
        ),
        (
            "POLICY (tree nodes)",
            (a.policy.len(), b.policy.len(), differ(&a.policy, &b.policy)),
        ),
        (
            "ENDPOINTS",
            (
                a.endpoints.len(),
                b.endpoints.len(),
                differ(&a.endpoints, &b.endpoints),
            ),
        ),
    ]
    .into_iter()
    .collect();
    println!(
        "{n} pods, {} policies; twin of pod {twin} ({}) inserted at {}; compile {compile_ms:.0} ms each",
        m.policies.len(),
        m.pods[twin].key(),
        twin + 1
    );
    println!("| map | entries before | entries after | entries that differ |");
    println!("|---|---|---|---|");
    let mut total = (0, 0, 0);
    for (map, (x, y, d)) in rows {
        println!("| {map} | {x} | {y} | {d} |");
        total = (total.0 + x, total.1 + y, total.2 + d);
    }
    println!("| total | {} | {} | {} |", total.0, total.1, total.2);
}
