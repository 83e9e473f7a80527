//! Unit tests of the lab's pure parts: names, MACs, the plan, SCTP packets,
//! probe planning, the state file and verify's comparison.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use super::naming::*;
use super::plan::{LabSpec, gateway, host_batch, node_link_batch, node_route_batch, plan};
use super::probe::{
    Outcome, ProbeOptions, ProbeResult, plan_probes, text_table, unmatched_pattern,
};
use super::sctp;
use super::state::{LabState, load_from};
use super::verify::{ConnectivityLine, disagreements, expected};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{ContainerPort, Labels, Model, Origin, Pod, Protocol, Workload};

mod host_network;

fn pod(ns: &str, name: &str, ports: &[(u16, Protocol)]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner: None,
        labels: Labels::new(),
        ports: ports
            .iter()
            .map(|&(port, protocol)| ContainerPort {
                name: None,
                port,
                protocol,
            })
            .collect(),
        ips: Vec::new(),
        claim: Default::default(),
        node: None,
        off_network: None,
        origin: Origin::default(),
    }
}

fn model() -> Model {
    let ports = [
        (80, Protocol::Tcp),
        (81, Protocol::Tcp),
        (80, Protocol::Udp),
        (80, Protocol::Sctp),
    ];
    let mut m = Model {
        pods: vec![
            pod("x", "a", &ports),
            pod("x", "b", &ports),
            pod("y", "a", &[(53, Protocol::Udp)]),
        ],
        ..Model::default()
    };
    m.normalize();
    AddressPlan::default().assign(&mut m.pods).unwrap();
    m
}

fn spec(externals: &[&str]) -> LabSpec {
    LabSpec {
        name: "t1".into(),
        manifests: PathBuf::from("/m"),
        pod_cidrs: AddressPlan::default().cidrs,
        service_cidrs: Vec::new(),
        assign_pod_ips: false,
        externals: externals.iter().map(|a| a.parse().unwrap()).collect(),
        extra_ports: vec![9000, 9000],
        watch_in_place: false,
        agent: true,
        xdp: false,
        host_routing: true,
        flow_args: Vec::new(),
        mode: bulkhead_policy::model::Mode::Enforce,
        source: Default::default(),
        nodes: 1,
        node_names: Vec::new(),
        kube_proxy: Default::default(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn lab_names_are_checked() {
    for ok in ["lab", "a", "abc123"] {
        check_lab_name(ok).unwrap();
    }
    for bad in ["", "abcdefg", "Lab", "a-b", "a_b", "a/b"] {
        assert!(check_lab_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn every_name_fits_ifnamsiz() {
    let lab = "abcdef";
    assert_eq!(node_netns(lab), "bh-abcdef-node");
    for name in [
        node_netns(lab),
        pod_netns(lab, 9999),
        external_netns(lab, 9999),
    ] {
        assert!(name.len() <= IFNAMSIZ_MAX, "{name}");
    }
    let veth = host_veth("some-long-namespace-name/and-a-very-long-pod-name");
    assert_eq!(veth.len(), 14);
    assert!(veth.starts_with("bh"));
    assert_eq!(
        veth,
        host_veth("some-long-namespace-name/and-a-very-long-pod-name")
    );
    assert_ne!(host_veth("x/a"), host_veth("x/b"));
    // Lab prefixes do not match each other.
    assert!(!pod_netns("ab", 0).starts_with(&netns_prefix("a")));
}

#[test]
fn host_macs_are_deterministic_locally_administered_unicast() {
    for key in ["192.0.2.10", "2001:db8::10", ""] {
        let m = mac_of(key);
        assert_eq!(m, mac_of(key));
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    // Similar keys differ everywhere, not just in one nibble.
    let (a, b) = (mac_of("192.0.2.10"), mac_of("192.0.2.11"));
    assert!(
        a.iter().zip(b).filter(|(p, q)| *p != q).count() >= 4,
        "{a:?} {b:?}"
    );
    assert_eq!(format_mac([0x02, 0, 0xab, 1, 2, 0xff]), "02:00:ab:01:02:ff");
}

#[test]
fn gateways_are_the_first_address() {
    let c: IpNetwork = "10.244.0.0/16".parse().unwrap();
    assert_eq!(gateway(c), ip("10.244.0.1"));
    let c: IpNetwork = "fd00:10:244::/64".parse().unwrap();
    assert_eq!(gateway(c), ip("fd00:10:244::1"));
}

#[test]
fn the_plan_names_addresses_and_routes_every_host() {
    let s = plan(&model(), &spec(&["192.0.2.10", "2001:db8::10"])).unwrap();
    assert_eq!(s.node, "bh-t1-node");
    assert_eq!(s.gateways, [ip("10.244.0.1"), ip("fd00:10:244::1")]);
    assert_eq!(s.extra_ports, [9000]);
    let names: Vec<_> = s
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.netns.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("x/a", "bh-t1-p0"),
            ("x/b", "bh-t1-p1"),
            ("y/a", "bh-t1-p2"),
            ("192.0.2.10", "bh-t1-x0"),
            ("2001:db8::10", "bh-t1-x1"),
        ]
    );
    assert_eq!(s.hosts[0].ips, [ip("10.244.0.2"), ip("fd00:10:244::2")]);
    // A pod's veth and MAC are what its CNI ADD makes: unknown before.
    assert_eq!(
        (s.hosts[0].veth.as_str(), s.hosts[0].mac.as_str()),
        ("", "")
    );
    assert_eq!(s.hosts[3].veth, super::naming::host_veth("192.0.2.10"));
    // External hosts serve the union of declared ports; everyone serves the extras.
    let ext = &s.hosts[3];
    assert!(ext.external);
    assert_eq!(ext.ports.udp.iter().copied().collect::<Vec<_>>(), [53, 80]);
    assert_eq!(
        s.served(&s.hosts[2])
            .tcp
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [9000]
    );
    assert_eq!(
        s.served(&s.hosts[0]).serve_args(),
        [
            "--tcp",
            "80,81,9000",
            "--udp",
            "80,9000",
            "--sctp",
            "80,9000"
        ]
    );

    // Only the external hosts are wired by hand (the pods by ptp).
    let links = op_lines(node_link_batch(&s, 0));
    assert_eq!(
        links,
        [
            format!(
                "link add {} type veth peer name eth0 address {} netns bh-t1-x0",
                s.hosts[3].veth, s.hosts[3].mac
            ),
            format!(
                "link add {} type veth peer name eth0 address {} netns bh-t1-x1",
                s.hosts[4].veth, s.hosts[4].mac
            )
        ]
    );
    let routes = op_lines(node_route_batch(&s, 0));
    let v = &s.hosts[3].veth;
    for want in [
        format!("addr add 10.244.0.1/32 dev {v}"),
        format!("addr add fd00:10:244::1/128 dev {v} nodad"),
        format!("route add 192.0.2.10/32 dev {v}"),
    ] {
        assert!(routes.contains(&want), "{want} in {routes:?}");
    }
    assert!(
        !routes.iter().any(|r| r.contains("10.244.0.2")),
        "{routes:?}"
    );
    assert_eq!(
        op_lines(host_batch(&s, &s.hosts[4])),
        [
            "link set lo up",
            "link set eth0 up",
            "addr add 2001:db8::10/128 dev eth0 nodad",
            "route add fd00:10:244::1/128 dev eth0",
            "route add ::/0 via fd00:10:244::1 dev eth0",
        ]
    );
    // A single-family external host routes only its family.
    let ext4 = op_lines(host_batch(&s, &s.hosts[3]));
    assert!(ext4.iter().all(|l| !l.contains("fd00")), "{ext4:?}");
    assert!(
        ext4.contains(&"route add 0.0.0.0/0 via 10.244.0.1 dev eth0".to_owned()),
        "{ext4:?}"
    );
}

/// Wiring steps as the `ip` commands they stand for.
fn op_lines(ops: Vec<super::net::Op>) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

#[test]
fn bad_external_hosts_and_gateway_pods_are_rejected() {
    for bad in [
        "10.244.7.7",
        "fd00:10:244::99",
        "10.244.0.2",
        "127.0.0.1",
        "224.0.0.1",
    ] {
        let e = plan(&model(), &spec(&[bad])).unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert!(plan(&model(), &spec(&["192.0.2.1", "192.0.2.1"])).is_err());
    let mut m = model();
    m.pods[0].ips = vec![ip("10.244.0.1")];
    let e = plan(&m, &spec(&[])).unwrap_err().to_string();
    assert!(e.contains("gateway"), "{e}");
    let mut s = spec(&[]);
    s.pod_cidrs.retain(|c| c.is_ipv4());
    let e = plan(&model(), &s).unwrap_err().to_string();
    assert!(e.contains("no pod CIDR"), "{e}");
}

#[test]
fn the_state_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = plan(&model(), &spec(&["192.0.2.10"])).unwrap();
    s.hosts[1].server_pid = Some(4242);
    let path = dir.path().join("state.json");
    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let back: LabState = load_from(&path).unwrap().unwrap();
    assert_eq!(back, s);
    assert_eq!(load_from(&dir.path().join("missing.json")).unwrap(), None);
    std::fs::write(&path, "{").unwrap();
    assert!(load_from(&path).is_err());
}

#[test]
fn sctp_packets_round_trip_with_valid_checksums() {
    let init = sctp::init(40_000, 80, 0xdead_beef);
    let p = sctp::parse(&init).unwrap();
    assert_eq!((p.src_port, p.dst_port, p.vtag), (40_000, 80, 0));
    assert_eq!(
        (p.chunk, p.initiate_tag),
        (sctp::CHUNK_INIT, Some(0xdead_beef))
    );
    let ack = sctp::parse(&sctp::init_ack(&p, 7)).unwrap();
    assert_eq!(
        (ack.src_port, ack.dst_port, ack.vtag),
        (80, 40_000, 0xdead_beef)
    );
    assert_eq!(
        (ack.chunk, ack.initiate_tag),
        (sctp::CHUNK_INIT_ACK, Some(7))
    );
    let abort = sctp::parse(&sctp::abort(&p)).unwrap();
    assert_eq!((abort.chunk, abort.vtag), (sctp::CHUNK_ABORT, 0xdead_beef));
    // A flipped bit fails the checksum.
    let mut bad = init.clone();
    bad[20] ^= 1;
    assert_eq!(sctp::parse(&bad), None);
    assert_eq!(sctp::parse(&init[..10]), None);
    // CRC32c check value ("123456789" → 0xe3069283), stored little-endian.
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    assert_eq!(crc.checksum(b"123456789"), 0xe306_9283);
    let mut v4 = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 132, 0, 0, 10, 244, 0, 2, 10, 244, 0, 3,
    ];
    v4.extend_from_slice(&init);
    let (src, payload) = sctp::strip_ipv4(&v4).unwrap();
    assert_eq!(src.to_string(), "10.244.0.2");
    assert_eq!(payload, &init[..]);
}

fn opts(families: &[bool], protocols: &[Protocol], ports: Option<Vec<u16>>) -> ProbeOptions {
    ProbeOptions {
        ports,
        protocols: protocols.to_vec(),
        families: families.to_vec(),
        timeout: std::time::Duration::from_millis(100),
        max_in_flight: 8,
        from: Vec::new(),
        to: Vec::new(),
        via: Default::default(),
        hairpin: false,
        routes: Vec::new(),
    }
}

#[test]
fn probes_cover_ordered_pairs_on_declared_ports() {
    let s = plan(&model(), &spec(&["192.0.2.10", "192.0.2.11"])).unwrap();
    let all = plan_probes(&s, &opts(&[true], &Protocol::ALL, None));
    // x/a → x/b: TCP 80, 81, UDP 80, SCTP 80.
    let ab: Vec<_> = all
        .iter()
        .filter(|p| p.src == 0 && p.dst == 1)
        .map(|p| (p.protocol, p.port))
        .collect();
    assert_eq!(
        ab,
        [
            (Protocol::Tcp, 80),
            (Protocol::Tcp, 81),
            (Protocol::Udp, 80),
            (Protocol::Sctp, 80)
        ]
    );
    assert!(all.iter().all(|p| p.src != p.dst));
    assert!(
        all.iter()
            .all(|p| !(s.hosts[p.src].external && s.hosts[p.dst].external))
    );
    assert!(all.iter().any(|p| s.hosts[p.src].external && p.dst == 0));
    assert!(all.iter().any(|p| p.src == 0 && s.hosts[p.dst].external));
    // IPv6 only: no IPv4-only external host takes part.
    let v6 = plan_probes(&s, &opts(&[false], &[Protocol::Tcp], Some(vec![81])));
    assert_eq!(v6.len(), 6);
    assert!(v6.iter().all(|p| p.addr.is_ipv6() && p.port == 81));
}

#[test]
fn probes_can_be_limited_to_some_sources_and_destinations() {
    let s = plan(&model(), &spec(&["192.0.2.10", "2001:db8::7"])).unwrap();
    let pairs = |from: &[&str], to: &[&str]| -> Vec<(String, String)> {
        let mut o = opts(&[true, false], &[Protocol::Tcp], Some(vec![80]));
        o.from = from.iter().map(|p| (*p).to_owned()).collect();
        o.to = to.iter().map(|p| (*p).to_owned()).collect();
        let mut v: Vec<_> = plan_probes(&s, &o)
            .iter()
            .map(|p| (s.hosts[p.src].name.clone(), s.hosts[p.dst].name.clone()))
            .collect();
        v.dedup();
        v
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(pairs(&["x/a"], &["y/*"]), [pair("x/a", "y/a")]);
    assert_eq!(
        pairs(&["*/a"], &["x/b"]),
        [pair("x/a", "x/b"), pair("y/a", "x/b")]
    );
    // An address names its host, pod or external; `ns/*` never matches an
    // external host, `*` matches every host.
    let xb = s.hosts[1].ips[0].to_string();
    assert_eq!(pairs(&["192.0.2.10"], &[&xb]), [pair("192.0.2.10", "x/b")]);
    assert_eq!(
        pairs(&["x/b"], &["2001:db8::7"]),
        [pair("x/b", "2001:db8::7")]
    );
    assert_eq!(pairs(&["*"], &["*"]), pairs(&[], &[]));
    assert!(
        pairs(&["x/*"], &[])
            .iter()
            .all(|(src, _)| src.starts_with("x/"))
    );
    assert_eq!(
        unmatched_pattern(&s, &["x/*".into(), "z/*".into()]),
        Some("z/*")
    );
    assert_eq!(unmatched_pattern(&s, &["2001:db8::7".into()]), None);
    assert_eq!(
        unmatched_pattern(&s, &["2001:db8::8".into()]),
        Some("2001:db8::8")
    );
}

fn result(
    src: &str,
    dst: &str,
    family: &'static str,
    protocol: Protocol,
    port: u16,
    outcome: Outcome,
) -> ProbeResult {
    ProbeResult {
        src: src.into(),
        dst: dst.into(),
        family,
        protocol,
        port,
        outcome,
        detail: None,
        served: port != 82,
        via: Default::default(),
        target: None,
        service: None,
        dst_host_network: false,
    }
}

fn lines(text: &str) -> Vec<ConnectivityLine> {
    text.lines()
        .map(|l| ConnectivityLine::from_json(serde_json::from_str(l).unwrap()).unwrap())
        .collect()
}

#[test]
fn verify_finds_exactly_the_probes_policy_does_not_predict() {
    let l = lines(concat!(
        r#"{"src":"x/a","dst":"x/b","allowed":{"TCP":[[80,80]],"UDP":[],"SCTP":[[1,65535]]}}"#,
        "\n",
        r#"{"src":"x/a","dst":"y/a","family":"IPv4","allowed":{"TCP":[[80,81]],"UDP":[],"SCTP":[]}}"#,
        "\n",
        r#"{"src":"x/a","dst":"y/a","family":"IPv6","allowed":{"TCP":[[81,81]],"UDP":[],"SCTP":[]}}"#,
        "\n",
        r#"{"src":"192.0.2.0/24","dst":"x/a","allowed":{"TCP":[[80,80]],"UDP":[],"SCTP":[]}}"#,
        "\n",
        r#"{"src":"x/a","dst":"0.0.0.0/0","allowed":{"TCP":[],"UDP":[[53,53]],"SCTP":[]}}"#,
    ));
    use Outcome::*;
    use Protocol::*;
    let probes = vec![
        result("x/a", "x/b", "IPv4", Tcp, 80, Connected), // agree
        result("x/a", "x/b", "IPv4", Tcp, 81, Connected), // allowed, policy denies
        result("x/a", "x/b", "IPv6", Udp, 80, Timeout),   // agree
        result("x/a", "x/b", "IPv6", Sctp, 81, Refused),  // denied, policy allows
        result("x/a", "y/a", "IPv4", Tcp, 80, Connected), // agree (IPv4 line)
        result("x/a", "y/a", "IPv6", Tcp, 80, Connected), // IPv6 line denies 80
        result("x/b", "x/a", "IPv4", Tcp, 80, Timeout),   // no line: denied, agree
        result("192.0.2.10", "x/a", "IPv4", Tcp, 80, Connected), // in the CIDR: agree
        result("198.51.100.1", "x/a", "IPv4", Tcp, 80, Connected), // outside: policy denies
        result("x/a", "192.0.2.10", "IPv4", Udp, 53, Connected), // 0.0.0.0/0: agree
        result("x/a", "2001:db8::1", "IPv6", Udp, 53, Connected), // no IPv6 line: denies
        result("x/b", "y/a", "IPv4", Udp, 53, Error),     // could not run
        result("x/a", "x/b", "IPv4", Sctp, 82, Refused),  // nothing listens: reached, agree
        result("x/b", "x/a", "IPv4", Tcp, 82, Refused),   // reached, policy denies
        result("x/b", "x/a", "IPv4", Tcp, 81, Refused),   // an answer to a denied probe
        result("x/a", "y/a", "IPv4", Tcp, 81, Refused),   // served yet refused: not allowed
        result("x/a", "y/a", "IPv4", Tcp, 80, Unreachable), // a router answered
        result("x/b", "x/a", "IPv4", Udp, 80, Unreachable), // an answer to a denied probe
    ];
    assert!(expected(&probes[0], &l));
    assert!(!expected(&probes[1], &l));
    let found: Vec<(usize, bool)> = disagreements(&probes, &l)
        .iter()
        .map(|d| {
            (
                probes.iter().position(|p| *p == d.probe).unwrap(),
                d.expected,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (1, false),
            (3, true),
            (5, false),
            (8, false),
            (10, false),
            (11, false),
            (13, false),
            (14, false),
            (15, true),
            (16, true),
            (17, false),
        ]
    );
    let d = &disagreements(&probes, &l)[0];
    assert_eq!(d.to_json()["expected"], false);
    assert_eq!(d.to_json()["allowed"], true);
    assert!(
        d.text().contains("policy denies, but the probe connected"),
        "{}",
        d.text()
    );
    assert!(disagreements(&probes[..1], &l).is_empty());
    assert!(probes[12].allowed() && !probes[15].allowed() && !probes[16].allowed());
    let d = disagreements(&probes, &l);
    let text = |i: usize| d.iter().find(|d| d.probe == probes[i]).unwrap().text();
    assert!(text(13).contains("nothing listens"), "{}", text(13));
    assert!(text(15).contains("though a server listens"), "{}", text(15));
}

#[test]
fn probe_text_groups_by_pair_and_family() {
    use Outcome::*;
    use Protocol::*;
    let rs = vec![
        result("x/a", "y/b", "IPv4", Tcp, 80, Connected),
        result("x/a", "y/b", "IPv4", Tcp, 82, Refused),
        result("x/a", "y/b", "IPv6", Udp, 80, Timeout),
        result("y/b", "x/a", "IPv4", Tcp, 81, Unreachable),
    ];
    assert_eq!(
        text_table(&rs),
        [
            "x/a → y/b  IPv4  TCP/80 ✓  TCP/82 ✓ (refused: nothing listens)",
            "x/a → y/b  IPv6  UDP/80 ✗",
            "y/b → x/a  IPv4  TCP/81 ✗ (unreachable)",
        ]
    );
}

#[test]
fn probe_json_has_the_documented_shape() {
    let r = result("x/a", "y/b", "IPv4", Protocol::Tcp, 80, Outcome::Connected);
    assert_eq!(
        serde_json::to_string(&r.to_json()).unwrap(),
        r#"{"src":"x/a","dst":"y/b","protocol":"TCP","port":80,"allowed":true,"outcome":"connected","family":"IPv4"}"#
    );
    let r = result("x/a", "y/b", "IPv6", Protocol::Udp, 81, Outcome::Timeout);
    assert_eq!(r.to_json()["allowed"], false);
    assert_eq!(r.to_json()["outcome"], "timeout");
}

#[test]
fn mountinfo_escapes_are_undone() {
    use super::agent::unescape_mountinfo;
    assert_eq!(unescape_mountinfo(r"/run/a\040b"), "/run/a b");
    assert_eq!(unescape_mountinfo(r"/x\134y\011z"), "/x\\y\tz");
    assert_eq!(unescape_mountinfo(r"/plain\04"), r"/plain\04");
}

#[test]
fn manifests_are_copied_file_or_tree() {
    use super::agent::copy_manifests;
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("a.yaml"), "a").unwrap();
    std::fs::write(src.path().join("sub/b.yml"), "b").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let tree = dst.path().join("tree");
    copy_manifests(src.path(), &tree).unwrap();
    assert_eq!(std::fs::read_to_string(tree.join("a.yaml")).unwrap(), "a");
    assert_eq!(
        std::fs::read_to_string(tree.join("sub/b.yml")).unwrap(),
        "b"
    );
    let one = dst.path().join("one");
    copy_manifests(&src.path().join("a.yaml"), &one).unwrap();
    assert_eq!(std::fs::read_to_string(one.join("a.yaml")).unwrap(), "a");
}

#[test]
fn the_plan_places_the_watched_copy_and_the_agent_in_the_lab_directory() {
    let s = plan(&model(), &spec(&[])).unwrap();
    let dir = super::state::lab_dir("t1");
    assert_eq!(s.watched(), dir.join("manifests"));
    let a = s.agent.as_ref().expect("an agent");
    assert_eq!(a.bpffs, dir.join("bpf"));
    assert!(a.pin_dir.starts_with(&a.bpffs) && a.pin_dir != a.bpffs);
    let in_place = plan(
        &model(),
        &LabSpec {
            watch_in_place: true,
            agent: false,
            ..spec(&[])
        },
    )
    .unwrap();
    assert_eq!(in_place.watched(), PathBuf::from("/m"));
    assert!(in_place.agent.is_none());
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_state_file_and_the_lab_directory_are_owner_only() {
    let t = tempfile::tempdir().unwrap();
    let lab = t.path().join("labs/t1");
    let path = lab.join("state.json");
    let s = plan(&model(), &spec(&[])).unwrap();
    s.save_at(&path).unwrap();
    assert_eq!((mode(&lab), mode(&t.path().join("labs"))), (0o700, 0o700));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(load_from(&path).unwrap().unwrap(), s);
    // A lab directory made by an older version is tightened.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&lab, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.save_at(&path).unwrap();
    assert_eq!(mode(&lab), 0o700);
    assert_eq!(
        std::fs::read_dir(&lab).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn copied_manifests_are_owner_only_and_the_copy_is_bounded() {
    use super::agent::copy_manifests;
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("a.yaml"), "a").unwrap();
    std::fs::write(src.path().join("sub/b.yml"), "b").unwrap();
    std::fs::write(src.path().join("notes.txt"), "not a manifest").unwrap();
    std::os::unix::fs::symlink(".", src.path().join("self1")).unwrap();
    std::os::unix::fs::symlink(".", src.path().join("self2")).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let tree = dst.path().join("tree");
    copy_manifests(src.path(), &tree).unwrap();
    let mut got: Vec<(String, u32)> = Vec::new();
    for rel in ["", "a.yaml", "sub", "sub/b.yml"] {
        got.push((rel.to_owned(), mode(&tree.join(rel))));
    }
    assert_eq!(
        got,
        [
            ("", 0o700),
            ("a.yaml", 0o600),
            ("sub", 0o700),
            ("sub/b.yml", 0o600)
        ]
        .map(|(r, m)| (r.to_owned(), m))
    );
    assert!(!tree.join("notes.txt").exists() && !tree.join("self1").exists());
    // Over a limit: an error naming the file, not a copy that never ends.
    let big = std::fs::File::create(src.path().join("big.yaml")).unwrap();
    big.set_len(1 << 30).unwrap();
    let err = copy_manifests(src.path(), &dst.path().join("again")).unwrap_err();
    assert!(err.to_string().contains("big.yaml"), "{err}");
}

fn spec_nodes(externals: &[&str], nodes: usize) -> LabSpec {
    LabSpec {
        nodes,
        ..spec(externals)
    }
}

#[test]
fn pod_cidrs_split_into_equal_power_of_two_shares() {
    use super::nodes::node_cidr;
    let v4: IpNetwork = "10.244.0.0/16".parse().unwrap();
    let v6: IpNetwork = "fd00:10:244::/64".parse().unwrap();
    assert_eq!(node_cidr(v4, 0, 1), Some(v4));
    let shares: Vec<String> = (0..3)
        .map(|i| node_cidr(v4, i, 3).unwrap().to_string())
        .collect();
    assert_eq!(
        shares,
        ["10.244.0.0/18", "10.244.64.0/18", "10.244.128.0/18"]
    );
    assert_eq!(
        node_cidr(v6, 2, 3).unwrap().to_string(),
        "fd00:10:244:0:8000::/66"
    );
    assert_eq!(
        node_cidr("10.0.0.0/30".parse().unwrap(), 1, 2),
        None,
        "too small to share"
    );
}

#[test]
fn pods_go_to_their_named_node_or_round_robin() {
    use super::nodes::placement;
    let mut m = model();
    m.pods[1].node = Some("node-2".into());
    m.pods[2].node = Some("elsewhere".into());
    let names: Vec<String> = (0..3).map(default_node_name).collect();
    let (nodes, warnings) = placement(&m, &names);
    // x/a: first in turn; x/b: named; y/a: names no lab node, next in turn.
    assert_eq!(nodes, [0, 2, 1]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("y/a") && warnings[0].contains("elsewhere"));
}

#[test]
fn a_three_node_plan_routes_host_gw_style() {
    use super::nodes::{fabric_batch, fabric_route_batch};
    let s = plan(&model(), &spec_nodes(&["192.0.2.10"], 3)).unwrap();
    assert_eq!(s.version, super::state::STATE_VERSION);
    let netns: Vec<&str> = s.nodes.iter().map(|n| n.netns.as_str()).collect();
    assert_eq!(netns, ["bh-t1-n0", "bh-t1-n1", "bh-t1-n2"]);
    assert_eq!(s.node, "bh-t1-n0");
    assert_eq!(s.fabric.as_deref(), Some("bh-t1-fab"));
    assert_eq!(s.nodes[1].fabric_ips, [ip("198.18.0.2"), ip("fd00:fab::2")]);
    assert_eq!(
        s.nodes[1].pod_cidrs,
        ["10.244.64.0/18", "fd00:10:244:0:4000::/66"]
    );
    // Pods round-robin; the external host hangs behind the first node.
    let placed: Vec<usize> = s.hosts.iter().map(|h| h.node).collect();
    assert_eq!(placed, [0, 1, 2, 0]);
    // Each node's agent has its own pins, socket and name.
    let pins: Vec<_> = s.agents().map(|(_, _, a)| a.pin_dir.clone()).collect();
    assert_eq!(pins.len(), 3);
    assert!(pins[1].ends_with("t1/n1/bpf/bulkhead"), "{pins:?}");
    assert_eq!(
        s.nodes[2].agent.as_ref().unwrap().node_name.as_deref(),
        Some("node-2")
    );
    assert_eq!(s.agent, s.nodes[0].agent);
    // Only the node's own external hosts get veths there by hand.
    assert_eq!(node_link_batch(&s, 1).len(), 0);
    assert_eq!(node_link_batch(&s, 0).len(), 1);
    let fabric = op_lines(fabric_batch(&s));
    for want in [
        "link add br0 type bridge",
        "link add n2 type veth peer name eth0 netns bh-t1-n2",
        "link set n2 master br0",
    ] {
        assert!(fabric.contains(&want.to_owned()), "{want} in {fabric:?}");
    }
    let r1 = op_lines(fabric_route_batch(&s, 1));
    for want in [
        "addr add 198.18.0.2/24 dev eth0",
        "addr add fd00:fab::2/64 dev eth0 nodad",
        "route add 10.244.0.0/18 via 198.18.0.1 dev eth0",
        "route add 10.244.128.0/18 via 198.18.0.3 dev eth0",
        "route add fd00:10:244:0:8000::/66 via fd00:fab::3 dev eth0",
        // y/a on node 2 has 10.244.0.4: outside node 2's share.
        "route add 10.244.0.4/32 via 198.18.0.3 dev eth0",
        "route add fd00:10:244::4/128 via fd00:fab::3 dev eth0",
        // The external host, through the first node.
        "route add 192.0.2.10/32 via 198.18.0.1 dev eth0",
    ] {
        assert!(r1.contains(&want.to_owned()), "{want} in {r1:?}");
    }
    // x/a on node 0 lies in node 0's share: no host route for it.
    assert!(
        !r1.iter().any(|l| l.starts_with("route add 10.244.0.2/32")),
        "{r1:?}"
    );
    // Its own pod's address is routed to its veth, not via the fabric.
    assert!(
        !r1.iter().any(|l| l.starts_with("route add 10.244.0.3/32")),
        "{r1:?}"
    );
    assert!(fabric_route_batch(&plan(&model(), &spec(&[])).unwrap(), 0).is_empty());
    // The state file round-trips.
    let dir = std::env::temp_dir().join(format!("bh-lab-nodes-{}", std::process::id()));
    let path = dir.join("state.json");
    s.save_at(&path).unwrap();
    assert_eq!(load_from(&path).unwrap().unwrap(), s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn node_plans_refuse_the_fabric_range_and_bad_names() {
    let err = plan(&model(), &spec_nodes(&["198.18.0.9"], 2)).unwrap_err();
    assert!(err.to_string().contains("fabric range"), "{err}");
    let mut bad = spec_nodes(&[], 2);
    bad.pod_cidrs = vec![
        "198.18.0.0/16".parse().unwrap(),
        "fd00:10:244::/64".parse().unwrap(),
    ];
    let err = plan(&model(), &bad).unwrap_err();
    assert!(err.to_string().contains("overlaps"), "{err}");
    let mut names = spec_nodes(&[], 2);
    names.node_names = vec!["a".into(), "a".into()];
    assert!(
        plan(&model(), &names)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    names.node_names = vec!["a".into()];
    assert!(plan(&model(), &names).is_err());
    names.node_names = vec!["A_b".into(), "c".into()];
    assert!(
        plan(&model(), &names)
            .unwrap_err()
            .to_string()
            .contains("DNS-1123")
    );
    // One node: the same external host is fine (no fabric).
    assert!(plan(&model(), &spec(&["198.18.0.9"])).is_ok());
}

#[test]
fn version_1_state_reads_as_one_node() {
    let s = plan(&model(), &spec(&[])).unwrap();
    let mut v = serde_json::to_value(&s).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("nodes");
    obj.remove("fabric");
    obj["version"] = 1.into();
    for h in obj["hosts"].as_array_mut().unwrap() {
        h.as_object_mut().unwrap().remove("node");
    }
    let a = obj["agent"].as_object_mut().unwrap();
    a.remove("api_socket");
    a.remove("flow_log");
    a.remove("node_name");
    let dir = std::env::temp_dir().join(format!("bh-lab-v1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let read = load_from(&path).unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(read.nodes.len(), 1);
    assert_eq!(read.nodes[0].netns, "bh-t1-node");
    let a = read.nodes[0].agent.as_ref().unwrap();
    assert_eq!(a.api_socket, super::state::api_socket("t1"));
    assert_eq!(a.flow_log, super::state::flow_log("t1"));
    assert_eq!(read.hosts, s.hosts);
}

#[test]
fn node_namespaces_are_recognised_by_name() {
    assert_eq!(node_index("lab", "bh-lab-node"), Some(0));
    assert_eq!(node_index("lab", "bh-lab-n12"), Some(12));
    for not in [
        "bh-lab-p1",
        "bh-lab-fab",
        "bh-lab-n",
        "bh-lab-nx",
        "bh-la-n1",
    ] {
        assert_eq!(node_index("lab", not), None, "{not}");
    }
    assert_eq!(node_netns_of("lab", 0, 1), "bh-lab-node");
    assert_eq!(node_netns_of("lab", 0, 3), "bh-lab-n0");
}

#[test]
fn host_local_ranges_are_each_nodes_share_with_the_labs_gateway() {
    use super::cniconf::range_sets;
    let one = plan(&model(), &spec(&[])).unwrap();
    let sets = range_sets(&one, 0);
    assert_eq!(sets.len(), 2);
    assert_eq!(
        sets[0],
        (
            true,
            vec![
                serde_json::json!({"subnet": "10.244.0.0/16", "rangeStart": "10.244.0.1",
                "rangeEnd": "10.244.255.254", "gateway": "10.244.0.1"})
            ]
        )
    );
    assert_eq!(sets[1].1[0]["gateway"], "fd00:10:244::1");
    let three = plan(&model(), &spec_nodes(&[], 3)).unwrap();
    let sets = range_sets(&three, 2);
    // Node 2's share, as a range of the whole CIDR (the gateway is the
    // lab's), and y/a's 10.244.0.4 (outside the share) pinned.
    assert_eq!(
        sets[0].1,
        vec![
            serde_json::json!({"subnet": "10.244.0.0/16", "rangeStart": "10.244.128.0",
                "rangeEnd": "10.244.191.255", "gateway": "10.244.0.1"}),
            serde_json::json!({"subnet": "10.244.0.0/16", "rangeStart": "10.244.0.4",
                "rangeEnd": "10.244.0.4", "gateway": "10.244.0.1"}),
        ]
    );
    // Node 0's pod x/a (10.244.0.2) lies in its share: nothing pinned.
    assert_eq!(range_sets(&three, 0)[0].1.len(), 1);
}

#[test]
fn an_address_outside_the_pod_cidr_gets_a_range_holding_the_gateway() {
    use super::cniconf::supernet;
    assert_eq!(
        supernet(ip("10.99.0.5"), ip("10.244.0.1")),
        "10.0.0.0/8".parse::<IpNetwork>().unwrap()
    );
    // At least two host bits, as host-local needs.
    assert_eq!(
        supernet(ip("10.244.0.2"), ip("10.244.0.1")),
        "10.244.0.0/30".parse::<IpNetwork>().unwrap()
    );
    assert_eq!(
        supernet(ip("fd00:99::5"), ip("fd00:10:244::1")),
        "fd00::/24".parse::<IpNetwork>().unwrap()
    );
}

#[test]
fn the_chain_is_ptp_then_bulkhead_cni_when_there_is_an_agent() {
    use super::cniconf::conflist;
    let s = plan(&model(), &spec(&[])).unwrap();
    let types = |l: &serde_json::Value| -> Vec<String> {
        l["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = conflist(&s, 0, true);
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(types(&list), ["ptp", "bulkhead-cni"]);
    assert_eq!(list["plugins"][0]["ipam"]["type"], "host-local");
    assert_eq!(list["plugins"][0]["capabilities"]["ips"], true);
    assert_eq!(list["plugins"][0]["capabilities"]["ipRanges"], true);
    // The ranges come with each ADD (the runtime's), not in the file.
    assert!(list["plugins"][0]["ipam"]["ranges"].is_null());
    assert!(
        list["plugins"][0]["ipam"]["dataDir"]
            .as_str()
            .unwrap()
            .ends_with("t1/cni/ipam")
    );
    assert_eq!(
        list["plugins"][1]["socket"],
        serde_json::json!(s.nodes[0].agent.as_ref().unwrap().api_socket)
    );
    assert_eq!(types(&conflist(&s, 0, false)), ["ptp"]);
}

#[test]
fn a_ptp_result_names_the_veth_mac_and_addresses() {
    use super::cniconf::{Wiring, wiring};
    let result = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "veth1a2b3c4d", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "eth0", "mac": "0a:58:0a:f4:00:02", "sandbox": "/run/netns/bh-t1-p0"},
        ],
        "ips": [
            {"interface": 1, "address": "fd00:10:244::2/64", "gateway": "fd00:10:244::1"},
            {"interface": 1, "address": "10.244.0.2/16", "gateway": "10.244.0.1"},
        ],
    });
    let sandbox = std::path::Path::new("/run/netns/bh-t1-p0");
    assert_eq!(
        wiring(&result, "eth0", sandbox),
        Some(Wiring {
            veth: "veth1a2b3c4d".into(),
            mac: "0a:58:0a:f4:00:02".into(),
            ips: vec![ip("10.244.0.2"), ip("fd00:10:244::2")],
        })
    );
    assert_eq!(
        wiring(&result, "eth0", std::path::Path::new("/run/netns/x")),
        None
    );
}

#[test]
fn each_add_asks_for_the_pods_addresses_in_its_nodes_ranges_of_its_families() {
    use super::cniconf::capability_args;
    let mut s = plan(&model(), &spec(&[])).unwrap();
    let args = capability_args(&s, &s.hosts[0]);
    assert_eq!(
        args["ips"],
        serde_json::json!(["10.244.0.2", "fd00:10:244::2"])
    );
    assert_eq!(args["ipRanges"].as_array().unwrap().len(), 2);
    // Declared with IPv4 only in a dual-stack lab: no IPv6 range set, so
    // host-local gives it no IPv6 address.
    s.hosts[0].ips.retain(IpAddr::is_ipv4);
    let args = capability_args(&s, &s.hosts[0]);
    assert_eq!(args["ips"], serde_json::json!(["10.244.0.2"]));
    let sets = args["ipRanges"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0][0]["subnet"], "10.244.0.0/16");
}

#[test]
fn a_plugin_gets_its_entry_the_lists_name_the_previous_result_and_its_capabilities() {
    use super::cniconf::{capability_args, conflist, plugin_conf};
    let s = plan(&model(), &spec(&[])).unwrap();
    let list = conflist(&s, 0, true);
    let args = capability_args(&s, &s.hosts[0]);
    let ptp = plugin_conf(&list, &list["plugins"][0], None, args.clone());
    assert_eq!(
        (ptp["name"].as_str(), ptp["cniVersion"].as_str()),
        (Some("bulkhead-lab"), Some("1.0.0"))
    );
    assert!(ptp["prevResult"].is_null());
    assert_eq!(ptp["runtimeConfig"]["ips"], args["ips"]);
    assert_eq!(ptp["runtimeConfig"]["ipRanges"], args["ipRanges"]);
    // bulkhead-cni declares no capability: no runtimeConfig reaches it.
    let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
    let ours = plugin_conf(&list, &list["plugins"][1], Some(&prev), args);
    assert_eq!(ours["prevResult"], prev);
    assert!(ours["runtimeConfig"].is_null(), "{ours}");
    assert_eq!(ours["type"], "bulkhead-cni");
}

#[test]
fn probes_through_services_go_to_cluster_ips_and_node_ports() {
    use super::probe::{ServiceRoute, Via};
    let s = plan(&model(), &spec(&["192.0.2.10"])).unwrap();
    let xb = &s.hosts[1];
    let route = ServiceRoute {
        service: "x/b-web".into(),
        pod: xb.name.clone(),
        protocol: Protocol::Tcp,
        port: 80,
        cluster_ips: vec![ip("10.96.0.20")],
        node_port: Some(30080),
    };
    let mut o = opts(&[true, false], &[Protocol::Tcp], Some(vec![80]));
    o.to = vec!["x/b".into(), "192.0.2.10".into()];
    o.via = Via::Service;
    o.routes = vec![route];
    let all = plan_probes(&s, &o);
    // External hosts are no destination through Services.
    assert!(all.iter().all(|p| p.dst == 1));
    let v4: Vec<_> = all.iter().filter(|p| p.addr.is_ipv4()).collect();
    assert!(!v4.is_empty());
    assert!(
        v4.iter()
            .all(|p| p.target == Some("10.96.0.20:80".parse().unwrap())
                && p.service.as_deref() == Some("x/b-web"))
    );
    // No IPv6 ClusterIP: the IPv6 probes have no Service.
    assert!(
        all.iter()
            .filter(|p| p.addr.is_ipv6())
            .all(|p| p.target.is_none())
    );
    o.via = Via::Nodeport;
    let np = plan_probes(&s, &o);
    let gw = s.gateways.iter().find(|g| g.is_ipv4()).unwrap();
    assert!(
        np.iter()
            .filter(|p| p.addr.is_ipv4())
            .all(|p| p.target == Some(std::net::SocketAddr::new(*gw, 30080)))
    );
    // Hairpin adds x/b → x/b.
    o.via = Via::Service;
    o.hairpin = true;
    o.from = vec!["x/b".into()];
    assert!(plan_probes(&s, &o).iter().any(|p| p.src == 1 && p.dst == 1));
}

#[test]
fn a_probe_without_a_service_is_reported_not_allowed() {
    let mut r = result("x/a", "x/b", "IPv4", Protocol::Tcp, 80, Outcome::NoService);
    r.via = super::probe::Via::Service;
    assert!(!r.allowed());
    let j = r.to_json();
    assert_eq!(j["outcome"], "no-service");
    assert_eq!(j["via"], "service");
    assert!(j.get("addr").is_none());
}
