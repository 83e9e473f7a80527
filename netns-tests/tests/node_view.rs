//! The agent's node view over rtnetlink (`bulkhead_dataplane::node`), in a node
//! namespace of this test's own with a pod namespace behind a veth pair:
//!
//! - `read()` sees the veth and, once the pod's address is routed through
//!   it, the pod as a local endpoint; it sees none of the root namespace's
//!   links;
//! - `NodeWatch::changed()` resolves after a link is added, an address is
//!   added, a route is added and a route is deleted, and the re-read that
//!   follows (the consumer's rule) shows each change; a storm that
//!   overflows the watch's receive buffer is a change too, not an error.
//!
//! The node namespace has IPv6 off and its veth settled (carrier up)
//! before the watch opens, so no address autoconfiguration or deferred
//! carrier event stands in for the changes the test makes.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bulkhead_dataplane::node::{LocalEndpoint, NodeWatch, Snapshot, read};
use bulkhead_netkit::{Netns, Veth};
use bulkhead_netns_tests::privileged;
use tokio::runtime::Runtime;

/// How long any one expected change may take to show (a loaded machine).
const PATIENCE: Duration = Duration::from_secs(30);

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);

/// The test's namespaces (node, pod), deleted on drop, also when the test
/// fails; deleting the node namespace removes its links.
struct Namespaces {
    node: Netns,
    pod: Netns,
}

impl Namespaces {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "bhnv-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // `recreate`: a leftover of an earlier process with the same pid goes.
        let make = |role: &str| Netns::recreate(&format!("{id}-{role}")).expect("a namespace");
        Self {
            node: make("node"),
            pod: make("pod"),
        }
    }
}

/// The changes the watch must see are made by `ip`: another process, as
/// on a real node (the namespaces themselves come from `bulkhead_netkit`).
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn names(snap: &Snapshot) -> BTreeSet<&str> {
    snap.links.values().map(|l| l.name.as_str()).collect()
}

/// The node namespace with `lo` up, IPv6 off, and a veth `vp0` whose peer
/// is the pod's `eth0` (address [`POD_IP`]); returns once `vp0`'s carrier
/// is up, so its deferred link event has been sent already.
fn build(ns: &Namespaces) {
    let (n, p) = (&ns.node, &ns.pod);
    for s in [
        "net.ipv6.conf.all.disable_ipv6",
        "net.ipv6.conf.default.disable_ipv6",
    ] {
        n.sysctl(s, "1").unwrap();
    }
    let nl = n.netlink().unwrap();
    nl.set_up("lo").unwrap();
    nl.add_veth(&Veth::new("vp0", "eth0").peer_in(p)).unwrap();
    let pl = p.netlink().unwrap();
    pl.add_address("eth0", format!("{POD_IP}/32").parse().unwrap())
        .unwrap();
    pl.set_up("eth0").unwrap();
    nl.set_up("vp0").unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let link = nl.link("vp0").unwrap();
        if link.oper_up {
            return;
        }
        assert!(Instant::now() < deadline, "vp0 never came up: {link:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `watch.changed()` after `what`, then re-reads.
fn changed_then_read(rt: &Runtime, watch: &mut NodeWatch, what: &str) -> Snapshot {
    rt.block_on(async { tokio::time::timeout(PATIENCE, watch.changed()).await })
        .unwrap_or_else(|_| panic!("no change reported within {PATIENCE:?} after {what}"))
        .unwrap_or_else(|e| panic!("watching after {what}: {e}"));
    rt.block_on(read())
        .unwrap_or_else(|e| panic!("reading after {what}: {e}"))
}

/// Runs inside the node namespace: the watch first, then the reads (the
/// module's ordering rule), each change made with `ip -n`. `root`: the
/// root namespace's link names.
fn watch_and_read(n: &str, root: &BTreeSet<String>) {
    let rt = runtime();
    let pod = [(0, vec![IpAddr::V4(POD_IP)])];
    let mut watch = rt
        .block_on(async { NodeWatch::open() })
        .expect("open the watch");
    let first = rt.block_on(read()).expect("read the node namespace");
    // Only this namespace's links, though the root namespace has others.
    assert_eq!(names(&first), BTreeSet::from(["lo", "vp0"]), "{first:?}");
    assert!(root.iter().any(|r| r != "lo" && r != "vp0"), "{root:?}");
    let vp0 = first.links.values().find(|l| l.name == "vp0").unwrap();
    assert!(vp0.is_veth(), "{vp0:?}");
    let vp0 = vp0.ifindex;
    assert_eq!(
        first.local_endpoints(&pod),
        vec![],
        "no route to the pod yet"
    );

    // A second veth pair, both ends here and down (the kernel may lack
    // the dummy driver).
    ip(&[
        "-n", n, "link", "add", "vx0", "type", "veth", "peer", "name", "vx1",
    ]);
    let snap = changed_then_read(&rt, &mut watch, "adding a link");
    assert_eq!(names(&snap), BTreeSet::from(["lo", "vp0", "vx0", "vx1"]));

    ip(&[
        "-n",
        n,
        "addr",
        "add",
        &format!("{NODE_IP}/32"),
        "dev",
        "vx0",
    ]);
    let snap = changed_then_read(&rt, &mut watch, "adding an address");
    assert_eq!(snap.node_addresses(), vec![IpAddr::V4(NODE_IP)]);

    ip(&[
        "-n",
        n,
        "route",
        "add",
        &format!("{POD_IP}/32"),
        "dev",
        "vp0",
    ]);
    let snap = changed_then_read(&rt, &mut watch, "adding a route");
    assert_eq!(
        snap.local_endpoints(&pod),
        vec![LocalEndpoint {
            pod: 0,
            ifindex: vp0,
            ifname: "vp0".into(),
        }],
        "the pod is local through its veth: {snap:?}"
    );

    ip(&[
        "-n",
        n,
        "route",
        "del",
        &format!("{POD_IP}/32"),
        "dev",
        "vp0",
    ]);
    let snap = changed_then_read(&rt, &mut watch, "deleting a route");
    assert_eq!(snap.local_endpoints(&pod), vec![], "{snap:?}");

    // A storm while nobody reads: thousands of notifications overflow the
    // socket's receive buffer (ENOBUFS). That is a change to resync, not
    // an error, and the watch goes on working.
    let storm: String = (0..STORM)
        .map(|i| format!("route add 10.79.{}.{}/32 dev vp0\n", i / 256, i % 256))
        .collect();
    ip_batch(n, &storm);
    let snap = changed_then_read(&rt, &mut watch, "a storm of route changes");
    assert_eq!(snap.routes.len(), first.routes.len() + STORM, "{snap:?}");
    ip(&[
        "-n",
        n,
        "route",
        "add",
        &format!("{POD_IP}/32"),
        "dev",
        "vp0",
    ]);
    let snap = changed_then_read(&rt, &mut watch, "adding a route after the storm");
    assert_eq!(snap.local_endpoints(&pod).len(), 1, "{snap:?}");
}

/// Routes of the storm: far more notifications than a default receive
/// buffer holds.
const STORM: usize = 4000;

/// Runs `commands` with `ip -batch` in namespace `n`.
fn ip_batch(n: &str, commands: &str) {
    let mut child = Command::new("ip")
        .args(["-n", n, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .expect("write to ip -batch");
    assert!(
        child.wait().expect("wait for ip").success(),
        "ip -batch failed"
    );
}

#[test]
fn node_view_reads_the_namespace_and_wakes_on_every_kind_of_change() {
    if !privileged() {
        return;
    }
    let ns = Namespaces::new();
    build(&ns);
    let root = runtime().block_on(read()).expect("read the root namespace");
    let root: BTreeSet<String> = names(&root).into_iter().map(str::to_owned).collect();
    let node = ns.node.name().to_owned();
    ns.node
        .run(|| watch_and_read(&node, &root))
        .expect("run in the node namespace");
}
