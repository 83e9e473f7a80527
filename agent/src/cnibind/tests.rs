use rtnetlink::packet_route::link::InfoKind;

use super::*;
use bulkhead_dataplane::node::Link;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

/// Pod `web` with no address yet (pending, on node `n1`), pod `db` with one.
fn model() -> Model {
    let yaml = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n\
                spec: {nodeName: n1}\n\
                ---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop}\n\
                spec: {nodeName: n1}\nstatus: {podIP: 10.244.0.9}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), yaml).unwrap();
    let mut m = load_dir(dir.path(), &AddressPlan::default()).unwrap();
    // As the Kubernetes source lists a pending pod: no address yet.
    let web = index_of(&m, "web");
    m.pods[web].ips.clear();
    m
}

fn stored(id: &str, pod: &str, generation: u64, veth: &str) -> Stored {
    Stored {
        registration: bulkhead_cni::wire::Registration {
            container_id: id.into(),
            pod_namespace: "shop".into(),
            pod_name: pod.into(),
            ips: vec!["10.244.0.5".parse().unwrap()],
            mac: Some("0a:58:0a:f4:00:05".into()),
            host_interfaces: vec![veth.into()],
            netns: String::new(),
            ifname: "eth0".into(),
        },
        generation,
    }
}

fn node() -> Snapshot {
    let mut s = Snapshot::default();
    for (i, name, kind) in [
        (1, "lo", None),
        (7, "veth7", Some(InfoKind::Veth)),
        (8, "br0", Some(InfoKind::Bridge)),
    ] {
        s.links.insert(
            i,
            Link {
                ifindex: i,
                name: name.into(),
                kind,
            },
        );
    }
    s
}

fn index_of(m: &Model, name: &str) -> usize {
    m.pods.iter().position(|p| p.name == name).unwrap()
}

#[test]
fn a_pod_without_addresses_gets_the_registered_ones() {
    let m = Arc::new(model());
    let web = index_of(&m, "web");
    assert!(m.pods[web].ips.is_empty());
    let regs = [
        stored("c1", "web", 1, "veth7"),
        stored("c2", "db", 2, "veth8"),
        stored("c3", "gone", 3, "x"),
    ];
    let overlay = address_overlay(&m, &regs);
    assert_eq!(
        overlay,
        [(web, vec!["10.244.0.5".parse().unwrap()])],
        "db has its own; gone is unknown"
    );
    let o = overlaid(&m, &overlay);
    assert_eq!(o.pods[web].ips, overlay[0].1);
    assert!(
        Arc::ptr_eq(&overlaid(&m, &[]), &m),
        "no copy without an overlay"
    );
}

#[test]
fn a_registered_pod_binds_to_its_veth_with_its_mac_and_is_published_enforced() {
    let m = overlaid(
        &Arc::new(model()),
        &address_overlay(&model(), &[stored("c1", "web", 1, "veth7")]),
    );
    let web = index_of(&m, "web");
    let regs = [stored("c1", "web", 1, "veth7")];
    let (eps, macs) = bind(Vec::new(), &m, &node(), &regs, Some("n1"));
    assert_eq!(
        eps,
        [LocalEndpoint {
            pod: web,
            ifindex: 7,
            ifname: "veth7".into()
        }]
    );
    assert_eq!(macs[&web], [0x0a, 0x58, 0x0a, 0xf4, 0, 5]);
    let p = publication(Some(&m), &eps, Ok(()), &regs, Some("n1"));
    assert_eq!(
        p["c1"],
        (
            1,
            Binding::Enforced {
                ifname: "veth7".into(),
                ifindex: 7
            }
        )
    );
    let p = publication(Some(&m), &eps, Err("boom"), &regs, Some("n1"));
    assert_eq!(
        p["c1"].1,
        Binding::Waiting("the last sync failed: boom".into())
    );
    // Scheduled elsewhere: not bound here.
    let (eps, _) = bind(Vec::new(), &m, &node(), &regs, Some("n2"));
    assert!(eps.is_empty());
    let p = publication(Some(&m), &eps, Ok(()), &regs, Some("n2"));
    assert!(
        matches!(&p["c1"].1, Binding::Waiting(w) if w.contains("node n1")),
        "{p:?}"
    );
}

#[test]
fn waiting_reasons_and_superseded_registrations() {
    let m = model();
    let regs = [
        stored("old", "db", 1, "veth7"),
        stored("new", "db", 2, "veth7"),
        stored("c9", "unknown", 3, "veth7"),
        stored("c8", "web", 4, "br0"),
    ];
    let (eps, _) = bind(Vec::new(), &m, &node(), &regs, None);
    let p = publication(Some(&m), &eps, Ok(()), &regs, None);
    assert!(
        matches!(&p["old"].1, Binding::Waiting(w) if w.contains("added again as container new"))
    );
    assert!(matches!(p["new"].1, Binding::Enforced { ifindex: 7, .. }));
    assert!(
        matches!(&p["c9"].1, Binding::Waiting(w) if w.contains("does not list pod shop/unknown"))
    );
    // web has no address in this model and br0 is no veth.
    assert!(matches!(&p["c8"].1, Binding::Waiting(w) if w.contains("no veth named br0")));
    let p = publication(None, &eps, Ok(()), &regs, None);
    assert!(matches!(&p["new"].1, Binding::Waiting(w) if w.contains("no complete policy view")));
}
