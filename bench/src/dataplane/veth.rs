//! veth packet rate with the programs attached, relative to the same veths
//! with none: client → veth → node (routing) → veth → server, in the
//! namespaces of [`super::netns`], with the bounded flood of
//! [`super::flood`].
//!
//! Configurations, attached to both host-side veths as the agent attaches
//! them (tcx links owned by this process):
//! - `bare`: nothing attached;
//! - `tc-stack`: `from_pod` on tcx ingress and `to_pod` on tcx egress,
//!   host routing off: every packet crosses the node's stack;
//! - `tc`: the same with host routing on (the agent's default): `from_pod`
//!   judges both pods and delivers into the server (`bpf_redirect_peer`);
//! - `tc+xdp`: `tc` plus `xdp_prefilter` (native veth XDP).
//!
//! Every run also counts the packets the node's stack forwarded (the
//! server veth's TX counter in the node), which shows the path taken.
//!
//! The maps hold a compiled policy (client egress and server ingress
//! isolated, both allowing UDP [`PORT`] between them), so the flood's flow
//! is checked on its first packet and then established in CT. Runs are
//! interleaved (the order rotates each repetition) so that drift in the
//! machine's load hits every configuration alike; medians are reported.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use aya::maps::{HashMap, MapData};
use aya::programs::links::LinkOrder;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpMode};
use bulkhead_common::{
    CONFIG_F_HOST_ROUTING, DropReason, ENDPOINTS_MAP, EndpointInfo, EndpointKey, active_slot,
};
use bulkhead_netns_tests::dataplane::Dataplane;
use bulkhead_netns_tests::tx_packets;
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::{
    Model, NamespaceScope, Peer, Pod, Policy, PortMatch, PortSpec, Protocol, Rule,
};
use serde::Serialize;

use super::flood::{self, FloodResult, FloodSpec};
use super::netns::{self, CLIENT_IP, CLIENT_VETH, SERVER_IP, SERVER_VETH, Topology};
use super::stats::Summary;
use crate::synthetic::{self, app_selector, origin};

/// The allowed UDP port of the server.
pub const PORT: u16 = 9000;
/// A port the policy does not allow (enforcement check).
pub const DENIED_PORT: u16 = 9001;
/// Policy revision the maps are written under.
const REVISION: u64 = 1;
/// Datagrams of the enforcement check.
const CHECK_PACKETS: u64 = 100;

/// What is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Config {
    /// Nothing.
    #[serde(rename = "bare")]
    Bare,
    /// TC programs (tcx), host routing off.
    #[serde(rename = "tc-stack")]
    TcStack,
    /// TC programs (tcx), host routing on (the agent's default).
    #[serde(rename = "tc")]
    Tc,
    /// TC programs and the XDP prefilter, host routing on.
    #[serde(rename = "tc+xdp")]
    TcXdp,
}

impl Config {
    /// All, in report order.
    pub const ALL: [Config; 4] = [Config::Bare, Config::TcStack, Config::Tc, Config::TcXdp];
    /// The enforcing ones.
    pub const ENFORCING: [Config; 3] = [Config::TcStack, Config::Tc, Config::TcXdp];

    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare veth",
            Config::TcStack => "tc, node's stack (host routing off)",
            Config::Tc => "tc, host routing (agent default)",
            Config::TcXdp => "tc + xdp_prefilter, host routing",
        }
    }

    /// CONFIG flags the programs run with.
    pub fn config_flags(self) -> u64 {
        match self {
            Config::Bare | Config::TcStack => 0,
            Config::Tc | Config::TcXdp => CONFIG_F_HOST_ROUTING,
        }
    }
}

/// How much to measure.
#[derive(Clone, Debug, Serialize)]
pub struct VethPlan {
    /// Repetitions of each configuration.
    pub reps: usize,
    /// Untimed flood before each timed one, same configuration.
    pub warmup: Duration,
    /// One flood.
    pub flood: FloodSpec,
    /// FLOW_CONFIG flags the programs run with (see
    /// [`super::prog_cost::CostPlan::flow_flags`]).
    pub flow_flags: u32,
}

/// One timed flood.
#[derive(Clone, Debug, Serialize)]
pub struct VethRun {
    /// Configuration.
    pub config: Config,
    /// Repetition.
    pub rep: usize,
    /// What the flood did.
    pub result: FloodResult,
    /// Packets the node's stack forwarded to the server during the timed
    /// flood (its host veth's TX counter): about all with `bare` and
    /// `tc-stack`, none with host routing.
    pub stack_forwarded: u64,
}

/// Per-configuration medians.
#[derive(Clone, Debug, Serialize)]
pub struct VethSummary {
    /// Configuration.
    pub config: Config,
    /// Received packets/s.
    pub rx_pps: Summary,
    /// Sent packets/s.
    pub tx_pps: Summary,
    /// Machine CPU ns per received packet.
    pub cpu_ns_per_packet: Summary,
    /// This process's CPU ns per received packet.
    pub process_cpu_ns_per_packet: Summary,
    /// Received rate over bare's in the same round (each round floods every
    /// configuration once, back to back), one per round: pairing cancels the
    /// machine's drift between rounds, which is larger than the programs'
    /// cost on this VM.
    pub round_ratios_to_bare: Summary,
    /// Median of `round_ratios_to_bare`.
    pub ratio_to_bare: f64,
    /// Server receive-buffer drops, all runs.
    pub rcvbuf_errors: u64,
    /// Packets the node's stack forwarded to the server over packets the
    /// server received, all runs (the path the flood took).
    pub stack_forwarded_share: f64,
}

/// The whole veth benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct VethResult {
    /// The plan.
    pub plan: VethPlan,
    /// Every run, in order.
    pub runs: Vec<VethRun>,
    /// Per configuration.
    pub summaries: Vec<VethSummary>,
    /// Denied datagrams sent in each enforcing configuration and counted as
    /// `policy_denied` (proof the programs were in the path).
    pub enforcement_check: Vec<(Config, u64, u64)>,
}

fn pod(name: &str, addr: IpAddr, document: usize) -> Pod {
    synthetic::pod("vbench", name, name, vec![addr], "veth-bench", document)
}

/// Client may send UDP [`PORT`] to server; server accepts it from client.
fn model() -> Model {
    let rule = |peer: &str| Rule {
        peers: Some(vec![Peer::Pods {
            namespaces: NamespaceScope::Same("vbench".into()),
            pods: app_selector(peer),
        }]),
        ports: Some(vec![PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(PORT, PORT),
        }]),
    };
    let policy = |name: &str, ingress, egress| Policy {
        namespace: "vbench".into(),
        name: name.into(),
        pod_selector: app_selector(name),
        ingress,
        egress,
        origin: origin("veth-bench", 0),
        mode: None,
    };
    synthetic::model(
        vec![
            pod("client", CLIENT_IP.into(), 0),
            pod("server", SERVER_IP.into(), 1),
        ],
        vec![
            policy("client", None, Some(vec![rule("server")])),
            policy("server", Some(vec![rule("client")]), None),
        ],
    )
}

/// Writes the compiled policy and both endpoints (keyed by their veths).
fn program_maps(dp: &mut Dataplane, ifindex: &[(&str, u32)]) -> Result<()> {
    let slot = active_slot(REVISION);
    let model = model();
    let image = compile(&model).map_image_for(slot, &[0, 1]);
    dp.write_image(&image);
    let mut endpoints: HashMap<&mut MapData, EndpointKey, EndpointInfo> =
        HashMap::try_from(dp.ebpf().map_mut(ENDPOINTS_MAP).context(ENDPOINTS_MAP)?)?;
    for (pod, info) in &image.endpoints {
        let name = &model.pods[*pod].name;
        let veth = if name == "client" {
            CLIENT_VETH
        } else {
            SERVER_VETH
        };
        let (_, idx) = ifindex
            .iter()
            .find(|(v, _)| *v == veth)
            .context("veth ifindex")?;
        endpoints.insert(EndpointKey::new(*idx, slot), *info, 0)?;
    }
    dp.set_revision(REVISION);
    Ok(())
}

/// Attached links, detached on [`Attached::detach`] (and by the kernel when
/// the process exits).
struct Attached {
    tc: Vec<(&'static str, aya::programs::tc::SchedClassifierLinkId)>,
    xdp: Vec<aya::programs::xdp::XdpLinkId>,
}

/// Attaches `config`'s programs to both host veths. Must run on a thread
/// inside the node namespace (interface names resolve there).
fn attach(dp: &mut Dataplane, config: Config, ifindex: &[(&str, u32)]) -> Result<Attached> {
    let mut a = Attached {
        tc: Vec::new(),
        xdp: Vec::new(),
    };
    dp.set_flags(config.config_flags());
    if config == Config::Bare {
        return Ok(a);
    }
    for (veth, idx) in ifindex {
        for (name, ty) in [
            ("from_pod", TcAttachType::Ingress),
            ("to_pod", TcAttachType::Egress),
        ] {
            let p: &mut SchedClassifier =
                dp.ebpf().program_mut(name).context("program")?.try_into()?;
            let id = p
                .attach_with_options(veth, ty, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .with_context(|| format!("attaching {name} to {veth} (tcx)"))?;
            a.tc.push((name, id));
        }
        if config == Config::TcXdp {
            let p: &mut Xdp = dp
                .ebpf()
                .program_mut("xdp_prefilter")
                .context("program")?
                .try_into()?;
            let id = p
                .attach_to_if_index(*idx, XdpMode::default())
                .with_context(|| format!("attaching xdp_prefilter to {veth}"))?;
            a.xdp.push(id);
        }
    }
    Ok(a)
}

impl Attached {
    fn detach(self, dp: &mut Dataplane) -> Result<()> {
        for (name, id) in self.tc {
            let p: &mut SchedClassifier =
                dp.ebpf().program_mut(name).context("program")?.try_into()?;
            p.detach(id)?;
        }
        for id in self.xdp {
            let p: &mut Xdp = dp
                .ebpf()
                .program_mut("xdp_prefilter")
                .context("program")?
                .try_into()?;
            p.detach(id)?;
        }
        Ok(())
    }
}

/// Sends [`CHECK_PACKETS`] datagrams to the denied port; returns how many
/// the programs counted as denied.
fn enforcement_check(dp: &mut Dataplane, topo: &Topology) -> Result<u64> {
    let before = dp.drops(DropReason::PolicyDenied);
    let client = topo.client.clone();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            netns::enter(&client)?;
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..CHECK_PACKETS {
                let _ = sock.send_to(b"denied", (SERVER_IP, DENIED_PORT));
            }
            Ok(())
        })
        .join()
        .expect("check thread")
    })?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(dp.drops(DropReason::PolicyDenied) - before)
}

fn summarize(runs: &[VethRun]) -> Vec<VethSummary> {
    let of = |c: Config, f: &dyn Fn(&FloodResult) -> f64| {
        Summary::new(
            runs.iter()
                .filter(|r| r.config == c)
                .map(|r| f(&r.result))
                .collect(),
        )
    };
    Config::ALL
        .into_iter()
        .map(|c| {
            let rx = of(c, &FloodResult::rx_pps);
            let ratios = round_ratios(runs, c);
            VethSummary {
                config: c,
                ratio_to_bare: ratios.median,
                round_ratios_to_bare: ratios,
                rx_pps: rx,
                tx_pps: of(c, &FloodResult::tx_pps),
                cpu_ns_per_packet: of(c, &FloodResult::cpu_ns_per_packet),
                process_cpu_ns_per_packet: of(c, &FloodResult::process_cpu_ns_per_packet),
                rcvbuf_errors: runs
                    .iter()
                    .filter(|r| r.config == c)
                    .map(|r| r.result.rcvbuf_errors)
                    .sum(),
                stack_forwarded_share: {
                    let (fwd, rx) = runs
                        .iter()
                        .filter(|r| r.config == c)
                        .fold((0, 0), |(f, x), r| {
                            (f + r.stack_forwarded, x + r.result.received)
                        });
                    fwd as f64 / rx.max(1) as f64
                },
            }
        })
        .collect()
}

/// `config`'s received rate over bare's, per round that has both.
fn round_ratios(runs: &[VethRun], config: Config) -> Summary {
    let rate = |rep: usize, c: Config| {
        runs.iter()
            .find(|r| r.rep == rep && r.config == c)
            .map(|r| r.result.rx_pps())
    };
    let reps = runs.iter().map(|r| r.rep + 1).max().unwrap_or(0);
    Summary::new(
        (0..reps)
            .filter_map(|rep| match (rate(rep, config), rate(rep, Config::Bare)) {
                (Some(x), Some(bare)) if bare > 0.0 => Some(x / bare),
                _ => None,
            })
            .collect(),
    )
}

/// Runs the veth benchmark: builds the topology, loads `elf`, and floods
/// each configuration `plan.reps` times, interleaved. Removes everything it
/// made before returning, also on error.
pub fn measure(elf: &Path, plan: &VethPlan) -> Result<VethResult> {
    netns::remove_stale();
    let topo = Topology::create().context("creating the benchmark namespaces")?;
    let ifindex = [
        (CLIENT_VETH, topo.node_ifindex(CLIENT_VETH)?),
        (SERVER_VETH, topo.node_ifindex(SERVER_VETH)?),
    ];
    let mut dp = Dataplane::load_file(elf).map_err(anyhow::Error::msg)?;
    program_maps(&mut dp, &ifindex)?;
    // The flood is one flow: established-path updates of one flow entry,
    // nothing for the ring after its first packet; no collector needed.
    let _tap = super::prog_cost::flow_tap(&mut dp, plan.flow_flags)?;
    let server = flood::server_addr(PORT);
    let node = topo.node.clone();
    // Attaching names interfaces of the node namespace: do it all from a
    // thread that lives there.
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<VethResult> {
            netns::enter(&node)?;
            let warmup = FloodSpec {
                duration: Duration::from_millis(300),
                ..plan.flood.clone()
            };
            flood::flood(&topo.client, &topo.server, server, &warmup)?;
            let mut checks = Vec::new();
            for config in Config::ENFORCING {
                let a = attach(&mut dp, config, &ifindex)?;
                let counted = enforcement_check(&mut dp, &topo);
                a.detach(&mut dp)?;
                let counted = counted?;
                ensure!(
                    counted == CHECK_PACKETS,
                    "{}: {counted} of {CHECK_PACKETS} datagrams to a denied port were dropped by policy",
                    config.name()
                );
                checks.push((config, CHECK_PACKETS, counted));
            }
            let mut runs = Vec::new();
            for rep in 0..plan.reps {
                for k in 0..Config::ALL.len() {
                    let config = Config::ALL[(rep + k) % Config::ALL.len()];
                    let a = attach(&mut dp, config, &ifindex)?;
                    let warm = FloodSpec {
                        duration: plan.warmup,
                        ..plan.flood.clone()
                    };
                    let forwarded =
                        || tx_packets(&topo.node, SERVER_VETH).map_err(anyhow::Error::msg);
                    let mut stack_forwarded = 0;
                    let r = flood::flood(&topo.client, &topo.server, server, &warm).and_then(|_| {
                        let before = forwarded()?;
                        let r = flood::flood(&topo.client, &topo.server, server, &plan.flood)?;
                        stack_forwarded = forwarded()?.saturating_sub(before);
                        Ok(r)
                    });
                    let flow_tracked = config == Config::Bare || {
                        // The flood's flow is in CT: the programs saw it.
                        dp.ct_len() > 0
                    };
                    a.detach(&mut dp)?;
                    let r = r?;
                    ensure!(flow_tracked, "{}: CT is empty after the flood", config.name());
                    eprintln!(
                        "[veth] rep {}/{} {:<36} rx {:>6.3} Mpps  tx {:>6.3} Mpps  cpu {:>5.0} ns/pkt (process {:>5.0})  rcvbuf drops {}  stack-forwarded {}",
                        rep + 1,
                        plan.reps,
                        config.name(),
                        r.rx_pps() / 1e6,
                        r.tx_pps() / 1e6,
                        r.cpu_ns_per_packet(),
                        r.process_cpu_ns_per_packet(),
                        r.rcvbuf_errors,
                        stack_forwarded
                    );
                    dp.ct_clear();
                    runs.push(VethRun {
                        config,
                        rep,
                        result: r,
                        stack_forwarded,
                    });
                }
            }
            Ok(VethResult {
                plan: plan.clone(),
                summaries: summarize(&runs),
                runs,
                enforcement_check: checks,
            })
        })
        .join()
        .expect("veth benchmark thread")
    });
    // `dp` (links, maps) goes before the namespaces.
    drop(dp);
    drop(topo);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_the_benchmark_flow() {
        let model = model();
        let compiled = compile(&model);
        let image = compiled.map_image_for(active_slot(REVISION), &[0, 1]);
        assert_eq!(image.endpoints.len(), 2);
        // One entry per isolated side: client egress, server ingress.
        assert_eq!(image.policy.len(), 2);
    }
}
