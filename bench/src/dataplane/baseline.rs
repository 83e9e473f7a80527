//! The program cost of this ELF against a baseline ELF measured in the
//! same run (`dataplane_bench --baseline-elf`): per (rule case, program,
//! path), both ELFs' medians and the ratio, and the report's section and
//! target line about them.
//!
//! The ratio is the median over rounds of the per-round ratio (this ELF's
//! sample over the baseline's sample of the same round), not the ratio of
//! the two medians: [`super::prog_cost::measure_paired`] takes the two
//! samples of a round back to back, so each per-round ratio cancels what
//! the machine was doing at the time, and the median drops the odd round
//! one interrupt spoiled.

use std::fmt::Write as _;

use serde::Serialize;

use super::prog_cost::{CaseCost, Measurement, PathKind, Prog};
use super::stats::Summary;
use crate::report::int;

/// A ratio (this ELF over the baseline) above this is a regression.
pub const REGRESSION_LIMIT: f64 = 1.05;

/// One (rule case, program, path) measured with both ELFs.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineRow {
    /// The rule case (nominal rules).
    pub rules: usize,
    /// Program.
    pub prog: Prog,
    /// Path.
    pub path: PathKind,
    /// The baseline ELF's median ns over rounds.
    pub baseline_ns: f64,
    /// This ELF's median ns over rounds.
    pub ns: f64,
    /// Per-round ratios, this ELF over the baseline (their median is the
    /// reported ratio).
    pub ratio: Summary,
}

impl BaselineRow {
    /// Whether there is a ratio at all (a round with a positive baseline).
    pub fn measured(&self) -> bool {
        !self.ratio.samples.is_empty()
    }

    /// Whether the ratio is over [`REGRESSION_LIMIT`].
    pub fn regressed(&self) -> bool {
        self.measured() && self.ratio.median > REGRESSION_LIMIT
    }
}

/// The baseline ELF's side of a run.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineCost {
    /// The baseline ELF's program cost per rule case, every sample.
    pub cases: Vec<CaseCost>,
    /// This ELF against the baseline, in report order (program, path, rule
    /// case).
    pub rows: Vec<BaselineRow>,
}

/// Per-round ratios `this[i] / baseline[i]`, skipping rounds whose
/// baseline sample is not positive (and rounds only one side has).
pub fn round_ratios(baseline: &[f64], this: &[f64]) -> Vec<f64> {
    baseline
        .iter()
        .zip(this)
        .filter(|(b, t)| **b > 0.0 && t.is_finite())
        .map(|(b, t)| t / b)
        .collect()
}

fn find(case: &CaseCost, prog: Prog, path: PathKind) -> Option<&Measurement> {
    case.measurements
        .iter()
        .find(|m| m.prog == prog && m.path == path)
}

/// This ELF's `cases` against the `baseline`'s, matched by rule case,
/// program and path (what only one side has is left out).
pub fn compare(cases: &[CaseCost], baseline: &[CaseCost]) -> Vec<BaselineRow> {
    let mut rows = Vec::new();
    for prog in Prog::ALL {
        for path in PathKind::ALL {
            for case in cases {
                let rules = case.facts.nominal;
                let Some(base) = baseline.iter().find(|b| b.facts.nominal == rules) else {
                    continue;
                };
                if let (Some(t), Some(b)) = (find(case, prog, path), find(base, prog, path)) {
                    rows.push(BaselineRow {
                        rules,
                        prog,
                        path,
                        baseline_ns: b.ns.median,
                        ns: t.ns.median,
                        ratio: Summary::new(round_ratios(&b.ns.samples, &t.ns.samples)),
                    });
                }
            }
        }
    }
    rows
}

/// The row with the largest ratio among `rows` that pass `keep`.
fn largest(rows: &[BaselineRow], keep: impl Fn(&BaselineRow) -> bool) -> Option<&BaselineRow> {
    rows.iter()
        .filter(|r| r.measured() && keep(r))
        .max_by(|a, b| a.ratio.median.total_cmp(&b.ratio.median))
}

/// `×1.012 (to_pod, 1,000 rules: 112 → 113 ns; rounds 0.990–1.030)`.
fn row_brief(r: &BaselineRow, with_path: bool) -> String {
    let path = if with_path {
        format!(" {}", r.path.label())
    } else {
        String::new()
    };
    format!(
        "×{:.3} (`{}`{path}, {} rules: {:.0} → {:.0} ns; rounds {:.3}–{:.3})",
        r.ratio.median,
        r.prog.name(),
        int(r.rules),
        r.baseline_ns,
        r.ns,
        r.ratio.min,
        r.ratio.max
    )
}

impl BaselineCost {
    /// Builds the comparison of `cases` (this ELF) with `baseline`.
    pub fn new(cases: &[CaseCost], baseline: Vec<CaseCost>) -> Self {
        Self {
            rows: compare(cases, &baseline),
            cases: baseline,
        }
    }

    /// The rows over [`REGRESSION_LIMIT`].
    pub fn regressions(&self) -> Vec<&BaselineRow> {
        self.rows.iter().filter(|r| r.regressed()).collect()
    }

    /// The report's one-line summary (a "Targets" bullet, newline ended).
    pub fn target_line(&self, s: &mut String) {
        let est = largest(&self.rows, |r| r.path == PathKind::Established);
        let all = largest(&self.rows, |_| true);
        let (Some(est), Some(all)) = (est, all) else {
            let _ = writeln!(s, "- Against the baseline ELF: no comparable measurements.");
            return;
        };
        let regressions = self.regressions();
        let verdict = if regressions.is_empty() {
            format!("**no regression** (no row over ×{REGRESSION_LIMIT:.2})")
        } else {
            let list: Vec<String> = regressions.iter().map(|r| row_brief(r, true)).collect();
            format!(
                "**regression**: {} of {} rows over ×{REGRESSION_LIMIT:.2}: {}",
                regressions.len(),
                self.rows.len(),
                list.join("; ")
            )
        };
        let _ = writeln!(
            s,
            "- Against the baseline ELF (same run, measurements interleaved; median of per-round ratios, this / baseline): established path (CT hit) largest {}; every path largest {}; {verdict}.",
            row_brief(est, false),
            row_brief(all, true),
        );
    }

    /// The report's section "Against the baseline ELF".
    pub fn markdown(&self, s: &mut String) {
        let _ = writeln!(s, "## Against the baseline ELF\n");
        let _ = writeln!(
            s,
            "The baseline ELF (see the run header) measured in the same run: every case loaded once from each ELF (each with its own maps, the same image), both measured on the same pinned CPU, alternately measurement by measurement (the ELF going first alternating by round). \"baseline\" and \"this ELF\" are each the median over rounds of their own samples; the ratio is the **median over rounds of the per-round ratio** this / baseline (min–max of the per-round ratios in brackets), so it is not exactly the quotient of the two medians. TC \"new flow, allowed\" is the pair method's derived value (see above) and the noisiest row. Ratios over ×{REGRESSION_LIMIT:.2} are flagged. Each loaded instance has its own map memory (and hash seeds), which can move one row a few per cent from ×1 in every round with no code change at all: the ELF measured against itself (`--baseline-elf` the same file as `--elf`) shows how far on this machine, and swapping `--elf` and `--baseline-elf` tells such a row from a real change (which inverts).\n"
        );
        self.by_path(s);
        let _ = writeln!(
            s,
            "| program | path | rules | baseline | this ELF | this / baseline |"
        );
        let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: |");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} ns | {:.0} ns | {} |",
                r.prog.name(),
                r.path.label(),
                int(r.rules),
                r.baseline_ns,
                r.ns,
                ratio_cell(r)
            );
        }
        let _ = writeln!(s);
    }

    /// Per path, the smallest, median and largest ratio over programs and
    /// rule cases.
    fn by_path(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "| path | rows | smallest ratio | median ratio | largest ratio |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
        for path in PathKind::ALL {
            let ratios: Vec<f64> = self
                .rows
                .iter()
                .filter(|r| r.path == path && r.measured())
                .map(|r| r.ratio.median)
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let n = ratios.len();
            let sum = Summary::new(ratios);
            let _ = writeln!(
                s,
                "| {} | {n} | ×{:.3} | ×{:.3} | ×{:.3} |",
                path.label(),
                sum.min,
                sum.median,
                sum.max
            );
        }
        let _ = writeln!(s);
    }
}

/// `×1.004 (0.998–1.010)`, flagged when over the limit, `–` without ratios.
fn ratio_cell(r: &BaselineRow) -> String {
    if !r.measured() {
        return "–".to_owned();
    }
    let flag = if r.regressed() {
        format!(" **over ×{REGRESSION_LIMIT:.2}**")
    } else {
        String::new()
    };
    format!(
        "×{:.3} ({:.3}–{:.3}){flag}",
        r.ratio.median, r.ratio.min, r.ratio.max
    )
}

#[cfg(test)]
mod tests;
