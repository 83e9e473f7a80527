use std::collections::BTreeMap;

use bulkhead_common::{
    EndpointInfo, IdentityValue, POLICY_FANOUT, POLICY_POINT_MAX, PolicyNodeKey, PolicyRange,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ImageDelta, NodeImage, tree_node_count, tree_ranges};
use crate::compile::maps::policy_tree;

/// `n` sorted, disjoint ranges with random bounds and targets.
fn ranges(rng: &mut ChaCha8Rng, n: usize) -> Vec<PolicyRange> {
    let step = POLICY_POINT_MAX / (n as u32 + 1);
    (0..n as u32)
        .map(|i| {
            let first = i * step + rng.random_range(0..step / 2);
            PolicyRange {
                first,
                last: first + rng.random_range(0..step / 2),
                target: rng.random_range(1..50),
            }
        })
        .collect()
}

fn endpoint(table: u32) -> EndpointInfo {
    EndpointInfo {
        ingress_table: table,
        egress_table: 0,
        flags: 0,
        _reserved: 0,
        mac: [0; 6],
        _pad: [0; 2],
        ipv4: [0; 16],
        ipv6: [0; 16],
        audit_ingress_table: 0,
        audit_egress_table: 0,
    }
}

fn image(rng: &mut ChaCha8Rng) -> NodeImage {
    let mut img = NodeImage::default();
    for _ in 0..rng.random_range(0..30) {
        let addr = [rng.random_range(0..4u8); 16];
        img.identities.insert(
            (rng.random_range(100..=136), addr),
            IdentityValue {
                identity: rng.random_range(1..6),
                flags: rng.random_range(0..2),
            },
        );
    }
    for _ in 0..rng.random_range(0..12) {
        let n = match rng.random_range(0..4) {
            0 => rng.random_range(17..300),
            _ => rng.random_range(1..=POLICY_FANOUT),
        };
        let key = (rng.random_range(1..4), rng.random_range(0..6));
        img.policy.insert(key, ranges(rng, n));
    }
    for _ in 0..rng.random_range(0..6) {
        let info = endpoint(rng.random_range(0..3));
        img.endpoints.insert(rng.random_range(1..10), info);
    }
    for _ in 0..rng.random_range(0..6) {
        img.services
            .insert((6, rng.random_range(1..4), [rng.random_range(0..3u8); 16]));
    }
    img
}

#[test]
fn tree_ranges_reads_back_what_policy_tree_cut() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in [1, 2, 16, 17, 255, 256, 257, 4096, 4097, 5000] {
        let r = ranges(&mut rng, n);
        let nodes: BTreeMap<u32, _> = policy_tree(1, 2, 3, &r)
            .into_iter()
            .map(|(k, v): (PolicyNodeKey, _)| (k.node, v))
            .collect();
        assert_eq!(nodes.len(), tree_node_count(n), "{n} ranges");
        let back = tree_ranges(&nodes[&0], |i| nodes.get(&i).copied());
        assert_eq!(back.as_deref(), Some(&r[..]), "{n} ranges");
    }
    assert_eq!(tree_node_count(0), 0);
}

#[test]
fn tree_ranges_rejects_a_missing_or_shared_child() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let r = ranges(&mut rng, 40);
    let mut nodes: BTreeMap<u32, _> = policy_tree(0, 1, 1, &r)
        .into_iter()
        .map(|(k, v)| (k.node, v))
        .collect();
    assert!(tree_ranges(&nodes[&0], |i| (i != 2).then(|| nodes[&i])).is_none());
    let mut root = nodes[&0];
    root.ranges[1].target = root.ranges[0].target;
    assert!(tree_ranges(&root, |i| nodes.get(&i).copied()).is_none());
    // Leaves out of order.
    let first = nodes[&1];
    nodes.insert(1, nodes[&2]);
    nodes.insert(2, first);
    assert!(tree_ranges(&nodes[&0], |i| nodes.get(&i).copied()).is_none());
}

#[test]
fn diff_then_apply_gives_the_new_image() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut old = image(&mut rng);
    for round in 0..500 {
        let new = if rng.random_range(0..5) == 0 {
            old.clone()
        } else {
            image(&mut rng)
        };
        let delta = old.diff(&new);
        assert_eq!(delta.is_empty(), old == new, "round {round}");
        assert_eq!(old.effective(&delta), delta, "a diff is effective");
        assert_eq!(
            old.counts_after(old.counts(), &delta),
            new.counts(),
            "round {round}"
        );
        let mut applied = old.clone();
        applied.apply(&delta);
        assert_eq!(applied, new, "round {round}");
        assert!(new.diff(&applied).is_empty());
        // Deltas compose: old → new → a third image as one delta.
        let third = image(&mut rng);
        let mut both = delta.clone();
        both.extend(&new.diff(&third));
        let mut twice = old.clone();
        twice.apply(&both);
        assert_eq!(twice, third, "round {round}");
        assert_eq!(old.effective(&both), old.diff(&third), "round {round}");
        old = new;
    }
}

#[test]
fn len_counts_every_changed_key() {
    let mut a = NodeImage::default();
    let mut b = NodeImage::default();
    a.services.insert((6, 80, [1; 16]));
    b.services.insert((6, 81, [1; 16]));
    b.endpoints.insert(3, endpoint(0));
    b.policy.insert(
        (1, 0),
        vec![PolicyRange {
            first: 0,
            last: 1,
            target: 2,
        }],
    );
    let d = a.diff(&b);
    assert_eq!(d.len(), 4);
    assert_eq!(d.services.get(&(6, 80, [1; 16])), Some(&false));
    assert_eq!(ImageDelta::default().len(), 0);
    // Removing an absent key or setting a held value is not effective.
    let mut noop = ImageDelta::default();
    noop.endpoints.insert(9, None);
    noop.services.insert((6, 80, [1; 16]), true);
    assert!(a.effective(&noop).is_empty());
}
