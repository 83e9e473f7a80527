//! Stable kernel numbers: the map image is a function of the model alone
//! (not of the order its pods and policies are listed in), and a small
//! model change makes a small image change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use bulkhead_common::{EndpointInfo, IdentityValue, PolicyNode};
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::{
    Direction, IpBlock, Model, Peer, Policy, PortMatch, PortSpec, Protocol, Requirement, Rule,
    Selector,
};
use bulkhead_testkit::{Rng, random_model, random_modes, random_tiered_model};

/// An image keyed by what each entry is about: identities by (prefix
/// length, address), tree nodes by (table, peer, node), endpoints by pod
/// name (the image lists them by pod index).
#[derive(Debug, PartialEq, Eq)]
struct Keyed {
    identities: BTreeMap<(u32, [u8; 16]), IdentityValue>,
    policy: HashMap<(u32, u32, u32), PolicyNode>,
    endpoints: BTreeMap<String, EndpointInfo>,
    services: Vec<bulkhead_common::ServiceKey>,
}

fn keyed(m: &Model, image: &MapImage) -> Keyed {
    let identities: BTreeMap<_, _> = image
        .identities
        .iter()
        .map(|(len, k, v)| ((*len, k.addr), *v))
        .collect();
    assert_eq!(identities.len(), image.identities.len(), "unique keys");
    let policy: HashMap<_, _> = image
        .policy
        .iter()
        .map(|(k, v)| ((k.table, k.identity, k.node), *v))
        .collect();
    assert_eq!(policy.len(), image.policy.len(), "unique keys");
    Keyed {
        identities,
        policy,
        endpoints: image
            .endpoints
            .iter()
            .map(|(p, info)| (m.pods[*p].key(), *info))
            .collect(),
        services: image.services.clone(),
    }
}

/// The image of `m` with every pod local, keyed.
fn image_of(m: &Model) -> (Compiled, Keyed) {
    let c = compile(m);
    let image = c.map_image(0);
    let k = keyed(m, &image);
    (c, k)
}

/// The (table, peer) trees that differ between two images.
fn changed_trees(a: &Keyed, b: &Keyed) -> BTreeSet<(u32, u32)> {
    let mut out = BTreeSet::new();
    for (k, v) in &a.policy {
        if b.policy.get(k) != Some(v) {
            out.insert((k.0, k.1));
        }
    }
    for k in b.policy.keys() {
        if !a.policy.contains_key(k) {
            out.insert((k.0, k.1));
        }
    }
    out
}

/// A random model (plain or with cluster-admin tiers, random modes).
fn model(seed: u64) -> Model {
    let mut r = Rng(seed);
    let mut m = if seed.is_multiple_of(2) {
        random_model(&mut r)
    } else {
        random_tiered_model(&mut r)
    };
    random_modes(&mut r, &mut m);
    m
}

#[test]
fn the_image_does_not_depend_on_the_order_of_pods_and_policies() {
    let mut rules_compared = 0;
    for seed in 0..300 {
        let m = model(seed);
        let (c, want) = image_of(&m);
        let mut r = Rng(seed ^ 0x5eed);
        for _ in 0..3 {
            let mut shuffled = m.clone();
            shuffle(&mut r, &mut shuffled.pods);
            shuffle(&mut r, &mut shuffled.policies);
            let (c2, got) = image_of(&shuffled);
            assert_eq!(got, want, "seed {seed}\n{m:#?}");
            // The listing itself is in key order, not model order.
            let (a, b) = (c.map_image(1), c2.map_image(1));
            assert_eq!(a.identities, b.identities, "seed {seed}");
            assert_eq!(a.policy, b.policy, "seed {seed}");
            // Internal rule ids are in content order too: the same rules
            // in the same order.
            let names = |c: &Compiled, m: &Model| -> Vec<(String, Direction, usize)> {
                c.rules
                    .iter()
                    .map(|o| match o.tier {
                        None => (m.policies[o.policy].key(), o.direction, o.rule),
                        Some(_) => (m.admin_policies[o.policy].key(), o.direction, o.rule),
                    })
                    .collect()
            };
            assert_eq!(names(&c, &m), names(&c2, &shuffled), "seed {seed}");
            rules_compared += c.rules.len();
        }
    }
    assert!(
        rules_compared > 1000,
        "only {rules_compared} rules compared"
    );
}

fn shuffle<T>(r: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, r.below(i + 1));
    }
}

/// The next address after `a` (same family).
fn next_addr(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

#[test]
fn a_pod_joining_a_class_changes_only_its_own_entries() {
    let (mut checked, mut new_tables) = (0, 0);
    for seed in 0..300 {
        let m = model(seed);
        let (c, before) = image_of(&m);
        let mut r = Rng(seed ^ 0xadd);
        let twin = r.below(m.pods.len());
        // A new address for each of the twin's, in the same region (the
        // same ipBlocks), used by no pod or node.
        let used: BTreeSet<IpAddr> = m
            .pods
            .iter()
            .flat_map(|p| p.ips.iter().copied())
            .chain(m.node_ips.iter().copied())
            .collect();
        let ips: Option<Vec<IpAddr>> = m.pods[twin]
            .ips
            .iter()
            .map(|&a| {
                let region = c.regions.lookup(a);
                let mut b = a;
                for _ in 0..64 {
                    b = next_addr(b);
                    if !used.contains(&b) && c.regions.lookup(b) == region {
                        return Some(b);
                    }
                }
                None
            })
            .collect();
        let Some(ips) = ips else { continue };
        let mut pod = m.pods[twin].clone();
        pod.name = format!("{}-twin", pod.name);
        pod.source.name = pod.name.clone();
        pod.ips = ips.clone();
        let mut after_model = m.clone();
        // In the middle of the list: every later pod's index moves.
        after_model.pods.insert(twin + 1, pod.clone());
        let (c2, after) = image_of(&after_model);
        assert_eq!(
            c2.classes.class_of[twin + 1],
            c2.classes.class_of[twin],
            "seed {seed}: the twin joins its class"
        );
        // Trees: unchanged, but for those of tables only the new pod uses
        // (a cluster-admin policy's subject may name its twin, not it).
        let old_tables: BTreeSet<u32> = before.policy.keys().map(|k| k.0).collect();
        let changed = changed_trees(&before, &after);
        assert!(
            changed.iter().all(|(t, _)| !old_tables.contains(t)),
            "seed {seed}: trees {changed:?} changed"
        );
        let info = after.endpoints[&pod.key()];
        for (t, _) in &changed {
            assert!(
                [
                    info.ingress_table,
                    info.egress_table,
                    info.audit_ingress_table,
                    info.audit_egress_table
                ]
                .contains(t),
                "seed {seed}: a new table {t} the new pod does not use"
            );
        }
        new_tables += usize::from(!changed.is_empty());
        assert_eq!(after.services, before.services, "seed {seed}");
        // Endpoints: the new pod's added, every other unchanged.
        let mut endpoints = after.endpoints.clone();
        assert!(endpoints.remove(&pod.key()).is_some());
        assert_eq!(endpoints, before.endpoints, "seed {seed}: endpoints");
        // Identities: only the new addresses' entries, with the twin's
        // identity.
        let twin_id = |image: &Keyed, a: IpAddr| {
            let (len, key) = bulkhead_policy::compile::maps::identity_key(0, a.into());
            image.identities[&(len, key.addr)]
        };
        for (k, v) in &after.identities {
            let new = ips.iter().position(|&a| {
                let (len, key) = bulkhead_policy::compile::maps::identity_key(0, a.into());
                (len, key.addr) == *k
            });
            if let Some(i) = new {
                // The twin's address of the same family and ipBlocks.
                assert_eq!(v, &twin_id(&before, m.pods[twin].ips[i]), "seed {seed}");
            } else {
                assert_eq!(before.identities.get(k), Some(v), "seed {seed}: {k:?}");
            }
        }
        for k in before.identities.keys() {
            assert!(after.identities.contains_key(k), "seed {seed}: {k:?} gone");
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} models checked");
    assert!(
        new_tables < checked / 10,
        "{new_tables} of {checked} new tables"
    );
}

#[test]
fn appending_a_rule_changes_only_the_trees_of_the_peers_it_names() {
    let (mut checked, mut changed) = (0, 0);
    for seed in 0..400 {
        let m = model(seed);
        let (c, before) = image_of(&m);
        let mut r = Rng(seed ^ 0x7e1e);
        // A block already in force (so no address changes identity), and
        // a policy isolating a direction.
        if c.blocks.is_empty() {
            continue;
        }
        let b = r.below(c.blocks.len());
        let block: IpBlock = c.blocks[b].clone();
        let candidates: Vec<(usize, Direction)> = (0..m.policies.len())
            .flat_map(|pi| Direction::ALL.map(|d| (pi, d)))
            .filter(|&(pi, d)| m.policies[pi].rules(d).is_some())
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let (pi, d) = *r.pick(&candidates);
        let port = 78 + r.below(8) as u16;
        let mut after_model = m.clone();
        let rules = match d {
            Direction::Ingress => after_model.policies[pi].ingress.as_mut(),
            Direction::Egress => after_model.policies[pi].egress.as_mut(),
        };
        rules.expect("isolates").push(Rule {
            peers: Some(vec![Peer::IpBlock(block.clone())]),
            ports: Some(vec![PortSpec {
                protocol: Protocol::Tcp,
                port: PortMatch::Range(port, port),
            }]),
        });
        let (c2, after) = image_of(&after_model);
        assert_eq!(after.identities, before.identities, "seed {seed}");
        assert_eq!(after.endpoints, before.endpoints, "seed {seed}");
        // The trees it may change: the block's identities in the tables
        // of the policy's direction.
        let c2 = &c2;
        let named: BTreeSet<(u32, u32)> = c2
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.direction == d && t.policies.contains(&pi))
            .flat_map(|(t, _)| {
                c2.identities.of_block[b]
                    .iter()
                    .map(move |&id| (c2.kernel.table(t as u32), c2.kernel.identity(id)))
            })
            .collect();
        let diff = changed_trees(&before, &after);
        assert!(
            diff.is_subset(&named),
            "seed {seed}: trees {diff:?} changed, the rule names {named:?}"
        );
        checked += 1;
        changed += diff.len();
    }
    assert!(checked > 150, "only {checked} models checked");
    assert!(
        changed > 50,
        "only {changed} trees changed: the rule never showed"
    );
}

#[test]
fn removing_a_policy_that_selects_nothing_changes_nothing() {
    let mut checked = 0;
    for seed in 0..300 {
        let m = model(seed);
        if m.policies.is_empty() {
            continue;
        }
        let (_, without) = image_of(&m);
        let mut r = Rng(seed ^ 0xde1);
        // A copy of a policy (its peers, so no new distinction) that
        // selects no pod, listed first: every other policy's index moves.
        let mut idle: Policy = r.pick(&m.policies).clone();
        idle.name = format!("{}-idle", idle.name);
        idle.pod_selector = Selector::new(vec![Requirement::Exists("no-pod-has-this".into())]);
        let mut with_model = m.clone();
        with_model.policies.insert(0, idle);
        let (_, with) = image_of(&with_model);
        assert_eq!(with, without, "seed {seed}");
        checked += 1;
    }
    assert!(checked > 200, "only {checked} models checked");
}
