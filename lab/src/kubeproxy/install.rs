//! Installs the rules of [`super::iptables`] or [`super::nftables`] in a
//! lab node's network namespace, replacing what was there in one atomic
//! step per family: `iptables-restore` (without `--noflush`: the node's
//! tables are kube-proxy's alone) or `nft -f` (one transaction). The
//! programs run inside the node namespace (entered between fork and exec,
//! see [`crate::net::exec_in`]), so nothing is ever written outside it.
//!
//! A real node routes Service addresses somewhere (its default route),
//! so a packet to a ClusterIP that kube-proxy leaves untranslated (a
//! Service without endpoints) reaches the FORWARD hook, where the REJECT
//! rules are. The lab's node has no default route, so every Service
//! address (ClusterIPs, external and load-balancer addresses) gets a host
//! route to a link of the node that leads nowhere ([`SERVICE_LINK`], one
//! end of a veth pair whose other end is also the node's, without
//! addresses: what is sent there finds no neighbour and is dropped; this
//! kernel has no dummy links); routes of Services that went away stay
//! (harmless: nothing translates to them).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;

use bulkhead_netkit::{NetlinkError, Route, Veth};
use bulkhead_policy::model::Model;

use super::{NodeView, ProxyMode, iptables, nftables};
use crate::LabError;
use crate::net;

/// The link Service addresses route to in a node namespace.
pub const SERVICE_LINK: &str = "kube-svc0";

/// The other end of [`SERVICE_LINK`], also in the node namespace.
pub const SERVICE_LINK_PEER: &str = "kube-svc1";

/// The program and arguments that load `mode`'s rules of a family.
pub fn loader(mode: ProxyMode, v4: bool) -> Option<(&'static str, &'static [&'static str])> {
    match (mode, v4) {
        (ProxyMode::Iptables, true) => Some(("iptables-restore", &[])),
        (ProxyMode::Iptables, false) => Some(("ip6tables-restore", &[])),
        (ProxyMode::Nftables, _) => Some(("nft", &["-f", "-"])),
        (ProxyMode::None, _) => None,
    }
}

/// The rules of `mode` for `model` on `node`, family `v4` (`None` for
/// mode `none`).
pub fn rules(mode: ProxyMode, model: &Model, node: &NodeView, v4: bool) -> Option<String> {
    match mode {
        ProxyMode::Iptables => Some(iptables::restore_input(model, node, v4)),
        ProxyMode::Nftables => Some(nftables::script(model, node, v4)),
        ProxyMode::None => None,
    }
}

/// Replaces the rules of both families in node namespace `netns` with
/// those of `mode` for `model` on `node`, after routing every Service
/// address to [`SERVICE_LINK`].
pub fn apply(netns: &str, mode: ProxyMode, model: &Model, node: &NodeView) -> Result<(), LabError> {
    if mode == ProxyMode::None {
        return Ok(());
    }
    route_services(netns, model)?;
    for v4 in [true, false] {
        let (Some(text), Some((program, args))) = (rules(mode, model, node, v4), loader(mode, v4))
        else {
            continue;
        };
        run_in(netns, program, args, &text)?;
    }
    Ok(())
}

/// Runs `program args` in `netns` with `input` on stdin.
fn run_in(netns: &str, program: &str, args: &[&str], input: &str) -> Result<(), LabError> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut cmd = net::exec_in(netns, Path::new(program), &args)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as the program's failure below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        command: format!("{program} {} (in {netns})", args.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Every address the Services of `model` are reached on (NodePorts
/// excepted: those are the node's own).
fn service_addresses(model: &Model) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = model
        .services
        .iter()
        .filter(|s| !s.headless)
        .flat_map(|s| {
            s.cluster_ips
                .iter()
                .chain(&s.external_ips)
                .chain(&s.load_balancer_ips)
        })
        .copied()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Makes [`SERVICE_LINK`] in `netns` (once) and a host route to it for
/// every Service address that has none yet.
fn route_services(netns: &str, model: &Model) -> Result<(), LabError> {
    let addrs = service_addresses(model);
    if addrs.is_empty() {
        return Ok(());
    }
    let nl = net::netlink(netns)?;
    if nl.index(SERVICE_LINK).is_err() {
        nl.add_veth(&Veth::new(SERVICE_LINK, SERVICE_LINK_PEER))?;
        nl.set_up(SERVICE_LINK_PEER)?;
        nl.set_up(SERVICE_LINK)?;
    }
    for a in addrs {
        match nl.add_route(&Route::to(net::host_net(a)).dev(SERVICE_LINK)) {
            Ok(()) => {}
            Err(NetlinkError::Route { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
