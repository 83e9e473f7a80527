use std::path::Path;
use std::time::Duration;

use bulkhead_common::{
    EndpointKey, IdentityKey, IdentityValue, POLICY_FANOUT, POLICY_NODE_LEAF, PolicyNode,
    PolicyNodeKey, PolicyRange,
};

use super::DataplaneError;
use super::sync::{Desired, FakeMaps, SyncOutcome, Syncer};
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

fn model(yaml: &str) -> Model {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), yaml).unwrap();
    load_dir(dir.path(), &AddressPlan::default()).unwrap()
}

fn pods(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: x, labels: {{app: p{i}}}}}\n\
                 status: {{podIP: 10.1.{}.{}}}\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect()
}

const DENY_P0: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {name: deny, namespace: x}\nspec: {podSelector: {matchLabels: {app: p0}}}\n";

const ALLOW_P0: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {name: allow, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: p0}}\n  \
ingress: [{from: [{podSelector: {matchLabels: {app: p1}}}], ports: [{port: 80}]}]\n";

fn syncer() -> Syncer {
    Syncer::new(Duration::ZERO)
}

#[test]
fn first_sync_writes_slot_1_and_switches_to_revision_1() {
    let m = model(&(pods(2) + DENY_P0));
    let c = compile(&m);
    let local = [(0, 10), (1, 11)];
    let desired = Desired {
        compiled: &c,
        local: &local,
        macs: &Default::default(),
    };
    let mut fake = FakeMaps::default();
    let out = syncer().sync(&mut fake, &desired).unwrap();
    assert!(matches!(out, SyncOutcome::Switched { from: 0, to: 1, .. }));
    assert_eq!(fake.revision, 1);
    assert_eq!(fake.slots[1], desired.image(1).unwrap());
    assert_eq!(fake.slots[0], Default::default(), "slot 0 untouched");
    assert!(
        fake.slots[1]
            .endpoints
            .contains_key(&EndpointKey::new(10, 1))
    );
}

#[test]
fn same_policy_again_changes_nothing() {
    let m = model(&(pods(2) + DENY_P0));
    let c = compile(&m);
    let local = [(0, 10), (1, 11)];
    let desired = Desired {
        compiled: &c,
        local: &local,
        macs: &Default::default(),
    };
    let mut fake = FakeMaps::default();
    let mut s = syncer();
    s.sync(&mut fake, &desired).unwrap();
    let writes = fake.writes;
    // A restarted agent (new syncer) compares by reading back.
    let out = syncer().sync(&mut fake, &desired).unwrap();
    assert_eq!(out, SyncOutcome::Unchanged { revision: 1 });
    assert_eq!(fake.writes, writes);
}

#[test]
fn a_change_goes_to_the_inactive_slot_and_removes_its_stale_entries() {
    let mut fake = FakeMaps::default();
    let m1 = model(&(pods(2) + DENY_P0));
    let c1 = compile(&m1);
    let local = [(0, 10), (1, 11)];
    let mut s = syncer();
    s.sync(
        &mut fake,
        &Desired {
            compiled: &c1,
            local: &local,
            macs: &Default::default(),
        },
    )
    .unwrap();
    // Junk in slot 0 (e.g. an older image): must be gone after the switch.
    let junk_id = IdentityKey {
        slot: 0,
        addr: [9; 16],
    };
    fake.slots[0].identities.insert(
        (136, junk_id),
        IdentityValue {
            identity: 99,
            flags: 0,
        },
    );
    fake.slots[0].policy.insert(
        PolicyNodeKey::new(0, 77, 1, 0),
        PolicyNode {
            count: 1,
            kind: POLICY_NODE_LEAF,
            _pad: [0; 2],
            _reserved: 0,
            ranges: [PolicyRange {
                first: 1,
                last: 1,
                target: 1,
            }; POLICY_FANOUT],
        },
    );
    fake.slots[0].endpoints.insert(
        EndpointKey::new(99, 0),
        fake.slots[1].endpoints[&EndpointKey::new(10, 1)],
    );
    let active_before = fake.slots[1].clone();

    let m2 = model(&(pods(2) + DENY_P0 + ALLOW_P0));
    let c2 = compile(&m2);
    let desired = Desired {
        compiled: &c2,
        local: &local,
        macs: &Default::default(),
    };
    // The junk is read back when a syncer starts (as after a restart): a
    // running one knows what the slots hold and never reads them.
    let out = syncer().sync(&mut fake, &desired).unwrap();
    assert!(matches!(out, SyncOutcome::Switched { from: 1, to: 2, .. }));
    assert_eq!(fake.slots[0], desired.image(0).unwrap());
    assert_eq!(
        fake.slots[1], active_before,
        "the slot that was active is untouched"
    );
}

#[test]
fn an_image_that_overflows_a_map_is_rejected_and_nothing_changes() {
    let n = bulkhead_common::ENDPOINTS_SLOT_CAPACITY as usize + 1;
    let m = model(&pods(n));
    let c = compile(&m);
    let local: Vec<(usize, u32)> = (0..n).map(|i| (i, 100 + i as u32)).collect();
    let mut fake = FakeMaps {
        revision: 5,
        ..FakeMaps::default()
    };
    let err = syncer()
        .sync(
            &mut fake,
            &Desired {
                compiled: &c,
                local: &local,
                macs: &Default::default(),
            },
        )
        .unwrap_err();
    assert!(matches!(err, DataplaneError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("ENDPOINTS"), "{err}");
    assert_eq!(fake.revision, 5);
    assert_eq!(fake.writes, 0);
}

#[test]
fn grace_period_separates_consecutive_switches() {
    let m1 = model(&(pods(2) + DENY_P0));
    let m2 = model(&(pods(2) + DENY_P0 + ALLOW_P0));
    let (c1, c2) = (compile(&m1), compile(&m2));
    let local = [(0, 10)];
    let mut fake = FakeMaps::default();
    let mut s = Syncer::new(Duration::from_millis(30));
    let t = std::time::Instant::now();
    s.sync(
        &mut fake,
        &Desired {
            compiled: &c1,
            local: &local,
            macs: &Default::default(),
        },
    )
    .unwrap();
    s.sync(
        &mut fake,
        &Desired {
            compiled: &c2,
            local: &local,
            macs: &Default::default(),
        },
    )
    .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.revision, 2);
}

#[test]
fn embedded_elf_is_an_elf_when_present() {
    if let Some(elf) = super::embedded_elf() {
        assert_eq!(&elf[..4], b"\x7fELF");
    }
    let _ = Path::new("");
}

#[test]
fn flow_events_parse_at_their_size_only() {
    use bulkhead_common::{EventKind, FlowEvent, FlowKey, FlowValue};
    let event = FlowEvent {
        key: FlowKey {
            tuple: bulkhead_common::CtKey {
                src: [1; 16],
                dst: [2; 16],
                sport: 3,
                dport: 4,
                proto: 6,
                _pad: [0; 3],
            },
            ifindex: 7,
            side: bulkhead_common::FLOW_SIDE_INGRESS,
            _pad: [0; 3],
        },
        value: FlowValue {
            packets_orig: 9,
            ..FlowValue::default()
        },
        kind: EventKind::FlowRecord as u8,
        hook: bulkhead_common::HOOK_TO_POD,
        _pad: [0; 6],
    };
    // SAFETY: `FlowEvent` is plain bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(&event).cast::<u8>(),
            size_of::<FlowEvent>(),
        )
    }
    .to_vec();
    // Ring records are 8-aligned, but a `Vec<u8>` slice at offset 1 is not:
    // the parse copies unaligned.
    let mut shifted = vec![0u8];
    shifted.extend(&bytes);
    assert_eq!(super::flowtap::parse_event(&bytes), Some(event));
    assert_eq!(super::flowtap::parse_event(&shifted[1..]), Some(event));
    assert_eq!(super::flowtap::parse_event(&bytes[1..]), None);
    assert_eq!(super::flowtap::parse_event(&shifted), None);
}

#[test]
fn flow_maps_are_pinned() {
    use super::flowtap::{EVENTS_MAP, FLOW_CONFIG_MAP, FLOW_STATS_MAP, FLOWS_MAPS};
    for name in FLOWS_MAPS
        .into_iter()
        .chain([FLOW_CONFIG_MAP, FLOW_STATS_MAP, EVENTS_MAP])
    {
        assert!(super::pins::MAPS.contains(&name), "{name} is not pinned");
    }
}

mod delta;
