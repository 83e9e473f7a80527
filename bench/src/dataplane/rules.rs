//! Policies with a chosen number of rules for the program-cost benchmark,
//! all in the tables of one endpoint (the pod under test), so a tested
//! packet's lookup walks the populated map.
//!
//! "Rules" here are compiled rule segments: one allowed (peer identity,
//! protocol, port range) of a table (`RuleTable::segment_count`), the unit
//! policy size grows in. (ABI v2 stored one LPM entry per segment here, so
//! the counts equal the v2 POLICY entries.) The report gives both the
//! segments and the policy tree nodes (B-tree nodes of up to 16 ranges) that
//! hold them, and the depth of the subject's trees.
//!
//! The model: namespace `bench` with the pod under test (`app=subject`) and
//! its allowed peer pod (`app=peer`), plus a fixed background of
//! [`BACKGROUND_PODS`] unselected pods in namespace `background` so the
//! IDENTITIES trie has the same realistic size in every case. One policy
//! selects the subject for ingress and egress; each direction has one rule
//! whose peers are the peer pod and `blocks` ipBlocks (`198.18.b.0/24`,
//! each its own address region and identity) and whose ports are `ports`
//! single UDP ports spaced 3 apart (so no two merge into a range). Each
//! direction's table then holds `(blocks + 1) × ports` segments; each peer's
//! tree holds `ports` ranges (depth 1 up to 16 ranges, 2 up to 256).
//!
//! The counts reported are those of the compiled tables and map image
//! (`Compiled::map_image_for` with the two `bench` pods as the node's pods),
//! not of this arithmetic.

use std::net::Ipv4Addr;

use bulkhead_common::{
    EndpointInfo, IdentityKey, IdentityValue, POLICY_NODE_INNER, PolicyNode, PolicyNodeKey,
};
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::{
    IpBlock, Model, NamespaceScope, Peer, Policy, PortMatch, PortSpec, Protocol, Rule,
};
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Serialize;

use crate::synthetic::{self, BenchImage, app_selector, bench_pods, origin};

pub use crate::synthetic::BACKGROUND_PODS;

/// First allowed port; the rest follow every [`PORT_STEP`].
pub const FIRST_PORT: u16 = 20_000;
/// Distance between allowed ports.
pub const PORT_STEP: u16 = 3;

/// One rule-count case.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RuleShape {
    /// Nominal rules: segments of the image's tables (the case's name).
    pub nominal: usize,
    /// ipBlock peers per rule (besides the peer pod).
    pub blocks: usize,
    /// Allowed UDP ports per rule.
    pub ports: usize,
}

/// The cases of the issue: 10, 1k, 10k and 100k rules (segments).
pub const SHAPES: [RuleShape; 4] = [
    RuleShape {
        nominal: 10,
        blocks: 0,
        ports: 5,
    },
    RuleShape {
        nominal: 1_000,
        blocks: 9,
        ports: 50,
    },
    RuleShape {
        nominal: 10_000,
        blocks: 49,
        ports: 100,
    },
    RuleShape {
        nominal: 100_000,
        blocks: 249,
        ports: 200,
    },
];

/// A compiled case, ready to write into the maps.
pub struct RuleCase {
    /// Its shape.
    pub shape: RuleShape,
    /// The map image (both `bench` pods local).
    pub image: MapImage,
    /// The subject's endpoint value.
    pub subject: EndpointInfo,
    /// The subject's IPv4 address.
    pub subject_ip: Ipv4Addr,
    /// The peer pod's IPv4 address.
    pub peer_ip: Ipv4Addr,
    /// An allowed port, in the middle of the list.
    pub allowed_port: u16,
    /// A port between two allowed ones (denied).
    pub denied_port: u16,
    /// Facts for the report.
    pub facts: RuleFacts,
}

/// What the compiled image holds.
#[derive(Clone, Debug, Serialize)]
pub struct RuleFacts {
    /// Nominal entries.
    pub nominal: usize,
    /// ipBlocks per rule.
    pub blocks: usize,
    /// Ports per rule.
    pub ports: usize,
    /// Rule segments of the image's tables (the "rules").
    pub segments: usize,
    /// Segments of the subject's ingress table.
    pub ingress_table_segments: usize,
    /// Segments of the subject's egress table.
    pub egress_table_segments: usize,
    /// policy tree nodes (B-tree nodes) of the image.
    pub policy_entries: usize,
    /// policy tree nodes of the subject's ingress table.
    pub ingress_table_entries: usize,
    /// policy tree nodes of the subject's egress table.
    pub egress_table_entries: usize,
    /// Nodes a lookup visits in the deepest tree of the subject's tables
    /// (its peer pod's).
    pub tree_depth: usize,
    /// IDENTITIES entries of the image.
    pub identity_entries: usize,
    /// Identities.
    pub identities: usize,
    /// Compile time, ms.
    pub compile_ms: f64,
    /// Cluster-admin policies of the model (0: none).
    pub admin_policies: usize,
    /// Their rules (both directions).
    pub admin_rules: usize,
    /// Whether the subject's tables are tiered (cluster-admin policies
    /// select it, so their rules fold into its tables).
    pub tiered: bool,
    /// Deny segments of the subject's tables (ingress + egress).
    pub deny_segments: usize,
    /// Bytes of the image's IDENTITIES and policy tree entries (keys and
    /// values as the maps store them).
    pub image_bytes: usize,
}

/// The allowed ports of `shape`.
pub fn ports(shape: &RuleShape) -> Vec<u16> {
    (0..shape.ports)
        .map(|j| FIRST_PORT + PORT_STEP * j as u16)
        .collect()
}

/// The model of `shape` (normalized, addresses assigned).
pub fn model(shape: &RuleShape) -> Model {
    let mut peers = vec![Peer::Pods {
        namespaces: NamespaceScope::Same("bench".into()),
        pods: app_selector("peer"),
    }];
    for b in 0..shape.blocks {
        // 198.18.0.0/15 (benchmarking addresses): room for 512 blocks.
        assert!(b < 512, "at most 512 ipBlocks");
        let net = Ipv4Network::new(Ipv4Addr::new(198, 18 + (b / 256) as u8, b as u8, 0), 24)
            .expect("valid prefix");
        peers.push(Peer::IpBlock(IpBlock {
            cidr: IpNetwork::V4(net),
            except: Vec::new(),
        }));
    }
    let port_specs: Vec<PortSpec> = ports(shape)
        .into_iter()
        .map(|p| PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(p, p),
        })
        .collect();
    let rule = Rule {
        peers: Some(peers),
        ports: Some(port_specs),
    };
    let policy = Policy {
        namespace: "bench".into(),
        name: "subject".into(),
        pod_selector: app_selector("subject"),
        ingress: Some(vec![rule.clone()]),
        egress: Some(vec![rule]),
        origin: origin("dataplane-bench", 0),
        mode: None,
    };
    synthetic::model(bench_pods("dataplane-bench"), vec![policy])
}

fn table_entries(image: &MapImage, table: u32) -> usize {
    image
        .policy
        .iter()
        .filter(|(k, _)| k.table == table)
        .count()
}

/// Nodes a lookup visits in the deepest tree of `table`.
fn tree_depth(image: &MapImage, table: u32) -> usize {
    let nodes: std::collections::HashMap<PolicyNodeKey, PolicyNode> =
        image.policy.iter().copied().collect();
    image
        .policy
        .iter()
        .filter(|(k, _)| k.table == table && k.node == 0)
        .map(|&(mut key, mut node)| {
            let mut depth = 1;
            while node.kind == POLICY_NODE_INNER {
                key.node = node.ranges[0].target;
                node = nodes[&key];
                depth += 1;
            }
            depth
        })
        .max()
        .unwrap_or(0)
}

/// Bytes of `image`'s IDENTITIES and policy tree entries.
fn image_bytes(image: &MapImage) -> usize {
    use std::mem::size_of;
    image.identities.len() * (size_of::<IdentityKey>() + size_of::<IdentityValue>())
        + image.policy.len() * (size_of::<PolicyNodeKey>() + size_of::<PolicyNode>())
}

impl RuleCase {
    /// Builds and compiles `shape` for `slot`.
    pub fn new(shape: RuleShape, slot: u8) -> Self {
        Self::from_model(shape, &model(&shape), slot)
    }

    /// Compiles `model` (made by [`model`] for `shape`, possibly with more
    /// added) for `slot`.
    pub fn from_model(shape: RuleShape, model: &Model, slot: u8) -> Self {
        let start = std::time::Instant::now();
        let compiled: Compiled = compile(model);
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        let BenchImage {
            image,
            subject: info,
            subject_ip,
            peer_ip,
            ..
        } = BenchImage::new(model, &compiled, slot);
        let ports = ports(&shape);
        // The image holds kernel table numbers; the compiler's tables are
        // indexed by its own.
        let table = |k: u32| {
            let t = compiled
                .kernel
                .internal_table(k)
                .expect("a table of the image");
            &compiled.tables[t as usize]
        };
        let subject_tables = [table(info.ingress_table), table(info.egress_table)];
        let allowed_port = ports[ports.len() / 2];
        let facts = RuleFacts {
            nominal: shape.nominal,
            blocks: shape.blocks,
            ports: shape.ports,
            segments: [info.ingress_table, info.egress_table]
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .iter()
                .map(|&&t| table(t).segment_count())
                .sum(),
            ingress_table_segments: table(info.ingress_table).segment_count(),
            egress_table_segments: table(info.egress_table).segment_count(),
            policy_entries: image.policy.len(),
            ingress_table_entries: table_entries(&image, info.ingress_table),
            egress_table_entries: table_entries(&image, info.egress_table),
            tree_depth: tree_depth(&image, info.ingress_table)
                .max(tree_depth(&image, info.egress_table)),
            identity_entries: image.identities.len(),
            identities: compiled.identities.list.len(),
            compile_ms,
            admin_policies: model.admin_policies.len(),
            admin_rules: model
                .admin_policies
                .iter()
                .map(|p| p.ingress.len() + p.egress.len())
                .sum(),
            tiered: subject_tables.iter().any(|t| t.tiered()),
            deny_segments: subject_tables
                .iter()
                .flat_map(|t| t.groups.values().flatten())
                .filter(|seg| seg.deny)
                .count(),
            image_bytes: image_bytes(&image),
        };
        Self {
            shape,
            subject: info,
            subject_ip,
            peer_ip,
            allowed_port,
            denied_port: allowed_port + 1,
            image,
            facts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_shape() {
        for shape in &SHAPES[..3] {
            let case = RuleCase::new(*shape, 0);
            let per_table = (shape.blocks + 1) * shape.ports;
            assert_eq!(case.facts.ingress_table_segments, per_table, "{shape:?}");
            assert_eq!(case.facts.egress_table_segments, per_table, "{shape:?}");
            assert_eq!(case.facts.segments, 2 * per_table, "{shape:?}");
            assert_eq!(case.facts.segments, shape.nominal, "{shape:?}");
            // One tree per peer: its leaves of 16 ranges, plus a root above
            // them when there is more than one (at most 256 ranges here).
            let leaves = shape.ports.div_ceil(16);
            let per_peer = leaves + usize::from(leaves > 1);
            let nodes = (shape.blocks + 1) * per_peer;
            assert_eq!(case.facts.ingress_table_entries, nodes, "{shape:?}");
            assert_eq!(case.facts.egress_table_entries, nodes, "{shape:?}");
            assert_eq!(case.facts.policy_entries, 2 * nodes, "{shape:?}");
            assert_eq!(case.facts.tree_depth, 1 + usize::from(leaves > 1));
        }
    }
}
