//! How much of the map image one small model change moves: compiles the
//! policy bench's 10k-pod model (1,000 policies, realistic labels) and the
//! same model with one more pod inserted in the middle of the pod list (a
//! twin of an existing pod: same namespace, labels and ports, a fresh
//! address in the same ipBlocks as the twin's, so it joins the twin's
//! identity), and counts the image entries that differ
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
    let used: BTreeSet<IpAddr> = m.pods.iter().flat_map(|p| p.ips.clone()).collect();
    let t = Instant::now();
    let c1 = compile(&m);
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    // Fresh addresses for a twin of pod `i`: each within 256 of the
    // twin's, unused, in the same region (the same ipBlocks).
    let fresh = |i: usize| -> Option<Vec<IpAddr>> {
        m.pods[i]
            .ips
            .iter()
            .map(|&a| {
                let region = c1.regions.lookup(a);
                let mut b = a;
                (0..256).find_map(|_| {
                    b = next(b);
                    (!used.contains(&b) && c1.regions.lookup(b) == region).then_some(b)
                })
            })
            .collect()
    };
    // The twin: the first pod from the middle on without a unique label
    // that has such addresses (pod addresses are dense: one near the end).
    let (twin, ips) = (n / 2..n)
        .filter(|&i| !m.pods[i].labels.contains_key(POD_NAME_LABEL))
        .find_map(|i| fresh(i).map(|ips| (i, ips)))
        .expect("a replica pod");
    let mut pod = m.pods[twin].clone();
    pod.name = format!("{}-twin", pod.name);
    pod.source.name = pod.name.clone();
    pod.ips = ips;
    let mut m2 = m.clone();
    // In the middle of the list, whatever the twin's place.
    let at = n / 2;
    m2.pods.insert(at, pod.clone());
    let c2 = compile(&m2);
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
        "{n} pods, {} policies; twin of pod {twin} ({}) inserted at {at}; compile {compile_ms:.0} ms",
        m.policies.len(),
        m.pods[twin].key(),
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
