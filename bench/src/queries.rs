//! Fixed, seeded sets of evaluator queries (source, destination, protocol,
//! port) over a model's pods and some external addresses.
//!
//! The mix leans towards traffic policies talk about (a destination pod's
//! own container ports, same-namespace peers) so that both the allow and the
//! deny paths are exercised, not just the first-lookup miss.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulkhead_policy::model::{Model, Protocol};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IANA protocol number.
    pub proto: u8,
    /// Destination port.
    pub port: u16,
}

/// Ports a client commonly tries, besides the destination's own.
const COMMON_PORTS: [u16; 14] = [
    80, 443, 8080, 8443, 53, 5432, 6379, 9090, 50051, 3868, 38412, 5050, 31000, 8050,
];

fn external(rng: &mut ChaCha8Rng, v4: bool) -> IpAddr {
    if v4 {
        let pool = [
            Ipv4Addr::new(203, 0, 113, rng.random_range(0..128)),
            Ipv4Addr::new(198, 51, 100, rng.random()),
            Ipv4Addr::new(8, 8, 8, 8),
            Ipv4Addr::new(10, 1, 2, rng.random()),
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(172, 17, 0, 4),
            Ipv4Addr::new(10, 96, 0, 10),
        ];
        pool[rng.random_range(0..pool.len())].into()
    } else {
        let pool = [
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.random()),
            Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0xffff, 1),
            Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1),
        ];
        pool[rng.random_range(0..pool.len())].into()
    }
}

/// `n` queries over `model`'s pods (which must have one IPv4 and one IPv6
/// address each, as the default address plan gives).
pub fn generate(model: &Model, n: usize, seed: u64) -> Vec<Query> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pods = &model.pods;
    assert!(!pods.is_empty(), "queries need pods");
    // Pods are sorted by namespace: index ranges per namespace.
    let mut ns_range = vec![(0usize, 0usize); pods.len()];
    let mut start = 0;
    for i in 1..=pods.len() {
        if i == pods.len() || pods[i].namespace != pods[start].namespace {
            ns_range[start..i].fill((start, i));
            start = i;
        }
    }
    let addr = |p: usize, v4: bool| pods[p].ips.iter().copied().find(|a| a.is_ipv4() == v4);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v4 = rng.random_bool(0.75);
        let dst_pod = rng.random_range(0..pods.len());
        let kind = rng.random_range(0..100u32);
        let (src, dst, dst_is_pod) = if kind < 80 {
            let src_pod = if rng.random_bool(0.3) {
                let (lo, hi) = ns_range[dst_pod];
                rng.random_range(lo..hi)
            } else {
                rng.random_range(0..pods.len())
            };
            (addr(src_pod, v4), addr(dst_pod, v4), true)
        } else if kind < 90 {
            (Some(external(&mut rng, v4)), addr(dst_pod, v4), true)
        } else {
            (addr(dst_pod, v4), Some(external(&mut rng, v4)), false)
        };
        let (Some(src), Some(dst)) = (src, dst) else {
            continue;
        };
        let own = &pods[dst_pod].ports;
        let (proto, port) = if dst_is_pod && !own.is_empty() && rng.random_bool(0.6) {
            let p = &own[rng.random_range(0..own.len())];
            (p.protocol, p.port)
        } else {
            let proto = match rng.random_range(0..100u32) {
                0..80 => Protocol::Tcp,
                80..95 => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            let port = if rng.random_bool(0.7) {
                COMMON_PORTS[rng.random_range(0..COMMON_PORTS.len())]
            } else {
                rng.random()
            };
            (proto, port)
        };
        out.push(Query {
            src,
            dst,
            proto: proto.number(),
            port,
        });
    }
    out
}
