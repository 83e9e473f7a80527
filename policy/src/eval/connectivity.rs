//! Every allowed connection under a compiled policy: pod to pod, pod to
//! external CIDR and external CIDR to pod, with merged port ranges.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use bulkhead_common::{IDENTITY_ANY, PROTO_ANY};
use ipnetwork::IpNetwork;

use crate::compile::{Compiled, IdentityId, IdentityKind, RuleTable, TableId};
use crate::model::{Direction, Model, Protocol};

/// Sorted, disjoint, non-adjacent inclusive port ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ranges(pub Vec<(u16, u16)>);

impl Ranges {
    /// Ports 1-65535 (port 0 is not connectable).
    pub fn all() -> Self {
        Ranges(vec![(1, u16::MAX)])
    }

    /// From any ranges: sorted, clamped to 1-65535, merged.
    pub fn from_unsorted(mut v: Vec<(u16, u16)>) -> Self {
        v.retain(|r| r.1 >= 1);
        for r in &mut v {
            r.0 = r.0.max(1);
        }
        v.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Ranges(out)
    }

    /// Ports in both.
    pub fn intersect(&self, other: &Ranges) -> Ranges {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        Ranges(out)
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let i = self.0.partition_point(|r| r.1 < port);
        self.0.get(i).is_some_and(|r| r.0 <= port)
    }

    /// Whether no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Allowed ports per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSets {
    /// TCP, UDP, SCTP in [`Protocol::ALL`] order.
    pub by_protocol: [Ranges; 3],
}

impl PortSets {
    /// Everything.
    pub fn all() -> Self {
        PortSets {
            by_protocol: [Ranges::all(), Ranges::all(), Ranges::all()],
        }
    }

    /// The ranges of one protocol.
    pub fn get(&self, p: Protocol) -> &Ranges {
        &self.by_protocol[Protocol::ALL.iter().position(|x| *x == p).expect("listed")]
    }

    /// Allowed by both.
    pub fn intersect(&self, other: &PortSets) -> PortSets {
        PortSets {
            by_protocol: std::array::from_fn(|i| {
                self.by_protocol[i].intersect(&other.by_protocol[i])
            }),
        }
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.by_protocol.iter().all(Ranges::is_empty)
    }

    /// Whether everything is allowed.
    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }
}

/// One side of a connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A pod, `namespace/name`.
    Pod(String),
    /// Non-pod addresses in a CIDR.
    External(IpNetwork),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Pod(k) => f.write_str(k),
            Peer::External(n) => write!(f, "{n}"),
        }
    }
}

/// An allowed connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Source.
    pub src: Peer,
    /// Destination.
    pub dst: Peer,
    /// Set only for pod pairs whose IPv4 and IPv6 answers differ: the family
    /// this line is about.
    pub family: Option<&'static str>,
    /// What is allowed.
    pub allowed: PortSets,
}

/// Port sets a table grants a peer, cached.
struct Grants<'c> {
    compiled: &'c Compiled,
    cache: RefCell<HashMap<(TableId, IdentityId), PortSets>>,
}

impl Grants<'_> {
    fn of(&self, table: Option<TableId>, peer: IdentityId) -> PortSets {
        let Some(table) = table else {
            return PortSets::all();
        };
        if let Some(s) = self.cache.borrow().get(&(table, peer)) {
            return s.clone();
        }
        let sets = table_grants(self.compiled, Some(table), peer);
        self.cache.borrow_mut().insert((table, peer), sets.clone());
        sets
    }
}

/// The ports a rule table grants `peer`, per protocol, as the evaluator
/// decides them; everything when `table` is `None` (the direction is not
/// isolated).
pub fn table_grants(compiled: &Compiled, table: Option<TableId>, peer: IdentityId) -> PortSets {
    let Some(table) = table else {
        return PortSets::all();
    };
    let t = &compiled.tables[table as usize];
    if t.tiered() {
        return tiered_grants(t, peer);
    }
    let segs = |key| {
        t.groups
            .get(&key)
            .into_iter()
            .flatten()
            .map(|s| (s.lo, s.hi))
    };
    PortSets {
        by_protocol: Protocol::ALL.map(|p| {
            let proto = p.number();
            Ranges::from_unsorted(
                segs((peer, proto))
                    .chain(segs((peer, PROTO_ANY)))
                    .chain(segs((IDENTITY_ANY, proto)))
                    .chain(segs((IDENTITY_ANY, PROTO_ANY)))
                    .collect(),
            )
        }),
    }
}

/// The ports a tiered table allows `peer`, per protocol: the table's
/// decision on each interval between segment boundaries (a decision is
/// constant within one).
fn tiered_grants(t: &RuleTable, peer: IdentityId) -> PortSets {
    PortSets {
        by_protocol: Protocol::ALL.map(|p| {
            let proto = p.number();
            let mut cuts: Vec<u32> = vec![0, u16::MAX as u32 + 1];
            for key in [
                (peer, proto),
                (peer, PROTO_ANY),
                (IDENTITY_ANY, proto),
                (IDENTITY_ANY, PROTO_ANY),
            ] {
                for s in t.groups.get(&key).into_iter().flatten() {
                    cuts.extend([s.lo as u32, s.hi as u32 + 1]);
                }
            }
            cuts.sort_unstable();
            cuts.dedup();
            let allowed = cuts
                .windows(2)
                .filter(|w| match t.lookup(peer, proto, w[0] as u16) {
                    Some(s) => !s.deny,
                    None => !t.isolated(),
                })
                .map(|w| (w[0] as u16, (w[1] - 1) as u16))
                .collect();
            Ranges::from_unsorted(allowed)
        }),
    }
}

/// Every connection with anything allowed, sorted by (src, dst).
pub fn connectivity(model: &Model, compiled: &Compiled) -> Vec<Connection> {
    let grants = Grants {
        compiled,
        cache: RefCell::default(),
    };
    let mut out = Vec::new();
    let table = |p: usize, d| compiled.endpoints[p].table(d);
    for (s, src) in model.pods.iter().enumerate() {
        for (d, dst) in model.pods.iter().enumerate() {
            if s == d {
                continue;
            }
            let mut per_family: Vec<(&'static str, PortSets)> = Vec::new();
            for (family, v4) in [("IPv4", true), ("IPv6", false)] {
                let sa = src.ips.iter().find(|a| a.is_ipv4() == v4);
                let da = dst.ips.iter().find(|a| a.is_ipv4() == v4);
                if let (Some(&sa), Some(&da)) = (sa, da) {
                    let e = grants.of(table(s, Direction::Egress), compiled.identity_of(da));
                    let i = grants.of(table(d, Direction::Ingress), compiled.identity_of(sa));
                    per_family.push((family, e.intersect(&i)));
                }
            }
            let same = per_family.windows(2).all(|w| w[0].1 == w[1].1);
            for (family, allowed) in per_family.iter().take(if same { 1 } else { 2 }) {
                if !allowed.is_empty() {
                    out.push(Connection {
                        src: Peer::Pod(src.key()),
                        dst: Peer::Pod(dst.key()),
                        family: (!same).then_some(*family),
                        allowed: allowed.clone(),
                    });
                }
            }
        }
        for d in Direction::ALL {
            for (net, allowed) in external(compiled, &grants, table(s, d), src.ips.as_slice()) {
                let (a, b) = (Peer::Pod(src.key()), Peer::External(net));
                let (from, to) = if d == Direction::Egress {
                    (a, b)
                } else {
                    (b, a)
                };
                out.push(Connection {
                    src: from,
                    dst: to,
                    family: None,
                    allowed,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.src, &a.dst, a.family).cmp(&(&b.src, &b.dst, b.family)));
    out
}

/// External CIDRs (of the families the pod has) and what `table` grants
/// them, neighbours with equal grants aggregated.
fn external(
    compiled: &Compiled,
    grants: &Grants<'_>,
    table: Option<TableId>,
    ips: &[IpAddr],
) -> Vec<(IpNetwork, PortSets)> {
    let mut out = Vec::new();
    for v4 in [true, false] {
        if !ips.iter().any(|a| a.is_ipv4() == v4) {
            continue;
        }
        let mut prefixes: Vec<(IpNetwork, PortSets)> = Vec::new();
        for identity in &compiled.identities.list {
            let IdentityKind::External { region } = identity.kind else {
                continue;
            };
            let region = &compiled.regions.regions[region as usize];
            if region.ipv4 != v4 {
                continue;
            }
            let sets = grants.of(table, identity.id);
            if sets.is_empty() {
                continue;
            }
            prefixes.extend(region.prefixes.iter().map(|n| (*n, sets.clone())));
        }
        prefixes
            .sort_by_key(|(n, _)| (crate::compile::address::addr_bits(n.network()), n.prefix()));
        out.extend(aggregate(prefixes));
    }
    out
}

/// Merges sibling prefixes with equal values into their parent, repeatedly.
fn aggregate(sorted: Vec<(IpNetwork, PortSets)>) -> Vec<(IpNetwork, PortSets)> {
    let mut stack: Vec<(IpNetwork, PortSets)> = Vec::new();
    for item in sorted {
        stack.push(item);
        while stack.len() >= 2 {
            let (b, bs) = &stack[stack.len() - 1];
            let (a, as_) = &stack[stack.len() - 2];
            let Some(parent) = sibling_parent(a, b) else {
                break;
            };
            if as_ != bs {
                break;
            }
            let sets = bs.clone();
            stack.truncate(stack.len() - 2);
            stack.push((parent, sets));
        }
    }
    stack
}

/// The parent of `a` and `b` when they are its two halves, in order.
fn sibling_parent(a: &IpNetwork, b: &IpNetwork) -> Option<IpNetwork> {
    if a.is_ipv4() != b.is_ipv4() || a.prefix() != b.prefix() || a.prefix() == 0 {
        return None;
    }
    let parent = IpNetwork::new(a.network(), a.prefix() - 1).ok()?;
    let parent = IpNetwork::new(parent.network(), parent.prefix()).ok()?;
    (parent.network() == a.network() && parent.contains(b.network()) && a.network() != b.network())
        .then_some(parent)
}
