//! The policy compiler (pure: no I/O). Turns a [`Model`] into [`Compiled`]:
//! identities (classes of addresses no selector or ipBlock tells apart),
//! per-endpoint rule tables keyed by peer identity, and the rule registry
//! that says which policy rule each table entry came from.
//!
//! This is the one representation of policy semantics: the kernel maps
//! (`maps`), the reference evaluator (`crate::eval`) and explain all read it.

pub mod address;
pub mod bitset;
pub mod fold;
pub mod identity;
pub mod image;
pub mod incremental;
pub mod kernel_ids;
pub mod maps;
pub mod select;
pub mod tables;

use std::collections::{BTreeSet, HashMap};

use bulkhead_common::{IDENTITY_ANY, PROTO_ANY};

pub use address::{RegionId, Regions};
pub use identity::{Identities, Identity, IdentityKind, PodClasses};
pub use kernel_ids::KernelIds;
pub use tables::{RuleOrigin, RuleTable, Segment};

use bitset::BitSet;
use select::Selection;
use tables::TableBuilder;

use crate::model::{
    Action, AdminPeer, AdminPolicy, Direction, IpBlock, Mode, Model, NamespaceScope, Peer,
    PortMatch, PortSpec, Protocol, Selector, Tier,
};
use fold::{Grant, Step, Verb};

/// Number of an identity; `IDENTITY_ANY` (0) is never one.
pub type IdentityId = u32;
/// Index of a rule table.
pub type TableId = u32;
/// Index of a rule in [`Compiled::rules`]. Rules are numbered in content
/// order (see [`kernel_ids::rule_content`]: tier, policy name, direction,
/// rule, peer, port), so a segment's first rule, the one the kernel
/// reports, does not depend on the order tables were built in.
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
    /// Each cluster-admin policy's effective mode, same index as the
    /// model's `admin_policies`.
    pub admin_modes: Vec<Mode>,
    /// Rule tables, shared by all endpoints with the same policies.
    pub tables: Vec<RuleTable>,
    /// Where each rule id came from.
    pub rules: Vec<RuleOrigin>,
    /// The numbers the kernel maps hold for identities, tables and rules
    /// (derived from content, stable across unrelated model changes), and
    /// back. Every other field uses the internal ids.
    pub kernel: KernelIds,
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
        .chain(admin_peers(model).flat_map(|peer| admin_blocks(model, peer)))
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
    let mut add_peer = |namespaces: &NamespaceScope, pods: &Selector| {
        let key = (namespaces.clone(), pods.clone());
        if peer_index.contains_key(&key) {
            return;
        }
        let bits = selection.peer(namespaces, pods);
        let next = sets.len();
        let i = *set_index.entry(bits.clone()).or_insert_with(|| {
            sets.push(bits);
            next
        });
        peer_index.insert(key, i);
    };
    for policy in &model.policies {
        for d in Direction::ALL {
            for rule in policy.rules(d).unwrap_or_default() {
                for peer in rule.peers.iter().flatten() {
                    if let Peer::Pods { namespaces, pods } = peer {
                        add_peer(namespaces, pods);
                    }
                }
                if d == Direction::Egress {
                    egress_names.extend(named_ports(rule.ports.as_deref()));
                }
            }
        }
    }
    for policy in &model.admin_policies {
        for d in Direction::ALL {
            for rule in policy.rules(d) {
                for peer in &rule.peers {
                    if let AdminPeer::Pods { namespaces, pods } = peer {
                        add_peer(&NamespaceScope::Selected(namespaces.clone()), pods);
                    }
                }
                if d == Direction::Egress {
                    egress_names.extend(named_ports(rule.ports.as_deref()));
                }
            }
        }
    }
    let egress_names: Vec<_> = egress_names.into_iter().collect();
    let classes = PodClasses::new(model, &sets, &egress_names);
    let identities = Identities::new(model, node_ips, &classes, &regions, blocks.len());
    let mut peers_of_set: Vec<Vec<(NamespaceScope, Selector)>> = vec![Vec::new(); sets.len()];
    for (peer, &i) in &peer_index {
        peers_of_set[i].push(peer.clone());
    }
    let class_keys = kernel_ids::class_keys(model, &classes, &sets, &peers_of_set, &egress_names);
    let identity_keys = kernel_ids::identity_keys(&identities, &regions, &blocks, &class_keys);

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

    // The same for cluster-admin policies, in evaluation order (the
    // model keeps them sorted).
    let admin_modes: Vec<Mode> = model
        .admin_policies
        .iter()
        .map(|p| model.admin_mode_of(p))
        .collect();
    let mut admin_selecting: [Vec<Vec<usize>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    let mut admin_audit_selecting: [Vec<Vec<usize>>; 2] =
        [vec![Vec::new(); n], vec![Vec::new(); n]];
    for (ai, policy) in model.admin_policies.iter().enumerate() {
        if !admin_modes[ai].audited() {
            continue;
        }
        let subject = selection.peer(
            &NamespaceScope::Selected(policy.subject.namespaces.clone()),
            &policy.subject.pods,
        );
        let named = |p: &usize| {
            let pod = &model.pods[*p].name;
            policy.subject.name.as_ref().is_none_or(|n| n == pod)
        };
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            if policy.rules(d).is_empty() {
                continue;
            }
            for p in subject.iter().filter(named) {
                if admin_modes[ai].enforced() {
                    admin_selecting[di][p].push(ai);
                }
                admin_audit_selecting[di][p].push(ai);
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
    let mut tables = Tables {
        registry: Registry::new(model, &audit_selecting, &admin_audit_selecting),
        tables: Vec::new(),
        ids: HashMap::new(),
    };
    let mut endpoints = Vec::with_capacity(n);
    let mut audit_endpoints = Vec::with_capacity(n);
    for p in 0..n {
        let mut ep = Endpoint::default();
        let mut audit = Endpoint::default();
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            let enforced = Selecting {
                policies: &selecting[di][p],
                admin: &admin_selecting[di][p],
            };
            let audited = Selecting {
                policies: &audit_selecting[di][p],
                admin: &admin_audit_selecting[di][p],
            };
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
        registry,
        tables,
        ids: table_ids,
    } = tables;
    let mut table_keys: Vec<Option<kernel_ids::ContentKey>> = vec![None; tables.len()];
    for ((d, policies, admin, resolved), id) in table_ids {
        let names = match d {
            Direction::Ingress => ingress_names(
                model,
                Selecting {
                    policies: &policies,
                    admin: &admin,
                },
            ),
            Direction::Egress => Vec::new(),
        };
        let resolved: Vec<_> = names.into_iter().zip(resolved).collect();
        table_keys[id as usize] = Some(kernel_ids::table_key(
            model,
            &tables[id as usize],
            &resolved,
        ));
    }
    let table_keys: Vec<_> = table_keys
        .into_iter()
        .map(|k| k.expect("every table has a key"))
        .collect();
    let kernel = KernelIds::new(&identity_keys, &table_keys, &registry.keys);
    Compiled {
        blocks,
        regions,
        classes,
        identities,
        endpoints,
        audit_endpoints,
        modes,
        admin_modes,
        tables,
        rules: registry.rules,
        kernel,
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

/// The policies selecting one direction of one pod in one view.
#[derive(Clone, Copy)]
struct Selecting<'a> {
    /// NetworkPolicies (indices into the model's `policies`).
    policies: &'a [usize],
    /// Cluster-admin policies (indices into `admin_policies`, evaluation
    /// order).
    admin: &'a [usize],
}

impl Selecting<'_> {
    fn len(&self) -> usize {
        self.policies.len() + self.admin.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rule tables built so far, one per (direction, selecting policies,
/// ingress named ports resolved): endpoints and views with the same
/// policies share a table.
struct Tables {
    registry: Registry,
    tables: Vec<RuleTable>,
    ids: HashMap<TableKey, TableId>,
}

/// What makes a table: (direction, selecting NetworkPolicies, selecting
/// cluster-admin policies, ingress named ports resolved).
type TableKey = (Direction, Vec<usize>, Vec<usize>, Vec<Option<u16>>);

impl Tables {
    /// The table for direction `d` of pod `pod`, selected by `by`.
    fn get(
        &mut self,
        ctx: &TableContext<'_>,
        d: Direction,
        by: Selecting<'_>,
        pod: usize,
    ) -> TableId {
        // Ingress named ports resolve on the pod itself, so pods that
        // resolve them differently need different tables.
        let resolved = if d == Direction::Ingress {
            ingress_names(ctx.model, by)
                .into_iter()
                .map(|(name, proto)| ctx.model.pods[pod].named_port(&name, proto))
                .collect()
        } else {
            Vec::new()
        };
        let key = (d, by.policies.to_vec(), by.admin.to_vec(), resolved);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.tables.len() as TableId;
        let table = if by.admin.is_empty() {
            ctx.build(&mut self.registry, d, by.policies, pod)
        } else {
            ctx.build_tiered(&mut self.registry, d, by, pod)
        };
        self.tables.push(table);
        self.ids.insert(key, id);
        id
    }
}

/// Named ports used by the ingress rules of the selecting policies.
fn ingress_names(model: &Model, by: Selecting<'_>) -> Vec<(String, Protocol)> {
    let mut names: BTreeSet<(String, Protocol)> = BTreeSet::new();
    for &pi in by.policies {
        for rule in model.policies[pi].ingress.iter().flatten() {
            names.extend(named_ports(rule.ports.as_deref()));
        }
    }
    for &ai in by.admin {
        for rule in &model.admin_policies[ai].ingress {
            names.extend(named_ports(rule.ports.as_deref()));
        }
    }
    names.into_iter().collect()
}

/// The named ports of a rule's ports.
fn named_ports(ports: Option<&[PortSpec]>) -> impl Iterator<Item = (String, Protocol)> + '_ {
    ports
        .into_iter()
        .flatten()
        .filter_map(|spec| match &spec.port {
            PortMatch::Named(n) => Some((n.clone(), spec.protocol)),
            _ => None,
        })
}

/// Every peer of every cluster-admin rule.
fn admin_peers(model: &Model) -> impl Iterator<Item = &AdminPeer> {
    model.admin_policies.iter().flat_map(|p| {
        Direction::ALL
            .into_iter()
            .flat_map(move |d| p.rules(d))
            .flat_map(|r| &r.peers)
    })
}

/// The address blocks a cluster-admin peer names: its networks, or the
/// addresses of the nodes it selects (each a single-address block).
pub(crate) fn admin_blocks(model: &Model, peer: &AdminPeer) -> Vec<IpBlock> {
    let block = |cidr| IpBlock {
        cidr,
        except: Vec::new(),
    };
    match peer {
        AdminPeer::Pods { .. } => Vec::new(),
        AdminPeer::Networks(nets) => nets.iter().copied().map(block).collect(),
        AdminPeer::Nodes(selector) => model
            .nodes
            .iter()
            .filter(|n| selector.matches(&n.labels))
            .flat_map(|n| &n.addresses)
            .map(|&a| block(ipnetwork::IpNetwork::from(a)))
            .collect(),
    }
}

/// `(Some(i), Some(item))` for each item of a list, or one `(None, None)`
/// for an absent list (which matches everything).
pub(crate) fn indexed<T>(list: Option<&[T]>) -> Vec<(Option<usize>, Option<&T>)> {
    match list {
        None => vec![(None, None)],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, x)| (Some(i), Some(x)))
            .collect(),
    }
}

/// Rule ids, one per (policy, direction, rule, peer, port) of every
/// policy direction that selects some pod in some view (those the tables
/// are built from), numbered in content order
/// ([`kernel_ids::rule_content`]).
struct Registry {
    ids: HashMap<RuleOrigin, RuleId>,
    rules: Vec<RuleOrigin>,
    /// Content key of each rule.
    keys: Vec<kernel_ids::ContentKey>,
}

impl Registry {
    /// The rules of the NetworkPolicy directions in `selecting` and the
    /// cluster-admin ones in `admin_selecting` (per direction, per pod:
    /// the policies selecting it), in content order.
    fn new(
        model: &Model,
        selecting: &[Vec<Vec<usize>>; 2],
        admin_selecting: &[Vec<Vec<usize>>; 2],
    ) -> Self {
        let mut origins: Vec<RuleOrigin> = Vec::new();
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            let mut used = vec![false; model.policies.len()];
            selecting[di]
                .iter()
                .flatten()
                .for_each(|&pi| used[pi] = true);
            for pi in (0..used.len()).filter(|&pi| used[pi]) {
                let rules = model.policies[pi].rules(d).unwrap_or_default();
                for (ri, rule) in rules.iter().enumerate() {
                    for (peer, _) in indexed(rule.peers.as_deref()) {
                        for (port, _) in indexed(rule.ports.as_deref()) {
                            origins.push(RuleOrigin {
                                policy: pi,
                                tier: None,
                                direction: d,
                                rule: ri,
                                peer,
                                port,
                            });
                        }
                    }
                }
            }
            let mut used = vec![false; model.admin_policies.len()];
            admin_selecting[di]
                .iter()
                .flatten()
                .for_each(|&ai| used[ai] = true);
            for ai in (0..used.len()).filter(|&ai| used[ai]) {
                let policy = &model.admin_policies[ai];
                for (ri, rule) in policy.rules(d).iter().enumerate() {
                    for peer in 0..rule.peers.len() {
                        for (port, _) in indexed(rule.ports.as_deref()) {
                            origins.push(RuleOrigin {
                                policy: ai,
                                tier: Some(policy.tier),
                                direction: d,
                                rule: ri,
                                peer: Some(peer),
                                port,
                            });
                        }
                    }
                }
            }
        }
        let mut by_content: Vec<(kernel_ids::RuleContent<'_>, RuleOrigin)> = origins
            .into_iter()
            .map(|o| (kernel_ids::rule_content(model, &o), o))
            .collect();
        by_content.sort();
        let keys = by_content
            .iter()
            .map(|(content, _)| kernel_ids::rule_key(content))
            .collect();
        let rules: Vec<RuleOrigin> = by_content.into_iter().map(|(_, o)| o).collect();
        let ids = rules
            .iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), i as RuleId))
            .collect();
        Self { ids, rules, keys }
    }

    /// The id of a rule of a policy direction the registry was made with.
    fn id(&mut self, origin: RuleOrigin) -> RuleId {
        self.ids[&origin]
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

    /// The identities of a cluster-admin peer, ascending.
    fn admin_peer_identities(&self, peer: &AdminPeer) -> Vec<IdentityId> {
        let mut ids: Vec<IdentityId> = match peer {
            AdminPeer::Pods { namespaces, pods } => {
                let scope = NamespaceScope::Selected(namespaces.clone());
                let i = self.peer_index[&(scope, pods.clone())];
                self.set_identities[i].clone()
            }
            AdminPeer::Networks(_) | AdminPeer::Nodes(_) => admin_blocks(self.model, peer)
                .iter()
                .flat_map(|b| {
                    let i = self.blocks.binary_search(b).expect("block collected");
                    self.identities.of_block[i].iter().copied()
                })
                .collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Calls `grant` with (identity, protocol, lo, hi) for every grant of
    /// one (peer, port) pair of a rule of direction `d`: `targets` the
    /// peer's identities (`None`: any peer), `spec` the port (`None`: every
    /// protocol and port). `rep` is the endpoint ingress named ports
    /// resolve on; egress named ports resolve on each destination.
    fn grants(
        &self,
        d: Direction,
        rep: usize,
        targets: Option<&[IdentityId]>,
        spec: Option<&PortSpec>,
        mut grant: impl FnMut(IdentityId, u8, u16, u16),
    ) {
        let Some(spec) = spec else {
            match targets {
                None => grant(IDENTITY_ANY, PROTO_ANY, 0, u16::MAX),
                Some(ids) => ids.iter().for_each(|&id| grant(id, PROTO_ANY, 0, u16::MAX)),
            }
            return;
        };
        let proto = spec.protocol.number();
        let range = match &spec.port {
            PortMatch::Any => Some((0, u16::MAX)),
            PortMatch::Range(lo, hi) => Some((*lo, *hi)),
            PortMatch::Named(name) if d == Direction::Ingress => self.model.pods[rep]
                .named_port(name, spec.protocol)
                .map(|n| (n, n)),
            PortMatch::Named(name) => {
                let ids = targets.unwrap_or(self.all_pod_identities);
                for &id in ids {
                    if let Some(n) = self.resolve_on_identity(id, name, spec.protocol) {
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

    /// The table for direction `d` of endpoints selected by `policies`
    /// (NetworkPolicies only); `rep` is one such endpoint.
    fn build(
        &self,
        registry: &mut Registry,
        d: Direction,
        policies: &[usize],
        rep: usize,
    ) -> RuleTable {
        let mut t = TableBuilder::default();
        self.network_policy_grants(registry, d, policies, rep, |id, proto, lo, hi, rule| {
            t.grant(id, proto, lo, hi, rule)
        });
        t.build(d, policies.to_vec())
    }

    /// Every grant of the rules of direction `d` of `policies`, with its
    /// rule id.
    fn network_policy_grants(
        &self,
        registry: &mut Registry,
        d: Direction,
        policies: &[usize],
        rep: usize,
        mut grant: impl FnMut(IdentityId, u8, u16, u16, RuleId),
    ) {
        for &pi in policies {
            let rules = self.model.policies[pi].rules(d).unwrap_or_default();
            for (ri, rule) in rules.iter().enumerate() {
                for (peer_i, peer) in indexed(rule.peers.as_deref()) {
                    let targets = self.peer_identities(peer);
                    for (port_i, spec) in indexed(rule.ports.as_deref()) {
                        let rule_id = registry.id(RuleOrigin {
                            policy: pi,
                            tier: None,
                            direction: d,
                            rule: ri,
                            peer: peer_i,
                            port: port_i,
                        });
                        self.grants(d, rep, targets, spec, |id, proto, lo, hi| {
                            grant(id, proto, lo, hi, rule_id)
                        });
                    }
                }
            }
        }
    }

    /// The tiered table for direction `d` of endpoints selected by `by`
    /// (cluster-admin policies among them): every rule's grants ranked in
    /// evaluation order, folded into decisions (see [`fold`]).
    fn build_tiered(
        &self,
        registry: &mut Registry,
        d: Direction,
        by: Selecting<'_>,
        rep: usize,
    ) -> RuleTable {
        let mut steps: Vec<Step> = Vec::new();
        let mut grants: Vec<Grant> = Vec::new();
        let tier_of = |ai: usize| self.model.admin_policies[ai].tier;
        // A quarantine's rules rank first, as Admin tier rules (they never
        // pass).
        let above = |ai: &&usize| matches!(tier_of(**ai), Tier::Quarantine | Tier::Admin);
        for &ai in by.admin.iter().filter(above) {
            self.admin_grants(registry, d, ai, rep, &mut steps, &mut grants);
        }
        let rank = steps.len() as u32;
        steps.push(Step::NetworkPolicy);
        self.network_policy_grants(
            registry,
            d,
            by.policies,
            rep,
            |peer, proto, lo, hi, rule| grants.push(Grant::new((peer, proto), lo, hi, rank, rule)),
        );
        for &ai in by.admin.iter().filter(|&&ai| tier_of(ai) == Tier::Baseline) {
            self.admin_grants(registry, d, ai, rep, &mut steps, &mut grants);
        }
        RuleTable {
            direction: d,
            policies: by.policies.to_vec(),
            admin: by.admin.to_vec(),
            groups: fold::fold(&grants, &steps, !by.policies.is_empty()),
        }
    }

    /// The steps (one per rule, in order) and grants of direction `d` of
    /// cluster-admin policy `ai`.
    fn admin_grants(
        &self,
        registry: &mut Registry,
        d: Direction,
        ai: usize,
        rep: usize,
        steps: &mut Vec<Step>,
        grants: &mut Vec<Grant>,
    ) {
        let policy: &AdminPolicy = &self.model.admin_policies[ai];
        for (ri, rule) in policy.rules(d).iter().enumerate() {
            let verb = match rule.action {
                Action::Accept => Verb::Accept,
                Action::Deny => Verb::Deny,
                Action::Pass => Verb::Pass,
            };
            let rank = steps.len() as u32;
            steps.push(match policy.tier {
                Tier::Quarantine | Tier::Admin => Step::Admin(verb),
                Tier::Baseline => Step::Baseline(verb),
            });
            for (peer_i, peer) in rule.peers.iter().enumerate() {
                let targets = self.admin_peer_identities(peer);
                for (port_i, spec) in indexed(rule.ports.as_deref()) {
                    let rule_id = registry.id(RuleOrigin {
                        policy: ai,
                        tier: Some(policy.tier),
                        direction: d,
                        rule: ri,
                        peer: Some(peer_i),
                        port: port_i,
                    });
                    self.grants(d, rep, Some(&targets), spec, |peer, proto, lo, hi| {
                        grants.push(Grant::new((peer, proto), lo, hi, rank, rule_id))
                    });
                }
            }
        }
    }
}
