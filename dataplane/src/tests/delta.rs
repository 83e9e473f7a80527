//! The syncer's in-memory slots and deltas on [`FakeMaps`]: random image
//! sequences read back equal, `apply_delta` equals a full sync, a failed
//! write recovers, and a small change writes and reads little.

use std::time::Duration;

use bulkhead_common::{
    ENDPOINTS_SLOT_CAPACITY, EndpointInfo, IdentityValue, POLICY_FANOUT, POLICY_POINT_MAX,
    PolicyRange, active_slot,
};
use bulkhead_policy::compile::image::{ImageDelta, NodeImage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::DataplaneError;
use crate::slotcache::node_image;
use crate::sync::{FakeMaps, SyncOutcome, Syncer};

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

/// `old` with random changes: identities added, moved to another identity
/// or removed, trees growing past one node (up to three levels) and
/// shrinking, endpoints and services appearing and disappearing.
fn mutate(rng: &mut ChaCha8Rng, old: &NodeImage) -> NodeImage {
    let mut img = old.clone();
    for _ in 0..rng.random_range(0..8) {
        let key = (rng.random_range(100..=136), [rng.random_range(0..40u8); 16]);
        if rng.random_range(0..3) == 0 {
            img.identities.remove(&key);
        } else {
            let value = IdentityValue {
                identity: rng.random_range(1..6),
                flags: rng.random_range(0..2),
            };
            img.identities.insert(key, value);
        }
    }
    for _ in 0..rng.random_range(0..4) {
        let key = (rng.random_range(1..4), rng.random_range(0..8));
        match rng.random_range(0..6) {
            0 => {
                img.policy.remove(&key);
            }
            1 => {
                let n = rng.random_range(257..700);
                img.policy.insert(key, ranges(rng, n));
            }
            2 | 3 => {
                let n = rng.random_range(17..256);
                img.policy.insert(key, ranges(rng, n));
            }
            _ => {
                let n = rng.random_range(1..=POLICY_FANOUT);
                img.policy.insert(key, ranges(rng, n));
            }
        }
    }
    for _ in 0..rng.random_range(0..3) {
        let ifindex = rng.random_range(1..12);
        if rng.random_range(0..3) == 0 {
            img.endpoints.remove(&ifindex);
        } else {
            img.endpoints
                .insert(ifindex, endpoint(rng.random_range(0..4)));
        }
    }
    for _ in 0..rng.random_range(0..2) {
        let s = (6, rng.random_range(1..6), [rng.random_range(0..3u8); 16]);
        if !img.services.remove(&s) {
            img.services.insert(s);
        }
    }
    img
}

/// The slot reads back as `want`.
fn assert_reads(fake: &FakeMaps, slot: u8, want: &NodeImage, what: &str) {
    assert_eq!(
        &node_image(&fake.slots[slot as usize]),
        want,
        "{what}: slot {slot}"
    );
}

/// [`assert_reads`], and every node of POLICY_NODES the fake holds in
/// `slot` is reached by a tree (freed nodes are cleared).
fn assert_slot(fake: &FakeMaps, slot: u8, want: &NodeImage, what: &str) {
    let image = &fake.slots[slot as usize];
    assert_reads(fake, slot, want, what);
    assert_eq!(
        image.policy_nodes.len(),
        want.counts().nodes,
        "{what}: slot {slot} holds unreachable nodes"
    );
}

#[test]
fn random_image_sequences_read_back_as_wanted_in_both_slots() {
    let mut rng = ChaCha8Rng::seed_from_u64(2020);
    let mut fake = FakeMaps::default();
    let mut s = Syncer::new(Duration::ZERO);
    let mut before = NodeImage::default();
    let mut current = NodeImage::default();
    for round in 0..300 {
        let want = if rng.random_range(0..6) == 0 {
            current.clone()
        } else {
            mutate(&mut rng, &current)
        };
        let writes = fake.writes;
        let out = s.sync_image(&mut fake, &want).unwrap();
        let what = format!("round {round}");
        match out {
            SyncOutcome::Unchanged { revision } => {
                assert_eq!(want, current, "{what}");
                assert_eq!(revision, fake.revision);
            }
            SyncOutcome::Switched {
                from,
                to,
                writes: w,
            } => {
                assert_ne!(want, current, "{what}");
                assert_eq!((from + 1, to), (to, fake.revision), "{what}");
                assert_eq!(fake.writes - writes, w, "{what}: writes counted");
                before = current;
                current = want;
            }
        }
        let active = active_slot(fake.revision);
        assert_slot(&fake, active, &current, &what);
        if fake.revision > 1 {
            assert_slot(&fake, 1 - active, &before, &what);
        }
    }
    assert_eq!(fake.reads.get(), 2, "read back once, at the first sync");
    // A new syncer (a restarted agent) reads the slots back and agrees.
    let reads = fake.reads.get();
    let out = Syncer::new(Duration::ZERO)
        .sync_image(&mut fake, &current)
        .unwrap();
    assert_eq!(
        out,
        SyncOutcome::Unchanged {
            revision: fake.revision
        }
    );
    assert_eq!(fake.reads.get(), reads + 2);
}

#[test]
fn apply_delta_equals_a_full_sync_of_the_resulting_image() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (mut full, mut incr) = (FakeMaps::default(), FakeMaps::default());
    let (mut sf, mut si) = (Syncer::new(Duration::ZERO), Syncer::new(Duration::ZERO));
    let mut current = NodeImage::default();
    for round in 0..200 {
        let want = mutate(&mut rng, &current);
        let mut delta = current.diff(&want);
        // Entries that change nothing are ignored.
        if let Some((&k, v)) = current.identities.iter().next()
            && !delta.identities.contains_key(&k)
        {
            delta.identities.insert(k, Some(*v));
        }
        delta.endpoints.entry(999).or_insert(None);
        let a = sf.sync_image(&mut full, &want).unwrap();
        let b = si.apply_delta(&mut incr, &delta).unwrap();
        assert_eq!(a, b, "round {round}");
        assert_eq!(full.revision, incr.revision);
        for slot in 0..2 {
            assert_eq!(
                node_image(&full.slots[slot]),
                node_image(&incr.slots[slot]),
                "round {round} slot {slot}"
            );
        }
        assert_eq!(si.active_image(&incr).unwrap(), &want, "round {round}");
        current = want;
    }
    assert_eq!(incr.reads.get(), 2);
}

#[test]
fn a_failed_write_keeps_the_revision_and_the_next_sync_recovers() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let mut s = Syncer::new(Duration::ZERO);
    let mut current = NodeImage::default();
    let mut fake = FakeMaps::default();
    for _ in 0..5 {
        current = mutate(&mut rng, &current);
        s.sync_image(&mut fake, &current).unwrap();
    }
    for round in 0..40 {
        let want = mutate(&mut rng, &current);
        let delta = current.diff(&want);
        if delta.is_empty() {
            continue;
        }
        let revision = fake.revision;
        let active_before = fake.slots[active_slot(revision) as usize].clone();
        // Fail somewhere in the write of the inactive slot.
        fake.fail_at = Some(fake.writes + rng.random_range(0..delta.len()));
        let err = if round % 2 == 0 {
            s.sync_image(&mut fake, &want).unwrap_err()
        } else {
            s.apply_delta(&mut fake, &delta).unwrap_err()
        };
        assert!(matches!(err, DataplaneError::Map { .. }), "{err}");
        assert_eq!(fake.revision, revision, "round {round}: no switch");
        assert_eq!(
            fake.slots[active_slot(revision) as usize],
            active_before,
            "round {round}: the active slot untouched"
        );
        fake.fail_at = None;
        let reads = fake.reads.get();
        let out = s.sync_image(&mut fake, &want).unwrap();
        assert!(matches!(out, SyncOutcome::Switched { .. }), "{out:?}");
        assert_eq!(fake.reads.get(), reads + 2, "re-read after the failure");
        // (A failed write may leave nodes no tree reaches: unused, and
        // never read back from the kernel.)
        assert_reads(&fake, active_slot(fake.revision), &want, "recovered");
        current = want;
    }
}

#[test]
fn a_one_entry_change_writes_the_lag_and_the_delta_only() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let mut big = NodeImage::default();
    for i in 0..5_000u32 {
        let mut addr = [0; 16];
        addr[12..].copy_from_slice(&i.to_be_bytes());
        big.identities.insert(
            (136, addr),
            IdentityValue {
                identity: 1 + i % 7,
                flags: 0,
            },
        );
    }
    big.policy.insert((1, 2), ranges(&mut rng, 3_000));
    let mut fake = FakeMaps::default();
    let mut s = Syncer::new(Duration::ZERO);
    s.sync_image(&mut fake, &big).unwrap();
    let reads = fake.reads.get();
    // Move one identity, then another: the second write repeats the first
    // (the lag) and adds its own.
    let mut delta = ImageDelta::default();
    let key = *big.identities.keys().nth(10).unwrap();
    delta.identities.insert(
        key,
        Some(IdentityValue {
            identity: 99,
            flags: 0,
        }),
    );
    let out = s.apply_delta(&mut fake, &delta).unwrap();
    // The first switch leaves the other slot empty: all of it is written.
    assert!(matches!(out, SyncOutcome::Switched { writes, .. } if writes > 5_000));
    delta.identities.clear();
    let key = *big.identities.keys().nth(20).unwrap();
    delta.identities.insert(key, None);
    let out = s.apply_delta(&mut fake, &delta).unwrap();
    assert!(
        matches!(out, SyncOutcome::Switched { writes: 2, .. }),
        "{out:?}"
    );
    // A changed big tree rewrites its own nodes only.
    delta.identities.clear();
    delta.policy.insert((1, 2), Some(ranges(&mut rng, 2_000)));
    let out = s.apply_delta(&mut fake, &delta).unwrap();
    let nodes = |n: usize| bulkhead_policy::compile::image::tree_node_count(n);
    match out {
        SyncOutcome::Switched { writes, .. } => {
            // Lag (1 identity) + the tree's new nodes + the old nodes not
            // taken again (cleared).
            assert_eq!(writes, 1 + nodes(2_000) + (nodes(3_000) - nodes(2_000)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.reads.get(), reads, "no read-back per sync");
}

#[test]
fn a_delta_that_overflows_a_map_changes_nothing() {
    let mut fake = FakeMaps::default();
    let mut s = Syncer::new(Duration::ZERO);
    let mut img = NodeImage::default();
    img.endpoints.insert(1, endpoint(0));
    s.sync_image(&mut fake, &img).unwrap();
    let (revision, writes) = (fake.revision, fake.writes);
    let mut delta = ImageDelta::default();
    for i in 0..ENDPOINTS_SLOT_CAPACITY {
        delta.endpoints.insert(100 + i, Some(endpoint(1)));
    }
    let err = s.apply_delta(&mut fake, &delta).unwrap_err();
    assert!(matches!(err, DataplaneError::TooLarge(_)), "{err}");
    assert_eq!((fake.revision, fake.writes), (revision, writes));
    // One fewer fits.
    delta.endpoints.pop_last();
    s.apply_delta(&mut fake, &delta).unwrap();
    assert_eq!(
        fake.slots[active_slot(fake.revision) as usize]
            .endpoints
            .len(),
        ENDPOINTS_SLOT_CAPACITY as usize
    );
}
