//! The alerting benchmark's report: one serializable value written as
//! JSON, and the same numbers as Markdown, with the targets judged.

use std::fmt::Write as _;

use serde::Serialize;

use super::Scenario;
use crate::flows::report::rate;
use crate::flows::run::RunResult;
use crate::report::int;
use crate::run_info::RunInfo;

/// The target: alerting costs the pipeline less than this ratio of
/// CPU per record.
pub const TARGET_RATIO: f64 = 1.10;

/// The settings every run shared.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Seconds driven per run.
    pub seconds: f64,
    /// Pairs of runs (one without alerting, one with).
    pub repetitions: usize,
    /// FLOW_CONFIG flags.
    pub flow_flags: u32,
    /// The detectors' subscription queue (records).
    pub subscription_queue: usize,
    /// The flows, the baseline, the thresholds.
    pub scenario: Scenario,
    /// `DetectConfig`: interval, scan window (ms) and scan targets.
    pub detect: (u64, u64, usize),
}

/// One repetition: a run without alerting and one with, back to back.
#[derive(Clone, Debug, Serialize)]
pub struct Pair {
    /// Which ran first: `"A"` (without alerting) or `"B"`.
    pub first: &'static str,
    /// Without alerting.
    pub a: RunResult,
    /// With alerting.
    pub b: RunResult,
}

impl Pair {
    /// B/A of pipeline CPU per record, the detectors' thread included.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.b.pipeline_us_per_record()? / self.a.pipeline_us_per_record()?)
    }

    /// B/A of pipeline CPU per record, the detectors' thread excluded.
    pub fn ratio_without_detector(&self) -> Option<f64> {
        Some(self.b.pipeline_us_per_record_without_detector()? / self.a.pipeline_us_per_record()?)
    }
}

/// Median, lowest and highest of some values.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

impl Spread {
    /// Of `values` (`None` when empty).
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }

    fn show(s: Option<Self>, digits: usize) -> String {
        s.map_or_else(
            || "–".into(),
            |s| {
                format!(
                    "{:.digits$} ({:.digits$}–{:.digits$}, {} runs)",
                    s.median, s.min, s.max, s.n
                )
            },
        )
    }
}

/// A target's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Met.
    pub met: bool,
    /// Why, in words.
    pub detail: String,
}

/// The targets.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    /// The detectors missed no record at the target rate.
    pub no_miss: Verdict,
    /// Pipeline CPU per record B/A below [`TARGET_RATIO`], the detectors'
    /// thread included (median over the repetitions).
    pub ratio: Verdict,
    /// The same with the detectors' thread excluded (the flow pipeline's
    /// own threads: what feeding the detectors costs them).
    pub ratio_without_detector: Verdict,
    /// Both kinds of run lost no flow record and the driver kept up.
    pub pipeline_lossless: Verdict,
}

/// A whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The run: command, machine, time, load, ELF (top-level fields in
    /// JSON).
    #[serde(flatten)]
    pub run: RunInfo,
    /// Shared settings.
    pub settings: Settings,
    /// Every pair, in order.
    pub pairs: Vec<Pair>,
    /// B/A, the detectors' thread included.
    pub ratio: Option<Spread>,
    /// B/A, the detectors' thread excluded.
    pub ratio_without_detector: Option<Spread>,
    /// The detectors' thread, CPU µs per record exported.
    pub detector_us_per_record: Option<Spread>,
    /// The targets.
    pub targets: Targets,
    /// Measurements before a fix, or other notes.
    pub notes: Vec<String>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn met(b: bool) -> &'static str {
    if b { "met" } else { "NOT met" }
}

impl Report {
    /// Judges the targets on `pairs`.
    pub fn judge(
        pairs: &[Pair],
        ratio: Option<Spread>,
        ratio_without: Option<Spread>,
        target_rate: f64,
    ) -> Targets {
        let bs = || pairs.iter().map(|p| &p.b);
        let offered: u64 = bs()
            .filter_map(|b| b.alerting.as_ref())
            .map(|a| a.offered)
            .sum();
        let received: u64 = bs()
            .filter_map(|b| b.alerting.as_ref())
            .map(|a| a.stats.records)
            .sum();
        let missed: u64 = bs()
            .filter_map(|b| b.alerting.as_ref())
            .map(|a| a.stats.records_lost)
            .sum();
        let kept_up = pairs
            .iter()
            .all(|p| p.a.driven.kept_up && p.b.driven.kept_up);
        let no_miss = !pairs.is_empty()
            && kept_up
            && bs().all(|b| b.alerting.as_ref().is_some_and(|a| a.missed_none()));
        let judge_ratio = |s: Option<Spread>, what: &str| match s {
            Some(s) => Verdict {
                met: s.median < TARGET_RATIO,
                detail: format!(
                    "B/A = {:.3} median ({:.3}–{:.3} over {} pairs), {what}; target < {TARGET_RATIO:.2}",
                    s.median, s.min, s.max, s.n
                ),
            },
            None => Verdict {
                met: false,
                detail: "no CPU measured".into(),
            },
        };
        let lossless = !pairs.is_empty()
            && kept_up
            && pairs.iter().all(|p| p.a.zero_loss() && p.b.zero_loss());
        Targets {
            no_miss: Verdict {
                met: no_miss,
                detail: format!(
                    "at {}: the detectors received {} of {} records offered, missed {}{}",
                    rate(Some(target_rate)),
                    int(received as usize),
                    int(offered as usize),
                    int(missed as usize),
                    if kept_up {
                        ""
                    } else {
                        " (the driver did not keep up in some run)"
                    }
                ),
            },
            ratio: judge_ratio(
                ratio,
                "pipeline = process CPU minus the driver thread, the detectors' thread included",
            ),
            ratio_without_detector: judge_ratio(
                ratio_without,
                "pipeline = process CPU minus the driver and the detectors' threads",
            ),
            pipeline_lossless: Verdict {
                met: lossless,
                detail: format!(
                    "{} of {} runs exported every driven flow with no loss and the identity exact",
                    pairs
                        .iter()
                        .flat_map(|p| [&p.a, &p.b])
                        .filter(|r| r.zero_loss())
                        .count(),
                    2 * pairs.len()
                ),
            },
        }
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run
            .markdown_header(&mut s, "Alerting benchmark", false);
        let set = &self.settings;
        let sc = &set.scenario;
        let t = &self.targets;
        let _ = writeln!(s, "## Targets\n");
        let _ = writeln!(
            s,
            "- The detectors miss no record at {}: **{}**. {}.",
            rate(Some(sc.rate)),
            met(t.no_miss.met),
            t.no_miss.detail
        );
        let _ = writeln!(
            s,
            "- Pipeline CPU per record with alerting / without < {TARGET_RATIO:.2}, the detectors' thread included: **{}**. {}.",
            met(t.ratio.met),
            t.ratio.detail
        );
        let _ = writeln!(
            s,
            "- The same, the detectors' thread excluded (the flow pipeline's own threads): **{}**. {}.",
            met(t.ratio_without_detector.met),
            t.ratio_without_detector.detail
        );
        let _ = writeln!(
            s,
            "- No flow record lost, with or without alerting: **{}**. {}.",
            met(t.pipeline_lossless.met),
            t.pipeline_lossless.detail
        );
        let _ = writeln!(
            s,
            "- The detectors' thread: {} µs CPU per record exported (median, range, runs).\n",
            Spread::show(self.detector_us_per_record, 2)
        );
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }

        let _ = writeln!(s, "## Runs\n");
        let _ = writeln!(
            s,
            "A: no alerting. B: alerting on. Each pair runs back to back, alternating which goes first. Pipeline CPU is the process's minus the driver thread's; \"w/o detector\" also minus the detectors' thread.\n"
        );
        let _ = writeln!(
            s,
            "| pair | run | achieved rate | flows driven | records exported | lost in the pipeline | detector: offered / received / missed | alerts raised | pipeline CPU µs/record | w/o detector | detector CPU µs/record | B/A | B/A w/o detector |"
        );
        let _ = writeln!(
            s,
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (i, p) in self.pairs.iter().enumerate() {
            let order: [(&str, &RunResult); 2] = if p.first == "A" {
                [("A", &p.a), ("B", &p.b)]
            } else {
                [("B", &p.b), ("A", &p.a)]
            };
            for (name, r) in order {
                let (det, alerts) = match &r.alerting {
                    Some(a) => (
                        format!(
                            "{} / {} / {}{}",
                            int(a.offered as usize),
                            int(a.stats.records as usize),
                            int(a.stats.records_lost as usize),
                            if a.caught_up { "" } else { " (not caught up)" }
                        ),
                        format!(
                            "{} ({})",
                            int(a.alerts_total() as usize),
                            a.alerts
                                .iter()
                                .map(|(k, n)| format!("{k} {n}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                    None => ("–".into(), "–".into()),
                };
                let ratios = if name == "B" {
                    (opt(p.ratio(), 3), opt(p.ratio_without_detector(), 3))
                } else {
                    ("".into(), "".into())
                };
                let _ = writeln!(
                    s,
                    "| {} | {name} | {:.0}/s | {} | {} | {} | {det} | {alerts} | {} | {} | {} | {} | {} |",
                    i + 1,
                    r.driven.achieved_rate,
                    int(r.driven.flows as usize),
                    int(r.exported as usize),
                    int(r.lost.total() as usize),
                    opt(r.pipeline_us_per_record(), 3),
                    opt(r.pipeline_us_per_record_without_detector(), 3),
                    opt(r.detector_us_per_record(), 3),
                    ratios.0,
                    ratios.1,
                );
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "## Method and reading\n");
        let l = &sc.layout;
        let _ = writeln!(
            s,
            "- Driver, policy and pipeline are the flow benchmark's (`bench/src/flows/`: `from_pod` by `BPF_PROG_TEST_RUN` on a fresh instance of the ELF, the agent's `Pipeline` with its JSON Lines file exporter, settling until every flow is exported, then the exact accounting and log check), at {} for {:.0} s per run, FLOW_CONFIG flags {}. The driver has its own CPU; the pipeline's threads, the detectors' among them, share the others.",
            rate(Some(sc.rate)),
            set.seconds,
            set.flow_flags
        );
        let _ = writeln!(
            s,
            "- Alerting (run B) is the agent's: `bulkhead_agent::alerts::Alerts::start` on the pipeline's history (a subscription of {} records, lossy, its losses counted as `bulkhead_alerts_records_lost_total`), one detector of baseline `{}` (scope: namespace `{}`), `DetectConfig` defaults (interval {} s, scan window {} ms, {} scan targets), alerts appended to a JSON Lines file in the run's temporary directory, Alertmanager {}.",
            int(set.subscription_queue),
            super::BASELINE,
            sc.subject.namespace,
            set.detect.0 / 1000,
            set.detect.1,
            set.detect.2,
            match &sc.alertmanager {
                Some(u) => format!(
                    "configured at {u}, where nothing listens (its client retries from its own queue; it never slows the detectors)"
                ),
                None => "not configured".into(),
            }
        );
        let _ = writeln!(
            s,
            "- Flows and baseline: the subject (`{}`) sends every flow. The baseline holds {} edges (UDP to {} addresses × {} ports of `198.18.0.0/15`); regular flows cycle through them, each from a new source port, so every 5-tuple is new and every record matches the baseline. Every {}th flow ({:.2}%) deviates to a new edge, {} deviating flows per new edge, so about {:.1} new edges per second, each raising one `new_external` alert (fewer than the scan targets per scan window, so no scan alert); their other records are suppressed duplicates. Each flow gives the detectors two records: its new-flow notification and its flow record.",
            sc.subject,
            int(l.known as usize),
            l.known.div_ceil(crate::flows::policy::EDGE_PORTS),
            crate::flows::policy::EDGE_PORTS,
            l.every,
            sc.deviation_share * 100.0,
            l.per_new,
            sc.new_edges_per_second
        );
        let _ = writeln!(
            s,
            "- Offered: records the history handed its subscribers (the detectors' subscription was the only one, from before the first flow); received: records the detectors checked (`bulkhead_alerts_records_total`); missed: records their subscription lost. After the pipeline's stop the run waits until received + missed = offered, then reads the detectors' thread's CPU time (`/proc/self/task/*/schedstat`) and the process's; the alerts are counted in the JSON Lines file after the detectors stop."
        );
        let _ = writeln!(
            s,
            "- CPU per record: CPU seconds over records exported (= flows driven in a lossless run). Ratios are per pair (B over the A next to it), summarized by their median and range; nothing is compared across machines or runs of the benchmark."
        );
        s
    }
}
