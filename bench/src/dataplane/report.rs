//! The dataplane benchmark's report: one serializable value written as
//! JSON, and the same numbers as Markdown, with the targets judged.

use std::fmt::Write as _;

use serde::Serialize;

use super::admin::AdminCost;
use super::baseline::BaselineCost;
use super::prog_cost::{CaseCost, CostPlan, Measurement, PathKind, Prog};
use super::veth::{Config, VethResult};
use crate::report::int;
use crate::run_info::RunInfo;

/// The 100k-rule cost may exceed the 10-rule cost by this factor.
pub const COST_LIMIT: f64 = 1.10;
/// Enforced packet rate must reach this share of the bare veth's.
pub const RATE_LIMIT: f64 = 0.95;

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The run: command, machine, time, load, ELF (top-level fields in
    /// JSON).
    #[serde(flatten)]
    pub run: RunInfo,
    /// Program-cost plan, if it ran.
    pub cost_plan: Option<CostPlan>,
    /// Program cost per rule case.
    pub prog_cost: Vec<CaseCost>,
    /// veth rates, if they ran.
    pub veth: Option<VethResult>,
    /// The baseline ELF's program cost and the comparison, with
    /// `--baseline-elf` (the ELF itself is in the run header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineCost>,
    /// The program cost with cluster-admin policies against none, if it
    /// ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminCost>,
}

/// The cost ratio of one (program, path): largest case over smallest.
#[derive(Clone, Debug, Serialize)]
pub struct CostRatio {
    /// Program.
    pub prog: Prog,
    /// Path.
    pub path: PathKind,
    /// Median ns at the smallest case.
    pub small_ns: f64,
    /// Median ns at the largest case.
    pub large_ns: f64,
}

impl CostRatio {
    /// `large / small`.
    pub fn ratio(&self) -> f64 {
        self.large_ns / self.small_ns
    }
}

/// FLOW_CONFIG flags in words.
fn flow_flags(flags: u32) -> String {
    use bulkhead_common::{
        FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW,
    };
    if flags & FLOW_CONFIG_ACCOUNTING == 0 {
        return "off (FLOW_CONFIG flags 0)".to_owned();
    }
    let mut parts = vec!["on"];
    if flags & FLOW_CONFIG_EVENTS_NEW != 0 {
        parts.push("new-flow events");
    }
    if flags & FLOW_CONFIG_EVENTS_DROP != 0 {
        parts.push("drop events");
    }
    format!("{} (FLOW_CONFIG flags {flags})", parts.join(", "))
}

fn find(case: &CaseCost, prog: Prog, path: PathKind) -> Option<&Measurement> {
    case.measurements
        .iter()
        .find(|m| m.prog == prog && m.path == path)
}

impl Report {
    /// Ratios of the largest case to the smallest, per program and path.
    pub fn cost_ratios(&self) -> Vec<CostRatio> {
        let (Some(small), Some(large)) = (self.prog_cost.first(), self.prog_cost.last()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for prog in Prog::ALL {
            for path in PathKind::ALL {
                if let (Some(s), Some(l)) = (find(small, prog, path), find(large, prog, path)) {
                    out.push(CostRatio {
                        prog,
                        path,
                        small_ns: s.ns.median,
                        large_ns: l.ns.median,
                    });
                }
            }
        }
        out
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run
            .markdown_header(&mut s, "Dataplane benchmark", false);
        self.targets(&mut s);
        self.cost_tables(&mut s);
        if let Some(a) = &self.admin {
            a.markdown(&mut s, self.cost_plan.as_ref());
        }
        if let Some(b) = &self.baseline {
            b.markdown(&mut s);
        }
        self.veth_tables(&mut s);
        self.method(&mut s);
        s
    }

    /// Median ns of `prog`/`path` in the largest case minus the smallest.
    fn growth(&self, prog: Prog, path: PathKind) -> Option<f64> {
        self.cost_ratios()
            .into_iter()
            .find(|r| r.prog == prog && r.path == path)
            .map(|r| r.large_ns - r.small_ns)
    }

    fn method(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Method and reading
"
        );
        if !self.prog_cost.is_empty() {
            let _ = writeln!(
                s,
                "- Policies (`bench/src/dataplane/rules.rs`): one policy selects the pod under test for ingress and egress; each direction has one rule whose peers are one pod plus N ipBlocks (each its own identity) and whose ports are M single UDP ports (3 apart, so none merge). Both tables of the pod are the big ones; 1,000 unselected background pods keep IDENTITIES at ~2,000 entries in every case. \"Rules\" are compiled rule segments (one allowed peer × protocol × port range, what ABI v2 stored as one POLICY LPM entry each); ABI v4 stores each (table, peer)'s ranges as a B-tree of nodes of up to 16 ranges, the root in the hash POLICY_V4 and the other nodes in the array POLICY_NODES, so a lookup visits 1 node for a peer with up to 16 ranges and 2 for up to 256, whatever the number of peers and tables. Counts above are those of the compiled tables and image (`Compiled::map_image_for`).\n\
                 - Packets: UDP between the pod under test and its peer pod, to a port in the middle of the list (allowed) or between two listed ports (denied). `from_pod` and `xdp_prefilter` see the pod's own MAC and address (anti-spoofing passes) and check its egress table; `to_pod` checks its ingress table. Each verdict and each drop counter is checked, so a measurement that took a different path would fail the run.\n\
                 - Lookups per path: established = ENDPOINTS hash + CT hash hit (the verdict is cached in CT with the revision it was checked under; no policy lookup); new allowed = ENDPOINTS + 2 CT misses + the peer's identity (the pod's address: 1 IDENTITIES_EXACT hash hit; ABI v10 and before: the IDENTITIES LPM) + the peer's policy tree (1 POLICY_V4 hash lookup of the root, then depth − 1 inlined POLICY_NODES array accesses; each node a 4-step binary search) (+ CT insert for TC); denied = the same, the peer's tree finding no range, then 1 POLICY_V4 miss for any-peer (no root) + drop counter.\n\
                 - New allowed flows cannot be repeated (the first run creates the CT entry): see the pair method above. Denied flows never create CT and XDP never writes it, so those are measured with `repeat` directly."
            );
            if let (Some(est), Some(new), Some(deny)) = (
                self.growth(Prog::FromPod, PathKind::Established),
                self.growth(Prog::XdpPrefilter, PathKind::NewAllowed),
                self.growth(Prog::XdpPrefilter, PathKind::Denied),
            ) {
                let _ = writeln!(
                    s,
                    "- Where the growth is: from the smallest to the largest case, `from_pod` established changes by {est:+.0} ns (no policy lookup), `xdp_prefilter` new allowed by {new:+.0} ns, denied by {deny:+.0} ns. Hash lookups do not depend on the entry count (ABI v2's LPM trie did: about log2(entries) dependent loads, ×1.41–1.45 at 100k vs 10 entries on this machine); what differs between the cases is the depth of the peer's tree: the smallest case's peers have 5 ranges (1 node), the others 50–200 (2 nodes: one more binary search in a POLICY_NODES entry, an array access the verifier inlines; ABI v3 kept that node in the hash too, ~32 ns more per level). A peer with up to 4,096 ranges needs 3 nodes; `POLICY_DEPTH_MAX` (6) bounds any content. Connections pay the lookup once, on their first packet; every later packet takes the flat established path."
                );
            }
        }
        if self.veth.is_some() {
            let _ = writeln!(
                s,
                "- veth: three namespaces made for the run (`bhbench-<pid>-client|node|server`), pods with /32 addresses and proxy ARP on the node, programs attached to both host-side veths through tcx links (and native veth XDP) owned by the benchmark process, maps written from a compiled policy that isolates both pods and allows exactly the flood's UDP port. The sender (pinned to CPU 0) sends with `sendmmsg` until its time or packet budget is spent; the receiver (CPU 1) counts with `recvmmsg`. An untimed warm-up flood precedes each timed one. All of the forwarding path runs in softirq on the sender's CPU, so the rate is that CPU's packet budget and the programs' cost shows directly in it. The bench process CPU column counts the sender, the receiver and the softirq work done in their context; the machine column also counts anything else running (see the load average above).\n\
                 - XDP on a veth switches the device to NAPI mode (a ptr_ring and a poll per packet batch) and runs XDP on a copy of the skb when its headroom is short, which is why TC + XDP is slower than TC alone even though `xdp_prefilter` is cheaper per call than `from_pod` (FIELD-NOTES: xdp-tutorial 292)."
            );
        }
        let _ = writeln!(s);
    }

    fn targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets\n");
        let ratios = self.cost_ratios();
        if let (Some(small), Some(large)) = (self.prog_cost.first(), self.prog_cost.last()) {
            let worst = ratios.iter().max_by(|a, b| a.ratio().total_cmp(&b.ratio()));
            let missed: Vec<&CostRatio> =
                ratios.iter().filter(|r| r.ratio() > COST_LIMIT).collect();
            let verdict = if missed.is_empty() {
                "**met**"
            } else {
                "**missed**"
            };
            let _ = writeln!(
                s,
                "- Program cost at {} rules ({} policy tree nodes) within {:.0}% of {} rules ({} nodes): {verdict}{}.",
                int(large.facts.nominal),
                int(large.facts.policy_entries),
                (COST_LIMIT - 1.0) * 100.0,
                int(small.facts.nominal),
                int(small.facts.policy_entries),
                match worst {
                    Some(w) => format!(
                        "; largest ratio ×{:.2} ({} {}, {:.0} → {:.0} ns); {} of {} program/path pairs over the limit",
                        w.ratio(),
                        w.prog.name(),
                        w.path.label(),
                        w.small_ns,
                        w.large_ns,
                        missed.len(),
                        ratios.len()
                    ),
                    None => String::new(),
                }
            );
        } else {
            let _ = writeln!(s, "- Program cost: not measured in this run.");
        }
        if let Some(a) = &self.admin {
            a.target_line(s);
        }
        if let Some(b) = &self.baseline {
            b.target_line(s);
        }
        if let Some(v) = &self.veth {
            let ratio = |c: Config| {
                v.summaries
                    .iter()
                    .find(|x| x.config == c)
                    .map_or(0.0, |x| x.ratio_to_bare)
            };
            let r = ratio(Config::Tc);
            let _ = writeln!(
                s,
                "- Packet rate with enforcement as the agent runs it ({}) at least {:.0}% of the bare veth: {:.1}%, **{}**.",
                Config::Tc.name(),
                RATE_LIMIT * 100.0,
                r * 100.0,
                if r >= RATE_LIMIT { "met" } else { "missed" }
            );
            let stack = ratio(Config::TcStack);
            let _ = writeln!(
                s,
                "- For reference, the same programs with host routing off (`--host-routing off`: every packet crosses the node's stack and both hooks): {:.1}%, {} {:.0}%. The difference is the node's forwarding path and the receiver's `to_pod` hook, which host routing replaces by one tail call and a redirect.",
                stack * 100.0,
                if stack >= RATE_LIMIT {
                    "also at least"
                } else {
                    "under"
                },
                RATE_LIMIT * 100.0
            );
            let (tc, xdp) = (ratio(Config::Tc), ratio(Config::TcXdp));
            let _ = writeln!(
                s,
                "- XDP default: TC alone runs at {:.1}% of bare, TC + XDP at {:.1}%: **XDP {}** is faster on veth here.\n",
                tc * 100.0,
                xdp * 100.0,
                if xdp > tc { "on" } else { "off" }
            );
        } else {
            let _ = writeln!(s, "- Packet rate: not measured in this run.\n");
        }
    }

    fn cost_tables(&self, s: &mut String) {
        if self.prog_cost.is_empty() {
            return;
        }
        let _ = writeln!(s, "## Per-packet program cost (BPF_PROG_TEST_RUN)\n");
        if let Some(p) = &self.cost_plan {
            let _ = writeln!(
                s,
                "Median over {} rounds of the kernel's mean ns per run (`repeat` = {}); cases interleaved round by round, each with its own loaded ELF and maps{}. Flow accounting: {}.\n",
                p.rounds,
                int(p.repeat as usize),
                if self.baseline.is_some() {
                    ", every measurement alternating with the baseline ELF's (see \"Against the baseline ELF\")"
                } else {
                    ""
                },
                flow_flags(p.flow_flags)
            );
        }
        let _ = write!(s, "| program | path |");
        for c in &self.prog_cost {
            let _ = write!(s, " {} rules |", int(c.facts.nominal));
        }
        let _ = writeln!(s, " largest / smallest |");
        let _ = write!(s, "| --- | --- |");
        for _ in &self.prog_cost {
            let _ = write!(s, " ---: |");
        }
        let _ = writeln!(s, " ---: |");
        let ratios = self.cost_ratios();
        for prog in Prog::ALL {
            for path in PathKind::ALL {
                let _ = write!(s, "| {} | {} |", prog.name(), path.label());
                for c in &self.prog_cost {
                    match find(c, prog, path) {
                        Some(m) => {
                            let _ = write!(
                                s,
                                " {:.0} ns ({:.0}–{:.0}) |",
                                m.ns.median, m.ns.min, m.ns.max
                            );
                        }
                        None => {
                            let _ = write!(s, " – |");
                        }
                    }
                }
                match ratios.iter().find(|r| r.prog == prog && r.path == path) {
                    Some(r) => {
                        let _ = writeln!(s, " ×{:.2} |", r.ratio());
                    }
                    None => {
                        let _ = writeln!(s, " – |");
                    }
                }
            }
        }
        let _ = writeln!(s, "\n### What each case holds\n");
        let _ = writeln!(
            s,
            "| case | ipBlocks × UDP ports per rule | rule segments (ingress + egress) | policy tree nodes (POLICY_V4 + POLICY_NODES) | subject ingress table: segments / nodes | subject egress table: segments / nodes | tree depth | IDENTITIES entries | identities | compile |"
        );
        let _ = writeln!(
            s,
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for c in &self.prog_cost {
            let f = &c.facts;
            let _ = writeln!(
                s,
                "| {} rules | (1 pod + {}) × {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {:.1} ms |",
                int(f.nominal),
                f.blocks,
                f.ports,
                int(f.segments),
                int(f.policy_entries),
                int(f.ingress_table_segments),
                int(f.ingress_table_entries),
                int(f.egress_table_segments),
                int(f.egress_table_entries),
                f.tree_depth,
                int(f.identity_entries),
                int(f.identities),
                f.compile_ms
            );
        }
        let _ = writeln!(
            s,
            "\n### New-flow method (pairs of single runs)\n\n\
             Mean ns of one single run (`repeat` = 1, includes the kernel timer's fixed overhead), median over rounds. \
             TC \"new flow, allowed\" above = established (`repeat`) + the median over pairs of (new single − established single). \
             For `xdp_prefilter`, which never writes CT, the direct `repeat` measurement is above and the pair method's result is shown here as a check.\n"
        );
        let _ = write!(s, "| program | |");
        for c in &self.prog_cost {
            let _ = write!(s, " {} rules |", int(c.facts.nominal));
        }
        let _ = writeln!(s);
        let _ = write!(s, "| --- | --- |");
        for _ in &self.prog_cost {
            let _ = write!(s, " ---: |");
        }
        let _ = writeln!(s);
        for prog in Prog::ALL {
            type Pick = fn(&Measurement) -> Option<f64>;
            let rows: [(&str, Pick); 3] = [
                ("new, single run", |m| {
                    m.single_new_ns.as_ref().map(|x| x.median)
                }),
                ("established, single run", |m| {
                    m.single_established_ns.as_ref().map(|x| x.median)
                }),
                ("pair method (check)", |m| {
                    m.derived_ns.as_ref().map(|x| x.median)
                }),
            ];
            for (label, pick) in rows {
                let vals: Vec<Option<f64>> = self
                    .prog_cost
                    .iter()
                    .map(|c| find(c, prog, PathKind::NewAllowed).and_then(pick))
                    .collect();
                if vals.iter().all(Option::is_none) {
                    continue;
                }
                let _ = write!(s, "| {} | {label} |", prog.name());
                for v in vals {
                    let _ = match v {
                        Some(v) => write!(s, " {v:.1} ns |"),
                        None => write!(s, " – |"),
                    };
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s);
    }

    fn veth_tables(&self, s: &mut String) {
        let Some(v) = &self.veth else {
            return;
        };
        let _ = writeln!(s, "## veth packet rate\n");
        let f = &v.plan.flood;
        let _ = writeln!(
            s,
            "client → veth → node (routing) → veth → server (with host routing, `from_pod` on the client's veth judges both pods and delivers into the server itself: the last column shows which path carried the flood); one UDP flow of {}-byte payloads (sendmmsg, 64 per call), {} rounds of {:.1} s per configuration (at most {} packets each); each round floods every configuration once, back to back, in a rotating order. \"vs bare\" is the median over rounds of the configuration's rate over bare's in the same round (min–max of those ratios in brackets): the machine's throughput drifts between rounds by more than the programs cost, and pairing within a round cancels that drift. Flow accounting: {}.\n",
            f.payload,
            v.plan.reps,
            f.duration.as_secs_f64(),
            int(f.max_packets as usize),
            flow_flags(v.plan.flow_flags)
        );
        let _ = writeln!(
            s,
            "| configuration | received, median (min–max) | vs bare, paired per round | sent (sendmmsg accepted) | bench process CPU per packet | machine CPU per packet | receive-buffer drops | forwarded by the node's stack |"
        );
        let _ = writeln!(
            s,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for x in &v.summaries {
            let _ = writeln!(
                s,
                "| {} | {:.3} Mpps ({:.3}–{:.3}) | {:.1}% ({:.1}–{:.1}) | {:.3} Mpps | {:.0} ns | {:.0} ns | {} | {:.1}% |",
                x.config.name(),
                x.rx_pps.median / 1e6,
                x.rx_pps.min / 1e6,
                x.rx_pps.max / 1e6,
                x.ratio_to_bare * 100.0,
                x.round_ratios_to_bare.min * 100.0,
                x.round_ratios_to_bare.max * 100.0,
                x.tx_pps.median / 1e6,
                x.process_cpu_ns_per_packet.median,
                x.cpu_ns_per_packet.median,
                int(x.rcvbuf_errors as usize),
                x.stack_forwarded_share * 100.0
            );
        }
        let _ = writeln!(s);
        for (c, sent, counted) in &v.enforcement_check {
            let _ = writeln!(
                s,
                "Enforcement check, {}: {sent} datagrams to a port the policy denies, {counted} counted as `policy_denied`.",
                c.name()
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Runs in order:\n");
        let _ = writeln!(
            s,
            "| # | configuration | received | sent | bench process CPUs | machine CPUs busy | drops | forwarded by the node's stack |"
        );
        let _ = writeln!(
            s,
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (i, r) in v.runs.iter().enumerate() {
            let x = &r.result;
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} Mpps | {:.3} Mpps | {:.2} | {:.2} | {} | {} |",
                i + 1,
                r.config.name(),
                x.rx_pps() / 1e6,
                x.tx_pps() / 1e6,
                x.process_cpus,
                x.busy_cpus,
                x.rcvbuf_errors,
                int(r.stack_forwarded as usize)
            );
        }
        let _ = writeln!(s);
    }
}
