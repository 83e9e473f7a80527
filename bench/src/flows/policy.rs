//! The flow benchmark's policy and the tuples of its flows.
//!
//! The model: namespace `bench` with the pod under test (`app=subject`,
//! bound to ifindex 1 for `BPF_PROG_TEST_RUN`) and its peer pod
//! (`app=peer`), and [`BACKGROUND_PODS`] unselected pods in namespace
//! `background` so IDENTITIES and the enricher have a realistic size. One
//! policy isolates the subject in both directions: no ingress rule, one
//! egress rule allowing UDP ports [`PORT_LO`]..=[`PORT_HI`] to the ipBlock
//! [`DST_NET`] (`198.18.0.0/15`, the benchmarking range).
//!
//! Flow `n` of a run (see [`Tuples`]) leaves the subject's address from a
//! source port and to a destination address and port derived from `n`, so
//! no 5-tuple repeats within a run: the destination port varies fastest,
//! then the destination address, then the source port. [`Tuples::index`]
//! maps a tuple back to `n`, which is how the JSON Lines check proves that
//! every driven flow was exported exactly once.

use std::net::Ipv4Addr;

use bulkhead_common::EndpointInfo;
use bulkhead_flows::Enricher;
use bulkhead_netns_tests::dataplane::LO_IFINDEX;
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::{IpBlock, Model, Peer, Policy, PortMatch, PortSpec, Protocol, Rule};
use ipnetwork::{IpNetwork, Ipv4Network};

use crate::synthetic::{self, BenchImage, app_selector, bench_pods, origin};

pub use crate::synthetic::BACKGROUND_PODS;
/// Lowest destination (and source) port of the flows.
pub const PORT_LO: u16 = 1024;
/// Highest destination (and source) port of the flows.
pub const PORT_HI: u16 = 65_535;
/// Ports in `PORT_LO..=PORT_HI`.
const PORTS: u64 = (PORT_HI - PORT_LO) as u64 + 1;
/// First address of the destination block.
pub const DST_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Prefix length of the destination block.
pub const DST_PREFIX: u8 = 15;
/// The destination block, `198.18.0.0/15`.
pub const DST_NET: &str = "198.18.0.0/15";
/// Addresses in the destination block.
const ADDRS: u64 = 1 << (32 - DST_PREFIX);

/// The compiled policy, ready to write into the maps.
pub struct FlowPolicy {
    /// The model (kept for the enricher).
    pub model: Model,
    /// The compiled policy.
    pub compiled: Compiled,
    /// The map image (the subject and its peer local) for `slot`.
    pub image: MapImage,
    /// The subject's endpoint value.
    pub subject: EndpointInfo,
    /// The subject's model index.
    pub subject_index: usize,
    /// The subject's IPv4 address.
    pub subject_ip: Ipv4Addr,
    /// The subject's MAC.
    pub subject_mac: [u8; 6],
    /// IDENTITIES entries of the image.
    pub identity_entries: usize,
}

/// The model (normalized, addresses assigned).
pub fn model() -> Model {
    let net = Ipv4Network::new(DST_BASE, DST_PREFIX).expect("valid prefix");
    let egress = Rule {
        peers: Some(vec![Peer::IpBlock(IpBlock {
            cidr: IpNetwork::V4(net),
            except: Vec::new(),
        })]),
        ports: Some(vec![PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(PORT_LO, PORT_HI),
        }]),
    };
    let policy = Policy {
        namespace: "bench".into(),
        name: "subject-egress-udp".into(),
        pod_selector: app_selector("subject"),
        ingress: Some(Vec::new()),
        egress: Some(vec![egress]),
        origin: origin("flow-bench", 0),
        mode: None,
    };
    synthetic::model(bench_pods("flow-bench"), vec![policy])
}

impl FlowPolicy {
    /// Builds and compiles the model for `slot`.
    pub fn new(slot: u8) -> Self {
        let model = model();
        let compiled = compile(&model);
        let b = BenchImage::new(&model, &compiled, slot);
        Self {
            identity_entries: b.image.identities.len(),
            subject_mac: b.subject.mac,
            subject: b.subject,
            subject_index: b.subject_index,
            subject_ip: b.subject_ip,
            image: b.image,
            compiled,
            model,
        }
    }

    /// An enricher for `revision`, with the subject on [`LO_IFINDEX`], as
    /// the agent builds one for its node.
    pub fn enricher(&self, revision: u64) -> Enricher {
        Enricher::new(
            &self.model,
            &self.compiled,
            &[(self.subject_index, LO_IFINDEX)],
            revision,
        )
    }
}

/// The tuples of a run's flows: flow `n` ↔ (source port, destination
/// address, destination port), from the subject's fixed address.
#[derive(Clone, Copy, Debug)]
pub struct Tuples;

impl Tuples {
    /// Flows a run can drive without repeating a tuple.
    pub const MAX: u64 = PORTS * ADDRS * PORTS;

    /// Flow `n`'s (source port, destination address, destination port).
    pub fn tuple(n: u64) -> (u16, Ipv4Addr, u16) {
        debug_assert!(n < Self::MAX);
        let dport = PORT_LO + (n % PORTS) as u16;
        let m = n / PORTS;
        let dst = Ipv4Addr::from(u32::from(DST_BASE) + (m % ADDRS) as u32);
        let sport = PORT_LO + (m / ADDRS) as u16;
        (sport, dst, dport)
    }

    /// The `n` of a tuple, if it is one of ours.
    pub fn index(sport: u16, dst: Ipv4Addr, dport: u16) -> Option<u64> {
        let off = u32::from(dst).checked_sub(u32::from(DST_BASE))? as u64;
        if off >= ADDRS || sport < PORT_LO || dport < PORT_LO {
            return None;
        }
        Some((u64::from(sport - PORT_LO) * ADDRS + off) * PORTS + u64::from(dport - PORT_LO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_round_trip_and_stay_in_the_allowed_range() {
        for n in [
            0,
            1,
            PORTS - 1,
            PORTS,
            PORTS * ADDRS - 1,
            PORTS * ADDRS + 7,
            12_345_678_901,
        ] {
            let (sport, dst, dport) = Tuples::tuple(n);
            assert!(sport >= PORT_LO && dport >= PORT_LO);
            assert!(
                Ipv4Network::new(DST_BASE, DST_PREFIX)
                    .unwrap()
                    .contains(dst)
            );
            assert_eq!(Tuples::index(sport, dst, dport), Some(n), "{n}");
        }
        assert_eq!(
            Tuples::index(PORT_LO, Ipv4Addr::new(10, 0, 0, 1), PORT_LO),
            None
        );
    }

    #[test]
    fn the_subject_is_isolated_with_an_egress_table() {
        let p = FlowPolicy::new(0);
        use bulkhead_common::{ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS};
        assert_ne!(p.subject.flags & ENDPOINT_ISOLATED_EGRESS, 0);
        assert_ne!(p.subject.flags & ENDPOINT_ISOLATED_INGRESS, 0);
    }
}
