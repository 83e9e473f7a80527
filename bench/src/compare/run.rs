//! The comparison run: rounds × allow-list sizes × contenders, each cell in
//! a fresh topology (so no contender sees another's conntrack, sets or
//! programs), contenders in a rotating order per round so that the
//! machine's drift hits all alike.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::allowlist::{self, Entry, FLOOD_PORT, UPDATE_PORT};
use super::contender::{self, Installed};
use super::measure;
use super::model::{Breakdown, Contender, Metric, Plan, ProfileShare, Sample};
use super::progcost;
use crate::dataplane::netns::Topology;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The dataplane ELF.
    pub elf: PathBuf,
    /// Sizes, rounds, seconds, contenders, metrics.
    pub plan: Plan,
    /// Full reloads during the drops measurement.
    pub reloads: usize,
    /// `perf record` one extra Bulkhead TC flood at the largest N.
    pub profile: bool,
}

/// Everything measured.
pub struct Measured {
    /// Samples, in the order taken.
    pub samples: Vec<Sample>,
    /// Program cost per N (CPU fields filled in by [`breakdown`]).
    pub program_cost: Vec<(usize, f64, f64)>,
    /// The profile of Bulkhead TC's flood at the largest N.
    pub profile: Vec<ProfileShare>,
    /// What went wrong where, for the report.
    pub notes: Vec<String>,
}

/// Runs the whole comparison, printing progress to stderr.
pub fn run(cfg: &RunConfig) -> Result<Measured> {
    crate::dataplane::netns::remove_stale();
    contender::remove_stale_pins();
    let plan = &cfg.plan;
    let mut out = Measured {
        samples: Vec::new(),
        program_cost: Vec::new(),
        profile: Vec::new(),
        notes: Vec::new(),
    };
    let cells = plan.rounds * plan.rules.len() * plan.contenders.len();
    let started = Instant::now();
    let mut done = 0usize;
    for round in 0..plan.rounds {
        for &n in &plan.rules {
            let entries = allowlist::entries(n);
            let k = plan.contenders.len();
            for i in 0..k {
                let c = plan.contenders[(i + round) % k];
                let t = Instant::now();
                match cell(cfg, c, n, round, &entries) {
                    Ok(samples) => out.samples.extend(samples),
                    Err(e) => {
                        let note = format!("round {round}, N = {n}, {}: {e:#}", c.key());
                        eprintln!("[compare] FAILED {note}");
                        out.notes.push(note);
                    }
                }
                done += 1;
                eprintln!(
                    "[compare] {done}/{cells} round {round} N={n} {} in {:.1} s ({:.0} s so far)",
                    c.key(),
                    t.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    for &n in &plan.rules {
        match progcost::established(&cfg.elf, &allowlist::entries(n), 5) {
            Ok((from, to)) => out.program_cost.push((n, from, to)),
            Err(e) => out.notes.push(format!("program cost at N = {n}: {e:#}")),
        }
    }
    if cfg.profile && plan.contenders.contains(&Contender::BulkheadTc) {
        let n = *plan.rules.last().unwrap_or(&10);
        match profile(cfg, n) {
            Ok(p) => out.profile = p,
            Err(e) => out.notes.push(format!("profile: {e:#}")),
        }
    }
    Ok(out)
}

/// One contender at one N in one round: every metric that applies.
fn cell(
    cfg: &RunConfig,
    c: Contender,
    n: usize,
    round: usize,
    entries: &[Entry],
) -> Result<Vec<Sample>> {
    let topo = Topology::create()?;
    let mut inst = contender::install(c, &topo, &cfg.elf, entries)
        .with_context(|| format!("installing {} with {n} entries", c.key()))?;
    let measured = measure_cell(cfg, &topo, &mut inst, entries);
    let removed = inst.remove();
    drop(topo);
    let values = measured?;
    removed?;
    Ok(values
        .into_iter()
        .map(|(metric, value)| Sample {
            contender: c,
            rules: n,
            metric,
            round,
            value,
        })
        .collect())
}

fn measure_cell(
    cfg: &RunConfig,
    topo: &Topology,
    inst: &mut Installed,
    entries: &[Entry],
) -> Result<Vec<(Metric, f64)>> {
    let plan = &cfg.plan;
    let secs = plan.seconds;
    let c = inst.contender;
    let wants = |m: Metric| plan.metrics.contains(&m) && m.applies_to(c);
    let mut v = Vec::new();
    if wants(Metric::PacketRate) || wants(Metric::CpuPerPacket) {
        let (mpps, cpu) = measure::packet_rate(topo, secs).context("packet rate")?;
        v.push((Metric::PacketRate, mpps));
        v.push((Metric::CpuPerPacket, cpu));
    }
    if wants(Metric::DenyRate) {
        let (mpps, through) = measure::deny_rate(topo, secs).context("deny rate")?;
        anyhow::ensure!(
            through == 0,
            "{through} denied datagrams reached the server"
        );
        v.push((Metric::DenyRate, mpps));
    }
    if wants(Metric::ConnectionRate) || wants(Metric::ConnectTime) {
        let conns = measure::connection_rate(topo, secs).context("connection rate")?;
        if conns.timeouts > 0 {
            eprintln!(
                "[compare] {}: {} connection attempts timed out",
                c.key(),
                conns.timeouts
            );
        }
        v.push((Metric::ConnectionRate, conns.per_second_k));
        v.push((Metric::ConnectTime, conns.connect_us));
    }
    if wants(Metric::LatencyP50) || wants(Metric::LatencyP99) {
        let (p50, p99) = measure::latency(topo, secs).context("latency (sockperf)")?;
        v.push((Metric::LatencyP50, p50));
        v.push((Metric::LatencyP99, p99));
    }
    if wants(Metric::Throughput) {
        v.push((
            Metric::Throughput,
            measure::throughput(topo, secs).context("throughput (iperf3)")?,
        ));
    }
    if wants(Metric::UpdateOne) {
        let mut with = entries.to_vec();
        let e = allowlist::update_entry();
        with.push(e);
        let ms = measure::time_until_passes(topo, UPDATE_PORT, || inst.add_entry(&e, &with))
            .context("one-entry update")?;
        v.push((Metric::UpdateOne, ms));
    }
    if wants(Metric::UpdateFull) {
        inst.reload(&[]).context("emptying the allow-list")?;
        let ms = measure::time_until_passes(topo, FLOOD_PORT, || inst.reload(entries))
            .context("full load")?;
        v.push((Metric::UpdateFull, ms));
    }
    if wants(Metric::UpdateDrops) {
        let n = entries.len();
        let (lost, sent) = measure::drops_during(topo, Duration::from_micros(100), || {
            for k in 0..cfg.reloads {
                inst.reload(&allowlist::entries_variant(n, 1 + k as u16))?;
            }
            Ok(())
        })
        .context("drops during reloads")?;
        anyhow::ensure!(sent > 0, "the allowed flow sent nothing");
        v.push((Metric::UpdateDrops, lost as f64));
    }
    Ok(v)
}

/// `perf record -a` over a Bulkhead TC flood at `n` entries: the top
/// kernel symbols.
fn profile(cfg: &RunConfig, n: usize) -> Result<Vec<ProfileShare>> {
    let entries = allowlist::entries(n);
    let topo = Topology::create()?;
    let inst = contender::install(Contender::BulkheadTc, &topo, &cfg.elf, &entries)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("perf.data");
    let secs = cfg.plan.seconds.max(1.0);
    let result = (|| -> Result<Vec<ProfileShare>> {
        let mut rec = Command::new("perf")
            .args(["record", "-a", "-F", "1999", "-o"])
            .arg(&data)
            .args(["--", "sleep", &format!("{}", secs + 0.5)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("perf (Debian linux-perf) is not available")?;
        std::thread::sleep(Duration::from_millis(200));
        measure::packet_rate(&topo, secs)?;
        rec.wait()?;
        let out = Command::new("perf")
            .args(["report", "--no-children", "--sort", "sym", "--stdio", "-i"])
            .arg(&data)
            .output()?;
        Ok(parse_perf_report(&String::from_utf8_lossy(&out.stdout), 15))
    })();
    inst.remove()?;
    drop(topo);
    result
}

/// The first `top` `NN.NN%  [k] symbol` lines of `perf report --stdio`.
pub fn parse_perf_report(text: &str, top: usize) -> Vec<ProfileShare> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pct = it.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            let kind = it.next()?;
            if !kind.starts_with('[') {
                return None;
            }
            let symbol = it.collect::<Vec<_>>().join(" ");
            Some(ProfileShare {
                symbol,
                percent: pct,
            })
        })
        .take(top)
        .collect()
}

/// Per N: the CPU per packet medians of bare, hook floor and Bulkhead TC
/// through the node's stack (from `cells`' medians) beside the program
/// cost of `from_pod` + `to_pod`, the two programs that path runs.
pub fn breakdown(cells: &[super::model::Cell], measured: &Measured) -> Vec<Breakdown> {
    let median = |c: Contender, n: usize| {
        cells
            .iter()
            .find(|x| x.contender == c && x.rules == n && x.metric == Metric::CpuPerPacket)
            .map_or(f64::NAN, |x| x.median)
    };
    let largest = measured.program_cost.iter().map(|p| p.0).max();
    measured
        .program_cost
        .iter()
        .map(|&(n, from, to)| Breakdown {
            rules: n,
            bare_ns: median(Contender::Bare, n),
            hook_floor_ns: median(Contender::HookFloor, n),
            bulkhead_tc_ns: median(Contender::BulkheadTcStack, n),
            from_pod_ns: from,
            to_pod_ns: to,
            profile: if Some(n) == largest {
                measured.profile.clone()
            } else {
                Vec::new()
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_report_lines() {
        let text = "# Samples: 10K\n#\n    30.48%  [k] _raw_spin_unlock_irqrestore\n            |--29.16%--sock_def_readable\n     1.20%  [k] bpf_prog_0d1d60fb36ea7f4e_from_pod\n";
        let p = parse_perf_report(text, 5);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].symbol, "_raw_spin_unlock_irqrestore");
        assert!((p[1].percent - 1.20).abs() < 1e-9);
    }
}
