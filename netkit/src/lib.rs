//! Network-namespace toolkit shared by the lab, the privileged tests and the
//! benchmarks: named network namespaces as iproute2 makes them, veth pairs,
//! MACs, MTUs, addresses, routes and sysctls set through netlink, commands
//! and closures run inside a namespace, and the processes inside one found
//! and stopped for cleanup. No `ip` process is forked.
//!
//! ```no_run
//! use bulkhead_netkit::{Netns, Route, Veth};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Netns::create("demo-node")?; // deleted on drop
//! let pod = Netns::create("demo-pod")?;
//! let nl = node.netlink()?;
//! nl.add_veth(&Veth::new("vp0", "eth0").peer_in(&pod))?;
//! nl.set_up("vp0")?;
//! let pl = pod.netlink()?;
//! pl.add_address("eth0", "10.1.0.2/24".parse()?)?;
//! pl.set_up("eth0")?;
//! pl.add_route(&Route::to("0.0.0.0/0".parse()?).dev("eth0"))?;
//! pod.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
//! let out = pod.command("ping").args(["-c1", "10.1.0.1"]).output()?;
//! # drop(out); Ok(()) }
//! ```
//!
//! # What is hand-written, and why
//! - **Named namespaces** ([`ns`]): rtnetlink's `NetworkNamespace::add`
//!   forks the calling process and runs allocating code in the child, which
//!   is not safe in a multi-threaded program (a test harness, a tokio
//!   runtime); no other maintained crate makes iproute2-compatible named
//!   namespaces. The toolkit does what `ip netns add` does from a
//!   short-lived thread instead of a process (see [`ns`]).
//! - **Running inside a namespace** ([`exec`]): a `pre_exec` `setns` and a
//!   scoped thread; the listing of a namespace's processes reads `/proc`
//!   as `ip netns pids` does. No crate offers these for named namespaces.
//! - **Sysctls**: a write to `/proc/sys` from a thread in the namespace
//!   (procfs shows the opener's network namespace), no `sysctl` process.
//!
//! Links, addresses and routes use rtnetlink's message builders ([`link`]);
//! only the veth peer's namespace attribute is added by hand.
//!
//! All of it needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (root).

pub mod exec;
pub mod link;
pub mod ns;

pub use exec::pids;
pub use link::{LinkInfo, LinkStats, Netlink, NetlinkError, Route, Veth};
pub use ns::{NETNS_DIR, Netns, NetnsError, NsHandle, delete, destroy, exists, list};
