//! `bulkhead agent` on a tiny node: default deny blocks, an allow written
//! to the manifest directory opens within 1 s, deleting it closes even an
//! established connection, `status` shows it, `--cleanup` leaves nothing.

mod agent_support;

use std::time::Duration;

use agent_support::{Conn, Node, allow, deny_ingress, privileged, serial, tcp_ok, until_tcp};

#[test]
fn policy_changes_take_effect_within_a_second_and_cleanup_leaves_nothing() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let mut node = Node::new(&["a", "b", "c"]);
    let (a, b, c) = (
        node.pod("a").clone(),
        node.pod("b").clone(),
        node.pod("c").clone(),
    );
    assert!(
        tcp_ok(&a, b.ip, Duration::from_secs(1)),
        "open before the agent"
    );

    node.write("deny.yaml", &deny_ingress("b"));
    node.start_agent(&[]);
    assert!(
        !tcp_ok(&a, b.ip, Duration::from_millis(300)),
        "default deny blocks a → b"
    );
    assert!(
        tcp_ok(&b, a.ip, Duration::from_secs(1)),
        "a is not isolated"
    );

    node.write("allow.yaml", &allow("a-to-b", "a", "b", &[80]));
    let took = until_tcp(&a, b.ip, true, Duration::from_secs(1)).expect("allowed within 1 s");
    eprintln!("allow took effect after {took:?}");
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(300)),
        "c is still denied"
    );

    let status = node.status();
    eprintln!("{status}");
    assert!(status["revision"].as_u64().unwrap() >= 2);
    assert_eq!(status["endpoints"].as_array().unwrap().len(), 3);
    let eb = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["addresses"][0] == b.ip.to_string())
        .expect("b in status");
    assert_eq!(eb["isolated_ingress"], true);
    assert_eq!(eb["hooks"], serde_json::json!(["from_pod", "to_pod"]));
    assert!(
        status["drops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d[0] == "policy_denied" && d[1].as_u64().unwrap() > 0)
    );

    let conn = Conn::open(&a, b.ip);
    assert!(conn.ping(), "established connection works");
    node.remove("allow.yaml");
    let start = std::time::Instant::now();
    node.wait_synced(Duration::from_secs(1));
    eprintln!("delete synced after {:?}", start.elapsed());
    assert!(
        !conn.ping(),
        "the established connection stops on its next packet"
    );
    assert!(
        !tcp_ok(&a, b.ip, Duration::from_millis(300)),
        "new connections denied"
    );

    // Invalid content: logged, policy in force stays.
    node.write("broken.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 99999}]}]}\n");
    std::thread::sleep(Duration::from_millis(600));
    let state = node.state().unwrap();
    assert!(
        state
            .error
            .as_deref()
            .is_some_and(|e| e.contains("invalid manifests")),
        "{state:?}"
    );
    assert!(
        !tcp_ok(&a, b.ip, Duration::from_millis(300)),
        "still denied"
    );
    assert!(tcp_ok(&b, a.ip, Duration::from_secs(1)), "still open");
    node.remove("broken.yaml");
    node.wait_synced(Duration::from_secs(2));

    node.stop_agent(nix::sys::signal::Signal::SIGTERM);
    assert!(
        !tcp_ok(&a, b.ip, Duration::from_millis(300)),
        "enforced after SIGTERM"
    );
    let out = node.cleanup();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!node.pins.exists(), "pin directory removed");
    // (The kernel's bpf_preload puts maps.debug/progs.debug in every bpffs.)
    until_tcp(&a, b.ip, true, Duration::from_secs(2)).expect("open again after cleanup");
    for p in &node.pods {
        let tc = node.in_node(&["tc", "filter", "show", "dev", &p.veth, "ingress"]);
        assert!(tc.trim().is_empty(), "tc filters left on {}: {tc}", p.veth);
        let link = node.in_node(&["ip", "-d", "link", "show", &p.veth]);
        assert!(!link.contains("xdp"), "xdp left on {}: {link}", p.veth);
    }
    assert!(node.state().is_none(), "state file removed");
    let again = node.cleanup();
    assert!(again.status.success(), "cleanup is idempotent");
}
