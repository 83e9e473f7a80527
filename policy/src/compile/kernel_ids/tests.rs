use super::*;

fn key(s: &str) -> ContentKey {
    let mut c = Canon::new("test");
    c.str(s);
    c.key()
}

#[test]
fn fnv1a64_matches_the_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn numbers_are_the_folded_hashes_when_nothing_collides() {
    let keys: Vec<ContentKey> = ["a", "b", "c"].into_iter().map(key).collect();
    let got = assign(&keys, RULE_RANGE.0, RULE_RANGE.1);
    let want: Vec<u32> = keys
        .iter()
        .map(|k| fold(k.hash, RULE_RANGE.0, RULE_RANGE.1))
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|&n| n < RULE_F_DENY));
}

#[test]
fn collisions_resolve_in_content_order_whatever_the_input_order() {
    // A range of 4 numbers: 4 keys, so most fold onto a taken number.
    let keys: Vec<ContentKey> = ["w", "x", "y", "z"].into_iter().map(key).collect();
    let (lo, hi) = (10, 13);
    let got = assign(&keys, lo, hi);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![10, 11, 12, 13], "distinct, inside the range");
    // The same numbers for the same keys in any order.
    for rotation in 1..4 {
        let mut rotated = keys.clone();
        rotated.rotate_left(rotation);
        let again = assign(&rotated, lo, hi);
        for (i, k) in rotated.iter().enumerate() {
            let j = keys.iter().position(|x| x == k).unwrap();
            assert_eq!(again[i], got[j], "key {j} after rotating by {rotation}");
        }
    }
    // The first of each colliding group in (hash, bytes) order keeps its
    // fold; a key whose fold nobody shares keeps it.
    for (i, k) in keys.iter().enumerate() {
        let n = fold(k.hash, lo, hi);
        let first = keys
            .iter()
            .filter(|o| fold(o.hash, lo, hi) == n)
            .min_by(|a, b| (a.hash, &a.canon).cmp(&(b.hash, &b.canon)))
            .unwrap();
        if first == k {
            assert_eq!(got[i], n);
        } else {
            assert_ne!(got[i], n);
        }
    }
}

#[test]
fn a_loser_probes_to_the_next_number_no_fold_takes_wrapping() {
    // Hand-made hashes: folds 0 (twice), 1 and 3 in 0..=3.
    let k = |hash, s: &str| ContentKey {
        hash,
        canon: s.as_bytes().to_vec(),
    };
    let keys = [k(4, "late"), k(0, "early"), k(1, "one"), k(3, "three")];
    // "early" (hash 0) keeps 0; "late" (hash 4, also folding to 0) skips
    // 1 (one's fold) and takes 2.
    assert_eq!(assign(&keys, 0, 3), vec![2, 0, 1, 3]);
    // Wrapping: folds 3, 3 in 2..=3 → the loser wraps to 2.
    let keys = [k(1, "b"), k(3, "a")];
    assert_eq!(assign(&keys, 2, 3), vec![3, 2]);
    // Equal hashes: the serialization decides.
    let keys = [k(7, "b"), k(7, "a")];
    assert_eq!(assign(&keys, 0, 9), vec![8, 7]);
}

#[test]
fn translation_round_trips_and_keeps_the_deny_bit() {
    let ids: Vec<ContentKey> = ["p", "q"].into_iter().map(key).collect();
    let tables: Vec<ContentKey> = ["t"].into_iter().map(key).collect();
    let rules: Vec<ContentKey> = ["r0", "r1", "r2"].into_iter().map(key).collect();
    let k = KernelIds::new(&ids, &tables, &rules);
    assert_eq!(k.identity(IDENTITY_ANY), IDENTITY_ANY);
    for id in 1..=2 {
        assert_ne!(k.identity(id), IDENTITY_ANY);
        assert_eq!(k.internal_identity(k.identity(id)), Some(id));
    }
    assert_ne!(k.table(0), 0);
    assert_eq!(k.internal_table(k.table(0)), Some(0));
    for r in 0..3 {
        let n = k.rule(r);
        assert!(n < RULE_F_DENY);
        assert_eq!(k.target(r | RULE_F_DENY), n | RULE_F_DENY);
        assert_eq!(k.internal_target(n | RULE_F_DENY), Some(r | RULE_F_DENY));
        assert_eq!(k.internal_target(n), Some(r));
    }
    for special in [bulkhead_common::RULE_NONE, RULE_NODE] {
        assert_eq!(k.target(special), special);
        assert_eq!(k.internal_target(special), Some(special));
    }
}
