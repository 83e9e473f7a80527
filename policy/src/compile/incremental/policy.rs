//! The fast path of a NetworkPolicy's change: the same policy (namespace
//! and name), selecting the same pods in the same mode, with rules that use
//! no pod peer, ipBlock or egress named port the model did not use before
//! and drop none it will not use after. Then no identity moves and no
//! endpoint changes tables: only the rules of the changed rule positions
//! leave and enter the rule tables of the local endpoints the policy
//! selects, group by group ([`segments::update`]), and only the policy
//! trees of the peers those groups belong to are written again.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use bulkhead_common::{
    ENDPOINT_AUDIT_EGRESS, ENDPOINT_AUDIT_INGRESS, IDENTITY_ANY, PROTO_ANY, PolicyRange,
};

use super::super::kernel_ids::{RULE_RANGE, fold, rule_content, rule_key};
use super::super::maps::peer_ranges;
use super::super::{RuleOrigin, Segment, indexed};
use super::segments;
use super::uses::Uses;
use super::{ImageDelta, Incremental};
use crate::model::{Direction, Peer, Policy, PortMatch, PortSpec, Protocol, Rule, Tier};

/// A rule's content, owned, in content order (see
/// [`rule_content`](super::super::kernel_ids::rule_content)).
pub(super) type Content = (
    Option<Tier>,
    String,
    String,
    Direction,
    usize,
    Option<usize>,
    Option<usize>,
);

/// A grant: ports `lo..=hi` by a rule (kernel number).
type Grant = (u16, u16, u32);

/// A group of a table: (kernel table, kernel peer, protocol).
type GroupAt = (u32, u32, u8);

/// The protocols a group can have: any, and those a port names.
const GROUP_PROTOCOLS: [u8; 4] = [PROTO_ANY, 6, 17, 132];

/// What a policy change does, before it is committed.
pub(super) struct PolicyPlan {
    old_uses: Uses,
    new_uses: Uses,
    /// Rules leaving (kernel numbers).
    removed: HashSet<u32>,
    /// Rules arriving, with their content.
    added: Vec<(u32, Content)>,
    /// The touched groups' segments after the change.
    groups: BTreeMap<GroupAt, Vec<Segment>>,
    /// The touched trees' ranges after the change (empty: no tree).
    trees: BTreeMap<(u32, u32), Vec<PolicyRange>>,
}

/// One (peer, port) of a changed rule position, with its kernel number.
struct Granting<'r> {
    id: u32,
    direction: Direction,
    peer: Option<&'r Peer>,
    port: Option<&'r PortSpec>,
}

impl Incremental {
    /// Creates or replaces a NetworkPolicy; the fast path's writes, or
    /// `None` (the model is changed either way).
    pub(super) fn upsert_policy(&mut self, policy: Policy) -> Option<ImageDelta> {
        let at = self.policy_at(&policy.namespace, &policy.name);
        let plan = at.ok().and_then(|pi| self.plan_policy(pi, &policy));
        let known_namespace = self.model.namespaces.contains_key(&policy.namespace);
        match at {
            Ok(pi) => self.model.policies[pi] = policy,
            Err(i) => self.model.policies.insert(i, policy),
        }
        if !known_namespace {
            self.model.normalize();
        }
        Some(self.commit_policy(plan?))
    }

    /// Deletes a NetworkPolicy (always a full compile: tables change keys).
    pub(super) fn delete_policy(&mut self, namespace: &str, name: &str) -> Option<ImageDelta> {
        if let Ok(pi) = self.policy_at(namespace, name) {
            self.model.policies.remove(pi);
        }
        None
    }

    fn policy_at(&self, namespace: &str, name: &str) -> Result<usize, usize> {
        self.model
            .policies
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
    }

    fn plan_policy(&self, pi: usize, new: &Policy) -> Option<PolicyPlan> {
        let old = &self.model.policies[pi];
        let same_subject = old.pod_selector == new.pod_selector
            && old.mode == new.mode
            && old.ingress.is_some() == new.ingress.is_some()
            && old.egress.is_some() == new.egress.is_some()
            && ingress_names(old) == ingress_names(new);
        let (old_uses, new_uses) = (Uses::of_policy(old), Uses::of_policy(new));
        if !same_subject || !self.index.uses.same_after(&old_uses, &new_uses) {
            return None;
        }
        let tables = self.policy_tables(pi)?;
        let mut removed = HashSet::new();
        let mut added = Vec::new();
        let mut leaving = Vec::new();
        let mut arriving = Vec::new();
        let mut taken: HashSet<u32> = HashSet::new();
        for d in Direction::ALL {
            let (o, n) = (
                old.rules(d).unwrap_or_default(),
                new.rules(d).unwrap_or_default(),
            );
            for ri in 0..o.len().max(n.len()) {
                if o.get(ri) == n.get(ri) {
                    continue;
                }
                for g in grantings(pi, d, ri, o.get(ri)) {
                    let id = self.existing_rule(&self.owned_content(&g.1))?;
                    removed.insert(id);
                    leaving.push(Granting { id, ..g.0 });
                }
                for g in grantings(pi, d, ri, n.get(ri)) {
                    let content = self.owned_content(&g.1);
                    let id = self.new_rule(&content, &removed)?;
                    if !taken.insert(id) {
                        return None;
                    }
                    arriving.push(Granting { id, ..g.0 });
                    added.push((id, content));
                }
            }
        }
        let groups = self.changed_groups(&tables, &leaving, &arriving, &removed, &added)?;
        let trees = self.trees_of(&groups)?;
        Some(PolicyPlan {
            old_uses,
            new_uses,
            removed,
            added,
            groups,
            trees,
        })
    }

    /// The groups the leaving and arriving grants touch in `tables`, with
    /// their segments after the change.
    fn changed_groups(
        &self,
        tables: &BTreeMap<u32, (Direction, String)>,
        leaving: &[Granting<'_>],
        arriving: &[Granting<'_>],
        removed: &HashSet<u32>,
        added: &[(u32, Content)],
    ) -> Option<BTreeMap<GroupAt, Vec<Segment>>> {
        let order = self.rule_order(added);
        let mut groups: BTreeMap<GroupAt, Vec<Segment>> = BTreeMap::new();
        for (&table, &(d, ref rep)) in tables {
            let mut adds: BTreeMap<(u32, u8), Vec<Grant>> = BTreeMap::new();
            let mut touched: BTreeSet<(u32, u8)> = BTreeSet::new();
            for g in leaving.iter().filter(|g| g.direction == d) {
                self.grants(g, rep, |peer, proto, _, _| {
                    touched.insert((peer, proto));
                });
            }
            for g in arriving.iter().filter(|g| g.direction == d) {
                self.grants(g, rep, |peer, proto, lo, hi| {
                    touched.insert((peer, proto));
                    adds.entry((peer, proto)).or_default().push((lo, hi, g.id));
                });
            }
            for (peer, proto) in touched {
                let segs = self.group(table, peer, proto)?;
                let grants = adds.remove(&(peer, proto)).unwrap_or_default();
                let next = segments::update(&segs, removed, &grants, &order);
                groups.insert((table, peer, proto), next);
            }
        }
        Some(groups)
    }

    /// The kernel tables of the local endpoints that policy `pi` selects,
    /// with their direction and a local pod using each (ingress named
    /// ports resolve on it); `None` if one is tiered (cluster-admin
    /// policies fold into it: not on the fast path).
    fn policy_tables(&self, pi: usize) -> Option<BTreeMap<u32, (Direction, String)>> {
        let mut out = BTreeMap::new();
        for (key, l) in &self.local {
            let Some((_, Some(ek))) = self.index.pods.get(key) else {
                continue;
            };
            let info = self.image.endpoints.get(&l.ifindex)?;
            for (di, d) in Direction::ALL.into_iter().enumerate() {
                let audit_flag = [ENDPOINT_AUDIT_INGRESS, ENDPOINT_AUDIT_EGRESS][di];
                let tables = [
                    Some([info.ingress_table, info.egress_table][di]),
                    (info.flags & audit_flag != 0)
                        .then_some([info.audit_ingress_table, info.audit_egress_table][di]),
                ];
                for (view, table) in tables.into_iter().enumerate() {
                    let Some(table) = table else { continue };
                    if !ek.policies[view][di].contains(&pi) {
                        continue;
                    }
                    if !ek.admin[view][di].is_empty() {
                        return None;
                    }
                    out.entry(table).or_insert_with(|| (d, key.clone()));
                }
            }
        }
        Some(out)
    }

    /// The kernel number of an existing rule with `content`, when it has
    /// its own fold and no other rule's number depends on it.
    fn existing_rule(&self, content: &Content) -> Option<u32> {
        let natural = natural(content);
        let probed = self
            .compiled
            .kernel
            .rule_probes()
            .iter()
            .any(|&(from, to)| natural == from || natural == to || on_path(from, to, natural));
        if probed {
            return None;
        }
        (self.owner_of(natural).as_ref() == Some(content)).then_some(natural)
    }

    /// The kernel number a new rule with `content` takes: its fold, when no
    /// rule but one leaving (`removed`) with the same content holds it.
    fn new_rule(&self, content: &Content, removed: &HashSet<u32>) -> Option<u32> {
        let natural = natural(content);
        match self.owner_of(natural) {
            None => Some(natural),
            Some(c) if c == *content && removed.contains(&natural) => Some(natural),
            Some(_) => None,
        }
    }

    /// The content of the rule with kernel number `k`, if there is one.
    fn owner_of(&self, k: u32) -> Option<Content> {
        if let Some(c) = self.extra_rules.get(&k) {
            return Some(c.clone());
        }
        if self.gone_rules.contains(&k) {
            return None;
        }
        let r = self.compiled.kernel.internal_rule(k)?;
        Some(self.owned_content(&self.compiled.rules[r as usize]))
    }

    fn owned_content(&self, o: &RuleOrigin) -> Content {
        let (tier, ns, name, d, rule, peer, port) = rule_content(&self.model, o);
        (tier, ns.to_string(), name, d, rule, peer, port)
    }

    /// Content order over kernel rule numbers (`added` not yet committed).
    fn rule_order<'a>(&'a self, added: &'a [(u32, Content)]) -> impl Fn(u32, u32) -> Ordering + 'a {
        let content = move |k: u32| -> Option<Content> {
            added
                .iter()
                .find(|(id, _)| *id == k)
                .map(|(_, c)| c.clone())
                .or_else(|| self.owner_of(k))
        };
        move |a, b| content(a).cmp(&content(b))
    }

    /// Calls `grant(peer, proto, lo, hi)` for every grant of `g` (kernel
    /// identities), as the full compile's `TableContext::grants` does;
    /// ingress named ports resolve on the local pod `rep`.
    fn grants(&self, g: &Granting<'_>, rep: &str, mut grant: impl FnMut(u32, u8, u16, u16)) {
        let targets: Option<Vec<u32>> = g.peer.map(|peer| self.peer_identities(peer));
        let Some(spec) = g.port else {
            match &targets {
                None => grant(IDENTITY_ANY, PROTO_ANY, 0, u16::MAX),
                Some(ids) => ids.iter().for_each(|&id| grant(id, PROTO_ANY, 0, u16::MAX)),
            }
            return;
        };
        let proto = spec.protocol.number();
        let range = match &spec.port {
            PortMatch::Any => Some((0, u16::MAX)),
            PortMatch::Range(lo, hi) => Some((*lo, *hi)),
            PortMatch::Named(name) if g.direction == Direction::Ingress => self
                .model
                .pod(rep)
                .and_then(|(_, p)| p.named_port(name, spec.protocol))
                .map(|n| (n, n)),
            PortMatch::Named(name) => {
                let ids = targets.clone().unwrap_or_else(|| self.all_pod_identities());
                for id in ids {
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
                Some(ids) => ids.into_iter().for_each(|id| grant(id, proto, lo, hi)),
            }
        }
    }

    /// The kernel identities a peer names.
    fn peer_identities(&self, peer: &Peer) -> Vec<u32> {
        let mut ids: Vec<u32> = match peer {
            Peer::Pods { namespaces, pods } => {
                let Some(i) = self
                    .index
                    .peers
                    .as_ref()
                    .and_then(|p| p.position(namespaces, pods))
                else {
                    return Vec::new();
                };
                self.index
                    .identities
                    .iter()
                    .filter(|((class, _), _)| {
                        self.index.classes[*class as usize]
                            .peers
                            .binary_search(&i)
                            .is_ok()
                    })
                    .map(|(_, (v, _))| v.identity)
                    .collect()
            }
            Peer::IpBlock(b) => match self.compiled.blocks.binary_search(b) {
                Ok(bi) => self.compiled.identities.of_block[bi]
                    .iter()
                    .map(|&id| self.compiled.kernel.identity(id))
                    .collect(),
                Err(_) => Vec::new(),
            },
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every pods' identity (kernel numbers).
    fn all_pod_identities(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .index
            .identities
            .values()
            .map(|(v, _)| v.identity)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The port an egress named port resolves to on the pods of kernel
    /// identity `id` (their class says).
    fn resolve_on_identity(&self, id: u32, name: &str, proto: Protocol) -> Option<u16> {
        let ((class, _), _) = self
            .index
            .identities
            .iter()
            .find(|(_, (v, _))| v.identity == id)?;
        let peers = self.index.peers.as_ref()?;
        let at = peers.egress_name_position(name, proto)?;
        self.index.classes[*class as usize].named[at]
    }

    /// A group's segments now, rules in kernel numbers and content order.
    fn group(&self, table: u32, peer: u32, proto: u8) -> Option<Vec<Segment>> {
        if let Some(segs) = self.groups.get(&(table, peer, proto)) {
            return Some(segs.clone());
        }
        let kernel = &self.compiled.kernel;
        let t = kernel.internal_table(table)?;
        let p = kernel.internal_identity(peer)?;
        let segs = self.compiled.tables[t as usize]
            .groups
            .get(&(p, proto))
            .map(|segs| {
                segs.iter()
                    .map(|s| Segment {
                        rules: s.rules.iter().map(|&r| kernel.rule(r)).collect(),
                        passed: s.passed.iter().map(|&r| kernel.rule(r)).collect(),
                        ..s.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(segs)
    }

    /// The trees of the peers of `groups` (changed), from all their
    /// groups.
    fn trees_of(
        &self,
        groups: &BTreeMap<GroupAt, Vec<Segment>>,
    ) -> Option<BTreeMap<(u32, u32), Vec<PolicyRange>>> {
        let peers: BTreeSet<(u32, u32)> = groups.keys().map(|&(t, p, _)| (t, p)).collect();
        let mut trees = BTreeMap::new();
        for (table, peer) in peers {
            let mut of_peer: Vec<(u8, Vec<Segment>)> = Vec::new();
            for proto in GROUP_PROTOCOLS {
                let segs = match groups.get(&(table, peer, proto)) {
                    Some(s) => s.clone(),
                    None => self.group(table, peer, proto)?,
                };
                if !segs.is_empty() {
                    of_peer.push((proto, segs));
                }
            }
            let refs: Vec<(u8, &[Segment])> =
                of_peer.iter().map(|(p, s)| (*p, s.as_slice())).collect();
            trees.insert((table, peer), peer_ranges(&refs));
        }
        Some(trees)
    }

    /// Commits a policy plan; its writes.
    fn commit_policy(&mut self, plan: PolicyPlan) -> ImageDelta {
        self.index.uses.replace(&plan.old_uses, &plan.new_uses);
        for id in &plan.removed {
            if self.extra_rules.remove(id).is_none() {
                self.gone_rules.insert(*id);
            }
        }
        for (id, content) in plan.added {
            self.gone_rules.remove(&id);
            self.extra_rules.insert(id, content);
        }
        self.groups.extend(plan.groups);
        let mut delta = ImageDelta::default();
        for ((table, peer), ranges) in plan.trees {
            let ranges = (!ranges.is_empty()).then_some(ranges);
            if self.set_tree(table, peer, ranges.clone()) {
                delta.policy.insert((table, peer), ranges);
            }
        }
        delta
    }
}

/// The fold of a rule's content key: its number unless it collides.
fn natural(c: &Content) -> u32 {
    let content = (c.0, c.1.as_str(), c.2.clone(), c.3, c.4, c.5, c.6);
    fold(rule_key(&content).hash, RULE_RANGE.0, RULE_RANGE.1)
}

/// Whether a probe from `from` to `to` (wrapping within the rule range)
/// passed `n`.
fn on_path(from: u32, to: u32, n: u32) -> bool {
    if from <= to {
        from < n && n < to
    } else {
        n > from || n < to
    }
}

/// The (peer, port) pairs of rule `ri` of direction `d` of policy `pi`
/// (none when absent), with their content.
fn grantings(
    pi: usize,
    d: Direction,
    ri: usize,
    rule: Option<&Rule>,
) -> Vec<(Granting<'_>, RuleOrigin)> {
    let Some(rule) = rule else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (peer_i, peer) in indexed(rule.peers.as_deref()) {
        for (port_i, port) in indexed(rule.ports.as_deref()) {
            let origin = RuleOrigin {
                policy: pi,
                tier: None,
                direction: d,
                rule: ri,
                peer: peer_i,
                port: port_i,
            };
            let g = Granting {
                id: 0,
                direction: d,
                peer,
                port,
            };
            out.push((g, origin));
        }
    }
    out
}

/// The named ports of a policy's ingress rules, sorted.
fn ingress_names(p: &Policy) -> BTreeSet<(String, Protocol)> {
    p.ingress
        .iter()
        .flatten()
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|s| match &s.port {
            PortMatch::Named(n) => Some((n.clone(), s.protocol)),
            _ => None,
        })
        .collect()
}
