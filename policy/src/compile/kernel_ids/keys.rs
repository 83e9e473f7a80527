//! Content keys: what each identity, table and rule stands for, as a
//! canonical serialization ([`Canon`]) of the parts the module docs of
//! [`super`] list.

use super::super::bitset::BitSet;
use super::super::{Identities, IdentityKind, PodClasses, Regions, RuleOrigin, RuleTable};
use super::{Canon, ContentKey, fnv1a64};
use crate::model::{Direction, IpBlock, Model, NamespaceScope, Protocol, Selector, Tier};

/// What a rule is, in content order: (tier or NetworkPolicy, policy
/// namespace, policy name, direction, rule index, peer index, port index).
/// A cluster-admin policy has no namespace; its name is its key
/// (`kind/name`).
pub type RuleContent<'a> = (
    Option<Tier>,
    &'a str,
    String,
    Direction,
    usize,
    Option<usize>,
    Option<usize>,
);

/// The content of rule `o` of `model`.
pub fn rule_content<'a>(model: &'a Model, o: &RuleOrigin) -> RuleContent<'a> {
    let (ns, name) = match o.tier {
        None => {
            let p = &model.policies[o.policy];
            (p.namespace.as_str(), p.name.clone())
        }
        Some(_) => ("", model.admin_policies[o.policy].key()),
    };
    (o.tier, ns, name, o.direction, o.rule, o.peer, o.port)
}

/// The content key of a rule.
pub fn rule_key(content: &RuleContent<'_>) -> ContentKey {
    let (tier, ns, name, d, rule, peer, port) = content;
    let mut c = Canon::new("rule");
    c.tier(*tier)
        .str(ns)
        .str(name)
        .direction(*d)
        .index(Some(*rule))
        .index(*peer)
        .index(*port);
    c.key()
}

/// The content key of a table: its direction, selecting policies (by
/// name, as sets) and ingress named ports with what they resolve to.
pub fn table_key(
    model: &Model,
    table: &RuleTable,
    resolved: &[((String, Protocol), Option<u16>)],
) -> ContentKey {
    let mut policies: Vec<(&str, &str)> = table
        .policies
        .iter()
        .map(|&pi| {
            (
                model.policies[pi].namespace.as_str(),
                model.policies[pi].name.as_str(),
            )
        })
        .collect();
    policies.sort_unstable();
    let mut admin: Vec<String> = table
        .admin
        .iter()
        .map(|&ai| model.admin_policies[ai].key())
        .collect();
    admin.sort_unstable();
    let mut c = Canon::new("table");
    c.direction(table.direction).u32(policies.len() as u32);
    for (ns, name) in policies {
        c.str(ns).str(name);
    }
    c.u32(admin.len() as u32);
    for a in &admin {
        c.str(a);
    }
    c.u32(resolved.len() as u32);
    for ((name, proto), port) in resolved {
        c.str(name).protocol(*proto);
        match port {
            None => c.u8(0),
            Some(p) => c.u8(1).u32(u32::from(*p)),
        };
    }
    c.key()
}

/// The class key of every pod class, as a hash: FNV-1a 64 over the sorted
/// hashes of the pod peers `(NamespaceScope, Selector)` selecting the class
/// (`peers_of_set[s]`: the peers whose pod set is `sets[s]`) and the egress
/// named ports (of `egress_names`) its pods resolve, with their numbers.
pub fn class_keys(
    model: &Model,
    classes: &PodClasses,
    sets: &[BitSet],
    peers_of_set: &[Vec<(NamespaceScope, Selector)>],
    egress_names: &[(String, Protocol)],
) -> Vec<u64> {
    let peer_hash = |(scope, sel): &(NamespaceScope, Selector)| {
        let mut c = Canon::new("peer");
        c.scope(scope).selector(sel);
        fnv1a64(c.bytes())
    };
    let set_hashes: Vec<Vec<u64>> = peers_of_set
        .iter()
        .map(|peers| peers.iter().map(peer_hash).collect())
        .collect();
    let mut of_class: Vec<Vec<u64>> = vec![Vec::new(); classes.len()];
    let mut last_set: Vec<usize> = vec![usize::MAX; classes.len()];
    for (s, set) in sets.iter().enumerate() {
        for p in set.iter() {
            let c = classes.class_of[p] as usize;
            if last_set[c] != s {
                last_set[c] = s;
                of_class[c].extend(&set_hashes[s]);
            }
        }
    }
    of_class
        .into_iter()
        .enumerate()
        .map(|(c, mut hashes)| {
            hashes.sort_unstable();
            let mut k = Canon::new("class");
            k.u32(hashes.len() as u32);
            for h in hashes {
                k.u64(h);
            }
            let rep = &model.pods[classes.representative[c]];
            for (name, proto) in egress_names {
                if let Some(port) = rep.named_port(name, *proto) {
                    k.str(name).protocol(*proto).u32(u32::from(port));
                }
            }
            fnv1a64(k.bytes())
        })
        .collect()
}

/// The content key of every identity (`out[i]` that of identity `i + 1`):
/// an external one's region (family and ipBlocks), a pods' one's class key
/// (`class_keys`) and ipBlocks, the node's ipBlocks. ipBlocks by value.
pub fn identity_keys(
    identities: &Identities,
    regions: &Regions,
    blocks: &[IpBlock],
    class_keys: &[u64],
) -> Vec<ContentKey> {
    let block_list = |c: &mut Canon, of: &[u32]| {
        c.u32(of.len() as u32);
        for &b in of {
            c.block(&blocks[b as usize]);
        }
    };
    identities
        .list
        .iter()
        .map(|identity| {
            let mut c;
            match &identity.kind {
                IdentityKind::External { region } => {
                    let region = &regions.regions[*region as usize];
                    c = Canon::new("external");
                    c.u8(if region.ipv4 { 4 } else { 6 });
                    block_list(&mut c, &region.blocks);
                }
                IdentityKind::Pods { class, blocks, .. } => {
                    c = Canon::new("pods");
                    c.u64(class_keys[*class as usize]);
                    block_list(&mut c, blocks);
                }
                IdentityKind::Node { blocks, .. } => {
                    c = Canon::new("node");
                    block_list(&mut c, blocks);
                }
            }
            c.key()
        })
        .collect()
}
