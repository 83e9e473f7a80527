//! Installing each contender in a topology's node namespace, updating its
//! allow-list, and removing it.
//!
//! - iptables, ipset and nftables run as the Debian tools
//!   (`iptables-legacy-restore`, `ipset`, `nft`) under `ip netns exec`,
//!   each with its own atomic full reload: `iptables-restore` replaces the
//!   table, ipset fills a new set and swaps it in, nft deletes and
//!   recreates its table in one transaction.
//! - Bulkhead runs as the agent runs it: the real `Dataplane` (programs and
//!   maps pinned on a private bpffs mounted for the cell), hooks by
//!   `reconcile_hooks`, policy by `sync` (compile, write the idle slot,
//!   switch), flow accounting on with a drain every 250 ms.
//! - The hook floor attaches the `noop` program to the same two tcx hooks.
//!
//! Everything lives in the topology's namespaces, which die with it; the
//! pins and their private bpffs are removed by [`Installed::remove`] (and
//! those of dead runs by [`remove_stale_pins`]). The host's `/sys/fs/bpf`
//! is never touched.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use bulkhead_common::{FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW};
use bulkhead_dataplane::node::LocalEndpoint;
use bulkhead_dataplane::sync::Desired;
use bulkhead_dataplane::{Dataplane, PinDir, TcMode};
use bulkhead_flows::source::FlowSource as _;
use bulkhead_netkit::NsHandle;
use bulkhead_policy::compile::compile;

use super::allowlist::{self, Entry, IPSET};
use super::model::Contender;
use crate::dataplane::netns::{CLIENT_VETH, SERVER_VETH, Topology};

/// Where the Bulkhead contender mounts its private bpffs: `<PIN_ROOT>/
/// <PIN_PREFIX><pid>` (one per process, mounted per cell).
pub const PIN_ROOT: &str = "/run";
/// Prefix of those mount points: `bulkhead-compare-<pid>`.
pub const PIN_PREFIX: &str = "bulkhead-compare-";

/// Flow accounting as the agent runs it.
const FLOW_FLAGS: u32 = FLOW_CONFIG_ACCOUNTING | FLOW_CONFIG_EVENTS_NEW | FLOW_CONFIG_EVENTS_DROP;

/// Runs `program args...` in `netns` with `stdin` as its input.
fn in_netns(netns: &str, program: &str, args: &[String], stdin: Option<&str>) -> Result<()> {
    let mut cmd = NsHandle::open(netns)?.command(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!("cannot start {program} (is it installed? `cargo xtask setup`)")
    })?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The version line a tool prints, or why not.
pub fn tool_version(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(e) => format!("not available: {e}"),
    }
}

/// A contender installed in one topology.
pub struct Installed {
    /// Which.
    pub contender: Contender,
    node: String,
    inner: Inner,
}

enum Inner {
    Nothing,
    Floor(Floor),
    Tables,
    Bulkhead(Box<BulkheadRun>),
}

/// The `noop` program on both tcx hooks of both host veths.
struct Floor {
    ebpf: aya::Ebpf,
    links: Vec<SchedClassifierLinkId>,
}

/// Bulkhead as the agent runs it.
struct BulkheadRun {
    dp: Dataplane,
    pin_dir: PathBuf,
    /// (model pod index, host-veth ifindex) of client and server.
    local: Vec<(usize, u32)>,
    stop: Arc<AtomicBool>,
    drainer: Option<JoinHandle<()>>,
}

/// The host veths' ifindexes in the node namespace.
fn veths(topo: &Topology) -> Result<[(String, u32); 2]> {
    Ok([
        (CLIENT_VETH.to_owned(), topo.node_ifindex(CLIENT_VETH)?),
        (SERVER_VETH.to_owned(), topo.node_ifindex(SERVER_VETH)?),
    ])
}

/// Runs `f` on a thread that lives in `netns` (interface indexes and
/// attachments resolve there).
fn on_thread_in<T: Send>(netns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    NsHandle::open(netns)?.run(f)?
}

/// Installs `contender` with `entries` in `topo`. `elf`: the dataplane
/// ELF (Bulkhead and the hook floor).
pub fn install(
    contender: Contender,
    topo: &Topology,
    elf: &Path,
    entries: &[Entry],
) -> Result<Installed> {
    let node = topo.node.clone();
    let inner = match contender {
        Contender::Bare => Inner::Nothing,
        Contender::HookFloor => Inner::Floor(floor(topo, elf)?),
        Contender::IptablesLinear => {
            iptables_restore(&node, &allowlist::iptables_linear(entries))?;
            Inner::Tables
        }
        Contender::IptablesIpset => {
            in_netns(
                &node,
                "ipset",
                &["restore".into()],
                Some(&allowlist::ipset_restore(IPSET, entries)),
            )?;
            iptables_restore(&node, &allowlist::iptables_ipset(IPSET))?;
            Inner::Tables
        }
        Contender::Nftables => {
            nft(&node, &allowlist::nft_script(entries))?;
            Inner::Tables
        }
        Contender::BulkheadTc | Contender::BulkheadTcXdp | Contender::BulkheadTcStack => {
            Inner::Bulkhead(Box::new(bulkhead(
                topo,
                elf,
                entries,
                contender == Contender::BulkheadTcXdp,
                contender != Contender::BulkheadTcStack,
            )?))
        }
    };
    Ok(Installed {
        contender,
        node,
        inner,
    })
}

fn iptables_restore(node: &str, text: &str) -> Result<()> {
    in_netns(node, "iptables-legacy-restore", &[], Some(text))
}

fn nft(node: &str, script: &str) -> Result<()> {
    in_netns(node, "nft", &["-f".into(), "-".into()], Some(script))
}

fn floor(topo: &Topology, elf: &Path) -> Result<Floor> {
    let mut ebpf =
        aya::Ebpf::load_file(elf).with_context(|| format!("loading {}", elf.display()))?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut("noop")
        .context("the ELF has no noop program (rebuild: cargo xtask build-ebpf)")?
        .try_into()?;
    prog.load().context("loading noop")?;
    let veths = veths(topo)?;
    let links = on_thread_in(&topo.node, || {
        let mut links = Vec::new();
        for (veth, _) in &veths {
            for ty in [TcAttachType::Ingress, TcAttachType::Egress] {
                let id = prog
                    .attach_with_options(veth, ty, TcAttachOptions::TcxOrder(LinkOrder::default()))
                    .with_context(|| format!("attaching noop to {veth}"))?;
                links.push(id);
            }
        }
        Ok(links)
    })?;
    Ok(Floor { ebpf, links })
}

fn bulkhead(
    topo: &Topology,
    elf: &Path,
    entries: &[Entry],
    xdp: bool,
    host_routing: bool,
) -> Result<BulkheadRun> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let pin_dir = Path::new(PIN_ROOT).join(format!("{PIN_PREFIX}{}", std::process::id()));
    mount_bpffs(&pin_dir)?;
    bulkhead_on(topo, &bytes, entries, xdp, host_routing, pin_dir.clone()).inspect_err(|_| {
        // Whatever was pinned goes with the private mount.
        let _ = remove_pins(&pin_dir);
    })
}

/// [`bulkhead`] on the private bpffs mounted at `pin_dir`.
fn bulkhead_on(
    topo: &Topology,
    bytes: &[u8],
    entries: &[Entry],
    xdp: bool,
    host_routing: bool,
    pin_dir: PathBuf,
) -> Result<BulkheadRun> {
    let pins = PinDir::prepare(&pin_dir.join("bulkhead"))?;
    let (mut dp, _) = Dataplane::open(pins, Some(bytes), Duration::from_millis(10), TcMode::Auto)?;
    dp.set_host_routing(host_routing)?;
    let model = allowlist::model(entries);
    let pod = |name: &str| {
        model
            .pod(&format!("{}/{name}", allowlist::NAMESPACE))
            .map(|(i, _)| i)
            .context("pod of the allow-list model")
    };
    let veths = veths(topo)?;
    let endpoints = vec![
        LocalEndpoint {
            pod: pod("client")?,
            ifindex: veths[0].1,
            ifname: veths[0].0.clone(),
        },
        LocalEndpoint {
            pod: pod("server")?,
            ifindex: veths[1].1,
            ifname: veths[1].0.clone(),
        },
    ];
    let local: Vec<(usize, u32)> = endpoints.iter().map(|e| (e.pod, e.ifindex)).collect();
    let mut run = BulkheadRun {
        dp,
        pin_dir,
        local,
        stop: Arc::new(AtomicBool::new(false)),
        drainer: None,
    };
    run.sync(entries)?;
    let dp = &mut run.dp;
    on_thread_in(&topo.node, || {
        Ok(dp.reconcile_hooks(&endpoints, &[], xdp)?)
    })?;
    let mut tap = run.dp.flow_tap()?;
    tap.set_config(FLOW_FLAGS)?;
    let stop = run.stop.clone();
    // The agent drains every 250 ms; so does this.
    run.drainer = Some(std::thread::spawn(move || {
        let (mut records, mut events) = (Vec::new(), Vec::new());
        while !stop.load(Ordering::Acquire) {
            records.clear();
            events.clear();
            let _ = tap.drain(&mut records);
            let _ = tap.events(Duration::ZERO, &mut events);
            std::thread::sleep(Duration::from_millis(250));
        }
    }));
    Ok(run)
}

impl BulkheadRun {
    /// Compiles `entries` and makes them the policy in force (what the
    /// agent does on a manifest change, minus reading the files).
    fn sync(&mut self, entries: &[Entry]) -> Result<()> {
        let model = allowlist::model(entries);
        let compiled = compile(&model);
        self.dp.sync(&Desired {
            compiled: &compiled,
            local: &self.local,
            macs: &Default::default(),
        })?;
        Ok(())
    }
}

impl Installed {
    /// Adds one entry to the allow-list in force (`all`: the list with it,
    /// for Bulkhead, which recompiles).
    pub fn add_entry(&mut self, entry: &Entry, all: &[Entry]) -> Result<()> {
        let node = self.node.clone();
        match (&mut self.inner, self.contender) {
            (Inner::Tables, Contender::IptablesLinear) => in_netns(
                &node,
                "iptables-legacy",
                &allowlist::iptables_insert(entry),
                None,
            ),
            (Inner::Tables, Contender::IptablesIpset) => {
                in_netns(&node, "ipset", &allowlist::ipset_add(IPSET, entry), None)
            }
            (Inner::Tables, Contender::Nftables) => {
                let args: Vec<String> = vec![allowlist::nft_add(entry)];
                in_netns(&node, "nft", &args, None)
            }
            (Inner::Bulkhead(run), _) => run.sync(all),
            _ => bail!("{} enforces nothing", self.contender.key()),
        }
    }

    /// Replaces the whole allow-list, atomically, the contender's own way.
    pub fn reload(&mut self, entries: &[Entry]) -> Result<()> {
        let node = self.node.clone();
        match (&mut self.inner, self.contender) {
            (Inner::Tables, Contender::IptablesLinear) => {
                iptables_restore(&node, &allowlist::iptables_linear(entries))
            }
            (Inner::Tables, Contender::IptablesIpset) => {
                let next = format!("{IPSET}-next");
                in_netns(
                    &node,
                    "ipset",
                    &["restore".into()],
                    Some(&allowlist::ipset_restore(&next, entries)),
                )?;
                in_netns(
                    &node,
                    "ipset",
                    &["swap".into(), next.clone(), IPSET.into()],
                    None,
                )?;
                in_netns(&node, "ipset", &["destroy".into(), next], None)
            }
            (Inner::Tables, Contender::Nftables) => nft(&node, &allowlist::nft_script(entries)),
            (Inner::Bulkhead(run), _) => run.sync(entries),
            _ => bail!("{} enforces nothing", self.contender.key()),
        }
    }

    /// Removes what the namespaces' deletion does not: programs' links and
    /// the Bulkhead pins.
    pub fn remove(self) -> Result<()> {
        match self.inner {
            Inner::Nothing | Inner::Tables => Ok(()),
            Inner::Floor(mut f) => {
                let prog: &mut SchedClassifier =
                    f.ebpf.program_mut("noop").context("noop")?.try_into()?;
                for id in f.links {
                    // The device may be gone already: nothing to detach.
                    let _ = prog.detach(id);
                }
                Ok(())
            }
            Inner::Bulkhead(mut run) => {
                run.stop.store(true, Ordering::Release);
                if let Some(d) = run.drainer.take() {
                    let _ = d.join();
                }
                let pin_dir = run.pin_dir.clone();
                drop(run);
                remove_pins(&pin_dir)
            }
        }
    }
}

/// Mounts a private bpffs at `dir` (created).
fn mount_bpffs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    nix::mount::mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .with_context(|| format!("mounting bpffs at {}", dir.display()))
}

/// Detaches the pinned links under `dir` (a private bpffs), unmounts it
/// (which takes every pin along) and removes the mount point. Also for a
/// directory whose mount never happened.
fn remove_pins(dir: &Path) -> Result<()> {
    let cleaned = bulkhead_dataplane::cleanup(&dir.join("bulkhead"), &[])
        .with_context(|| format!("removing the pins in {}", dir.display()));
    match nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (the mount failed).
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", dir.display())),
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    cleaned.map(drop)
}

/// Removes pin directories of runs whose process is gone.
pub fn remove_stale_pins() {
    let Ok(dir) = std::fs::read_dir(PIN_ROOT) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PIN_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && remove_pins(&e.path()).is_ok()
        {
            eprintln!(
                "[compare] removed pins {} left by a dead run",
                e.path().display()
            );
        }
    }
}
