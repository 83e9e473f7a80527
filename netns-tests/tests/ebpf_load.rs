//! The dataplane ELF loads: the verifier accepts all three programs, the
//! kernel accepts every map with the ABI types of `bulkhead-common`, and
//! `to_pod` enforces an ingress table by slot (run with `BPF_PROG_TEST_RUN`).

use std::net::IpAddr;

use bulkhead_common::{DropReason, IDENTITY_ANY, PROTO_TCP, PROTO_UDP};
use bulkhead_netns_tests::{
    dataplane::{DROP, Dataplane, PASS, endpoint},
    packet::{L4, SYN, ether, frame},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const TABLE: u32 = 3;
const DB_CLIENTS: u32 = 7;

#[test]
fn programs_load_and_to_pod_enforces_the_ingress_table_of_the_active_slot() {
    let Some(mut dp) = Dataplane::load() else {
        return;
    };
    let pod = [ip("10.0.0.2"), ip("fd00::2")];
    let client = ip("10.0.1.5");
    let stranger = ip("10.0.2.5");
    let v6_client = ip("2001:db8::5");
    for slot in 0..2 {
        dp.add_identity(slot, "10.0.1.0/24".parse().unwrap(), DB_CLIENTS);
        dp.add_identity(slot, "2001:db8::/64".parse().unwrap(), DB_CLIENTS);
        // DB clients may reach TCP 5432 (slot 0) / 5433 (slot 1); anyone any UDP.
        dp.allow(
            slot,
            TABLE,
            DB_CLIENTS,
            PROTO_TCP,
            Some(5432 + u16::from(slot)),
        );
        dp.allow(slot, TABLE, IDENTITY_ANY, PROTO_UDP, None);
    }
    let tcp = |src: IpAddr, dport: u16, sport: u16| {
        frame(
            POD_MAC,
            src,
            if src.is_ipv4() { pod[0] } else { pod[1] },
            L4::Tcp {
                sport,
                dport,
                flags: SYN,
            },
        )
    };

    // Unknown endpoint: not enforced.
    assert_eq!(dp.to_pod(&tcp(stranger, 5432, 1000)), PASS);

    dp.set_endpoint(0, endpoint(&pod, POD_MAC, Some(TABLE), None));
    dp.set_endpoint(1, endpoint(&pod, POD_MAC, Some(TABLE), None));
    let denied = dp.drops(DropReason::PolicyDenied);
    assert_eq!(
        dp.to_pod(&tcp(client, 5432, 1001)),
        PASS,
        "allowed peer and port"
    );
    assert_eq!(dp.to_pod(&tcp(client, 5433, 1002)), DROP, "other port");
    assert_eq!(dp.to_pod(&tcp(stranger, 5432, 1003)), DROP, "other peer");
    let udp = frame(
        POD_MAC,
        stranger,
        pod[0],
        L4::Udp {
            sport: 1004,
            dport: 53,
        },
    );
    assert_eq!(dp.to_pod(&udp), PASS, "any peer, UDP");
    assert_eq!(dp.to_pod(&tcp(v6_client, 5432, 1005)), PASS, "IPv6 peer");
    assert_eq!(
        dp.to_pod(&tcp(v6_client, 22, 1006)),
        DROP,
        "IPv6 other port"
    );
    assert_eq!(dp.drops(DropReason::PolicyDenied), denied + 3);
    let arp = ether(POD_MAC, 0x0806, &[0; 28]);
    assert_eq!(dp.to_pod(&arp), PASS, "non-IP passes");

    // Revision 1: slot 1 is live, where 5433 is allowed and 5432 is not.
    dp.set_revision(1);
    assert_eq!(dp.to_pod(&tcp(client, 5433, 1007)), PASS, "slot 1 rule");
    assert_eq!(
        dp.to_pod(&tcp(client, 5432, 1008)),
        DROP,
        "slot 0 rule not live"
    );

    // Not isolated for ingress: everything passes.
    dp.set_endpoint(1, endpoint(&pod, POD_MAC, None, None));
    assert_eq!(dp.to_pod(&tcp(stranger, 5432, 1009)), PASS);
}

/// Policy trees deeper than one node (roots in POLICY_V4, the other nodes
/// in POLICY_NODES; a peer with 5,000 port ranges takes 4 levels, any peer
/// with 300 takes 2): every allowed port passes
/// with its own deciding rule recorded in CT, every port between them and
/// every other protocol is dropped.
#[test]
fn deep_policy_trees_find_every_range_and_its_rule() {
    use bulkhead_netns_tests::dataplane::ct_key;
    use bulkhead_policy::compile::maps::{MapImage, peer_ranges, policy_tree};
    use bulkhead_policy::compile::tables::Segment;

    let Some(mut dp) = Dataplane::load() else {
        return;
    };
    let pod = [ip("10.0.0.2"), ip("fd00::2")];
    let client = ip("10.0.1.5");
    let stranger = ip("10.0.2.5");
    let slot = 0;
    dp.set_revision(0);
    dp.add_identity(slot, "10.0.1.0/24".parse().unwrap(), DB_CLIENTS);
    let single = |first: u16, n: usize, rule0: u32| -> Vec<Segment> {
        (0..n)
            .map(|i| {
                let p = first + 3 * i as u16;
                Segment::allow(p, p, vec![rule0 + (i % 13) as u32])
            })
            .collect()
    };
    let client_tcp = single(1000, 5000, 1);
    let any_udp = single(20_000, 300, 500);
    let mut image = MapImage {
        slot,
        ..MapImage::default()
    };
    let deep = policy_tree(
        slot,
        TABLE,
        DB_CLIENTS,
        &peer_ranges(&[(PROTO_TCP, &client_tcp)]),
    );
    // 313 leaves of 16 ranges, then 20, 2 and 1 (the root) inner nodes.
    assert_eq!(deep.len(), 313 + 20 + 2 + 1);
    image.policy.extend(deep);
    image.policy.extend(policy_tree(
        slot,
        TABLE,
        IDENTITY_ANY,
        &peer_ranges(&[(PROTO_UDP, &any_udp)]),
    ));
    dp.write_image(&image);
    dp.set_endpoint(slot, endpoint(&pod, POD_MAC, Some(TABLE), None));

    let mut sport = 2000u16;
    let mut probe = |dp: &mut Dataplane, src: IpAddr, l4: &dyn Fn(u16) -> L4| {
        sport += 1;
        let v = dp.to_pod(&frame(POD_MAC, src, pod[0], l4(sport)));
        (v, sport)
    };
    let tcp = |dport| {
        move |sport| L4::Tcp {
            sport,
            dport,
            flags: SYN,
        }
    };
    let udp = |dport| move |sport| L4::Udp { sport, dport };
    for (i, seg) in client_tcp.iter().enumerate() {
        let (v, sp) = probe(&mut dp, client, &tcp(seg.lo));
        assert_eq!(v, PASS, "range {i}: TCP {}", seg.lo);
        let ct = dp
            .ct_get(&ct_key(client, pod[0], sp, seg.lo, PROTO_TCP))
            .expect("tracked");
        assert_eq!(ct.ingress_rule, seg.rules[0], "rule of TCP {}", seg.lo);
        for miss in [seg.lo + 1, seg.lo + 2] {
            let (v, _) = probe(&mut dp, client, &tcp(miss));
            assert_eq!(v, DROP, "TCP {miss} between ranges");
        }
        if i % 50 == 0 {
            let (v, _) = probe(&mut dp, stranger, &tcp(seg.lo));
            assert_eq!(v, DROP, "TCP {} from a stranger", seg.lo);
            let (v, _) = probe(&mut dp, client, &udp(seg.lo));
            assert_eq!(v, DROP, "UDP {} is another protocol", seg.lo);
        }
    }
    for (i, seg) in any_udp.iter().enumerate() {
        for src in [client, stranger] {
            let (v, sp) = probe(&mut dp, src, &udp(seg.lo));
            assert_eq!(v, PASS, "range {i}: UDP {} from {src}", seg.lo);
            let ct = dp
                .ct_get(&ct_key(src, pod[0], sp, seg.lo, PROTO_UDP))
                .expect("tracked");
            assert_eq!(ct.ingress_rule, seg.rules[0]);
        }
        let (v, _) = probe(&mut dp, client, &udp(seg.lo + 1));
        assert_eq!(v, DROP, "UDP {} between ranges", seg.lo + 1);
    }
    dp.clear_image();
    dp.ct_clear();
    dp.remove_endpoint(slot);
}

/// The verifier's work per program (`verified_insns` of each loaded
/// program): every program must stay well under the kernel's limit of
/// 1,000,000 processed instructions, so a change that grows a path is
/// caught here with room to spare rather than at the limit on some other
/// kernel. Printed for the record.
#[test]
fn every_program_verifies_with_headroom() {
    use aya::programs::{SchedClassifier, Xdp};
    /// The budget: 85% of the kernel's limit.
    const BUDGET: u32 = 850_000;
    let Some(elf) = bulkhead_netns_tests::privileged_ebpf_elf() else {
        return;
    };
    let mut ebpf = aya::Ebpf::load_file(&elf).expect("load the ELF");
    let mut report = Vec::new();
    for name in [
        "from_pod",
        "to_pod",
        "deliver",
        "leave_node",
        "to_backend",
        "open_from_pod",
        "open_to_pod",
        "xdp_prefilter",
    ] {
        let prog = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no {name}"));
        let loaded = if name == "xdp_prefilter" {
            let x: &mut Xdp = prog.try_into().expect("XDP");
            x.load().map(|()| x.info().ok())
        } else {
            let c: &mut SchedClassifier = prog.try_into().expect("classifier");
            c.load().map(|()| c.info().ok())
        };
        report.push((
            name,
            loaded
                .map(|info| info.and_then(|i| i.verified_instruction_count()))
                .map_err(|e| first_lines(&e.to_string())),
        ));
    }
    eprintln!("verified instructions: {report:?}");
    for (name, count) in report {
        let count = count
            .unwrap_or_else(|e| panic!("the verifier rejected {name}: {e}"))
            .expect("the kernel reports verified_insns (5.16+)");
        assert!(
            count <= BUDGET,
            "{name}: {count} verified instructions, over the budget of {BUDGET}"
        );
    }
}

/// The first and last lines of a verifier error (the log is megabytes).
fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(12);
    format!(
        "{}\n...\n{}",
        lines.first().copied().unwrap_or(""),
        lines[tail..].join("\n")
    )
}
