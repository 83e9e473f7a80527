//! Stable kernel numbers: the identity, table and rule numbers the kernel
//! maps hold, derived from what each stands for (a *content key*), not from
//! where the compiler met it.
//!
//! The compiler numbers identities, tables and rules densely (its internal
//! ids: the evaluator, explain, connectivity and the learner index by
//! them). Those positions move when a pod or a policy is inserted anywhere
//! in the model, so a map image written with them would change everywhere
//! for a one-pod change. The image instead carries, for each internal id,
//! the FNV-1a 64 hash of a canonical serialization of its content key,
//! folded into the id range the ABI allows:
//!
//! - rule: (tier or NetworkPolicy, policy namespace/name, direction, rule
//!   index, peer index, port index), below `RULE_F_DENY`;
//! - table: (direction, selecting NetworkPolicies by namespace/name,
//!   selecting cluster-admin policies by name, ingress named ports
//!   resolved), never 0;
//! - identity: an external one by its region (family and ipBlocks, by
//!   value); a pods' one by (class key, ipBlocks containing the
//!   addresses), the class key being the set of pod peers
//!   `(NamespaceScope, Selector)` that select the class and the egress
//!   named ports its pods resolve; the node's by its ipBlocks. Never
//!   `IDENTITY_ANY`.
//!
//! Two keys that fold to one number are resolved by [`assign`], in content
//! order, so the numbers (and the image) are a function of the model alone.

use std::collections::{HashMap, HashSet};

use bulkhead_common::{IDENTITY_ANY, RULE_F_DENY, RULE_NODE, rule_id};
use ipnetwork::IpNetwork;

use super::{IdentityId, RuleId, TableId};
use crate::model::{Direction, IpBlock, NamespaceScope, Protocol, Requirement, Selector, Tier};

mod keys;

pub use keys::{RuleContent, class_keys, identity_keys, rule_content, rule_key, table_key};

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// A canonical serialization being written: every variable-length part is
/// length-prefixed, so distinct contents never serialize alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Canon(Vec<u8>);

impl Canon {
    /// A serialization starting with `tag` (what kind of key it is).
    pub fn new(tag: &str) -> Self {
        let mut c = Self(Vec::with_capacity(64));
        c.str(tag);
        c
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The content key: the bytes and their FNV-1a 64.
    pub fn key(self) -> ContentKey {
        ContentKey {
            hash: fnv1a64(&self.0),
            canon: self.0,
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// Appends a `u32`, little-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }

    /// Appends a `u64`, little-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }

    /// Appends a length-prefixed string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.0.extend(s.as_bytes());
        self
    }

    /// Appends an optional index (`None` as 0, `Some(i)` as `i + 1`).
    pub fn index(&mut self, i: Option<usize>) -> &mut Self {
        self.u64(i.map_or(0, |i| i as u64 + 1))
    }

    /// Appends a direction.
    pub fn direction(&mut self, d: Direction) -> &mut Self {
        self.u8(match d {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        })
    }

    /// Appends a protocol.
    pub fn protocol(&mut self, p: Protocol) -> &mut Self {
        self.u8(p.number())
    }

    /// Appends a prefix: family, address bytes, length.
    pub fn net(&mut self, n: &IpNetwork) -> &mut Self {
        match n {
            IpNetwork::V4(n) => self.u8(4).extend(&n.network().octets()),
            IpNetwork::V6(n) => self.u8(6).extend(&n.network().octets()),
        };
        self.u8(n.prefix())
    }

    /// Appends an ipBlock (its cidr and excepts, in their canonical
    /// order).
    pub fn block(&mut self, b: &IpBlock) -> &mut Self {
        self.net(&b.cidr).u32(b.except.len() as u32);
        for e in &b.except {
            self.net(e);
        }
        self
    }

    /// Appends a selector (its requirements are sorted and deduplicated,
    /// see [`Selector::new`]).
    pub fn selector(&mut self, s: &Selector) -> &mut Self {
        self.u32(s.requirements().len() as u32);
        for r in s.requirements() {
            let (tag, key, values): (u8, &str, &[String]) = match r {
                Requirement::In(k, vs) => (0, k, vs),
                Requirement::NotIn(k, vs) => (1, k, vs),
                Requirement::Exists(k) => (2, k, &[]),
                Requirement::DoesNotExist(k) => (3, k, &[]),
            };
            self.u8(tag).str(key).u32(values.len() as u32);
            for v in values {
                self.str(v);
            }
        }
        self
    }

    /// Appends a pod peer's namespace scope.
    pub fn scope(&mut self, s: &NamespaceScope) -> &mut Self {
        match s {
            NamespaceScope::Same(ns) => self.u8(0).str(ns),
            NamespaceScope::Selected(sel) => self.u8(1).selector(sel),
        }
    }

    /// Appends an optional tier (`None`: NetworkPolicy).
    pub fn tier(&mut self, t: Option<Tier>) -> &mut Self {
        self.u8(match t {
            None => 0,
            Some(Tier::Quarantine) => 1,
            Some(Tier::Admin) => 2,
            Some(Tier::Baseline) => 3,
        })
    }

    fn extend(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend(bytes);
        self
    }
}

/// A content key: its canonical serialization and that serialization's
/// FNV-1a 64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentKey {
    /// FNV-1a 64 of `canon`.
    pub hash: u64,
    /// The canonical serialization.
    pub canon: Vec<u8>,
}

/// The number `hash` folds to in `lo..=hi`.
pub fn fold(hash: u64, lo: u32, hi: u32) -> u32 {
    let size = u64::from(hi - lo) + 1;
    lo + (hash % size) as u32
}

/// Numbers `keys` in `lo..=hi`: each its hash folded into the range
/// ([`fold`]), unless that number is taken. Where keys fold to one number,
/// the first in content order (hash, then serialization) keeps it; the
/// others, in content order, take the next number not taken by any key's
/// own fold (wrapping within the range). So the numbers depend only on the
/// set of keys, and a key whose fold nothing else shares keeps it whatever
/// else is numbered. Equal keys (a model with a duplicate name) are
/// numbered in the order given.
///
/// Panics if the range has fewer numbers than there are keys.
pub fn assign(keys: &[ContentKey], lo: u32, hi: u32) -> Vec<u32> {
    assert!(
        u64::from(hi - lo) + 1 >= keys.len() as u64,
        "{} keys in a range of {}",
        keys.len(),
        u64::from(hi - lo) + 1
    );
    let natural: Vec<u32> = keys.iter().map(|k| fold(k.hash, lo, hi)).collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| {
        (natural[a], keys[a].hash, &keys[a].canon, a).cmp(&(
            natural[b],
            keys[b].hash,
            &keys[b].canon,
            b,
        ))
    });
    let mut out = vec![0u32; keys.len()];
    let mut taken: HashSet<u32> = HashSet::with_capacity(keys.len());
    let mut losers = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        if i > 0 && natural[order[i - 1]] == natural[k] {
            losers.push(k);
        } else {
            out[k] = natural[k];
            taken.insert(natural[k]);
        }
    }
    for k in losers {
        let mut n = natural[k];
        while taken.contains(&n) {
            n = if n == hi { lo } else { n + 1 };
        }
        out[k] = n;
        taken.insert(n);
    }
    out
}

/// The range rule numbers fold into: below `RULE_F_DENY`.
pub const RULE_RANGE: (u32, u32) = (0, RULE_F_DENY - 1);
/// The range table numbers fold into (0 is never one, so an unset
/// ENDPOINTS table field is no table's number).
pub const TABLE_RANGE: (u32, u32) = (1, u32::MAX);
/// The range identity numbers fold into: never `IDENTITY_ANY`.
pub const IDENTITY_RANGE: (u32, u32) = (IDENTITY_ANY + 1, u32::MAX);

/// The kernel numbers of a compiled policy: internal id → kernel number
/// and back, for identities, tables and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelIds {
    /// Kernel number of identity `i + 1`.
    identities: Vec<u32>,
    /// Kernel number of table `i`.
    tables: Vec<u32>,
    /// Kernel number of rule `i`.
    rules: Vec<u32>,
    identity_of: HashMap<u32, IdentityId>,
    table_of: HashMap<u32, TableId>,
    rule_of: HashMap<u32, RuleId>,
    /// Rules that did not get their own fold: (their fold, their number).
    rule_probes: Vec<(u32, u32)>,
}

impl KernelIds {
    /// Numbers identities (`identities[i]` the key of identity `i + 1`),
    /// tables and rules (by internal id) from their content keys.
    pub fn new(identities: &[ContentKey], tables: &[ContentKey], rules: &[ContentKey]) -> Self {
        let identities = assign(identities, IDENTITY_RANGE.0, IDENTITY_RANGE.1);
        let tables = assign(tables, TABLE_RANGE.0, TABLE_RANGE.1);
        let rule_keys = rules;
        let rules = assign(rules, RULE_RANGE.0, RULE_RANGE.1);
        let rule_probes = rule_keys
            .iter()
            .zip(&rules)
            .map(|(k, &n)| (fold(k.hash, RULE_RANGE.0, RULE_RANGE.1), n))
            .filter(|(natural, n)| natural != n)
            .collect();
        let back = |v: &[u32], base: u32| -> HashMap<u32, u32> {
            v.iter()
                .enumerate()
                .map(|(i, &k)| (k, i as u32 + base))
                .collect()
        };
        Self {
            identity_of: back(&identities, 1),
            table_of: back(&tables, 0),
            rule_of: back(&rules, 0),
            rule_probes,
            identities,
            tables,
            rules,
        }
    }

    /// The kernel number of identity `id` (`IDENTITY_ANY` stays).
    ///
    /// Panics if `id` is no identity.
    pub fn identity(&self, id: IdentityId) -> u32 {
        if id == IDENTITY_ANY {
            IDENTITY_ANY
        } else {
            self.identities[id as usize - 1]
        }
    }

    /// The kernel number of table `t`.
    ///
    /// Panics if `t` is no table.
    pub fn table(&self, t: TableId) -> u32 {
        self.tables[t as usize]
    }

    /// The kernel number of rule `r`.
    ///
    /// Panics if `r` is no rule.
    pub fn rule(&self, r: RuleId) -> u32 {
        self.rules[r as usize]
    }

    /// A policy tree target or recorded rule in internal numbers (a rule,
    /// maybe with `RULE_F_DENY`; or `RULE_NONE`, `RULE_NODE`) in kernel
    /// numbers.
    pub fn target(&self, target: u32) -> u32 {
        if target >= RULE_NODE {
            target
        } else {
            self.rule(rule_id(target)) | (target & RULE_F_DENY)
        }
    }

    /// The identity with kernel number `k` (`IDENTITY_ANY` stays); `None`
    /// if no identity has it.
    pub fn internal_identity(&self, k: u32) -> Option<IdentityId> {
        if k == IDENTITY_ANY {
            Some(IDENTITY_ANY)
        } else {
            self.identity_of.get(&k).copied()
        }
    }

    /// The table with kernel number `k`, if any.
    pub fn internal_table(&self, k: u32) -> Option<TableId> {
        self.table_of.get(&k).copied()
    }

    /// The rule with kernel number `k` (no `RULE_F_DENY`), if any.
    pub fn internal_rule(&self, k: u32) -> Option<RuleId> {
        self.rule_of.get(&k).copied()
    }

    /// A kernel policy tree target or recorded rule (a rule, maybe with
    /// `RULE_F_DENY`; or `RULE_NONE`, `RULE_NODE`) in internal numbers;
    /// `None` if it names no rule.
    pub fn internal_target(&self, k: u32) -> Option<u32> {
        if k >= RULE_NODE {
            Some(k)
        } else {
            self.internal_rule(rule_id(k))
                .map(|r| r | (k & RULE_F_DENY))
        }
    }

    /// The rules that lost their fold to another rule's (a collision): for
    /// each, (its fold, the number it took instead). Empty but for about
    /// one model in a thousand with 100k rules.
    pub fn rule_probes(&self) -> &[(u32, u32)] {
        &self.rule_probes
    }

    /// Kernel rule numbers, by internal rule id.
    pub fn rules(&self) -> &[u32] {
        &self.rules
    }
}

#[cfg(test)]
mod tests;
