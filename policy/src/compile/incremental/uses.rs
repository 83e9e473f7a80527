//! What the model's policies use that shapes identities: pod peers (they
//! split pods into classes), ipBlocks (they cut the address space into
//! regions) and egress named ports (they split classes by what the names
//! resolve to), each counted over every policy. A policy change keeps every
//! identity where it is exactly when it leaves the set of things used with
//! a count above zero unchanged.

use std::collections::HashMap;
use std::hash::Hash;

use super::super::admin_blocks;
use crate::model::{
    AdminPeer, AdminPolicy, Direction, IpBlock, Model, NamespaceScope, Peer, Policy, PortMatch,
    Protocol, Selector,
};

/// Things used, with how often.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// Pod peers.
    pub peers: HashMap<(NamespaceScope, Selector), usize>,
    /// ipBlocks (NetworkPolicy peers, cluster-admin networks and nodes).
    pub blocks: HashMap<IpBlock, usize>,
    /// Named ports of egress rules.
    pub egress_names: HashMap<(String, Protocol), usize>,
}

impl Uses {
    /// Everything `model`'s policies use.
    pub fn of_model(model: &Model) -> Self {
        let mut uses = Self::default();
        for p in &model.policies {
            uses.add_policy(p, 1);
        }
        for p in &model.admin_policies {
            uses.add_admin(model, p);
        }
        uses
    }

    /// What one NetworkPolicy uses.
    pub fn of_policy(policy: &Policy) -> Self {
        let mut uses = Self::default();
        uses.add_policy(policy, 1);
        uses
    }

    fn add_policy(&mut self, policy: &Policy, n: usize) {
        for d in Direction::ALL {
            for rule in policy.rules(d).unwrap_or_default() {
                for peer in rule.peers.iter().flatten() {
                    match peer {
                        Peer::Pods { namespaces, pods } => {
                            bump(&mut self.peers, (namespaces.clone(), pods.clone()), n)
                        }
                        Peer::IpBlock(b) => bump(&mut self.blocks, b.clone(), n),
                    }
                }
                if d == Direction::Egress {
                    for spec in rule.ports.iter().flatten() {
                        if let PortMatch::Named(name) = &spec.port {
                            bump(&mut self.egress_names, (name.clone(), spec.protocol), n);
                        }
                    }
                }
            }
        }
    }

    fn add_admin(&mut self, model: &Model, policy: &AdminPolicy) {
        for d in Direction::ALL {
            for rule in policy.rules(d) {
                for peer in &rule.peers {
                    if let AdminPeer::Pods { namespaces, pods } = peer {
                        let key = (NamespaceScope::Selected(namespaces.clone()), pods.clone());
                        bump(&mut self.peers, key, 1);
                    }
                    for b in admin_blocks(model, peer) {
                        bump(&mut self.blocks, b, 1);
                    }
                }
                if d == Direction::Egress {
                    for spec in rule.ports.iter().flatten() {
                        if let PortMatch::Named(name) = &spec.port {
                            bump(&mut self.egress_names, (name.clone(), spec.protocol), 1);
                        }
                    }
                }
            }
        }
    }

    /// Whether replacing what `old` uses by what `new` uses keeps the set
    /// of things used (count above zero) the same.
    pub fn same_after(&self, old: &Uses, new: &Uses) -> bool {
        same(&self.peers, &old.peers, &new.peers)
            && same(&self.blocks, &old.blocks, &new.blocks)
            && same(&self.egress_names, &old.egress_names, &new.egress_names)
    }

    /// Replaces what `old` uses by what `new` uses.
    pub fn replace(&mut self, old: &Uses, new: &Uses) {
        apply(&mut self.peers, old, new, |u| &u.peers);
        apply(&mut self.blocks, old, new, |u| &u.blocks);
        apply(&mut self.egress_names, old, new, |u| &u.egress_names);
    }
}

fn bump<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: K, n: usize) {
    *map.entry(key).or_default() += n;
}

/// Whether every key of `old` or `new` is used before exactly when it is
/// after `old` is taken away and `new` added.
fn same<K: Hash + Eq>(
    all: &HashMap<K, usize>,
    old: &HashMap<K, usize>,
    new: &HashMap<K, usize>,
) -> bool {
    old.keys().chain(new.keys()).all(|k| {
        let before = all.get(k).copied().unwrap_or(0);
        let after = before + new.get(k).copied().unwrap_or(0) - old.get(k).copied().unwrap_or(0);
        (before > 0) == (after > 0)
    })
}

fn apply<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, usize>,
    old: &Uses,
    new: &Uses,
    field: impl Fn(&Uses) -> &HashMap<K, usize>,
) {
    for (k, n) in field(new) {
        bump(map, k.clone(), *n);
    }
    for (k, n) in field(old) {
        if let Some(c) = map.get_mut(k) {
            *c -= n;
            if *c == 0 {
                map.remove(k);
            }
        }
    }
}
