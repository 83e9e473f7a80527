//! The comparison benchmark's Markdown report: run and machine, the
//! issue's targets judged, Bulkhead's packet rate against B0 and every
//! contender, one table (and plot) per metric, and where an established
//! packet's time goes. Reads `CompareResult::cells` (see
//! [`super::summary::cells`]); writes nothing.

use std::fmt::Write as _;

use super::model::{Breakdown, Cell, CompareResult, Contender, Metric};
use super::plot;
use super::targets::{self, Goal, RATE_LIMIT, Target, Verdict};
use crate::report::int;
use crate::run_info::RunInfo;

/// Anchor of the "Where the time goes" section (GitHub's slug of its title).
const WHERE_ANCHOR: &str = "#where-the-time-goes";

/// Symbols per N taken into the profile table.
const PROFILE_TOP: usize = 8;
/// Rows of the profile table at most.
const PROFILE_ROWS: usize = 12;

/// The file stem `Output::publish` gives this run's report
/// (`<benchmark>` or `<benchmark>-quick`); the plots are named after it
/// (`<stem>-<metric>.png`, see [`plot::file_name`]), so pass it to
/// [`plot::plots`] as the prefix for the report's links to hold.
pub fn file_stem(run: &RunInfo) -> String {
    if run.quick {
        format!("{}-quick", run.benchmark)
    } else {
        run.benchmark.clone()
    }
}

/// N as the report writes it: `10`, `1k`, `100k`, `2M`, `1,500`.
pub fn rules_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n.is_multiple_of(1000) => format!("{}k", n / 1000),
        n => int(n),
    }
}

/// A measured value with about three significant digits (`–` for a
/// non-finite value).
pub fn number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if v == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// CPU nanoseconds: whole from 100 on, else one decimal.
fn ns(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Text safe in a Markdown table cell: one line, no column breaks.
fn cell_text(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace('|', "\\|")
}

/// `×1.23`, or `–` when there is no ratio.
fn times(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite())
        .map_or("–".into(), |r| format!("×{r:.2}"))
}

/// `a / b` when both are there and it is a finite number.
fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let r = a? / b?;
    r.is_finite().then_some(r)
}

/// The report's view of one run: what to show (N, contenders, metrics)
/// and where the plots are.
struct View<'a> {
    r: &'a CompareResult,
    /// Planned N, else the N that have cells; ascending.
    rules: Vec<usize>,
    /// Planned contenders, else those with cells; report order.
    contenders: Vec<Contender>,
    /// Planned metrics, else those with cells; report order.
    metrics: Vec<Metric>,
    /// File stem of the report and its plots.
    stem: String,
}

impl<'a> View<'a> {
    fn new(r: &'a CompareResult) -> Self {
        let mut rules = if r.plan.rules.is_empty() {
            r.cells.iter().map(|c| c.rules).collect()
        } else {
            r.plan.rules.clone()
        };
        rules.sort_unstable();
        rules.dedup();
        let planned = |c: Contender| {
            if r.plan.contenders.is_empty() {
                r.cells.iter().any(|x| x.contender == c)
            } else {
                r.plan.contenders.contains(&c)
            }
        };
        let measured = |m: Metric| {
            if r.plan.metrics.is_empty() {
                r.cells.iter().any(|x| x.metric == m)
            } else {
                r.plan.metrics.contains(&m)
            }
        };
        Self {
            r,
            rules,
            contenders: Contender::ALL.into_iter().filter(|&c| planned(c)).collect(),
            metrics: Metric::ALL.into_iter().filter(|&m| measured(m)).collect(),
            stem: file_stem(&r.run),
        }
    }

    fn cell(&self, c: Contender, rules: usize, m: Metric) -> Option<&'a Cell> {
        self.r
            .cells
            .iter()
            .find(|x| x.contender == c && x.rules == rules && x.metric == m)
    }

    fn median(&self, c: Contender, rules: usize, m: Metric) -> Option<f64> {
        self.cell(c, rules, m).map(|x| x.median)
    }

    fn breakdown(&self, rules: usize) -> Option<&'a Breakdown> {
        self.r.breakdown.iter().find(|b| b.rules == rules)
    }
}

/// The whole report as Markdown.
pub fn markdown(r: &CompareResult) -> String {
    let v = View::new(r);
    let mut s = String::new();
    r.run
        .markdown_header(&mut s, "Bulkhead vs iptables, ipset and nftables", true);
    tools_and_plan(&mut s, &v);
    targets_section(&mut s, &v);
    packet_rate_table(&mut s, &v);
    metric_tables(&mut s, &v);
    where_the_time_goes(&mut s, &v);
    if !r.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
        s.push('\n');
    }
    method(&mut s, &v);
    s
}

fn tools_and_plan(s: &mut String, v: &View) {
    let r = v.r;
    if !r.tools.is_empty() {
        let _ = writeln!(s, "| tool | version |\n| --- | --- |");
        for (tool, version) in &r.tools {
            let _ = writeln!(s, "| {} | {} |", cell_text(tool), cell_text(version));
        }
        s.push('\n');
    }
    let p = &r.plan;
    let names = |cs: &[Contender]| cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    let _ = writeln!(s, "## Plan\n");
    let _ = writeln!(
        s,
        "- Allow-list sizes N: {}.",
        v.rules
            .iter()
            .map(|&n| rules_label(n))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- {} rounds; each rate measurement lasts {:.1} s.",
        p.rounds, p.seconds
    );
    let _ = writeln!(s, "- Contenders: {}.", names(&v.contenders));
    let _ = writeln!(
        s,
        "- Metrics: {}.",
        v.metrics
            .iter()
            .map(|m| format!("{} ({})", m.title(), m.unit()))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        s,
        "- Raw data: [`{stem}.json`]({stem}.json): every sample in the order taken, the cells and the breakdown.\n",
        stem = v.stem
    );
}

fn targets_section(s: &mut String, v: &View) {
    let _ = writeln!(s, "## Targets\n");
    let all = targets::evaluate(&v.r.cells, &v.rules);
    let _ = writeln!(
        s,
        "Judged on Bulkhead TC's packet rate of the established UDP flow, the configuration the agent runs (host routing on).\n"
    );
    for t in all.iter().filter(|t| t.contender == Contender::BulkheadTc) {
        target_line(s, v, t);
    }
    for other in [Contender::BulkheadTcXdp, Contender::BulkheadTcStack] {
        let these: Vec<&Target> = all.iter().filter(|t| t.contender == other).collect();
        if these.iter().any(|t| t.measured()) {
            let _ = writeln!(
                s,
                "\n{}, judged the same way for information:\n",
                other.name()
            );
            for t in these {
                target_line(s, v, t);
            }
        }
    }
    s.push('\n');
}

fn target_line(s: &mut String, v: &View, t: &Target) {
    let letter = match t.goal {
        Goal::NearBare => "a",
        Goal::Flat => "b",
        Goal::AheadOfIptables => "c",
    };
    let _ = writeln!(
        s,
        "- ({letter}) {}: **{}**. {}",
        t.goal.title(),
        t.verdict.word(),
        t.sentence
    );
    // The breakdown measures the stack path (`from_pod` + `to_pod`): it
    // explains that path's miss.
    if t.goal == Goal::NearBare
        && t.verdict == Verdict::Missed
        && t.contender == Contender::BulkheadTcStack
    {
        let _ = writeln!(s, "  {}", explain_miss(v, t));
    }
    if t.goal == Goal::AheadOfIptables
        && t.verdict == Verdict::Missed
        && matches!(
            t.contender,
            Contender::BulkheadTc | Contender::BulkheadTcStack
        )
    {
        let _ = writeln!(s, "  {}", explain_iptables(v, t.contender));
    }
}

/// Why iptables' linear chain does not show in the established flow's
/// rate, and where it does, with this run's numbers at the largest N.
fn explain_iptables(v: &View, c: Contender) -> String {
    let mut out = "iptables (linear) accepts an established flow by its first rule \
        (conntrack `ESTABLISHED`), so an established packet never walks the N \
        rules: it costs a conntrack lookup and the netfilter hooks, the same order \
        as Bulkhead's two programs."
        .to_owned();
    let Some(&n) = v.r.plan.rules.iter().max() else {
        return out;
    };
    let pair = |m: Metric| {
        Some((
            v.median(c, n, m)?,
            v.median(Contender::IptablesLinear, n, m)?,
        ))
    };
    let mut shows = Vec::new();
    if let Some((b, i)) = pair(Metric::ConnectionRate) {
        shows.push(format!(
            "new connections, {} vs {} k/s (×{})",
            number(b),
            number(i),
            number(b / i)
        ));
    }
    if let Some((b, i)) = pair(Metric::DenyRate) {
        shows.push(format!(
            "the deny path, {} vs {} Mpps (×{})",
            number(b),
            number(i),
            number(b / i)
        ));
    }
    if !shows.is_empty() {
        let _ = write!(
            out,
            " The chain's length shows where packets walk it; at {} rules, {} against iptables (linear): {}.",
            rules_label(n),
            c.name(),
            shows.join("; ")
        );
    }
    out
}

/// Where the time goes at the N where (a) is worst, in one paragraph.
fn explain_miss(v: &View, t: &Target) -> String {
    let see = format!("See [Where the time goes]({WHERE_ANCHOR}).");
    let Some(n) = t.worst_rules else {
        return see;
    };
    let Some(b) = v.breakdown(n) else {
        return format!(
            "No CPU breakdown was recorded at {} rules in this run, so this report cannot say where the time goes. {see}",
            rules_label(n)
        );
    };
    let extra = b.bulkhead_tc_ns - b.bare_ns;
    let hook = b.hook_floor_ns - b.bare_ns;
    let progs = b.from_pod_ns + b.to_pod_ns;
    let mut out = format!(
        "At {} rules, {} costs {} ns of CPU per packet against B0's {} ns: {} ns more, where {:.1}% of B0's rate allows about {} ns. Of the extra, the TC hook itself (hook floor − B0) takes {} ns, the two programs (`from_pod` + `to_pod`, `BPF_PROG_TEST_RUN`) {} ns, and the rest of the path {} ns.",
        rules_label(n),
        t.contender.name(),
        ns(b.bulkhead_tc_ns),
        ns(b.bare_ns),
        ns(extra),
        RATE_LIMIT * 100.0,
        ns(budget(b.bare_ns)),
        ns(hook),
        ns(progs),
        ns(extra - hook - progs),
    );
    let top: Vec<String> = b
        .profile
        .iter()
        .take(3)
        .map(|p| format!("`{}` {:.1}%", p.symbol, p.percent))
        .collect();
    if !top.is_empty() {
        let _ = write!(
            out,
            " The profile's largest symbols there: {}.",
            top.join(", ")
        );
    }
    let _ = write!(out, " {see}");
    out
}

/// The extra ns per packet over B0 that keeps [`RATE_LIMIT`] of its rate,
/// when CPU time per packet is what limits the rate.
fn budget(bare_ns: f64) -> f64 {
    bare_ns / RATE_LIMIT - bare_ns
}

fn packet_rate_table(s: &mut String, v: &View) {
    let pr = Metric::PacketRate;
    let tc = Contender::BulkheadTc;
    if !v.metrics.contains(&pr) {
        return;
    }
    let others: Vec<Contender> = v
        .contenders
        .iter()
        .copied()
        .filter(|&c| c != Contender::Bare && c != tc)
        .collect();
    let _ = writeln!(
        s,
        "## Bulkhead's packet rate relative to B0 and to each contender\n"
    );
    let _ = writeln!(
        s,
        "Established UDP flow. ×B0 is the median over rounds of Bulkhead TC's rate over B0's in the same round; each ×contender column is Bulkhead TC's median over that contender's at the same N, so above 1 Bulkhead is faster.\n"
    );
    let _ = write!(s, "| N | B0 Mpps | Bulkhead TC Mpps | ×B0 |");
    for c in &others {
        let _ = write!(s, " ×{} |", c.name());
    }
    let _ = writeln!(
        s,
        "\n| ---: | ---: | ---: | ---: |{}",
        " ---: |".repeat(others.len())
    );
    for &n in &v.rules {
        let ours = v.median(tc, n, pr);
        let _ = write!(
            s,
            "| {} | {} | {} | {} |",
            rules_label(n),
            v.median(Contender::Bare, n, pr).map_or("–".into(), number),
            ours.map_or("–".into(), number),
            times(v.cell(tc, n, pr).and_then(|c| c.ratio_to_bare)),
        );
        for &c in &others {
            let _ = write!(s, " {} |", times(div(ours, v.median(c, n, pr))));
        }
        s.push('\n');
    }
    s.push('\n');
}

/// A value of metric `m`: counts of packets whole when they are whole,
/// everything else by [`number`].
fn value(m: Metric, v: f64) -> String {
    if m == Metric::UpdateDrops && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        number(v)
    }
}

/// One table cell: `0.412 Mpps (0.401–0.420) ×0.86 B0 ×1.02 best`.
fn metric_cell(c: &Cell) -> String {
    let m = c.metric;
    let mut out = format!("{} {}", value(m, c.median), m.unit());
    if c.samples > 1 && c.max > c.min {
        let _ = write!(out, " ({}–{})", value(m, c.min), value(m, c.max));
    }
    if c.contender != Contender::Bare
        && let Some(r) = c.ratio_to_bare
    {
        let _ = write!(out, " ×{r:.2} B0");
    }
    if let Some(r) = c.ratio_to_best {
        let _ = write!(out, " ×{r:.2} best");
    }
    out
}

fn metric_tables(s: &mut String, v: &View) {
    let _ = writeln!(s, "## Results per metric\n");
    let _ = writeln!(
        s,
        "Median over rounds (min–max in brackets); ×B0: median over rounds of the value over B0's in the same round; ×best: the median over the best enforcing contender's at that N (the baselines do not compete). For metrics where lower is better the ratio is still this over best, so above 1 is worse. — : does not apply (the baselines enforce nothing: no deny path, no updates); –: not measured.\n"
    );
    let plotted = plot::plotted_metrics(v.r);
    for &m in &v.metrics {
        let better = if m.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(s, "### {} ({}, {better})\n", m.title(), m.unit());
        if plotted.contains(&m) {
            let _ = writeln!(s, "![{}]({})\n", m.title(), plot::file_name(&v.stem, m));
        }
        let _ = write!(s, "| contender |");
        for &n in &v.rules {
            let _ = write!(s, " N = {} |", rules_label(n));
        }
        let _ = writeln!(s, "\n| --- |{}", " ---: |".repeat(v.rules.len()));
        for &c in &v.contenders {
            let _ = write!(s, "| {} |", c.name());
            for &n in &v.rules {
                let text = if !m.applies_to(c) {
                    "—".to_string()
                } else {
                    v.cell(c, n, m).map_or("–".into(), metric_cell)
                };
                let _ = write!(s, " {text} |");
            }
            s.push('\n');
        }
        s.push('\n');
    }
}

fn where_the_time_goes(s: &mut String, v: &View) {
    let _ = writeln!(s, "## Where the time goes\n");
    let mut rows: Vec<&Breakdown> = v.r.breakdown.iter().collect();
    rows.sort_by_key(|b| b.rules);
    if rows.is_empty() {
        let _ = writeln!(s, "No breakdown was recorded in this run.\n");
        return;
    }
    let _ = writeln!(
        s,
        "Machine CPU ns per received packet of the established UDP flood, and the programs' own cost, on the path through the node's stack (host routing off: the path netfilter takes too; with host routing, `deliver` and a redirect replace `to_pod` and the node's forwarding, see the packet-rate table). Extra: Bulkhead TC through the node's stack − B0. Hook: hook floor − B0, what attaching any TC program to both veths costs (its share of the extra in brackets). Programs: `from_pod` + `to_pod` on an established packet by `BPF_PROG_TEST_RUN` in the same run (every packet of the flow passes both). Rest: extra − hook − programs, what the veth path costs beyond them: the programs' cache and TLB misses on the real path (the test run repeats one packet with warm caches), map-update contention, dispatch the hook floor does not pay, and noise (it can be negative). Budget: the extra per packet that {:.0}% of B0's rate allows when CPU time per packet is what limits the rate (B0 / {RATE_LIMIT} − B0).\n",
        RATE_LIMIT * 100.0
    );
    let _ = writeln!(
        s,
        "| N | B0 | hook floor | Bulkhead TC, node's stack | extra | hook (share) | programs (from_pod + to_pod) | rest | budget at {:.0}% |",
        RATE_LIMIT * 100.0
    );
    let _ = writeln!(
        s,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for b in &rows {
        let extra = b.bulkhead_tc_ns - b.bare_ns;
        let hook = b.hook_floor_ns - b.bare_ns;
        let progs = b.from_pod_ns + b.to_pod_ns;
        let share = if extra > 0.0 {
            format!(" ({:.0}%)", hook / extra * 100.0)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} ns | {} ns | {} ns | {} ns | {} ns{share} | {} ns ({} + {}) | {} ns | {} ns |",
            rules_label(b.rules),
            ns(b.bare_ns),
            ns(b.hook_floor_ns),
            ns(b.bulkhead_tc_ns),
            ns(extra),
            ns(hook),
            ns(progs),
            ns(b.from_pod_ns),
            ns(b.to_pod_ns),
            ns(extra - hook - progs),
            ns(budget(b.bare_ns)),
        );
    }
    s.push('\n');
    profile_table(s, &rows);
}

/// Kernel symbols' shares while Bulkhead TC floods: each N's top symbols,
/// one row per symbol, one column per N.
fn profile_table(s: &mut String, rows: &[&Breakdown]) {
    let with: Vec<&&Breakdown> = rows.iter().filter(|b| !b.profile.is_empty()).collect();
    if with.is_empty() {
        let _ = writeln!(s, "No profile was recorded (`perf` missing or failed).\n");
        return;
    }
    let mut symbols: Vec<(&str, f64)> = Vec::new();
    for b in &with {
        let mut top: Vec<_> = b.profile.iter().filter(|p| p.percent.is_finite()).collect();
        top.sort_by(|a, b| b.percent.total_cmp(&a.percent));
        for p in top.into_iter().take(PROFILE_TOP) {
            match symbols.iter_mut().find(|(sym, _)| *sym == p.symbol) {
                Some((_, most)) => *most = most.max(p.percent),
                None => symbols.push((&p.symbol, p.percent)),
            }
        }
    }
    symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    symbols.truncate(PROFILE_ROWS);
    let _ = writeln!(
        s,
        "Profile while Bulkhead TC floods (`perf record -a`, percent of all samples; the {PROFILE_TOP} largest symbols at each N; our programs are the `bpf_prog_…` symbols):\n"
    );
    let _ = write!(s, "| symbol |");
    for b in &with {
        let _ = write!(s, " N = {} |", rules_label(b.rules));
    }
    let _ = writeln!(s, "\n| --- |{}", " ---: |".repeat(with.len()));
    for (sym, _) in &symbols {
        let _ = write!(s, "| `{}` |", cell_text(sym));
        for b in &with {
            match b.profile.iter().find(|p| p.symbol == *sym) {
                Some(p) => {
                    let _ = write!(s, " {:.1}% |", p.percent);
                }
                None => {
                    let _ = write!(s, " – |");
                }
            }
        }
        s.push('\n');
    }
    s.push('\n');
}

fn method(s: &mut String, v: &View) {
    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "One topology for every contender: client → veth → node (routing) → veth → server, each in its own network namespace; the contenders differ only in what enforces the N-entry allow-list on the node's side. B0 is the same veths and routing with nothing attached; the hook floor attaches a TC program that passes everything to both host-side veths, the cost of the hook itself. iptables (linear) is `iptables-legacy` with chains as kube-router and Calico's iptables mode build them: conntrack accepts established flows first, then one ACCEPT rule per entry, then DROP. iptables + ipset holds the allow-list in one `hash:net,port` set; nftables in one interval set keyed by source prefix, protocol and port, with conntrack. Bulkhead TC is `from_pod` and `to_pod` as the agent runs them (flow accounting on, host routing on: a packet between the two pods is judged for both by `from_pod` and its tail call `deliver` and redirected into the receiving pod, skipping the node's stack); Bulkhead TC + XDP adds the XDP prefilter; Bulkhead TC, node's stack is the same with host routing off, so every packet crosses the node's routing as with the netfilter contenders.\n"
    );
    let _ = writeln!(
        s,
        "Rounds interleave: every round measures every (contender, N) once, in a rotating order, so the machine's drift between rounds hits all alike. Cells report the median over rounds. Ratios to B0 are paired: the median over rounds of the value over B0's in the same round at the same N, which cancels drift between rounds that would otherwise be larger than the differences measured. Ratios to the best compare medians at one N, among the contenders that enforce.\n"
    );
    let _ = writeln!(s, "What each metric is:\n");
    for &m in &v.metrics {
        let _ = writeln!(s, "- {} ({}): {}", m.title(), m.unit(), describe(m));
    }
    s.push('\n');
}

/// What a metric measures, for the Method section.
fn describe(m: Metric) -> &'static str {
    match m {
        Metric::PacketRate => {
            "packets per second the server receives from one established UDP flow of 60-byte frames, millions."
        }
        Metric::CpuPerPacket => {
            "machine CPU time (all CPUs) during that flood over the packets received, nanoseconds."
        }
        Metric::ConnectionRate => {
            "TCP connections opened and closed per second by a connect/close loop, thousands; every one takes the new-connection path of the contender."
        }
        Metric::ConnectTime => {
            "median time of one connect() in that loop (the SYN through the contender's new-connection path, the SYN-ACK back), microseconds: the first packet's cost, seen from the client."
        }
        Metric::DenyRate => {
            "packets per second the client pushes at a port the allow-list denies, all dropped by the contender, millions (does not apply to the baselines: nothing denies)."
        }
        Metric::LatencyP50 => {
            "UDP ping-pong round trip (sockperf, 64-byte messages, both ends busy-polling so that vCPU wake-ups do not dominate), median, microseconds."
        }
        Metric::LatencyP99 => "the same round trips, 99th percentile, microseconds.",
        Metric::Throughput => "bulk TCP throughput measured by iperf3, Gbit/s.",
        Metric::UpdateOne => {
            "time from adding one allow-list entry to the first packet it lets through, milliseconds."
        }
        Metric::UpdateFull => {
            "time to load the whole N-entry allow-list until it is enforced, milliseconds."
        }
        Metric::UpdateDrops => {
            "packets of an allowed flow lost while the full allow-list is reloaded repeatedly (any loss is a gap in atomicity)."
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
