//! Which ports and external addresses to probe.

use std::collections::BTreeSet;

use bulkhead_policy::model::{Model, Peer, PortMatch};
use ipnetwork::IpNetwork;

/// Ports every case probes besides its own.
pub const FIXED_PORTS: [u32; 4] = [1, 53, 80, 65535];

/// External IPv4 addresses every case probes besides its own.
const FIXED_ADDRS: [u32; 3] = [0, 0x0808_0808, u32::MAX];

/// `p-1`, `p`, `p+1`.
fn around(p: u32) -> [u32; 3] {
    [p.saturating_sub(1), p, p + 1]
}

/// Ports of a case's policies: every port and range end (±1) of every
/// policy, and named ports resolved through every pod's container ports
/// (±1); all within 1..=65535.
pub fn policy_ports(model: &Model) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let named = |name: &str| -> Vec<u32> {
        model
            .pods
            .iter()
            .flat_map(|p| &p.ports)
            .filter(|cp| cp.name.as_deref() == Some(name))
            .map(|cp| u32::from(cp.port))
            .collect()
    };
    for policy in &model.policies {
        let rules = policy.ingress.iter().chain(&policy.egress).flatten();
        for spec in rules.flat_map(|r| r.ports.iter().flatten()) {
            match &spec.port {
                PortMatch::Any => {}
                PortMatch::Range(lo, hi) => {
                    out.extend([*lo, *hi].into_iter().flat_map(|p| around(p.into())))
                }
                PortMatch::Named(n) => out.extend(named(n).into_iter().flat_map(around)),
            }
        }
    }
    out.retain(|p| (1..=65535).contains(p));
    out
}

/// Probe ports for a case: [`policy_ports`], every container port (±1),
/// `extra` range ends (±1, from both outputs), and [`FIXED_PORTS`]; all
/// within 1..=65535.
pub fn ports(model: &Model, extra: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    let mut out = policy_ports(model);
    out.extend(
        model
            .pods
            .iter()
            .flat_map(|p| &p.ports)
            .flat_map(|cp| around(cp.port.into())),
    );
    out.extend(extra.into_iter().flat_map(around));
    out.extend(FIXED_PORTS);
    out.retain(|p| (1..=65535).contains(p));
    out
}

/// First and last IPv4 address of a CIDR (`None` for IPv6).
pub fn v4_bounds(net: &IpNetwork) -> Option<(u32, u32)> {
    match net {
        IpNetwork::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
        IpNetwork::V6(_) => None,
    }
}

/// Every IPv4 ipBlock CIDR and except of a case's policies.
pub fn policy_v4_blocks(model: &Model) -> Vec<(u32, u32)> {
    let rules = model
        .policies
        .iter()
        .flat_map(|p| p.ingress.iter().chain(&p.egress).flatten());
    rules
        .flat_map(|r| r.peers.iter().flatten())
        .filter_map(|peer| match peer {
            Peer::IpBlock(b) => Some(std::iter::once(&b.cidr).chain(&b.except)),
            Peer::Pods { .. } => None,
        })
        .flatten()
        .filter_map(v4_bounds)
        .collect()
}

/// External IPv4 probe addresses: each policy ipBlock CIDR and except's
/// first and last address and the ones just outside, the same for the pod
/// subnet's outside neighbours, `extra` range ends (from both outputs) and
/// their neighbours, and [`FIXED_ADDRS`]; none inside `pod_subnet`.
pub fn addresses(
    model: &Model,
    pod_subnet: (u32, u32),
    extra: impl IntoIterator<Item = u32>,
) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let mut add_block = |lo: u32, hi: u32| {
        out.insert(lo);
        out.insert(hi);
        out.extend(lo.checked_sub(1));
        out.extend(hi.checked_add(1));
    };
    for (lo, hi) in policy_v4_blocks(model) {
        add_block(lo, hi);
    }
    for a in extra {
        add_block(a, a);
    }
    out.extend(pod_subnet.0.checked_sub(1));
    out.extend(pod_subnet.1.checked_add(1));
    out.extend(FIXED_ADDRS);
    out.retain(|a| !(pod_subnet.0..=pod_subnet.1).contains(a));
    out
}
