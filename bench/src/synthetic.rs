//! Pieces of the small hand-built models of the dataplane and flow
//! benchmarks: pods labelled `app=<name>`, the `bench` namespace's pod under
//! test (`subject`) and its peer (`peer`) with [`BACKGROUND_PODS`]
//! unselected pods in namespace `background`, and the map image with the
//! two `bench` pods local.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use bulkhead_common::EndpointInfo;
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Labels, Model, Origin, Pod, Policy, Requirement, Selector, Workload};

/// Unselected pods that fill IDENTITIES (two entries each: IPv4 and IPv6
/// address) and the enricher's tables.
pub const BACKGROUND_PODS: usize = 1000;

/// `app In (app)`.
pub fn app_selector(app: &str) -> Selector {
    Selector::new(vec![Requirement::In("app".into(), vec![app.into()])])
}

/// Document `document` of the synthetic file `synthetic/<source>`.
pub fn origin(source: &str, document: usize) -> Origin {
    Origin::File {
        file: PathBuf::from(format!("synthetic/{source}")),
        document,
    }
}

/// A bare pod `namespace/name` labelled `app=<app>`, with addresses `ips`
/// (empty: the address plan assigns them), from document `document` of
/// `synthetic/<source>`.
pub fn pod(
    namespace: &str,
    name: &str,
    app: &str,
    ips: Vec<IpAddr>,
    source: &str,
    document: usize,
) -> Pod {
    let mut labels = Labels::new();
    labels.insert("app".into(), app.into());
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner: None,
        labels,
        ports: Vec::new(),
        ips,
        claim: Default::default(),
        node: None,
        off_network: None,
        origin: origin(source, document),
    }
}

/// `bench/subject`, `bench/peer` and the [`BACKGROUND_PODS`] pods
/// `background/bg-NNNN`, all without addresses, from `synthetic/<source>`.
pub fn bench_pods(source: &str) -> Vec<Pod> {
    let mut pods = vec![
        pod("bench", "subject", "subject", Vec::new(), source, 0),
        pod("bench", "peer", "peer", Vec::new(), source, 1),
    ];
    for i in 0..BACKGROUND_PODS {
        let name = format!("bg-{i:04}");
        pods.push(pod("background", &name, "bg", Vec::new(), source, 2 + i));
    }
    pods
}

/// The model of `pods` and `policies`, normalized, addresses assigned.
pub fn model(pods: Vec<Pod>, policies: Vec<Policy>) -> Model {
    let mut model = Model {
        namespaces: Default::default(),
        pods,
        policies,
        ..Default::default()
    };
    model.normalize();
    AddressPlan::default()
        .assign(&mut model.pods)
        .expect("the default pod CIDRs hold the bench pods");
    model
}

/// The first IPv4 address of `pod`.
pub fn v4(pod: &Pod) -> Ipv4Addr {
    pod.ips
        .iter()
        .find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .expect("an IPv4 address")
}

/// The map image of a model of [`bench_pods`] with `bench/subject` and
/// `bench/peer` the node's pods, and what the benchmarks need of it.
pub struct BenchImage {
    /// The map image.
    pub image: MapImage,
    /// The subject's endpoint value.
    pub subject: EndpointInfo,
    /// The subject's model index.
    pub subject_index: usize,
    /// The subject's IPv4 address.
    pub subject_ip: Ipv4Addr,
    /// The peer's IPv4 address.
    pub peer_ip: Ipv4Addr,
}

impl BenchImage {
    /// The image of `compiled` (compiled from `model`) for `slot`.
    pub fn new(model: &Model, compiled: &Compiled, slot: u8) -> Self {
        let (si, subject) = model.pod("bench/subject").expect("subject pod");
        let (pi, peer) = model.pod("bench/peer").expect("peer pod");
        let image = compiled.map_image_for(slot, &[si, pi]);
        let info = image
            .endpoints
            .iter()
            .find(|(p, _)| *p == si)
            .map(|(_, i)| *i)
            .expect("the subject is local");
        Self {
            subject: info,
            subject_index: si,
            subject_ip: v4(subject),
            peer_ip: v4(peer),
            image,
        }
    }
}
