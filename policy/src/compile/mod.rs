//! The policy compiler (pure: no I/O). Turns a [`Model`] into [`Compiled`]:
//! identities (classes of addresses no selector or ipBlock tells apart),
//! per-endpoint rule tables keyed by peer identity, and the rule registry
//! that says which policy rule each table entry came from.
//!
//! This is the one representation of policy semantics: the kernel maps
//! (`maps`), the reference evaluator (`crate::eval`) and explain all read it.

pub mod address;
pub mod bitset;
pub mod identity;
pub mod maps;
pub mod select;
pub mod tables;

use std::collections::{BTreeSet, HashMap};

use bulkhead_common::{IDENTITY_ANY, PROTO_ANY};

pub use address::{RegionId, Regions};
pub use identity::{Identities, Identity, IdentityKind, PodClasses};
pub use tables::{RuleOrigin, RuleTable, Segment};

use bitset::BitSet;
use select::Selection;
use tables::TableBuilder;

use crate::model::{
    Direction, IpBlock, Mode, Model, NamespaceScope, Peer, PortMatch, Protocol, Selector,
};

/// Number of an identity; `IDENTITY_ANY` (0) is never one.
pub type IdentityId = u32;
/// Index of a rule table.
pub type TableId = u32;
/// Index of a rule in [`Compiled::rules`].
pub type RuleId = u32;

/// Which tables apply to a pod; `None` means the direction is not isolated
/// (no policy selects the pod for it) and everything is allowed. In an
/// audit view, `None` means no audit-mode policy selects the pod that way
/// (the enforced table is the whole story).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Table for traffic entering the pod.
    pub ingress: Option<TableId>,
    /// Table for traffic leaving the pod.
    pub egress: Option<TableId>,
}

impl Endpoint {
    /// The table of one direction.
    pub fn table(&self, direction: Direction) -> Option<TableId> {
        match direction {
            Direction::Ingress => self.ingress,
            Direction::Egress => self.egress,
        }
    }
}

/// The compiled policy.
pub struct Compiled {
    /// Distinct ipBlocks in force, indexed by region memberships.
    pub blocks: Vec<IpBlock>,
    /// The address space cut by those blocks.
    pub regions: Regions,
    /// Pod classes.
    pub classes: PodClasses,
    /// Identities.
    pub identities: Identities,
    /// One per pod of the model, same index: the enforced view (policies
    /// in enforce mode).
    pub endpoints: Vec<Endpoint>,
    /// One per pod, same index: the audit view (policies in enforce and in
    /// audit mode together), where it differs from the enforced one.
    pub audit_endpoints: Vec<Endpoint>,
    /// Each policy's effective mode, same index as the model's policies.
    pub modes: Vec<Mode>,
    /// Rule tables, shared by all endpoints with the same policies.
    pub tables: Vec<RuleTable>,
    /// Where each rule id came from.
    pub rules: Vec<RuleOrigin>,
    /// The Service frontends the node translates (every Service's, with
    /// NodePorts on the node's addresses), sorted: connections to them are
    /// judged on the backend they reach (SERVICES).
    pub frontends: Vec<crate::model::Frontend>,
}

/// Compiles a model.
pub fn compile(model: &Model) -> Compiled {
    compile_on_node(model, &model.node_ips)
}

/// [`compile`] with the node's addresses given apart from the model
/// (instead of `model.node_ips`): the agent compiles the source's model as
/// it is, shared, without a copy of every pod just to add its addresses.
pub fn compile_on_node(model: &Model, node_ips: &[std::net::IpAddr]) -> Compiled {
    let blocks: Vec<IpBlock> = model
        .policies
        .iter()
        .flat_map(|p| {
            Direction::ALL
                .into_iter()
                .flat_map(|d| p.rules(d).unwrap_or_default())
        })
        .flat_map(|r| r.peers.iter().flatten())
        .filter_map(|peer| match peer {
            Peer::IpBlock(b) => Some(b.clone()),
            Peer::Pods { .. } => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let regions = Regions::new(&blocks);
    let mut selection = Selection::new(model);

    // Every distinct pod peer, as a set of pods.
    let mut peer_index: HashMap<(NamespaceScope, Selector), usize> = HashMap::new();
    let mut set_index: HashMap<BitSet, usize> = HashMap::new();
    let mut sets: Vec<BitSet> = Vec::new();
    let mut egress_names: BTreeSet<(String, Protocol)> = BTreeSet::new();
    for policy in &model.policies {
        for d in Direction::ALL {
            for rule in policy.rules(d).unwrap_or_default() {
                for peer in rule.peers.iter().flatten() {
                    if let Peer::Pods { namespaces, pods } = peer {
                        let key = (namespaces.clone(), pods.clone());
                        if peer_index.contains_key(&key) {
                            continue;
                        }
                        let bits = selection.peer(namespaces, pods);
                        let next = sets.len();
                        let i = *set_index.entry(bits.clone()).or_insert_with(|| {
                            sets.push(bits);
                            next
                        });
                        peer_index.insert(key, i);
                    }
                }
                if d == Direction::Egress {
                    for spec in rule.ports.iter().flatten() {
                        if let PortMatch::Named(n) = &spec.port {
                            egress_names.insert((n.clone(), spec.protocol));
                        }
                    }
                }
            }
        }
    }
    let egress_names: Vec<_> = egress_names.into_iter().collect();
    let classes = PodClasses::new(model, &sets, &egress_names);
    let identities = Identities::new(model, node_ips, &classes, &regions, blocks.len());

    let set_identities: Vec<Vec<IdentityId>> = sets
        .iter()
        .map(|set| {
            let mut seen = vec![false; classes.len()];
            let mut ids = Vec::new();
            for p in set.iter() {
                let c = classes.class_of[p] as usize;
                if !seen[c] {
                    seen[c] = true;
                    ids.extend(&identities.of_class[c]);
                }
            }
            ids.sort_unstable();
            ids
        })
        .collect();
    let all_pod_identities: Vec<IdentityId> = identities
        .list
        .iter()
        .filter(|i| matches!(i.kind, IdentityKind::Pods { .. }))
        .map(|i| i.id)
        .collect();

    // Which policies select each pod, per direction, in each view: the
    // enforced view holds enforce-mode policies, the audit view those and
    // the audit-mode ones; learn-mode policies are in neither.
    let modes: Vec<Mode> = model.policies.iter().map(|p| model.mode_of(p)).collect();
    let n = model.pods.len();
    let mut selecting: [Vec<Vec<usize>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    let mut audit_selecting: [Vec<Vec<usize>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    for (pi, policy) in model.policies.iter().enumerate() {
        if !modes[pi].audited() {
            continue;
        }
        let subject = selection.peer(
            &NamespaceScope::Same(policy.namespace.clone()),
            &policy.pod_selector,
        );
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            if policy.rules(d).is_some() {
                for p in subject.iter() {
                    if modes[pi].enforced() {
                        selecting[di][p].push(pi);
                    }
                    audit_selecting[di][p].push(pi);
                }
            }
        }
    }

    let ctx = TableContext {
        model,
        classes: &classes,
        identities: &identities,
        peer_index: &peer_index,
        set_identities: &set_identities,
        blocks: &blocks,
        all_pod_identities: &all_pod_identities,
    };
    let mut tables = Tables::default();
    let mut endpoints = Vec::with_capacity(n);
    let mut audit_endpoints = Vec::with_capacity(n);
    for p in 0..n {
        let mut ep = Endpoint::default();
        let mut audit = Endpoint::default();
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            let enforced = &selecting[di][p];
            let audited = &audit_selecting[di][p];
            let table = (!enforced.is_empty()).then(|| tables.get(&ctx, d, enforced, p));
            // A view of its own only where audit-mode policies select the
            // pod: the kernel checks it beside the enforced table.
            let audit_table =
                (audited.len() > enforced.len()).then(|| tables.get(&ctx, d, audited, p));
            match d {
                Direction::Ingress => (ep.ingress, audit.ingress) = (table, audit_table),
                Direction::Egress => (ep.egress, audit.egress) = (table, audit_table),
            }
        }
        endpoints.push(ep);
        audit_endpoints.push(audit);
    }
    let Tables {
        registry, tables, ..
    } = tables;
    Compiled {
        blocks,
        regions,
        classes,
        identities,
        endpoints,
        audit_endpoints,
        modes,
        tables,
        rules: registry.rules,
        frontends: frontends(model, node_ips),
    }
}

/// Every frontend of the model's Services on a node with `node_ips`.
fn frontends(model: &Model, node_ips: &[std::net::IpAddr]) -> Vec<crate::model::Frontend> {
    let mut out: Vec<crate::model::Frontend> = model
        .services
        .iter()
        .flat_map(|s| s.frontends(node_ips))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Rule tables built so far, one per (direction, selecting policies,
/// ingress named ports resolved): endpoints and views with the same
/// policies share a table.
#[derive(Default)]
struct Tables {
    registry: Registry,
    tables: Vec<RuleTable>,
    ids: HashMap<TableKey, TableId>,
}

/// What makes a table: (direction, selecting policies, ingress named ports
/// resolved).
type TableKey = (Direction, Vec<usize>, Vec<Option<u16>>);

impl Tables {
    /// The table for direction `d` of pod `pod`, selected by `policies`.
    fn get(
        &mut self,
        ctx: &TableContext<'_>,
        d: Direction,
        policies: &[usize],
        pod: usize,
    ) -> TableId {
        // Ingress named ports resolve on the pod itself, so pods that
        // resolve them differently need different tables.
        let resolved = if d == Direction::Ingress {
            ingress_names(ctx.model, policies)
                .into_iter()
                .map(|(name, proto)| ctx.model.pods[pod].named_port(&name, proto))
                .collect()
        } else {
            Vec::new()
        };
        let key = (d, policies.to_vec(), resolved);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.tables.len() as TableId;
        self.tables
            .push(ctx.build(&mut self.registry, d, policies, pod));
        self.ids.insert(key, id);
        id
    }
}

/// Named ports used by the ingress rules of `policies`.
fn ingress_names(model: &Model, policies: &[usize]) -> Vec<(String, Protocol)> {
    let mut names: BTreeSet<(String, Protocol)> = BTreeSet::new();
    for &pi in policies {
        for rule in model.policies[pi].ingress.iter().flatten() {
            for spec in rule.ports.iter().flatten() {
                if let PortMatch::Named(n) = &spec.port {
                    names.insert((n.clone(), spec.protocol));
                }
            }
        }
    }
    names.into_iter().collect()
}

/// `(Some(i), Some(item))` for each item of a list, or one `(None, None)`
/// for an absent list (which matches everything).
fn indexed<T>(list: Option<&[T]>) -> Vec<(Option<usize>, Option<&T>)> {
    match list {
        None => vec![(None, None)],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, x)| (Some(i), Some(x)))
            .collect(),
    }
}

/// Rule ids, one per (policy, direction, rule, peer, port).
#[derive(Default)]
struct Registry {
    ids: HashMap<RuleOrigin, RuleId>,
    rules: Vec<RuleOrigin>,
}

impl Registry {
    fn id(&mut self, origin: RuleOrigin) -> RuleId {
        let next = self.rules.len() as RuleId;
        *self.ids.entry(origin.clone()).or_insert_with(|| {
            self.rules.push(origin);
            next
        })
    }
}

/// What building a table needs to know.
struct TableContext<'a> {
    model: &'a Model,
    classes: &'a PodClasses,
    identities: &'a Identities,
    peer_index: &'a HashMap<(NamespaceScope, Selector), usize>,
    set_identities: &'a [Vec<IdentityId>],
    blocks: &'a [IpBlock],
    all_pod_identities: &'a [IdentityId],
}

impl TableContext<'_> {
    /// The peer identities of a peer (`None` = any peer).
    fn peer_identities(&self, peer: Option<&Peer>) -> Option<&[IdentityId]> {
        match peer? {
            Peer::Pods { namespaces, pods } => {
                let i = self.peer_index[&(namespaces.clone(), pods.clone())];
                Some(&self.set_identities[i])
            }
            Peer::IpBlock(b) => {
                let i = self.blocks.binary_search(b).expect("block collected");
                Some(&self.identities.of_block[i])
            }
        }
    }

    /// The port a named port resolves to on the pods of identity `id`.
    fn resolve_on_identity(&self, id: IdentityId, name: &str, proto: Protocol) -> Option<u16> {
        match &self.identities.get(id).kind {
            IdentityKind::Pods { class, .. } => {
                let rep = self.classes.representative[*class as usize];
                self.model.pods[rep].named_port(name, proto)
            }
            IdentityKind::External { .. } | IdentityKind::Node { .. } => None,
        }
    }

    /// The table for direction `d` of endpoints selected by `policies`;
    /// `rep` is one such endpoint (ingress named ports resolve on it).
    fn build(
        &self,
        registry: &mut Registry,
        d: Direction,
        policies: &[usize],
        rep: usize,
    ) -> RuleTable {
        let mut t = TableBuilder::default();
        for &pi in policies {
            let rules = self.model.policies[pi].rules(d).unwrap_or_default();
            for (ri, rule) in rules.iter().enumerate() {
                let peers = indexed(rule.peers.as_deref());
                let ports = indexed(rule.ports.as_deref());
                for &(peer_i, peer) in &peers {
                    let targets = self.peer_identities(peer);
                    for &(port_i, spec) in &ports {
                        let rule_id = registry.id(RuleOrigin {
                            policy: pi,
                            direction: d,
                            rule: ri,
                            peer: peer_i,
                            port: port_i,
                        });
                        let mut grant = |id: IdentityId, proto: u8, lo: u16, hi: u16| {
                            t.grant(id, proto, lo, hi, rule_id)
                        };
                        let Some(spec) = spec else {
                            match targets {
                                None => grant(IDENTITY_ANY, PROTO_ANY, 0, u16::MAX),
                                Some(ids) => {
                                    ids.iter().for_each(|&id| grant(id, PROTO_ANY, 0, u16::MAX))
                                }
                            }
                            continue;
                        };
                        let proto = spec.protocol.number();
                        let range = match &spec.port {
                            PortMatch::Any => Some((0, u16::MAX)),
                            PortMatch::Range(lo, hi) => Some((*lo, *hi)),
                            PortMatch::Named(name) if d == Direction::Ingress => self.model.pods
                                [rep]
                                .named_port(name, spec.protocol)
                                .map(|n| (n, n)),
                            PortMatch::Named(name) => {
                                // Egress: resolved on each destination.
                                let ids = targets.unwrap_or(self.all_pod_identities);
                                for &id in ids {
                                    if let Some(n) =
                                        self.resolve_on_identity(id, name, spec.protocol)
                                    {
                                        grant(id, proto, n, n);
                                    }
                                }
                                None
                            }
                        };
                        if let Some((lo, hi)) = range {
                            match targets {
                                None => grant(IDENTITY_ANY, proto, lo, hi),
                                Some(ids) => ids.iter().for_each(|&id| grant(id, proto, lo, hi)),
                            }
                        }
                    }
                }
            }
        }
        t.build(d, policies.to_vec())
    }
}
