//! Every change the lab makes to the system by hand goes through here, and
//! all of it through the netkit toolkit ([`bulkhead_netkit`]): named
//! network namespaces as iproute2 makes them (kept after `lab up`, until
//! `lab down`), links, addresses and routes inside them over netlink,
//! sysctls, and commands run inside them. No `ip` process is forked.
//! Nothing here addresses the root namespace's links, routes or sysctls.
//!
//! The pods' own wiring is not here: the CNI plugins make it
//! ([`super::cni`]). What is left by hand is what a node has before any
//! pod: the namespaces, the fabric, the external hosts' links, and the
//! routes between nodes.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bulkhead_netkit::{Netlink, Netns, NsHandle, Route, Veth};
use ipnetwork::IpNetwork;

use super::LabError;

/// Creates named network namespaces and keeps them (they outlive this
/// process until [`netns_del`]). On failure the ones made here are removed.
pub fn netns_add(names: &[String]) -> Result<(), LabError> {
    let mut made = Vec::new();
    for name in names {
        // Guards until all exist: a failure part way removes the others.
        made.push(Netns::create(name)?);
    }
    for ns in made {
        ns.keep();
    }
    Ok(())
}

/// Names of every named network namespace.
pub fn netns_list() -> Result<Vec<String>, LabError> {
    Ok(bulkhead_netkit::list()?)
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    bulkhead_netkit::exists(name)
}

/// Deletes a named namespace; absent is fine. Processes inside keep it
/// alive until they exit (`down` kills them first).
pub fn netns_del(name: &str) -> Result<(), LabError> {
    match bulkhead_netkit::delete(name) {
        Ok(()) | Err(bulkhead_netkit::NetnsError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// PIDs of the processes inside a named namespace (none if it is gone).
pub fn netns_pids(name: &str) -> Result<Vec<u32>, LabError> {
    match bulkhead_netkit::pids(name) {
        Ok(p) => Ok(p),
        Err(bulkhead_netkit::NetnsError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Opens existing namespace `name`.
pub fn open(name: &str) -> Result<NsHandle, LabError> {
    Ok(NsHandle::open(name)?)
}

/// A netlink socket inside namespace `name`.
pub fn netlink(name: &str) -> Result<Netlink, LabError> {
    Ok(open(name)?.netlink()?)
}

/// Sets sysctls inside `netns` (`key=value`, dotted keys).
pub fn sysctl(netns: &str, settings: &[&str]) -> Result<(), LabError> {
    let ns = open(netns)?;
    for s in settings {
        let (key, value) = s.split_once('=').unwrap_or((s, ""));
        ns.sysctl(key, value)?;
    }
    Ok(())
}

/// `ip` as a host prefix: /32 or /128.
pub fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a full-length prefix")
}

/// A default route of `gw`'s family via `gw` on `dev`.
pub fn default_via(gw: IpAddr, dev: &str) -> Route {
    let any: IpNetwork = if gw.is_ipv4() {
        "0.0.0.0/0".parse().expect("a CIDR")
    } else {
        "::/0".parse().expect("a CIDR")
    };
    Route::to(any).via(gw).dev(dev)
}

/// Creates a veth `name` in `nl`'s namespace whose peer `peer` (with MAC
/// `peer_mac`) goes straight into `peer_ns`, and sets `name` up.
fn add_veth_to(
    nl: &Netlink,
    name: &str,
    peer: &str,
    peer_mac: Option<[u8; 6]>,
    peer_ns: &NsHandle,
) -> Result<(), LabError> {
    let mut veth = Veth::new(name, peer).peer_in(peer_ns);
    if let Some(mac) = peer_mac {
        veth = veth.peer_mac(mac);
    }
    nl.add_veth(&veth)?;
    nl.set_up(name)?;
    Ok(())
}

/// A command that runs `program args` inside `netns` (the child enters the
/// namespace between fork and exec, so its PID is the program's).
pub fn exec_in(netns: &str, program: &Path, args: &[String]) -> Result<Command, LabError> {
    let mut cmd = open(netns)?.command(program);
    cmd.args(args);
    Ok(cmd)
}

/// Starts `cmd` (from [`exec_in`]), with its stdout piped.
pub fn spawn(mut cmd: Command, stdin: Stdio, stderr: Stdio) -> Result<Child, LabError> {
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(stderr);
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn()
        .map_err(|source| LabError::Spawn { program, source })
}

/// One step of wiring a namespace by hand, applied through netlink
/// ([`apply`]); it prints as the `ip` command that would do the same, for
/// logs and tests.
#[derive(Clone, Debug)]
pub enum Op {
    /// `link set DEV up`.
    Up(String),
    /// `link add NAME type veth peer name PEER [address MAC] netns NS`,
    /// then `link set NAME up`.
    Veth {
        /// This end (in the namespace the op applies to).
        name: String,
        /// The other end.
        peer: String,
        /// The other end's MAC (`aa:bb:...`).
        peer_mac: Option<String>,
        /// The namespace the other end goes to.
        peer_netns: String,
    },
    /// `link add NAME type bridge` (up).
    Bridge(String),
    /// `link set LINK master MASTER`.
    Master {
        /// The port.
        link: String,
        /// The bridge.
        master: String,
    },
    /// `addr add NET dev DEV` (IPv6 `nodad`).
    Addr {
        /// The device.
        dev: String,
        /// Address and prefix.
        net: IpNetwork,
    },
    /// `route add ROUTE`.
    Route(Route),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Up(dev) => write!(f, "link set {dev} up"),
            Op::Veth {
                name,
                peer,
                peer_mac,
                peer_netns,
            } => {
                write!(f, "link add {name} type veth peer name {peer}")?;
                if let Some(mac) = peer_mac {
                    write!(f, " address {mac}")?;
                }
                write!(f, " netns {peer_netns}")
            }
            Op::Bridge(name) => write!(f, "link add {name} type bridge"),
            Op::Master { link, master } => write!(f, "link set {link} master {master}"),
            Op::Addr { dev, net } => {
                write!(f, "addr add {net} dev {dev}")?;
                if net.is_ipv6() {
                    write!(f, " nodad")?;
                }
                Ok(())
            }
            Op::Route(r) => write!(f, "route add {r}"),
        }
    }
}

/// Applies `ops` in order inside namespace `netns`.
pub fn apply(netns: &str, ops: &[Op]) -> Result<(), LabError> {
    if ops.is_empty() {
        return Ok(());
    }
    let nl = netlink(netns)?;
    for op in ops {
        tracing::debug!(netns, %op, "wiring");
        match op {
            Op::Up(dev) => nl.set_up(dev)?,
            Op::Veth {
                name,
                peer,
                peer_mac,
                peer_netns,
            } => {
                let mac = peer_mac.as_deref().map(parse_mac).transpose()?;
                add_veth_to(&nl, name, peer, mac, &open(peer_netns)?)?;
            }
            Op::Bridge(name) => nl.add_bridge(name)?,
            Op::Master { link, master } => nl.set_master(link, master)?,
            Op::Addr { dev, net } => nl.add_address(dev, *net)?,
            Op::Route(r) => nl.add_route(r)?,
        }
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6], LabError> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| LabError::Mac {
            mac: text.to_owned(),
        })?;
    bytes.try_into().map_err(|_| LabError::Mac {
        mac: text.to_owned(),
    })
}
