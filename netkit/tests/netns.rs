//! Privileged tests of the toolkit: real namespaces, veths, addresses,
//! routes and sysctls, real sockets between them, and cleanup on drop, on
//! panic and by name. `ip` serves only as a witness (what iproute2 sees).

mod support;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use bulkhead_netkit::{NetlinkError, Netns, NetnsError, NsHandle, Route, Veth};
use support::{assert_gone, ip_netns_list, name, prefix, privileged};

/// Two pods on either side of a router namespace, IPv4 and IPv6:
///
/// ```text
/// a: eth0 10.201.1.2/24 fd00:201:1::2/64 ── ra | r | rb ── eth0 10.201.2.2/24 fd00:201:2::2/64 :b
/// ```
struct Routed {
    a: Netns,
    r: Netns,
    b: Netns,
}

fn routed(tag: &str) -> Routed {
    let t = Routed {
        a: Netns::create(&name(&format!("{tag}a"))).unwrap(),
        r: Netns::create(&name(&format!("{tag}r"))).unwrap(),
        b: Netns::create(&name(&format!("{tag}b"))).unwrap(),
    };
    let rl = t.r.netlink().unwrap();
    t.r.sysctl("net.ipv4.ip_forward", "1").unwrap();
    t.r.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    for (pod, dev, n) in [(&t.a, "ra", 1), (&t.b, "rb", 2)] {
        rl.add_veth(&Veth::new(dev, "eth0").peer_in(pod)).unwrap();
        rl.add_address(dev, format!("10.201.{n}.1/24").parse().unwrap())
            .unwrap();
        rl.add_address(dev, format!("fd00:201:{n}::1/64").parse().unwrap())
            .unwrap();
        rl.set_up(dev).unwrap();
        let pl = pod.netlink().unwrap();
        pl.set_up("lo").unwrap();
        pl.add_address("eth0", format!("10.201.{n}.2/24").parse().unwrap())
            .unwrap();
        pl.add_address("eth0", format!("fd00:201:{n}::2/64").parse().unwrap())
            .unwrap();
        pl.set_up("eth0").unwrap();
        let gw4: IpAddr = format!("10.201.{n}.1").parse().unwrap();
        let gw6: IpAddr = format!("fd00:201:{n}::1").parse().unwrap();
        pl.add_route(&Route::to("0.0.0.0/0".parse().unwrap()).via(gw4))
            .unwrap();
        pl.add_route(&Route::to("::/0".parse().unwrap()).via(gw6).dev("eth0"))
            .unwrap();
    }
    t
}

/// One TCP exchange from `client` to `server` at `addr`.
fn tcp_exchange(client: &NsHandle, server: &NsHandle, addr: SocketAddr) {
    let listener = server.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut conn = client
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(10)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect {addr} from {}: {e}", client.name()));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    echo.join().unwrap();
}

#[test]
fn routed_namespaces_talk_tcp_and_icmp_over_v4_and_v6() {
    if !privileged() {
        return;
    }
    let t = routed("rt");
    tcp_exchange(&t.a, &t.b, "10.201.2.2:7000".parse().unwrap());
    tcp_exchange(&t.a, &t.b, "[fd00:201:2::2]:7000".parse().unwrap());
    tcp_exchange(&t.b, &t.a, "10.201.1.2:7001".parse().unwrap());
    for dst in ["10.201.2.2", "fd00:201:2::2"] {
        let out =
            t.a.command("ping")
                .args(["-c", "2", "-W", "5", dst])
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "ping {dst}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The router's counters saw the traffic.
    let stats = t.r.netlink().unwrap().stats("rb").unwrap();
    assert!(stats.tx_packets > 0, "{stats:?}");
    // The root namespace was never touched: it has no such links.
    let root = Command::new("ip")
        .args(["link", "show", "ra"])
        .output()
        .unwrap();
    assert!(
        !root.status.success(),
        "ra must not exist in the root namespace"
    );
    let names: Vec<String> = [&t.a, &t.r, &t.b]
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    drop(t);
    for n in &names {
        assert_gone(n);
    }
}

#[test]
fn links_are_read_back_as_set() {
    if !privileged() {
        return;
    }
    let node = Netns::create(&name("links")).unwrap();
    let pod = Netns::create(&name("linkp")).unwrap();
    let nl = node.netlink().unwrap();
    nl.add_veth(
        &Veth::new("vp0", "eth0")
            .peer_in(&pod)
            .mac([2, 0, 0, 0, 0, 0xa])
            .peer_mac([2, 0, 0, 0, 0, 0xb])
            .mtu(1400),
    )
    .unwrap();
    let host = nl.link("vp0").unwrap();
    assert_eq!(
        (host.mac, host.mtu, host.up),
        (Some([2, 0, 0, 0, 0, 0xa]), 1400, false)
    );
    // The peer went straight into the pod: not here.
    assert!(matches!(nl.link("eth0"), Err(NetlinkError::NoLink { .. })));
    let pl = pod.netlink().unwrap();
    let peer = pl.link("eth0").unwrap();
    assert_eq!((peer.mac, peer.mtu), (Some([2, 0, 0, 0, 0, 0xb]), 1400));
    pl.set_mac("eth0", [2, 0, 0, 0, 0, 0xc]).unwrap();
    pl.set_mtu("eth0", 1280).unwrap();
    pl.set_up("eth0").unwrap();
    let peer = pl.link("eth0").unwrap();
    assert_eq!(
        (peer.mac, peer.mtu, peer.up),
        (Some([2, 0, 0, 0, 0, 0xc]), 1280, true)
    );
    // Also from inside an async task (a lab that forgot spawn_blocking).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(rt.block_on(async { pl.link("eth0") }).unwrap().up);
    pl.set_down("eth0").unwrap();
    assert!(!pl.link("eth0").unwrap().up);
    pl.add_address("eth0", "fd00:5::2/64".parse().unwrap())
        .unwrap();
    pl.add_address("eth0", "10.5.0.2/32".parse().unwrap())
        .unwrap();
    let addrs = pl.addresses("eth0").unwrap();
    assert!(
        addrs.contains(&"fd00:5::2/64".parse().unwrap()),
        "{addrs:?}"
    );
    assert!(addrs.contains(&"10.5.0.2/32".parse().unwrap()), "{addrs:?}");
    let names: Vec<String> = pl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "eth0"]);
    // A second address of the same value names everything in its error.
    let e = pl
        .add_address("eth0", "10.5.0.2/32".parse().unwrap())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("10.5.0.2/32") && text.contains("eth0") && text.contains(pod.name()),
        "{text}"
    );
    // Deleting the host side takes the peer along.
    nl.del_link("vp0").unwrap();
    assert!(matches!(pl.link("eth0"), Err(NetlinkError::NoLink { .. })));
}

#[test]
fn sysctls_are_per_namespace() {
    if !privileged() {
        return;
    }
    let ns = Netns::create(&name("sysctl")).unwrap();
    let read = |h: &NsHandle| {
        h.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
            .unwrap()
            .unwrap()
    };
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(read(&ns).trim(), "0");
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(read(&ns).trim(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        root_before
    );
    let e = ns.sysctl("net.ipv4.no_such_knob", "1").unwrap_err();
    assert!(e.to_string().contains("net.ipv4.no_such_knob"), "{e}");
}

#[test]
fn drop_kills_the_processes_inside_then_deletes() {
    if !privileged() {
        return;
    }
    let ns = Netns::create(&name("procs")).unwrap();
    let n = ns.name().to_owned();
    let mut child = ns
        .command("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(ns.pids().unwrap(), [child.id()]);
    assert_eq!(bulkhead_netkit::pids(&n).unwrap(), [child.id()]);
    // The same answer as iproute2's.
    let out = Command::new("ip")
        .args(["netns", "pids", &n])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        child.id().to_string()
    );
    drop(ns);
    // Already dead (reaped here): drop waited for its exit.
    let status = child
        .try_wait()
        .unwrap()
        .expect("killed before drop returned");
    assert!(!status.success());
    assert_gone(&n);
}

#[test]
fn a_panic_cleans_up_and_delete_reports_errors() {
    if !privileged() {
        return;
    }
    let n = name("panic");
    let n2 = n.clone();
    let r = std::panic::catch_unwind(move || {
        let ns = Netns::create(&n2).unwrap();
        ns.netlink().unwrap().set_up("lo").unwrap();
        panic!("test failure inside");
    });
    assert!(r.is_err());
    assert_gone(&n);

    let ns = Netns::create(&name("del")).unwrap();
    let n = ns.name().to_owned();
    ns.delete().unwrap();
    assert_gone(&n);
    assert!(matches!(
        bulkhead_netkit::delete(&n),
        Err(NetnsError::NotFound { .. })
    ));
}

#[test]
fn kept_namespaces_outlive_the_guard_and_interoperate_with_ip() {
    if !privileged() {
        return;
    }
    // Kept (the lab's `up`), then deleted by name (its `down`).
    let n = name("kept");
    let handle = Netns::create(&n).unwrap().keep();
    assert!(bulkhead_netkit::exists(&n));
    assert!(ip_netns_list().contains(&n));
    // iproute2 works inside it.
    let out = Command::new("ip")
        .args(["-n", &n, "link", "show", "lo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    drop(handle);
    assert!(bulkhead_netkit::list().unwrap().contains(&n));
    bulkhead_netkit::destroy(&n).unwrap();
    assert_gone(&n);

    // Made by `ip netns add`, used and destroyed by the toolkit.
    let n = name("byip");
    assert!(
        Command::new("ip")
            .args(["netns", "add", &n])
            .status()
            .unwrap()
            .success()
    );
    let h = NsHandle::open(&n).unwrap();
    h.netlink().unwrap().set_up("lo").unwrap();
    drop(h);
    bulkhead_netkit::destroy(&n).unwrap();
    assert_gone(&n);

    // Made by the toolkit, deleted by `ip netns del`.
    let n = name("toip");
    let h = Netns::create(&n).unwrap().keep();
    drop(h);
    assert!(
        Command::new("ip")
            .args(["netns", "del", &n])
            .status()
            .unwrap()
            .success()
    );
    assert_gone(&n);
}

#[test]
fn a_taken_name_is_refused_and_recreate_replaces() {
    if !privileged() {
        return;
    }
    let ns = Netns::create(&name("taken")).unwrap();
    let e = Netns::create(ns.name()).unwrap_err();
    assert!(matches!(e, NetnsError::Exists { .. }), "{e}");
    let n = ns.name().to_owned();
    let old = ns.keep();
    old.netlink().unwrap().set_up("lo").unwrap();
    let new = Netns::recreate(&n).unwrap();
    // A fresh namespace: its loopback is down again.
    assert!(!new.netlink().unwrap().link("lo").unwrap().up);
    drop(old);
    drop(new);
    assert_gone(&n);
    assert!(
        !bulkhead_netkit::list()
            .unwrap()
            .iter()
            .any(|n| n.starts_with(&prefix()) && n.ends_with("taken"))
    );
}

#[test]
fn a_bridge_joins_namespaces_as_ip_sees_it() {
    if !privileged() {
        return;
    }
    let fab = Netns::create(&name("fab")).unwrap();
    let n1 = Netns::create(&name("n1")).unwrap();
    let n2 = Netns::create(&name("n2")).unwrap();
    let fl = fab.netlink().unwrap();
    fl.add_bridge("br0").unwrap();
    for (i, node) in [(1, &n1), (2, &n2)] {
        let port = format!("p{i}");
        fl.add_veth(&Veth::new(&port, "eth0").peer_in(node))
            .unwrap();
        fl.set_master(&port, "br0").unwrap();
        fl.set_up(&port).unwrap();
        let nl = node.netlink().unwrap();
        nl.add_address("eth0", format!("10.202.0.{i}/24").parse().unwrap())
            .unwrap();
        nl.set_up("eth0").unwrap();
    }
    // iproute2 sees the bridge up and the ports enslaved to it.
    let out = Command::new("ip")
        .args(["-n", fab.name(), "-j", "link", "show", "dev", "p1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"master\":\"br0\""), "{text}");
    assert!(fl.link("br0").unwrap().up);
    // A setting of a missing master names the link and the namespace.
    assert!(matches!(
        fl.set_master("p2", "br9"),
        Err(NetlinkError::NoLink { .. })
    ));
    tcp_exchange(&n1, &n2, "10.202.0.2:7".parse().unwrap());
}
