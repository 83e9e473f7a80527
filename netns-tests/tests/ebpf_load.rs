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
