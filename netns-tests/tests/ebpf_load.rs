//! The dataplane ELF loads: the verifier accepts `to_pod`, the kernel accepts
//! every map with the ABI types of `bulkhead-common`, and `to_pod` gives the
//! verdicts the policy tables say (run with `BPF_PROG_TEST_RUN`).
//!
//! Nothing is pinned or attached: programs and maps live only as long as the
//! `Ebpf` value and are freed by the kernel when it drops, also when a test
//! fails, so nothing is left under /sys/fs/bpf.

use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use bulkhead_common::{
    ENDPOINT_ISOLATED_INGRESS, EndpointPolicy, IDENTITY_ANY, IdentityKey, IdentityValue,
    POLICY_PREFIX_FULL, POLICY_PREFIX_PROTO, PROTO_TCP, PROTO_UDP, PolicyKey, PolicyValue,
};
use bulkhead_netns_tests::privileged_ebpf_elf;

/// `TC_ACT_OK`: the packet passes.
const PASS: u32 = 0;
/// `TC_ACT_SHOT`: the packet is dropped.
const DROP: u32 = 2;
/// `BPF_PROG_TEST_RUN` runs sched_cls programs on the loopback device of the
/// caller's network namespace, whose ifindex is always 1.
const LO_IFINDEX: u32 = 1;

const TABLE: u32 = 3;
const DB_CLIENTS: u32 = 7;

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[10] = 0xff;
    addr[11] = 0xff;
    addr[12..].copy_from_slice(&a);
    addr
}

const V6_CLIENT: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

fn load() -> Option<Ebpf> {
    let elf = privileged_ebpf_elf()?;
    let mut ebpf =
        Ebpf::load_file(&elf).unwrap_or_else(|e| panic!("loading {}: {e:?}", elf.display()));
    let to_pod: &mut SchedClassifier = ebpf
        .program_mut("to_pod")
        .expect("the ELF has a to_pod program")
        .try_into()
        .expect("to_pod is a classifier");
    to_pod
        .load()
        .unwrap_or_else(|e| panic!("verifier rejected to_pod: {e:?}"));
    Some(ebpf)
}

fn identities(ebpf: &mut Ebpf) -> LpmTrie<&mut MapData, IdentityKey, IdentityValue> {
    LpmTrie::try_from(ebpf.map_mut("IDENTITIES").expect("IDENTITIES map")).expect("an LPM trie")
}

fn policy(ebpf: &mut Ebpf) -> LpmTrie<&mut MapData, PolicyKey, PolicyValue> {
    LpmTrie::try_from(ebpf.map_mut("POLICY").expect("POLICY map")).expect("an LPM trie")
}

fn endpoints(ebpf: &mut Ebpf) -> HashMap<&mut MapData, u32, EndpointPolicy> {
    HashMap::try_from(ebpf.map_mut("ENDPOINTS").expect("ENDPOINTS map")).expect("a hash map")
}

fn identity(identity: u32) -> IdentityValue {
    IdentityValue {
        identity,
        _reserved: 0,
    }
}

fn rule(rule: u32) -> PolicyValue {
    PolicyValue { rule, _reserved: 0 }
}

fn endpoint(flags: u32) -> EndpointPolicy {
    EndpointPolicy {
        ingress_table: TABLE,
        egress_table: 0,
        flags,
        _reserved: 0,
    }
}

#[test]
fn to_pod_loads_and_maps_accept_the_abi() {
    let Some(mut ebpf) = load() else { return };

    let v4_prefix = Key::new(
        96 + 24,
        IdentityKey {
            addr: v4([10, 0, 1, 0]),
        },
    );
    identities(&mut ebpf)
        .insert(&v4_prefix, identity(DB_CLIENTS), 0)
        .expect("insert into IDENTITIES");
    let lookup = Key::new(
        128,
        IdentityKey {
            addr: v4([10, 0, 1, 9]),
        },
    );
    assert_eq!(
        identities(&mut ebpf)
            .get(&lookup, 0)
            .expect("10.0.1.9 is in 10.0.1.0/24"),
        identity(DB_CLIENTS)
    );

    let exact = PolicyKey::new(TABLE, DB_CLIENTS, PROTO_TCP, 5432);
    policy(&mut ebpf)
        .insert(&Key::new(POLICY_PREFIX_FULL, exact), rule(11), 0)
        .expect("insert into POLICY");
    assert_eq!(
        policy(&mut ebpf)
            .get(&Key::new(POLICY_PREFIX_FULL, exact), 0)
            .expect("read back"),
        rule(11)
    );

    endpoints(&mut ebpf)
        .insert(LO_IFINDEX, endpoint(ENDPOINT_ISOLATED_INGRESS), 0)
        .expect("insert into ENDPOINTS");
    assert_eq!(
        endpoints(&mut ebpf).get(&LO_IFINDEX, 0).expect("read back"),
        endpoint(ENDPOINT_ISOLATED_INGRESS)
    );

    let to_pod: &mut SchedClassifier = ebpf.program_mut("to_pod").unwrap().try_into().unwrap();
    to_pod.unload().expect("unload to_pod");
}

/// Ethernet + IPv4 + the first four bytes of an L4 header (the ports).
fn ipv4_packet(src: [u8; 4], proto: u8, dport: u16) -> Vec<u8> {
    let mut p = ethernet(0x0800);
    let total_len: u16 = 20 + 20;
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total_len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]); // id, DF, ttl, proto, csum
    p.extend_from_slice(&src);
    p.extend_from_slice(&[10, 0, 0, 2]);
    l4(&mut p, dport);
    p
}

fn ipv6_packet(src: [u8; 16], proto: u8, dport: u16) -> Vec<u8> {
    let mut p = ethernet(0x86dd);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&20u16.to_be_bytes());
    p.extend_from_slice(&[proto, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    l4(&mut p, dport);
    p
}

fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    p.extend_from_slice(&ether_type.to_be_bytes());
    p
}

/// A 20-byte L4 header whose first bytes are source and destination port.
fn l4(p: &mut Vec<u8>, dport: u16) {
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
}

fn verdict(ebpf: &mut Ebpf, packet: &[u8]) -> u32 {
    let to_pod: &mut SchedClassifier = ebpf.program_mut("to_pod").unwrap().try_into().unwrap();
    let opts = TestRunOptions {
        data_in: Some(packet),
        ..TestRunOptions::default()
    };
    to_pod
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

#[test]
fn to_pod_enforces_the_ingress_table() {
    let Some(mut ebpf) = load() else { return };
    let mut ids = identities(&mut ebpf);
    ids.insert(
        &Key::new(
            96 + 24,
            IdentityKey {
                addr: v4([10, 0, 1, 0]),
            },
        ),
        identity(DB_CLIENTS),
        0,
    )
    .unwrap();
    ids.insert(
        &Key::new(64, IdentityKey { addr: V6_CLIENT }),
        identity(DB_CLIENTS),
        0,
    )
    .unwrap();
    let mut pol = policy(&mut ebpf);
    // DB clients may reach TCP 5432; anyone may reach any UDP port.
    let db = PolicyKey::new(TABLE, DB_CLIENTS, PROTO_TCP, 5432);
    pol.insert(&Key::new(POLICY_PREFIX_FULL, db), rule(11), 0)
        .unwrap();
    let any_udp = PolicyKey::new(TABLE, IDENTITY_ANY, PROTO_UDP, 0);
    pol.insert(&Key::new(POLICY_PREFIX_PROTO, any_udp), rule(12), 0)
        .unwrap();

    let client = [10, 0, 1, 5];
    let stranger = [10, 0, 2, 5];
    let tcp_5432 = ipv4_packet(client, PROTO_TCP, 5432);

    // Unknown endpoint: not enforced.
    assert_eq!(
        verdict(&mut ebpf, &ipv4_packet(stranger, PROTO_TCP, 5432)),
        PASS
    );

    endpoints(&mut ebpf)
        .insert(LO_IFINDEX, endpoint(ENDPOINT_ISOLATED_INGRESS), 0)
        .unwrap();
    assert_eq!(verdict(&mut ebpf, &tcp_5432), PASS, "allowed peer and port");
    assert_eq!(
        verdict(&mut ebpf, &ipv4_packet(client, PROTO_TCP, 5433)),
        DROP,
        "other port"
    );
    assert_eq!(
        verdict(&mut ebpf, &ipv4_packet(stranger, PROTO_TCP, 5432)),
        DROP,
        "other peer"
    );
    assert_eq!(
        verdict(&mut ebpf, &ipv4_packet(stranger, PROTO_UDP, 53)),
        PASS,
        "any peer, UDP"
    );
    assert_eq!(
        verdict(&mut ebpf, &ipv6_packet(V6_CLIENT, PROTO_TCP, 5432)),
        PASS,
        "IPv6 peer"
    );
    assert_eq!(
        verdict(&mut ebpf, &ipv6_packet(V6_CLIENT, PROTO_TCP, 22)),
        DROP,
        "IPv6 other port"
    );
    let mut arp = ethernet(0x0806);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(verdict(&mut ebpf, &arp), PASS, "non-IP passes");
    // (The kernel refuses to test-run a cut-short IPv4 header; a header
    // length below 20 bytes takes the same malformed path.)
    let mut bad_ihl = tcp_5432.clone();
    bad_ihl[14] = 0x44;
    assert_eq!(verdict(&mut ebpf, &bad_ihl), DROP, "IPv4 IHL below 5");

    // Not isolated for ingress: everything passes.
    endpoints(&mut ebpf)
        .insert(LO_IFINDEX, endpoint(0), 0)
        .unwrap();
    assert_eq!(
        verdict(&mut ebpf, &ipv4_packet(stranger, PROTO_TCP, 5433)),
        PASS
    );
}
