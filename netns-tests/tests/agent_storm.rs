//! Update storm: 100 policy changes per second for 10 s while an allowed
//! UDP flow runs; the agent, woken by inotify, switches for most of them,
//! and the flow loses nothing.

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::{Flow, Node, allow, deny_ingress, privileged, serial, tcp_ok};

#[test]
fn a_hundred_changes_a_second_drop_nothing_of_an_allowed_flow() {
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
    node.start_agent(&[]);
    let start_rev = node.status()["revision"].as_u64().unwrap();

    let flow = Flow::start(&a, b.ip, Duration::from_millis(1), Duration::from_secs(12));
    let storm = Instant::now();
    let mut changes = 0u32;
    while storm.elapsed() < Duration::from_secs(10) && changes < 1000 {
        // Every change is a different policy: c → b on a moving port, and
        // every other time a → b on an extra port too.
        let port = 1000 + (changes % 500) as u16;
        let mut churn = allow("churn", "c", "b", &[port]);
        if changes.is_multiple_of(2) {
            churn += &allow("extra", "a", "b", &[80, port + 1]);
        }
        node.write("churn.yaml", &churn);
        changes += 1;
        let next = Duration::from_millis(10) * changes;
        if let Some(wait) = next.checked_sub(storm.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    node.wait_synced(Duration::from_secs(2));
    let (sent, received) = flow.finish();
    let switches = node.status()["revision"].as_u64().unwrap() - start_rev;
    eprintln!(
        "storm: {changes} changes in {:?}, {switches} switches; flow sent {sent}, received {received}",
        storm.elapsed()
    );
    assert!(
        switches >= 300,
        "the agent switched for a good part of the storm ({switches})"
    );
    assert!(sent > 5000);
    assert_eq!(sent, received, "no datagram of the allowed flow lost");
    assert!(tcp_ok(&a, b.ip, Duration::from_secs(1)));
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(300)),
        "c → b:80 still denied"
    );
}
