//! The acceptance lab of issue 18 (`policies/boutique/`): its call graph
//! and what its learning window holds besides, written once for the lab
//! test (`lab_learn_app.rs`) and the demo's scene
//! (`xtask/src/demo/boutique.rs`, which includes this file).

use std::collections::BTreeSet;

use super::{BOTH, Logged};

/// The shop's call graph: (client, server, TCP port), pods by workload.
pub const CALL_GRAPH: [(&str, &str, u16); 16] = [
    ("boutique/loadgenerator", "boutique/frontend", 8080),
    ("boutique/frontend", "boutique/productcatalogservice", 3550),
    ("boutique/frontend", "boutique/currencyservice", 7000),
    ("boutique/frontend", "boutique/cartservice", 7070),
    ("boutique/frontend", "boutique/recommendationservice", 8080),
    ("boutique/frontend", "boutique/shippingservice", 50051),
    ("boutique/frontend", "boutique/checkoutservice", 5050),
    ("boutique/frontend", "boutique/adservice", 9555),
    (
        "boutique/checkoutservice",
        "boutique/productcatalogservice",
        3550,
    ),
    (
        "boutique/checkoutservice",
        "boutique/shippingservice",
        50051,
    ),
    ("boutique/checkoutservice", "boutique/paymentservice", 50051),
    ("boutique/checkoutservice", "boutique/emailservice", 8080),
    ("boutique/checkoutservice", "boutique/currencyservice", 7000),
    ("boutique/checkoutservice", "boutique/cartservice", 7070),
    (
        "boutique/recommendationservice",
        "boutique/productcatalogservice",
        3550,
    ),
    ("boutique/cartservice", "boutique/redis-cart", 6379),
];
/// Connections of each call-graph edge (and DNS lookups of each pod) per
/// learning run: at the default `--rare-below` (3), none of them is rare.
pub const ROUNDS: usize = 3;
/// The DNS server's pod.
pub const DNS_SERVER: &str = "kube-system/coredns";
/// The `kube-dns` Service (its ClusterIP in `policies/boutique/kube-system.yaml`).
pub const KUBE_DNS: &str = "10.96.0.10:53";
/// The workload deployed but idle while learning.
pub const IDLE: &str = "boutique/reports";
/// The internet client seen while learning (an external lab host).
pub const CLIENT: &str = "203.0.113.10";
/// An internet client never seen while learning.
pub const NEW_CLIENT: &str = "198.51.100.20";
/// The internet-facing workload, its LoadBalancer Service and port.
pub const FRONTEND: &str = "boutique/frontend";
pub const FRONTEND_LB: &str = "boutique/frontend-external (LoadBalancer)";
pub const FRONTEND_PORT: u16 = 8080;
/// The stray connection, made once.
pub const STRAY: (&str, &str, u16) = ("boutique/adservice", "boutique/paymentservice", 50051);
/// With defaults (`--min-flows 1`) a stray edge is proposed and flagged
/// rare, not left out: applied, it connects.
pub const STRAY_PROPOSED: bool = true;
/// The scanner, its targets (not the DNS server) and ports.
pub const SCANNER: &str = "boutique/recommendationservice";
pub const SCANNED: [&str; 3] = [
    "boutique/cartservice",
    "boutique/productcatalogservice",
    "boutique/shippingservice",
];
pub const SCAN_FIRST: u16 = 1;
pub const SCAN_LAST: u16 = 100;
/// The one port of the scan with a server behind it (productcatalog's
/// admin listener): the scan connected there while learning.
pub const SCAN_LISTENER: (&str, &str, u16) = (SCANNER, "boutique/productcatalogservice", 80);
/// A connection the shop never makes.
pub const UNLEARNED: (&str, &str, u16) =
    ("boutique/loadgenerator", "boutique/checkoutservice", 5050);

/// The app's pods that look names up while learning: every pod of the
/// call graph (all but `reports`).
pub fn dns_clients() -> BTreeSet<&'static str> {
    CALL_GRAPH.iter().flat_map(|(c, s, _)| [*c, *s]).collect()
}

/// The workload of a shop pod, as the proof names it (each is a
/// Deployment's): `ns/name` → `ns/Deployment/name`.
pub fn workload(pod: &str) -> String {
    pod.replacen('/', "/Deployment/", 1)
}

/// The flow records a learning window of the shop holds once its traffic
/// is over: every call-graph edge and every pod's DNS [`ROUNDS`] times at
/// both ends, the internet client's connections at the frontend's end (it
/// is no pod), the stray and each scan probe once at both ends.
pub fn window_records() -> Vec<Logged<'static>> {
    let steady = |conn| Logged {
        conn,
        sides: BOTH,
        at_least: ROUNDS,
    };
    let once = |conn| Logged {
        conn,
        sides: BOTH,
        at_least: 1,
    };
    let mut wanted: Vec<Logged> = CALL_GRAPH.map(steady).to_vec();
    wanted.extend(
        dns_clients()
            .into_iter()
            .map(|c| steady((c, DNS_SERVER, 53))),
    );
    wanted.push(Logged {
        conn: (CLIENT, FRONTEND, FRONTEND_PORT),
        sides: &["ingress"],
        at_least: ROUNDS,
    });
    wanted.push(once(STRAY));
    for target in SCANNED {
        wanted.extend((SCAN_FIRST..=SCAN_LAST).map(|port| once((SCANNER, target, port))));
    }
    wanted
}
