//! Per-packet program cost by `BPF_PROG_TEST_RUN`, through aya's
//! `test_run` (aya 0.14 passes `repeat` to the kernel and returns the
//! kernel's `duration`: the mean time of one program run over the repeats,
//! in whole nanoseconds, measured in the kernel around the run loop).
//!
//! Each rule case has its own loaded ELF (own maps), so the cases are
//! measured side by side, interleaved round by round. The measuring
//! thread is pinned to one CPU: per-CPU state (the CT LRU's local free
//! lists, the scratch map, the caches) then stays the same from run to
//! run. Unpinned, the thread migrated between rounds and the new-flow
//! rounds of one case split into two modes (360–590 ns), more than the
//! differences between cases. The endpoint under
//! test is the subject pod of [`super::rules`], bound to ifindex 1 (test
//! runs happen on loopback).
//!
//! Paths (the packet is UDP between the subject and its peer pod, the
//! destination port allowed or not by the subject's big tables):
//! - **established**: CT holds the flow (created by one run first), so the
//!   run is a CT hit with the side already checked under this revision:
//!   `repeat` runs, the kernel's mean.
//! - **denied**: a port the table does not allow; never creates CT, so
//!   `repeat` runs measure it directly (two CT misses, the identity
//!   lookup, the peer's policy tree and the any-peer miss, the drop
//!   counter).
//! - **new, allowed**, TC programs: an allowed new flow creates its CT
//!   entry, so with `repeat` only the first run would be new. Measured in
//!   pairs of single runs instead: delete the CT entry, run once (new: CT
//!   misses, identity and policy tree lookup, CT insert), run once more
//!   (established). A single run also carries the fixed overhead of the
//!   kernel's timer and loop; the pairs cancel it: `new = established
//!   (repeat) + median over pairs of (new single − established single)`.
//!   Single runs find colder caches than `repeat` runs (the syscalls in
//!   between touch other memory), so this reads somewhat high; the XDP
//!   check below shows by how much.
//! - **new, allowed**, `xdp_prefilter`: XDP never writes CT, so `repeat`
//!   runs measure it directly; the pair method is applied too, as a check
//!   of the method (the two should agree within a few ns).
//!
//! With a baseline ELF ([`measure_paired`]), every case is loaded once from
//! each ELF and the two are measured alternately, measurement by
//! measurement, so that each round yields one ratio per (case, program,
//! path) taken under the same conditions.
//!
//! Flow accounting runs as configured ([`CostPlan::flow_flags`]; by default
//! as the agent runs it: accounting, new-flow and drop events). After each
//! measurement (untimed) the flow tables are drained and the ring read, as
//! the agent's collector would.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp};
use bulkhead_common::{CtKey, DropReason, PROTO_UDP, active_slot};
use bulkhead_dataplane::FlowTap;
use bulkhead_flows::source::FlowSource as _;
use bulkhead_netns_tests::dataplane::{DROP, Dataplane, PASS, XDP_DROP, XDP_PASS, ct_key};
use bulkhead_netns_tests::packet::{HOST_MAC, L4, frame};
use serde::Serialize;

use super::admin::{self, AdminCost};
use super::rules::{RuleCase, RuleFacts, RuleShape};
use super::stats::Summary;
use crate::elf::load_programmed;

/// Policy revision the cases run under.
const REVISION: u64 = 1;
/// Source port of the test flows.
const SPORT: u16 = 40_000;
/// Measurements in one round of one case: every (program, path).
const STEPS: usize = Prog::ALL.len() * PathKind::ALL.len();

/// A program under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Prog {
    /// TC ingress of the host veth (leaving the pod; egress policy).
    FromPod,
    /// TC egress of the host veth (entering the pod; ingress policy).
    ToPod,
    /// XDP on the host veth (leaving the pod; stateless egress check).
    XdpPrefilter,
}

impl Prog {
    /// All programs, in report order.
    pub const ALL: [Prog; 3] = [Prog::FromPod, Prog::ToPod, Prog::XdpPrefilter];

    /// The program's name in the ELF.
    pub fn name(self) -> &'static str {
        match self {
            Prog::FromPod => "from_pod",
            Prog::ToPod => "to_pod",
            Prog::XdpPrefilter => "xdp_prefilter",
        }
    }
}

/// A packet path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// CT hit.
    Established,
    /// New flow, allowed by the big table.
    NewAllowed,
    /// New flow, denied (port not in the table).
    Denied,
}

impl PathKind {
    /// All paths, in report order.
    pub const ALL: [PathKind; 3] = [
        PathKind::Established,
        PathKind::NewAllowed,
        PathKind::Denied,
    ];

    /// Name in the report.
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Established => "established (CT hit)",
            PathKind::NewAllowed => "new flow, allowed",
            PathKind::Denied => "new flow, denied",
        }
    }
}

/// How much to measure.
#[derive(Clone, Debug, Serialize)]
pub struct CostPlan {
    /// Kernel repeat count of one sample.
    pub repeat: u32,
    /// Rounds (samples per measurement; the median is reported).
    pub rounds: usize,
    /// Pairs of single runs per round for the new-flow method.
    pub pairs: usize,
    /// FLOW_CONFIG flags the programs run with (`FLOW_CONFIG_*`; the
    /// agent's default is accounting and both event kinds; 0 measures the
    /// dataplane without flow accounting).
    pub flow_flags: u32,
}

/// Samples of one (case, program, path).
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Program.
    pub prog: Prog,
    /// Path.
    pub path: PathKind,
    /// ns per run, one per round (for new-allowed TC: derived, see module docs).
    pub ns: Summary,
    /// New-allowed only: mean single-run time of the new run, per round.
    pub single_new_ns: Option<Summary>,
    /// New-allowed only: mean single-run time of the established run, per round.
    pub single_established_ns: Option<Summary>,
    /// `xdp_prefilter` new-allowed only: the pair method's result, per round
    /// (the check of the method against the direct measurement).
    pub derived_ns: Option<Summary>,
}

/// One rule case's results.
#[derive(Clone, Debug, Serialize)]
pub struct CaseCost {
    /// What the image holds.
    pub facts: RuleFacts,
    /// Every measurement.
    pub measurements: Vec<Measurement>,
}

/// A loaded case: its own ELF instance with the image written.
struct Loaded {
    dp: Dataplane,
    /// The case's flow maps, drained (and the ring read) after every
    /// measurement, outside the timed runs, as the agent's collector does.
    tap: Option<FlowTap>,
    case: RuleCase,
    samples: Vec<Samples>,
}

#[derive(Default)]
struct Samples {
    ns: Vec<f64>,
    single_new: Vec<f64>,
    single_est: Vec<f64>,
    derived: Vec<f64>,
}

/// One flow's frame and CT key for a program.
struct Flow {
    frame: Vec<u8>,
    ct: CtKey,
}

fn flow(case: &RuleCase, prog: Prog, dport: u16) -> Flow {
    let (src, dst, mac) = match prog {
        // Leaving the subject: its MAC and address (anti-spoofing passes).
        Prog::FromPod | Prog::XdpPrefilter => (case.subject_ip, case.peer_ip, case.subject.mac),
        // Entering the subject from its peer.
        Prog::ToPod => (case.peer_ip, case.subject_ip, HOST_MAC),
    };
    let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
    Flow {
        frame: frame(
            mac,
            src,
            dst,
            L4::Udp {
                sport: SPORT,
                dport,
            },
        ),
        ct: ct_key(src, dst, SPORT, dport, PROTO_UDP),
    }
}

/// Runs `prog` on `frame` `repeat` times: (return value, kernel ns per run).
fn run(dp: &mut Dataplane, prog: Prog, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    };
    let ebpf = dp.ebpf();
    let program = ebpf
        .program_mut(prog.name())
        .with_context(|| format!("no program {}", prog.name()))?;
    let result = match prog {
        Prog::FromPod | Prog::ToPod => {
            let p: &mut SchedClassifier = program.try_into()?;
            p.test_run(opts)
        }
        Prog::XdpPrefilter => {
            let p: &mut Xdp = program.try_into()?;
            p.test_run(opts)
        }
    }
    .with_context(|| format!("BPF_PROG_TEST_RUN {}", prog.name()))?;
    Ok((result.return_value, result.duration.as_nanos() as u32))
}

/// The ELF's flow maps with FLOW_CONFIG set to `flags`; `None` for an ELF
/// from before flow accounting (ABI v5) measured with `flags` 0.
pub fn flow_tap(dp: &mut Dataplane, flags: u32) -> Result<Option<FlowTap>> {
    let Some(mut tap) = dp.try_flow_tap() else {
        ensure!(
            flags == 0,
            "the ELF has no flow maps (built before ABI v5): pass --flow-flags 0"
        );
        return Ok(None);
    };
    tap.set_config(flags).context("writing FLOW_CONFIG")?;
    Ok(Some(tap))
}

fn pass(prog: Prog) -> u32 {
    if prog == Prog::XdpPrefilter {
        XDP_PASS
    } else {
        PASS
    }
}

fn drop_verdict(prog: Prog) -> u32 {
    if prog == Prog::XdpPrefilter {
        XDP_DROP
    } else {
        DROP
    }
}

fn expect(prog: Prog, path: PathKind, got: u32, want: u32) -> Result<()> {
    ensure!(
        got == want,
        "{} on the {} path returned {got}, expected {want}: the benchmark's maps are not what it thinks",
        prog.name(),
        path.label()
    );
    Ok(())
}

impl Loaded {
    fn new(elf: &Path, shape: RuleShape, flow_flags: u32) -> Result<Self> {
        Self::with_case(elf, RuleCase::new(shape, active_slot(REVISION)), flow_flags)
    }

    /// `case` (compiled for `active_slot(REVISION)`) loaded into its own
    /// instance of `elf`.
    fn with_case(elf: &Path, case: RuleCase, flow_flags: u32) -> Result<Self> {
        let slot = active_slot(REVISION);
        let mut dp = load_programmed(elf, &case.image, slot, case.subject, REVISION)?;
        let tap = flow_tap(&mut dp, flow_flags)?;
        Ok(Self {
            dp,
            tap,
            case,
            samples: (0..STEPS).map(|_| Samples::default()).collect(),
        })
    }

    /// One round: every program and path once.
    fn round(&mut self, plan: &CostPlan) -> Result<()> {
        for step in 0..STEPS {
            self.step(step, plan)?;
        }
        Ok(())
    }

    /// Measurement `step` of a round (program `step / paths`, path
    /// `step % paths`, in report order), its samples kept.
    fn step(&mut self, step: usize, plan: &CostPlan) -> Result<()> {
        let prog = Prog::ALL[step / PathKind::ALL.len()];
        let path = PathKind::ALL[step % PathKind::ALL.len()];
        let s = self.measure(prog, path, plan)?;
        self.collect_flows()?;
        let slot = &mut self.samples[step];
        slot.ns.push(s.0);
        if let Some((new, est, derived)) = s.1 {
            slot.single_new.push(new);
            slot.single_est.push(est);
            slot.derived.push(derived);
        }
        Ok(())
    }

    /// Drains the flow tables and reads the ring (untimed), so every
    /// measurement starts as under a running agent: tables nearly empty,
    /// ring with room.
    fn collect_flows(&mut self) -> Result<()> {
        let Some(tap) = &mut self.tap else {
            return Ok(());
        };
        let mut flows = Vec::new();
        let mut events = Vec::new();
        tap.drain(&mut flows).context("draining the flow tables")?;
        tap.events(Duration::ZERO, &mut events)
            .context("reading the flow events")?;
        Ok(())
    }

    /// ns per run, and for new-allowed the pair method's (new single,
    /// established single, derived).
    #[allow(clippy::type_complexity)]
    fn measure(
        &mut self,
        prog: Prog,
        path: PathKind,
        plan: &CostPlan,
    ) -> Result<(f64, Option<(f64, f64, f64)>)> {
        let dp = &mut self.dp;
        let allowed = flow(&self.case, prog, self.case.allowed_port);
        match path {
            PathKind::Denied => {
                let denied = flow(&self.case, prog, self.case.denied_port);
                let before = dp.drops(DropReason::PolicyDenied);
                let (ret, ns) = run(dp, prog, &denied.frame, plan.repeat)?;
                expect(prog, path, ret, drop_verdict(prog))?;
                let counted = dp.drops(DropReason::PolicyDenied) - before;
                ensure!(
                    counted == u64::from(plan.repeat),
                    "{}: {counted} policy denials counted for {} runs",
                    prog.name(),
                    plan.repeat
                );
                Ok((f64::from(ns), None))
            }
            PathKind::Established => {
                // The TC programs create the entry themselves; XDP reads
                // the one from_pod creates for the same packet.
                let creator = if prog == Prog::XdpPrefilter {
                    Prog::FromPod
                } else {
                    prog
                };
                let (ret, _) = run(dp, creator, &allowed.frame, 1)?;
                expect(creator, path, ret, PASS)?;
                ensure!(
                    dp.ct_get(&allowed.ct).is_some(),
                    "{}: no CT entry",
                    prog.name()
                );
                let (ret, ns) = run(dp, prog, &allowed.frame, plan.repeat)?;
                expect(prog, path, ret, pass(prog))?;
                dp.ct_remove(&allowed.ct);
                Ok((f64::from(ns), None))
            }
            PathKind::NewAllowed => {
                let est_repeat = {
                    // Established by repeat, as the base of the pair method.
                    let creator = if prog == Prog::XdpPrefilter {
                        Prog::FromPod
                    } else {
                        prog
                    };
                    run(dp, creator, &allowed.frame, 1)?;
                    let (ret, ns) = run(dp, prog, &allowed.frame, plan.repeat)?;
                    expect(prog, PathKind::Established, ret, pass(prog))?;
                    dp.ct_remove(&allowed.ct);
                    f64::from(ns)
                };
                let (mut new_sum, mut est_sum) = (0u64, 0u64);
                let mut diffs = Vec::with_capacity(plan.pairs);
                for i in 0..plan.pairs {
                    dp.ct_remove(&allowed.ct);
                    let (ret, ns) = run(dp, prog, &allowed.frame, 1)?;
                    expect(prog, path, ret, pass(prog))?;
                    if prog == Prog::XdpPrefilter {
                        // XDP does not create CT: make the entry the
                        // established run needs, as from_pod would.
                        run(dp, Prog::FromPod, &allowed.frame, 1)?;
                    } else if i == 0 && dp.ct_get(&allowed.ct).is_none() {
                        bail!("{}: the new flow created no CT entry", prog.name());
                    }
                    let (ret, ns2) = run(dp, prog, &allowed.frame, 1)?;
                    expect(prog, PathKind::Established, ret, pass(prog))?;
                    new_sum += u64::from(ns);
                    est_sum += u64::from(ns2);
                    diffs.push(f64::from(ns) - f64::from(ns2));
                }
                dp.ct_remove(&allowed.ct);
                let pairs = plan.pairs.max(1) as f64;
                let (new1, est1) = (new_sum as f64 / pairs, est_sum as f64 / pairs);
                // The median of the paired differences: robust to the
                // odd interrupted run, and each pair shares its conditions.
                let derived = est_repeat + Summary::new(diffs).median;
                let ns = if prog == Prog::XdpPrefilter {
                    let (ret, ns) = run(dp, prog, &allowed.frame, plan.repeat)?;
                    expect(prog, path, ret, XDP_PASS)?;
                    f64::from(ns)
                } else {
                    derived
                };
                Ok((ns, Some((new1, est1, derived))))
            }
        }
    }

    fn result(&self) -> CaseCost {
        let mut measurements = Vec::new();
        for (pi, prog) in Prog::ALL.into_iter().enumerate() {
            for (ki, path) in PathKind::ALL.into_iter().enumerate() {
                let s = &self.samples[pi * PathKind::ALL.len() + ki];
                let opt = |v: &Vec<f64>| (!v.is_empty()).then(|| Summary::new(v.clone()));
                measurements.push(Measurement {
                    prog,
                    path,
                    ns: Summary::new(s.ns.clone()),
                    single_new_ns: opt(&s.single_new),
                    single_established_ns: opt(&s.single_est),
                    derived_ns: if prog == Prog::XdpPrefilter {
                        opt(&s.derived)
                    } else {
                        None
                    },
                });
            }
        }
        CaseCost {
            facts: self.case.facts.clone(),
            measurements,
        }
    }
}

/// The calling thread pinned to the CPU it runs on, until dropped (the
/// affinity it had is restored).
struct PinnedCpu {
    before: nix::sched::CpuSet,
}

impl PinnedCpu {
    fn here() -> Result<Self> {
        use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
        use nix::unistd::Pid;
        let before = sched_getaffinity(Pid::from_raw(0)).context("reading the CPU affinity")?;
        let mut one = CpuSet::new();
        one.set(sched_getcpu().context("reading the current CPU")?)
            .context("CPU number")?;
        sched_setaffinity(Pid::from_raw(0), &one).context("pinning to one CPU")?;
        Ok(Self { before })
    }
}

impl Drop for PinnedCpu {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.before);
    }
}

/// Program cost of two ELFs measured side by side in one run
/// ([`measure_paired`]).
#[derive(Clone, Debug)]
pub struct PairedCost {
    /// The ELF under test, per rule case.
    pub cases: Vec<CaseCost>,
    /// The baseline ELF, per rule case (the same cases, the same rounds).
    pub baseline: Vec<CaseCost>,
}

/// Loads one instance of `elf` per shape, its image written; progress
/// lines on stderr start with `tag`.
fn load_all(elf: &Path, shapes: &[RuleShape], plan: &CostPlan, tag: &str) -> Result<Vec<Loaded>> {
    let mut loaded = Vec::new();
    for shape in shapes {
        let l = Loaded::new(elf, *shape, plan.flow_flags).with_context(|| {
            format!(
                "setting up the {}-rule case with {}",
                shape.nominal,
                elf.display()
            )
        })?;
        eprintln!(
            "{tag} {} rules: {} segments in {} policy tree nodes (depth {}), {} IDENTITIES entries, compiled in {:.1} ms",
            shape.nominal,
            l.case.facts.segments,
            l.case.facts.policy_entries,
            l.case.facts.tree_depth,
            l.case.facts.identity_entries,
            l.case.facts.compile_ms
        );
        loaded.push(l);
    }
    Ok(loaded)
}

/// Loads one ELF instance per shape, then measures every case once per
/// round, interleaved, on one CPU. Progress goes to stderr.
pub fn measure(elf: &Path, shapes: &[RuleShape], plan: &CostPlan) -> Result<Vec<CaseCost>> {
    let _pinned = PinnedCpu::here()?;
    let mut loaded = load_all(elf, shapes, plan, "[prog cost]")?;
    for round in 0..plan.rounds {
        for l in &mut loaded {
            l.round(plan)?;
        }
        eprintln!("[prog cost] round {}/{} done", round + 1, plan.rounds);
    }
    Ok(loaded.iter().map(Loaded::result).collect())
}

/// [`measure`] for two ELFs at once: every case is loaded from `elf` and
/// from `baseline` (each instance with its own maps), and both are
/// measured on the same pinned CPU, interleaved more finely than the
/// cases: in each round, for each case, every (program, path) measurement
/// is taken with one ELF and right after with the other, the one going
/// first alternating from round to round. The two samples of a round are
/// then seconds apart at most, so their ratio cancels the machine's drift.
pub fn measure_paired(
    elf: &Path,
    baseline: &Path,
    shapes: &[RuleShape],
    plan: &CostPlan,
) -> Result<PairedCost> {
    let _pinned = PinnedCpu::here()?;
    let mut main = load_all(elf, shapes, plan, "[prog cost]")?;
    let mut base = load_all(baseline, shapes, plan, "[prog cost, baseline ELF]")?;
    for round in 0..plan.rounds {
        for (m, b) in main.iter_mut().zip(&mut base) {
            paired_round(m, b, round % 2 == 0, plan)?;
        }
        eprintln!(
            "[prog cost] round {}/{} done (both ELFs)",
            round + 1,
            plan.rounds
        );
    }
    Ok(PairedCost {
        cases: main.iter().map(Loaded::result).collect(),
        baseline: base.iter().map(Loaded::result).collect(),
    })
}

/// The [`admin`] comparison: the case [`admin::SHAPE`] without and with
/// the cluster-admin policies, each loaded into its own instance of `elf`,
/// measured alternately as [`measure_paired`] measures two ELFs (the side
/// going first alternating by round), on one pinned CPU.
pub fn measure_admin(elf: &Path, plan: &CostPlan) -> Result<AdminCost> {
    let _pinned = PinnedCpu::here()?;
    let slot = active_slot(REVISION);
    let mut sides = Vec::new();
    for with_admin in [false, true] {
        let model = admin::model(&admin::SHAPE, with_admin);
        let case = RuleCase::from_model(admin::SHAPE, &model, slot);
        let l = Loaded::with_case(elf, case, plan.flow_flags).with_context(|| {
            format!("setting up the admin comparison (admin policies: {with_admin})")
        })?;
        let f = &l.case.facts;
        eprintln!(
            "[prog cost, admin tiers] {} admin rules: {} segments ({} deny) in {} policy tree nodes (depth {}), {} IDENTITIES entries, compiled in {:.1} ms",
            f.admin_rules,
            f.segments,
            f.deny_segments,
            f.policy_entries,
            f.tree_depth,
            f.identity_entries,
            f.compile_ms
        );
        sides.push(l);
    }
    let (without, with) = sides.split_at_mut(1);
    let (without, with) = (&mut without[0], &mut with[0]);
    for round in 0..plan.rounds {
        paired_round(with, without, round % 2 == 0, plan)?;
        eprintln!(
            "[prog cost, admin tiers] round {}/{} done",
            round + 1,
            plan.rounds
        );
    }
    Ok(AdminCost::new(without.result(), with.result()))
}

/// One round of one case with both ELFs, measurement by measurement;
/// `main_first`: the ELF under test takes each measurement first.
fn paired_round(
    main: &mut Loaded,
    base: &mut Loaded,
    main_first: bool,
    plan: &CostPlan,
) -> Result<()> {
    for step in 0..STEPS {
        for main_now in [main_first, !main_first] {
            if main_now {
                main.step(step, plan)?;
            } else {
                base.step(step, plan)
                    .context("measuring the baseline side")?;
            }
        }
    }
    Ok(())
}
