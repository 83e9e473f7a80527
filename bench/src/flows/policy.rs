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
use serde::Serialize;

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

/// Destination ports per destination address in [`Tuples::Edges`]: edge
/// `e` is (address `e / EDGE_PORTS`, port `PORT_LO + e % EDGE_PORTS`) of
/// the block.
pub const EDGE_PORTS: u64 = 100;

/// The tuples of a run's flows: flow `n` ↔ (source port, destination
/// address, destination port), from the subject's fixed address. No tuple
/// repeats within a run in either layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "layout")]
pub enum Tuples {
    /// Every flow its own edge (destination address and port): the
    /// destination port varies fastest, then the destination address, then
    /// the source port (the flow benchmark).
    Distinct,
    /// Flows over a fixed set of edges, with a share of deviations to new
    /// edges (the alerting benchmark; see [`EdgeLayout`]).
    Edges(EdgeLayout),
}

/// Flows spread over `known` edges (those a baseline holds), every
/// `every`-th flow a deviation to a new edge, `per_new` deviating flows
/// per new edge, new edges in order.
///
/// Edge `e` is [`EdgeLayout::edge`]`(e)`: edges `0..known` are the known
/// ones, `known + k` the `k`-th new one. A regular flow (the `i`-th)
/// takes known edge `i % known` from source port `PORT_LO + i / known`; a
/// deviating flow (the `j`-th) takes new edge `known + j / per_new` from
/// source port `PORT_LO + j % per_new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeLayout {
    /// Known edges the regular flows cycle through.
    pub known: u64,
    /// Flow `n` is a deviation when `n % every == every - 1`; 0: none.
    pub every: u64,
    /// Deviating flows per new edge (at most the source ports).
    pub per_new: u64,
}

impl EdgeLayout {
    /// Edges the layout can address.
    pub const MAX_EDGES: u64 = ADDRS * EDGE_PORTS;
    /// Most deviating flows per new edge (one source port each).
    pub const MAX_PER_NEW: u64 = PORTS;

    /// A layout, if its numbers fit the address block and the ports.
    pub fn new(known: u64, every: u64, per_new: u64) -> Option<Self> {
        let ok =
            (1..Self::MAX_EDGES).contains(&known) && every != 1 && (1..=PORTS).contains(&per_new);
        ok.then_some(Self {
            known,
            every,
            per_new,
        })
    }

    /// Edge `e`'s destination address and port.
    pub fn edge(e: u64) -> (Ipv4Addr, u16) {
        debug_assert!(e < Self::MAX_EDGES);
        let dst = Ipv4Addr::from(u32::from(DST_BASE) + (e / EDGE_PORTS) as u32);
        (dst, PORT_LO + (e % EDGE_PORTS) as u16)
    }

    /// The edge of a destination address and port, if one of ours.
    fn edge_of(dst: Ipv4Addr, dport: u16) -> Option<u64> {
        let off = u64::from(u32::from(dst).checked_sub(u32::from(DST_BASE))?);
        let port = u64::from(dport.checked_sub(PORT_LO)?);
        (off < ADDRS && port < EDGE_PORTS).then_some(off * EDGE_PORTS + port)
    }

    /// Whether flow `n` is a deviation.
    pub fn deviates(&self, n: u64) -> bool {
        self.every > 0 && n % self.every == self.every - 1
    }

    /// Deviating flows among flows `0..n`.
    pub fn deviations(&self, n: u64) -> u64 {
        n.checked_div(self.every).unwrap_or(0)
    }

    /// New edges that flows `0..n` reach.
    pub fn new_edges(&self, n: u64) -> u64 {
        self.deviations(n).div_ceil(self.per_new)
    }

    fn tuple(&self, n: u64) -> (u16, Ipv4Addr, u16) {
        let (sport, e) = if self.deviates(n) {
            let j = n / self.every;
            (j % self.per_new, self.known + j / self.per_new)
        } else {
            let i = n - self.deviations(n);
            (i / self.known, i % self.known)
        };
        let (dst, dport) = Self::edge(e);
        (PORT_LO + sport as u16, dst, dport)
    }

    fn index(&self, sport: u16, dst: Ipv4Addr, dport: u16) -> Option<u64> {
        let e = Self::edge_of(dst, dport)?;
        let s = u64::from(sport.checked_sub(PORT_LO)?);
        if e < self.known {
            let i = s * self.known + e;
            Some(match self.every {
                0 => i,
                k => i / (k - 1) * k + i % (k - 1),
            })
        } else {
            if self.every == 0 || s >= self.per_new {
                return None;
            }
            let j = (e - self.known) * self.per_new + s;
            Some(j * self.every + self.every - 1)
        }
    }
}

impl Tuples {
    /// Flows a run can drive without repeating a tuple.
    pub fn max(&self) -> u64 {
        match self {
            Tuples::Distinct => PORTS * ADDRS * PORTS,
            // Regular flows run out of source ports first; new edges run
            // out of addresses.
            Tuples::Edges(l) => {
                let regular = l.known * PORTS;
                let deviating = (EdgeLayout::MAX_EDGES - l.known) * l.per_new;
                match l.every {
                    0 => regular,
                    k => (regular / (k - 1) * k).min(deviating.saturating_mul(k)),
                }
            }
        }
    }

    /// Flow `n`'s (source port, destination address, destination port).
    pub fn tuple(&self, n: u64) -> (u16, Ipv4Addr, u16) {
        debug_assert!(n < self.max());
        match self {
            Tuples::Distinct => {
                let dport = PORT_LO + (n % PORTS) as u16;
                let m = n / PORTS;
                let dst = Ipv4Addr::from(u32::from(DST_BASE) + (m % ADDRS) as u32);
                let sport = PORT_LO + (m / ADDRS) as u16;
                (sport, dst, dport)
            }
            Tuples::Edges(l) => l.tuple(n),
        }
    }

    /// The `n` of a tuple, if it is one of ours.
    pub fn index(&self, sport: u16, dst: Ipv4Addr, dport: u16) -> Option<u64> {
        match self {
            Tuples::Distinct => {
                let off = u32::from(dst).checked_sub(u32::from(DST_BASE))? as u64;
                if off >= ADDRS || sport < PORT_LO || dport < PORT_LO {
                    return None;
                }
                Some(
                    (u64::from(sport - PORT_LO) * ADDRS + off) * PORTS + u64::from(dport - PORT_LO),
                )
            }
            Tuples::Edges(l) => l.index(sport, dst, dport),
        }
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
            let (sport, dst, dport) = Tuples::Distinct.tuple(n);
            assert!(sport >= PORT_LO && dport >= PORT_LO);
            assert!(
                Ipv4Network::new(DST_BASE, DST_PREFIX)
                    .unwrap()
                    .contains(dst)
            );
            assert_eq!(Tuples::Distinct.index(sport, dst, dport), Some(n), "{n}");
        }
        assert_eq!(
            Tuples::Distinct.index(PORT_LO, Ipv4Addr::new(10, 0, 0, 1), PORT_LO),
            None
        );
    }

    #[test]
    fn edge_layout_round_trips_with_its_share_of_deviations() {
        let l = EdgeLayout::new(1_000, 100, 7).unwrap();
        let t = Tuples::Edges(l);
        let n = 250_000;
        let mut tuples = std::collections::HashSet::new();
        let mut known = std::collections::HashSet::new();
        let mut new = std::collections::HashSet::new();
        for i in 0..n {
            let (sport, dst, dport) = t.tuple(i);
            assert!(
                tuples.insert((sport, dst, dport)),
                "flow {i} repeats a tuple"
            );
            assert_eq!(t.index(sport, dst, dport), Some(i), "{i}");
            let e = EdgeLayout::edge_of(dst, dport).unwrap();
            assert_eq!(e >= l.known, l.deviates(i), "{i}");
            if e < l.known {
                known.insert(e);
            } else {
                new.insert(e);
            }
        }
        assert_eq!(l.deviations(n), 2_500);
        assert_eq!(known.len(), 1_000, "every known edge is used");
        assert_eq!(new.len() as u64, l.new_edges(n));
        assert_eq!(new.len(), 2_500usize.div_ceil(7));
        // Not ours: outside the block, a port beyond the edge ports, a
        // deviation's source port beyond `per_new`.
        assert_eq!(t.index(PORT_LO, Ipv4Addr::new(10, 0, 0, 1), PORT_LO), None);
        assert_eq!(
            t.index(PORT_LO, DST_BASE, PORT_LO + EDGE_PORTS as u16),
            None
        );
        let (dst, dport) = EdgeLayout::edge(l.known);
        assert_eq!(t.index(PORT_LO + 7, dst, dport), None);
        assert!(t.max() > 60_000_000, "a minute at 1M/s fits");
        assert_eq!(EdgeLayout::new(0, 100, 7), None);
        assert_eq!(EdgeLayout::new(10, 1, 7), None);
    }

    #[test]
    fn edge_layout_without_deviations_uses_known_edges_only() {
        let t = Tuples::Edges(EdgeLayout::new(10, 0, 1).unwrap());
        for i in 0..1_000 {
            let (sport, dst, dport) = t.tuple(i);
            assert!(EdgeLayout::edge_of(dst, dport).unwrap() < 10);
            assert_eq!(t.index(sport, dst, dport), Some(i));
        }
    }

    #[test]
    fn the_subject_is_isolated_with_an_egress_table() {
        let p = FlowPolicy::new(0);
        use bulkhead_common::{ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS};
        assert_ne!(p.subject.flags & ENDPOINT_ISOLATED_EGRESS, 0);
        assert_ne!(p.subject.flags & ENDPOINT_ISOLATED_INGRESS, 0);
    }
}
