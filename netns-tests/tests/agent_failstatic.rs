//! Fail-static: the agent killed with SIGKILL leaves the policy enforced; a
//! restarted agent adopts the pins without a switch (same revision) and a
//! paced flow across kill and restart loses nothing. XDP on, so its link is
//! pinned and adopted too.

mod agent_support;

use std::time::Duration;

use agent_support::{Flow, Node, allow, deny_ingress, privileged, serial, tcp_ok};
use nix::sys::signal::Signal;

#[test]
fn sigkill_keeps_enforcing_and_a_restart_changes_nothing_on_the_wire() {
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
    node.write("deny.yaml", &deny_ingress("b"));
    node.write("allow.yaml", &allow("a-to-b", "a", "b", &[80]));
    node.start_agent(&["--xdp", "on"]);
    assert!(tcp_ok(&a, b.ip, Duration::from_secs(1)), "a → b allowed");
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(300)),
        "c → b denied"
    );
    let revision = node.status()["revision"].as_u64().unwrap();
    let hooks = node.status()["endpoints"][0]["hooks"].clone();
    assert_eq!(hooks, serde_json::json!(["from_pod", "to_pod", "xdp"]));

    let flow = Flow::start(&a, b.ip, Duration::from_millis(2), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    node.stop_agent(Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(300)),
        "still denied with the agent dead"
    );
    assert!(
        tcp_ok(&a, b.ip, Duration::from_secs(1)),
        "still allowed with the agent dead"
    );
    let dead = node.status();
    assert_eq!(dead["revision"].as_u64().unwrap(), revision);
    assert_eq!(dead["agent_pid"], serde_json::Value::Null);

    node.start_agent(&["--xdp", "on"]);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, received) = flow.finish();
    eprintln!("flow across kill and restart: sent {sent}, received {received}");
    assert!(sent > 300, "the flow ran");
    assert_eq!(sent, received, "no datagram lost across kill and restart");
    let after = node.status();
    assert_eq!(
        after["revision"].as_u64().unwrap(),
        revision,
        "restart did not switch"
    );
    let log = node.agent_log();
    assert!(log.contains("adopted the pinned dataplane"), "{log}");
    assert_eq!(
        log.matches("attached dev=").count(),
        9,
        "restart attached nothing:\n{log}"
    );
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(300)),
        "denied after restart"
    );
}
