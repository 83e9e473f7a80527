//! The veth benchmark's private topology: three network namespaces made
//! for the run and removed after it, also on failure.
//!
//! ```text
//!  client netns            node netns (routing)              server netns
//!  eth0 10.78.0.2 ──veth── bhc (host side)   bhs (host side) ──veth── eth0 10.78.0.3
//! ```
//!
//! Each pod has a /32 and a default route via its eth0; the node routes
//! each pod address to its host-side veth and answers the pods' ARP by
//! proxy ARP. The node has no other device: packets can only go between
//! these namespaces. The machine's own namespace is not touched.
//!
//! Namespaces are named `bhbench-<pid>-<role>`. Dropping the [`Topology`]
//! deletes them (and with them the veths; the programs are attached through
//! links owned by this process, so they go when it exits). A run first
//! deletes namespaces left by a `bhbench` process that no longer exists
//! (one killed before its guard ran).

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Prefix of every namespace this benchmark makes.
pub const PREFIX: &str = "bhbench-";

/// Address of the client pod.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Address of the server pod.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 3);
/// Host-side veth of the client (in the node namespace).
pub const CLIENT_VETH: &str = "bhc";
/// Host-side veth of the server (in the node namespace).
pub const SERVER_VETH: &str = "bhs";

/// The namespaces of one run; removed on drop.
pub struct Topology {
    /// Node namespace (routing, programs).
    pub node: String,
    /// Client pod namespace.
    pub client: String,
    /// Server pod namespace.
    pub server: String,
    created: Vec<String>,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

fn sysctl(netns: &str, setting: &str) -> Result<()> {
    ip(&["netns", "exec", netns, "sysctl", "-q", "-w", setting]).map(drop)
}

/// Makes the calling thread live in `netns` (only this thread: sockets it
/// opens and interfaces it names belong to that namespace).
pub fn enter(netns: &str) -> Result<()> {
    let f = File::open(format!("/run/netns/{netns}"))
        .with_context(|| format!("opening namespace {netns}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering namespace {netns}"))
}

/// Deletes `bhbench-<pid>-*` namespaces whose process is gone. Returns
/// how many.
pub fn remove_stale() -> usize {
    let Ok(list) = ip(&["netns", "list"]) else {
        return 0;
    };
    let mut removed = 0;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if ip(&["netns", "del", name]).is_ok() {
            eprintln!("[veth] removed namespace {name} left by a dead run (pid {pid})");
            removed += 1;
        }
    }
    removed
}

impl Topology {
    /// Creates the namespaces, veths, addresses and routes.
    pub fn create() -> Result<Self> {
        let id = format!("{PREFIX}{}", std::process::id());
        let mut t = Topology {
            node: format!("{id}-node"),
            client: format!("{id}-client"),
            server: format!("{id}-server"),
            created: Vec::new(),
        };
        // Every namespace is recorded as soon as it exists, so a failure
        // further down still removes it (drop runs on `?`).
        for ns in [t.node.clone(), t.client.clone(), t.server.clone()] {
            ip(&["netns", "add", &ns])?;
            t.created.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        sysctl(&t.node, "net.ipv4.ip_forward=1")?;
        for (pod, veth, addr) in [
            (t.client.clone(), CLIENT_VETH, CLIENT_IP),
            (t.server.clone(), SERVER_VETH, SERVER_IP),
        ] {
            t.pod(&pod, veth, addr)?;
        }
        Ok(t)
    }

    fn pod(&self, pod: &str, veth: &str, addr: Ipv4Addr) -> Result<()> {
        let node = self.node.as_str();
        let mac = mac_string(bulkhead::compile::maps::pod_mac([addr.into()]));
        ip(&[
            "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
        ])?;
        sysctl(pod, "net.ipv6.conf.all.disable_ipv6=1")?;
        sysctl(node, &format!("net.ipv6.conf.{veth}.disable_ipv6=1"))?;
        // The pod's MAC is the one the compiled endpoint expects
        // (anti-spoofing in from_pod and XDP).
        ip(&["-n", pod, "link", "set", "eth0", "address", &mac])?;
        ip(&[
            "-n",
            pod,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", pod, "link", "set", "eth0", "up"])?;
        ip(&["-n", pod, "route", "add", "default", "dev", "eth0"])?;
        ip(&["-n", node, "link", "set", veth, "up"])?;
        sysctl(node, &format!("net.ipv4.conf.{veth}.proxy_arp=1"))?;
        sysctl(node, &format!("net.ipv4.neigh.{veth}.proxy_delay=0"))?;
        ip(&[
            "-n",
            node,
            "route",
            "add",
            &format!("{addr}/32"),
            "dev",
            veth,
        ])?;
        Ok(())
    }

    /// The ifindex of `dev` in the node namespace.
    pub fn node_ifindex(&self, dev: &str) -> Result<u32> {
        let out = ip(&["-n", &self.node, "-o", "link", "show", "dev", dev])?;
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no ifindex in {out:?}"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("[veth] could not delete namespace {ns}: {e:#}");
            }
        }
    }
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
