//! The netlink (clsact) fallback for kernels without tcx, forced with
//! `--tc-attach netlink`: enforces, survives SIGKILL, a restart adds no
//! duplicate filter, `--cleanup` removes the filters.

mod agent_support;

use std::time::Duration;

use agent_support::{Node, allow, deny_ingress, privileged, serial, tcp_ok, until_tcp};
use nix::sys::signal::Signal;

fn filters(node: &Node, dev: &str, dir: &str) -> usize {
    node.in_node(&["tc", "filter", "show", "dev", dev, dir])
        .lines()
        .filter(|l| l.contains("bpf") && l.contains("handle"))
        .count()
}

#[test]
fn netlink_filters_enforce_persist_and_are_cleaned_up() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let mut node = Node::new(&["a", "b"]);
    let (a, b) = (node.pod("a").clone(), node.pod("b").clone());
    node.write("deny.yaml", &deny_ingress("b"));
    node.start_agent(&["--tc-attach", "netlink"]);
    assert!(!tcp_ok(&a, b.ip, Duration::from_millis(300)), "denied");
    node.write("allow.yaml", &allow("a-to-b", "a", "b", &[80]));
    until_tcp(&a, b.ip, true, Duration::from_secs(1)).expect("allowed within 1 s");
    assert_eq!(filters(&node, &b.veth, "ingress"), 1);
    assert_eq!(filters(&node, &b.veth, "egress"), 1);

    node.stop_agent(Signal::SIGKILL);
    node.remove("allow.yaml");
    assert!(
        tcp_ok(&a, b.ip, Duration::from_secs(1)),
        "enforced as last programmed"
    );
    node.start_agent(&["--tc-attach", "netlink"]);
    assert!(
        !tcp_ok(&a, b.ip, Duration::from_millis(300)),
        "the restarted agent applied the change"
    );
    assert_eq!(filters(&node, &b.veth, "ingress"), 1, "no duplicate filter");
    assert_eq!(filters(&node, &b.veth, "egress"), 1, "no duplicate filter");

    node.stop_agent(Signal::SIGTERM);
    let out = node.cleanup();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in &node.pods {
        assert_eq!(
            filters(&node, &p.veth, "ingress"),
            0,
            "filters left on {}",
            p.veth
        );
        assert_eq!(
            filters(&node, &p.veth, "egress"),
            0,
            "filters left on {}",
            p.veth
        );
    }
    until_tcp(&a, b.ip, true, Duration::from_secs(2)).expect("open after cleanup");
}
