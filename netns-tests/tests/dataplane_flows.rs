//! Flow accounting through the real kernel (`BPF_PROG_TEST_RUN`), read with
//! the agent's [`FlowTap`]: per-direction counts and bytes, drops with
//! their reason, sides and `FLOW_F_NEW`, the drain's table flip, the full
//! table's fallback to the ring buffer, and the accounting identity, also
//! while another thread drives packets during repeated drains.
//!
//! Two pods, A and B, as in `dataplane_programs`: test runs all happen on
//! `lo` (ifindex 1), the ENDPOINTS entry is switched to simulate A's or B's
//! veth.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bulkhead_common::{
    DropReason, ENDPOINT_AUDIT_EGRESS, EventKind, FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP,
    FLOW_CONFIG_EVENTS_NEW, FLOW_F_AUDIT_DENY, FLOW_F_AUDITED, FLOW_F_NEW, FLOW_F_UNENFORCED,
    FLOW_F_XDP, FLOW_SIDE_EGRESS, FLOW_SIDE_INGRESS, FLOWS_CAPACITY, FlowEvent, FlowKey, FlowStat,
    FlowValue, HOOK_FROM_POD, HOOK_XDP, PROTO_ANY, PROTO_TCP, PROTO_UDP, RULE_NONE,
};
use bulkhead_dataplane::FlowTap;
use bulkhead_flows::source::FlowSource;
use bulkhead_netns_tests::{
    dataplane::{DROP, Dataplane, LO_IFINDEX, PASS, XDP_DROP, ct_key, endpoint},
    packet::{ACK, L4, SYN, frame},
};

use bulkhead_netns_tests::dataplane::fixture::{
    A_EG, A_IN, B_EG, B_IN, ID_A, ID_B, ID_EXT, MAC_A, MAC_B, ip,
};
/// What the agent turns on by default.
const ALL: u32 = FLOW_CONFIG_ACCOUNTING | FLOW_CONFIG_EVENTS_NEW | FLOW_CONFIG_EVENTS_DROP;

struct Lab {
    dp: Dataplane,
    tap: FlowTap,
    a4: IpAddr,
    b4: IpAddr,
}

impl Lab {
    /// A and B isolated both ways: A's egress allows B on TCP 80 and UDP
    /// 53 and anything external; B's ingress allows A on TCP 80 and UDP 53.
    /// Flow accounting on with `flags`.
    fn new(flags: u32) -> Option<Self> {
        let mut dp = Dataplane::load()?;
        for (net, id) in [
            ("10.0.0.1/32", ID_A),
            ("10.0.0.2/32", ID_B),
            ("0.0.0.0/0", ID_EXT),
        ] {
            dp.add_identity(0, net.parse().unwrap(), id);
        }
        dp.allow(0, A_EG, ID_B, PROTO_TCP, Some(80));
        dp.allow(0, A_EG, ID_B, PROTO_UDP, Some(53));
        dp.allow(0, A_EG, ID_EXT, PROTO_ANY, None);
        dp.allow(0, B_IN, ID_A, PROTO_TCP, Some(80));
        dp.allow(0, B_IN, ID_A, PROTO_UDP, Some(53));
        dp.set_revision(0);
        let mut tap = dp.flow_tap();
        tap.set_config(flags).unwrap();
        Some(Lab {
            dp,
            tap,
            a4: ip("10.0.0.1"),
            b4: ip("10.0.0.2"),
        })
    }

    fn as_a(&mut self) -> &mut Dataplane {
        let e = endpoint(&[self.a4], MAC_A, Some(A_IN), Some(A_EG));
        self.dp.set_endpoint(0, e);
        &mut self.dp
    }

    fn as_b(&mut self) -> &mut Dataplane {
        let e = endpoint(&[self.b4], MAC_B, Some(B_IN), Some(B_EG));
        self.dp.set_endpoint(0, e);
        &mut self.dp
    }

    fn drain(&mut self) -> HashMap<FlowKey, FlowValue> {
        let mut out = Vec::new();
        self.tap.drain(&mut out).unwrap();
        by_key(out)
    }

    fn events(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        self.tap.events(Duration::ZERO, &mut out).unwrap();
        out
    }
}

/// Drained entries by (key, side), asserting no key appears twice.
fn by_key(entries: Vec<(FlowKey, FlowValue)>) -> HashMap<FlowKey, FlowValue> {
    let mut map = HashMap::new();
    for (k, v) in entries {
        assert!(map.insert(k, v).is_none(), "{k:?} drained twice");
    }
    map
}

fn key(tuple: bulkhead_common::CtKey, side: u8) -> FlowKey {
    FlowKey {
        tuple,
        ifindex: LO_IFINDEX,
        side,
        _pad: [0; 3],
    }
}

fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        flags,
    }
}

fn packets(v: &FlowValue) -> u64 {
    v.packets_orig + v.packets_reply + v.dropped_packets
}

/// Checks the accounting identity of `bulkhead-common` once everything is
/// drained and read.
fn assert_identity(tap: &mut FlowTap, drained: &[(FlowKey, FlowValue)], events: &[FlowEvent]) {
    let s = tap.stats().unwrap();
    let stat = |f: FlowStat| s[f as usize];
    let records: Vec<&FlowEvent> = events
        .iter()
        .filter(|e| e.kind == EventKind::FlowRecord as u8)
        .collect();
    assert_eq!(
        stat(FlowStat::EntriesCreated) + stat(FlowStat::FallbackSent),
        drained.len() as u64 + records.len() as u64,
        "entries created + fallback sent == drained + fallback read ({s:?})"
    );
    let counted: u64 = drained.iter().map(|(_, v)| packets(v)).sum::<u64>()
        + records.iter().map(|e| packets(&e.value)).sum::<u64>();
    assert_eq!(
        stat(FlowStat::PacketsAccounted),
        counted + stat(FlowStat::LostPackets),
        "packets accounted == drained + fallback + lost ({s:?})"
    );
    let bytes: u64 = drained
        .iter()
        .map(|(_, v)| v.bytes_orig + v.bytes_reply + v.dropped_bytes)
        .sum::<u64>()
        + records
            .iter()
            .map(|e| e.value.bytes_orig + e.value.bytes_reply + e.value.dropped_bytes)
            .sum::<u64>();
    assert_eq!(
        stat(FlowStat::BytesAccounted),
        bytes + stat(FlowStat::LostBytes),
        "bytes accounted == drained + fallback + lost ({s:?})"
    );
}

#[test]
fn established_flow_counts_per_direction_sides_and_new() {
    let Some(mut lab) = Lab::new(ALL) else { return };
    let (a4, b4) = (lab.a4, lab.b4);
    let syn = frame(MAC_A, a4, b4, tcp(40000, 80, SYN));
    let synack = frame(MAC_B, b4, a4, tcp(80, 40000, SYN | ACK));
    let ack = frame(MAC_A, a4, b4, tcp(40000, 80, ACK));
    let data_back = frame(MAC_B, b4, a4, tcp(80, 40000, ACK));
    assert_eq!(lab.as_a().from_pod(&syn), PASS);
    assert_eq!(lab.as_b().to_pod(&syn), PASS);
    assert_eq!(lab.as_b().from_pod(&synack), PASS);
    assert_eq!(lab.as_a().to_pod(&synack), PASS);
    for _ in 0..3 {
        assert_eq!(lab.as_a().from_pod(&ack), PASS);
        assert_eq!(lab.as_b().to_pod(&ack), PASS);
    }
    for _ in 0..2 {
        assert_eq!(lab.as_b().from_pod(&data_back), PASS);
        assert_eq!(lab.as_a().to_pod(&data_back), PASS);
    }
    let flows = lab.drain();
    assert_eq!(flows.len(), 2, "one entry per endpoint side: {flows:?}");
    let t = ct_key(a4, b4, 40000, 80, PROTO_TCP);
    let (out_len, back_len) = (syn.len() as u64, synack.len() as u64);
    // A opened it: egress at A (from_pod original, to_pod reply).
    let a = flows[&key(t, FLOW_SIDE_EGRESS)];
    assert_eq!((a.packets_orig, a.packets_reply), (4, 3));
    assert_eq!(
        (a.bytes_orig, a.bytes_reply),
        (4 * out_len, back_len + 2 * data_back.len() as u64)
    );
    assert_eq!((a.dropped_packets, a.drop_reason), (0, 0));
    assert_eq!(a.tcp_flags_orig, SYN | ACK);
    assert_eq!(a.tcp_flags_reply, SYN | ACK);
    assert_eq!(a.rule, 100 + A_EG, "the rule of A's egress");
    assert_eq!(a.flags & FLOW_F_NEW, FLOW_F_NEW);
    assert_eq!(a.flags & (FLOW_F_XDP | FLOW_F_UNENFORCED), 0);
    assert!(a.first_seen_ns > 0 && a.first_seen_ns <= a.last_seen_ns);
    // B accepted it: ingress at B (to_pod original, from_pod reply).
    let b = flows[&key(t, FLOW_SIDE_INGRESS)];
    assert_eq!((b.packets_orig, b.packets_reply), (4, 3));
    assert_eq!(b.rule, 100 + B_IN, "the rule of B's ingress");
    assert_eq!(b.flags & FLOW_F_NEW, FLOW_F_NEW, "first check of B's side");
    // One NewFlow notification per endpoint, carrying the first packet.
    let events = lab.events();
    let new: Vec<&FlowEvent> = events
        .iter()
        .filter(|e| e.kind == EventKind::NewFlow as u8)
        .collect();
    assert_eq!(new.len(), 2, "{events:?}");
    assert!(new.iter().all(|e| e.value.packets_orig == 1
        && e.value.bytes_orig == out_len
        && e.value.flags & FLOW_F_NEW != 0));
    assert_eq!(new[0].hook, HOOK_FROM_POD);

    // The next interval starts from zero and is a continuation.
    assert!(lab.drain().is_empty(), "the other table is empty");
    assert_eq!(lab.as_a().from_pod(&ack), PASS);
    let flows = lab.drain();
    assert_eq!(flows.len(), 1);
    let a = flows[&key(t, FLOW_SIDE_EGRESS)];
    assert_eq!(
        (a.packets_orig, a.packets_reply, a.bytes_orig),
        (1, 0, out_len)
    );
    assert_eq!(a.flags & FLOW_F_NEW, 0, "a continuation");
    assert!(lab.drain().is_empty());
    assert_eq!(lab.tap.config().unwrap().slot, 0, "four flips");
}

#[test]
fn denied_packets_are_dropped_entries_with_their_reason() {
    let Some(mut lab) = Lab::new(ALL) else { return };
    let (a4, b4) = (lab.a4, lab.b4);
    let denied = frame(MAC_A, a4, b4, tcp(40001, 22, SYN));
    for _ in 0..2 {
        assert_eq!(lab.as_a().from_pod(&denied), DROP);
    }
    // B's ingress denies what A's egress allows elsewhere: UDP 54.
    let udp = frame(
        MAC_A,
        a4,
        b4,
        L4::Udp {
            sport: 5000,
            dport: 54,
        },
    );
    assert_eq!(lab.as_b().to_pod(&udp), DROP);
    // Spoofed source: parsed, so accounted (egress of A).
    let spoofed = frame(MAC_A, ip("10.0.0.99"), b4, tcp(1, 80, SYN));
    assert_eq!(lab.as_a().from_pod(&spoofed), DROP);
    // XDP drops are flagged.
    assert_eq!(lab.as_a().xdp(&denied), XDP_DROP);

    let flows = lab.drain();
    let d = flows[&key(ct_key(a4, b4, 40001, 22, PROTO_TCP), FLOW_SIDE_EGRESS)];
    assert_eq!((d.packets_orig, d.packets_reply), (0, 0));
    assert_eq!(d.dropped_packets, 3, "two at from_pod, one at XDP");
    assert_eq!(d.dropped_bytes, 3 * denied.len() as u64);
    assert_eq!(d.drop_reason, DropReason::PolicyDenied as u8);
    assert_eq!(d.rule, RULE_NONE);
    assert_eq!(d.flags & FLOW_F_NEW, 0, "a denied flow opened nothing");
    assert_eq!(d.flags & FLOW_F_XDP, FLOW_F_XDP);
    let u = flows[&key(ct_key(a4, b4, 5000, 54, PROTO_UDP), FLOW_SIDE_INGRESS)];
    assert_eq!(
        (u.dropped_packets, u.drop_reason),
        (1, DropReason::PolicyDenied as u8)
    );
    let s = flows[&key(
        ct_key(ip("10.0.0.99"), b4, 1, 80, PROTO_TCP),
        FLOW_SIDE_EGRESS,
    )];
    assert_eq!(s.drop_reason, DropReason::SpoofedIp as u8);
    assert_eq!(flows.len(), 3, "{flows:?}");
    // One Drop event per flow entry (its first drop), not per packet: the
    // denied TCP flow's second from_pod drop and its XDP drop add none.
    let events = lab.events();
    let drops: Vec<&FlowEvent> = events
        .iter()
        .filter(|e| e.kind == EventKind::Drop as u8)
        .collect();
    assert_eq!(drops.len(), 3, "{events:?}");
    assert_eq!(drops.iter().filter(|e| e.hook == HOOK_XDP).count(), 0);
    assert!(drops.iter().all(|e| e.value.dropped_packets == 1));
    let mut rest = Vec::new();
    lab.tap.drain_all(&mut rest).unwrap();
    let mut all: Vec<(FlowKey, FlowValue)> = flows.iter().map(|(k, v)| (*k, *v)).collect();
    all.extend(rest);
    assert_identity(&mut lab.tap, &all, &events);
}

#[test]
fn nothing_is_accounted_without_the_accounting_flag() {
    let Some(mut lab) = Lab::new(0) else { return };
    let (a4, b4) = (lab.a4, lab.b4);
    assert_eq!(
        lab.as_a()
            .from_pod(&frame(MAC_A, a4, b4, tcp(40002, 80, SYN))),
        PASS
    );
    assert_eq!(
        lab.as_a()
            .from_pod(&frame(MAC_A, a4, b4, tcp(40002, 22, SYN))),
        DROP
    );
    let mut out = Vec::new();
    lab.tap.drain_all(&mut out).unwrap();
    assert!(out.is_empty());
    assert!(lab.events().is_empty());
    assert_eq!(lab.tap.stats().unwrap(), [0; 16]);
}

#[test]
fn full_table_sends_records_to_the_ring() {
    let Some(mut lab) = Lab::new(FLOW_CONFIG_ACCOUNTING) else {
        return;
    };
    // Not isolated: every flow passes (and is flagged unenforced).
    let e = endpoint(&[lab.a4], MAC_A, None, None);
    lab.dp.set_endpoint(0, e);
    let extra = 100u32;
    let total = FLOWS_CAPACITY + extra;
    let a4 = lab.a4;
    let dst = |i: u32| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
    let mut lens = 0u64;
    for i in 0..total {
        let f = frame(
            MAC_A,
            a4,
            dst(i / 1024),
            L4::Udp {
                sport: 1024 + (i % 1024) as u16,
                dport: 9,
            },
        );
        lens += f.len() as u64;
        assert_eq!(lab.dp.from_pod(&f), PASS);
    }
    let s = lab.tap.stats().unwrap();
    assert_eq!(
        s[FlowStat::EntriesCreated as usize],
        u64::from(FLOWS_CAPACITY)
    );
    assert_eq!(s[FlowStat::TableFull as usize], u64::from(extra));
    assert_eq!(s[FlowStat::FallbackSent as usize], u64::from(extra));
    assert_eq!(s[FlowStat::PacketsAccounted as usize], u64::from(total));
    assert_eq!(s[FlowStat::BytesAccounted as usize], lens);
    let events = lab.events();
    assert_eq!(events.len(), extra as usize);
    for (n, e) in events.iter().enumerate() {
        let i = FLOWS_CAPACITY + n as u32;
        assert_eq!(e.kind, EventKind::FlowRecord as u8);
        assert_eq!(
            e.key.tuple,
            ct_key(a4, dst(i / 1024), 1024 + (i % 1024) as u16, 9, PROTO_UDP)
        );
        assert_eq!(e.key.side, FLOW_SIDE_EGRESS);
        assert_eq!((e.value.packets_orig, e.value.packets_reply), (1, 0));
        assert_eq!(e.value.flags, FLOW_F_NEW | FLOW_F_UNENFORCED);
        assert_eq!(e.value.rule, RULE_NONE);
    }
    let started = std::time::Instant::now();
    let mut drained = Vec::new();
    lab.tap.drain_all(&mut drained).unwrap();
    eprintln!(
        "drained {} entries in {:?}",
        drained.len(),
        started.elapsed()
    );
    assert_eq!(drained.len(), FLOWS_CAPACITY as usize);
    assert!(drained.iter().all(|(_, v)| v.packets_orig == 1));
    assert_identity(&mut lab.tap, &drained, &events);
    // The table takes flows again.
    let f = frame(MAC_A, a4, dst(0), L4::Udp { sport: 1, dport: 9 });
    assert_eq!(lab.dp.from_pod(&f), PASS);
    assert_eq!(lab.drain().len(), 1);
}

#[test]
fn concurrent_drains_lose_and_double_count_nothing() {
    let Some(mut lab) = Lab::new(ALL) else { return };
    let (a4, b4) = (lab.a4, lab.b4);
    let tap = &mut lab.tap;
    let mut dp = lab.dp;
    dp.set_endpoint(0, endpoint(&[a4], MAC_A, Some(A_IN), Some(A_EG)));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let frames: Vec<Vec<u8>> = (0..8u16)
                .map(|i| {
                    frame(
                        MAC_A,
                        a4,
                        b4,
                        L4::Udp {
                            sport: 6000 + i,
                            dport: if i == 7 { 54 } else { 53 },
                        },
                    )
                })
                .collect();
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for f in &frames {
                    dp.run_tc_repeat("from_pod", f, 50);
                    runs += 50;
                }
            }
            runs
        })
    };
    let mut drained = Vec::new();
    let mut events = Vec::new();
    let mut drains = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        tap.drain(&mut drained).unwrap();
        tap.events(Duration::ZERO, &mut events).unwrap();
        drains += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let runs = worker.join().unwrap();
    tap.drain_all(&mut drained).unwrap();
    tap.events(Duration::ZERO, &mut events).unwrap();
    eprintln!("{runs} packets, {drains} drains, {} entries", drained.len());
    assert!(drains > 10, "the drains interleaved with the packets");
    let counted: u64 = drained.iter().map(|(_, v)| packets(v)).sum();
    assert_eq!(counted, runs, "every packet counted exactly once");
    assert_identity(tap, &drained, &events);
    let s = tap.stats().unwrap();
    let drop_events = events
        .iter()
        .filter(|e| e.kind == EventKind::Drop as u8)
        .count() as u64;
    // One Drop event per drained entry with drops (one writer: no race).
    assert_eq!(
        drop_events + s[FlowStat::EventsLost as usize],
        drained
            .iter()
            .filter(|(_, v)| v.dropped_packets > 0)
            .count() as u64
    );
}

/// A private bpffs mounted on a fresh temporary directory; unmounted
/// (taking every pin under it along) and removed on drop, also when the
/// test fails.
struct Bpffs(std::path::PathBuf);

impl Bpffs {
    fn mount() -> Self {
        let dir = std::env::temp_dir().join(format!("bulkhead-flows-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fs = Bpffs(dir);
        nix::mount::mount(
            Some("bpf"),
            &fs.0,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount bpffs");
        fs
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn pins_without_flow_maps_load_fresh_and_flow_maps_are_adopted() {
    use bulkhead_dataplane::flowtap::{EVENTS_MAP, FLOW_CONFIG_MAP, FLOW_STATS_MAP, FLOWS_MAPS};
    use bulkhead_dataplane::{Dataplane as Pinned, Origin, PinDir, TcMode, cleanup};
    let Some(elf) = bulkhead_netns_tests::privileged_ebpf_elf() else {
        return;
    };
    let elf = std::fs::read(elf).unwrap();
    let fs = Bpffs::mount();
    let dir = fs.0.join("bulkhead");
    let open = |pins: &PinDir| {
        Pinned::open(
            pins.clone(),
            Some(&elf),
            Duration::from_millis(1),
            TcMode::Auto,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let pins = PinDir::prepare(&dir).unwrap();
    let (dp, origin) = open(&pins);
    assert_eq!(origin, Origin::Loaded);
    dp.flow_tap().unwrap().set_config(ALL).unwrap();
    drop(dp);
    // Adopted as pinned: the flow configuration survives the agent.
    let (dp, origin) = open(&pins);
    assert_eq!(origin, Origin::Adopted);
    assert_eq!(dp.flow_tap().unwrap().config().unwrap().flags, ALL);
    drop(dp);
    // An ABI v4 pin set: no flow maps. Loaded again, with fresh flow maps
    // (accounting off) and the other maps reused.
    for name in FLOWS_MAPS
        .into_iter()
        .chain([FLOW_CONFIG_MAP, FLOW_STATS_MAP, EVENTS_MAP])
    {
        std::fs::remove_file(pins.map(name)).unwrap();
    }
    let (dp, origin) = open(&pins);
    assert_eq!(origin, Origin::Loaded);
    let mut tap = dp.flow_tap().unwrap();
    assert_eq!(tap.config().unwrap().flags, 0);
    let mut out = Vec::new();
    tap.drain_all(&mut out).unwrap();
    assert!(out.is_empty());
    drop((dp, tap));
    let report = cleanup(&dir, &[]).unwrap();
    assert!(report.objects >= 13 + 3, "maps and programs: {report:?}");
    assert!(!dir.exists());
}

/// Audit mode in the kernel: A's egress is not enforced, but staged
/// policies (audit table `A_AUDIT`, allowing B on TCP 80 only) are checked
/// beside it. Every packet of A's egress side is marked with the audit
/// verdict — also replies and later intervals, from the CT entry — and a
/// new revision re-checks it. Nothing is ever dropped for audit.
#[test]
fn audit_verdicts_mark_every_packet_of_a_side_and_follow_revisions() {
    const A_AUDIT: u32 = 5;
    let Some(mut lab) = Lab::new(ALL) else { return };
    let (a4, b4) = (lab.a4, lab.b4);
    let audited_a = |slot_table: u32| {
        let mut e = endpoint(&[a4], MAC_A, Some(A_IN), None);
        e.flags |= ENDPOINT_AUDIT_EGRESS;
        e.audit_egress_table = slot_table;
        e
    };
    lab.dp.allow(0, A_AUDIT, ID_B, PROTO_TCP, Some(80));
    let web = frame(MAC_A, a4, b4, tcp(40001, 80, SYN));
    let dns = frame(
        MAC_A,
        a4,
        b4,
        L4::Udp {
            sport: 40002,
            dport: 53,
        },
    );
    let dns_back = frame(
        MAC_B,
        b4,
        a4,
        L4::Udp {
            sport: 53,
            dport: 40002,
        },
    );
    lab.dp.set_endpoint(0, audited_a(A_AUDIT));
    assert_eq!(lab.dp.from_pod(&web), PASS);
    assert_eq!(lab.dp.from_pod(&dns), PASS, "audit never drops");
    assert_eq!(lab.dp.to_pod(&dns_back), PASS);
    assert_eq!(lab.as_b().to_pod(&dns), PASS);
    let flows = lab.drain();
    let (tweb, tdns) = (
        ct_key(a4, b4, 40001, 80, PROTO_TCP),
        ct_key(a4, b4, 40002, 53, PROTO_UDP),
    );
    let audit = |v: &FlowValue| v.flags & (FLOW_F_AUDITED | FLOW_F_AUDIT_DENY);
    assert_eq!(audit(&flows[&key(tweb, FLOW_SIDE_EGRESS)]), FLOW_F_AUDITED);
    let d = flows[&key(tdns, FLOW_SIDE_EGRESS)];
    assert_eq!(audit(&d), FLOW_F_AUDITED | FLOW_F_AUDIT_DENY);
    assert_eq!((d.packets_orig, d.packets_reply), (1, 1), "the reply too");
    assert_eq!(d.flags & FLOW_F_UNENFORCED, 0, "A's ingress is enforced");
    // B's ingress has no audit view.
    assert_eq!(audit(&flows[&key(tdns, FLOW_SIDE_INGRESS)]), 0);
    // The next interval: the verdict comes from the CT entry.
    lab.dp.set_endpoint(0, audited_a(A_AUDIT));
    assert_eq!(lab.dp.from_pod(&dns), PASS);
    let d = lab.drain()[&key(tdns, FLOW_SIDE_EGRESS)];
    assert_eq!(audit(&d), FLOW_F_AUDITED | FLOW_F_AUDIT_DENY);
    // Revision 1 (slot 1): the staged policy now allows UDP 53 too; the
    // established flow is re-checked on its next packet.
    for (net, id) in [("10.0.0.1/32", ID_A), ("10.0.0.2/32", ID_B)] {
        lab.dp.add_identity(1, net.parse().unwrap(), id);
    }
    lab.dp.allow(1, A_IN, ID_B, PROTO_ANY, None);
    lab.dp.allow(1, A_AUDIT, ID_B, PROTO_UDP, Some(53));
    lab.dp.set_endpoint(1, audited_a(A_AUDIT));
    lab.dp.set_revision(1);
    assert_eq!(lab.dp.from_pod(&dns), PASS);
    let d = lab.drain()[&key(tdns, FLOW_SIDE_EGRESS)];
    assert_eq!(audit(&d), FLOW_F_AUDITED, "re-checked under revision 1");
    assert_eq!(d.revision, 1);
    // Without an audit view the side carries no audit bits.
    lab.dp
        .set_endpoint(1, endpoint(&[a4], MAC_A, Some(A_IN), None));
    lab.dp.set_revision(3);
    assert_eq!(lab.dp.from_pod(&dns), PASS);
    let d = lab.drain()[&key(tdns, FLOW_SIDE_EGRESS)];
    assert_eq!(audit(&d), 0);
    lab.dp.remove_endpoint(1);
}
