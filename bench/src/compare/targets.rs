//! The three packet-rate targets, judged from the cells:
//! (a) Bulkhead at least [`RATE_LIMIT`] of B0 at every N; (b) flat: its
//! largest median over N within [`FLAT_LIMIT`] of its smallest; (c) ahead
//! of iptables-linear at every N ≥ [`AHEAD_FROM`]. Bulkhead TC is the
//! contender judged; Bulkhead TC + XDP is judged the same way for
//! information.

use serde::Serialize;

use super::model::{Cell, Contender, Metric};
use super::report::{number, rules_label};

/// Packet rate Bulkhead must keep, as a share of B0's (paired per round).
pub const RATE_LIMIT: f64 = 0.95;
/// Largest over smallest Bulkhead median packet rate across N.
pub const FLAT_LIMIT: f64 = 1.10;
/// Bulkhead must be ahead of iptables-linear from this N on.
pub const AHEAD_FROM: usize = 1000;

/// The outcome of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every N judged meets it.
    Met,
    /// At least one measured N (or the spread over N) fails it.
    Missed,
    /// Nothing measured fails it, but some N it needs was not measured.
    NotJudged,
}

impl Verdict {
    /// As the report prints it.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotJudged => "not judged",
        }
    }

    /// From "some N fails" and "some N is missing", failure first: a
    /// measured failure is a miss whatever else is missing.
    fn of(failed: bool, missing: bool) -> Self {
        if failed {
            Verdict::Missed
        } else if missing {
            Verdict::NotJudged
        } else {
            Verdict::Met
        }
    }
}

/// Which of the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// (a) At least [`RATE_LIMIT`] of B0's packet rate at every N.
    NearBare,
    /// (b) Largest / smallest median over N within [`FLAT_LIMIT`].
    Flat,
    /// (c) Median above iptables-linear's at every N ≥ [`AHEAD_FROM`].
    AheadOfIptables,
}

impl Goal {
    /// The target as the issue states it.
    pub fn title(self) -> String {
        match self {
            Goal::NearBare => format!(
                "packet rate at least {:.0}% of B0 at every N",
                RATE_LIMIT * 100.0
            ),
            Goal::Flat => {
                format!("flat from the smallest N to the largest (within ×{FLAT_LIMIT:.2})")
            }
            Goal::AheadOfIptables => format!(
                "ahead of iptables-linear from {} rules on",
                rules_label(AHEAD_FROM)
            ),
        }
    }
}

/// One N's numbers for a target.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// N.
    pub rules: usize,
    /// The contender's median packet rate, Mpps; `None`: not measured.
    pub median: Option<f64>,
    /// (a) the paired ratio to B0; (b) median / the smallest median over
    /// N; (c) median / iptables-linear's median.
    pub ratio: Option<f64>,
    /// (c) iptables-linear's median, Mpps.
    pub reference: Option<f64>,
    /// Whether this N meets the target; `None` where it cannot be judged
    /// and for (b), which judges the spread, not single N.
    pub ok: Option<bool>,
}

/// One target judged for one contender.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// Which target.
    pub goal: Goal,
    /// Whose packet rate.
    pub contender: Contender,
    /// Met, missed, or not judged.
    pub verdict: Verdict,
    /// The number the verdict rests on: (a) the lowest ratio to B0; (b)
    /// largest / smallest median; (c) the lowest ratio to iptables-linear.
    pub headline: Option<f64>,
    /// Where (a) and (c) are worst; for (b), the N of the smallest median.
    pub worst_rules: Option<usize>,
    /// The numbers per N judged.
    pub points: Vec<Point>,
    /// The verdict in one sentence, with its numbers.
    pub sentence: String,
}

impl Target {
    /// Whether the contender was measured at any N of this target.
    pub fn measured(&self) -> bool {
        self.points.iter().any(|p| p.median.is_some())
    }
}

/// Judges all three targets for Bulkhead TC, then for Bulkhead TC + XDP
/// and TC through the node's stack.
/// `rules` is the plan's N list; when empty, the N that have cells.
pub fn evaluate(cells: &[Cell], rules: &[usize]) -> Vec<Target> {
    [
        Contender::BulkheadTc,
        Contender::BulkheadTcXdp,
        Contender::BulkheadTcStack,
    ]
    .into_iter()
    .flat_map(|c| evaluate_for(cells, rules, c))
    .collect()
}

/// Judges the three targets for `contender`'s packet rate.
pub fn evaluate_for(cells: &[Cell], rules: &[usize], contender: Contender) -> Vec<Target> {
    let mut ns: Vec<usize> = if rules.is_empty() {
        cells
            .iter()
            .filter(|c| c.metric == Metric::PacketRate)
            .map(|c| c.rules)
            .collect()
    } else {
        rules.to_vec()
    };
    ns.sort_unstable();
    ns.dedup();
    let cell = |who: Contender, n: usize| {
        cells
            .iter()
            .find(|c| c.contender == who && c.rules == n && c.metric == Metric::PacketRate)
    };
    vec![
        near_bare(contender, &ns, |n| cell(contender, n)),
        flat(contender, &ns, |n| cell(contender, n)),
        ahead(contender, &ns, |n| {
            (cell(contender, n), cell(Contender::IptablesLinear, n))
        }),
    ]
}

/// N as the report writes them, joined.
fn list(ns: &[usize]) -> String {
    ns.iter()
        .map(|&n| rules_label(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a per-N target's points add up to.
struct Tally<'p> {
    /// The points that miss the target.
    failed: Vec<&'p Point>,
    /// The N that could not be judged.
    missing: Vec<usize>,
    /// The lowest ratio, with its N.
    worst: Option<(usize, f64)>,
    /// Missed if any N failed, else not judged if any is missing (or there
    /// are none), else met.
    verdict: Verdict,
}

fn tally(points: &[Point]) -> Tally<'_> {
    let failed: Vec<&Point> = points.iter().filter(|p| p.ok == Some(false)).collect();
    let missing: Vec<usize> = points
        .iter()
        .filter(|p| p.ok.is_none())
        .map(|p| p.rules)
        .collect();
    // Only judged points have a ratio that counts.
    let worst = points
        .iter()
        .filter(|p| p.ok.is_some())
        .filter_map(|p| Some((p.rules, p.ratio?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let verdict = Verdict::of(!failed.is_empty(), !missing.is_empty() || points.is_empty());
    Tally {
        failed,
        missing,
        worst,
        verdict,
    }
}

fn near_bare<'a>(who: Contender, ns: &[usize], cell: impl Fn(usize) -> Option<&'a Cell>) -> Target {
    let points: Vec<Point> = ns
        .iter()
        .map(|&n| {
            let c = cell(n);
            let ratio = c.and_then(|c| c.ratio_to_bare);
            Point {
                rules: n,
                median: c.map(|c| c.median),
                ratio,
                reference: None,
                ok: ratio.map(|r| r >= RATE_LIMIT),
            }
        })
        .collect();
    let Tally {
        failed,
        missing,
        worst,
        verdict,
    } = tally(&points);
    let name = who.name();
    let limit = RATE_LIMIT * 100.0;
    let lowest =
        |(n, r): (usize, f64)| format!("lowest {:.1}%, at {} rules", r * 100.0, rules_label(n));
    let sentence = match (verdict, worst) {
        (Verdict::Met, Some(w)) => format!(
            "{name} keeps at least {limit:.0}% of B0's packet rate at every N ({}).",
            lowest(w)
        ),
        (Verdict::Missed, Some(w)) => format!(
            "{name} falls below {limit:.0}% of B0's packet rate at {} of {} N ({}: {:.1} percentage points short of the target).",
            failed.len(),
            ns.len(),
            lowest(w),
            limit - w.1 * 100.0
        ),
        (_, Some(w)) => format!(
            "{name}'s packet rate relative to B0 was not measured at {} rules, so the target cannot be judged (where measured: {}).",
            list(&missing),
            lowest(w)
        ),
        (_, None) => format!("{name}'s packet rate relative to B0 was not measured."),
    };
    Target {
        goal: Goal::NearBare,
        contender: who,
        verdict,
        headline: worst.map(|w| w.1),
        worst_rules: worst.map(|w| w.0),
        points,
        sentence,
    }
}

fn flat<'a>(who: Contender, ns: &[usize], cell: impl Fn(usize) -> Option<&'a Cell>) -> Target {
    let medians: Vec<(usize, Option<f64>)> =
        ns.iter().map(|&n| (n, cell(n).map(|c| c.median))).collect();
    let measured = medians.iter().filter_map(|&(n, m)| Some((n, m?)));
    let smallest = measured.clone().min_by(|a, b| a.1.total_cmp(&b.1));
    let largest = measured.clone().max_by(|a, b| a.1.total_cmp(&b.1));
    let count = measured.count();
    let spread = match (smallest, largest) {
        (Some(s), Some(l)) if s.1 > 0.0 && count >= 2 => Some(l.1 / s.1),
        _ => None,
    };
    let points = medians
        .iter()
        .map(|&(n, m)| Point {
            rules: n,
            median: m,
            ratio: match (m, smallest) {
                (Some(m), Some(s)) if s.1 > 0.0 => Some(m / s.1),
                _ => None,
            },
            reference: None,
            ok: None,
        })
        .collect();
    let missing: Vec<usize> = medians
        .iter()
        .filter(|(_, m)| m.is_none())
        .map(|&(n, _)| n)
        .collect();
    let verdict = match spread {
        Some(x) => Verdict::of(x > FLAT_LIMIT, !missing.is_empty()),
        None => Verdict::NotJudged,
    };
    let name = who.name();
    let sentence = match (spread, smallest, largest) {
        (Some(x), Some(s), Some(l)) => {
            let within = if x > FLAT_LIMIT { "beyond" } else { "within" };
            let gap = if missing.is_empty() {
                String::new()
            } else {
                format!(" (not measured at {} rules)", list(&missing))
            };
            format!(
                "{name}'s largest median packet rate over N ({} Mpps at {} rules) is ×{x:.3} its smallest ({} Mpps at {} rules), {within} ×{FLAT_LIMIT:.2}{gap}.",
                number(l.1),
                rules_label(l.0),
                number(s.1),
                rules_label(s.0),
            )
        }
        _ => format!(
            "{name}'s packet rate was not measured at two or more N with a positive rate, so flatness cannot be judged."
        ),
    };
    Target {
        goal: Goal::Flat,
        contender: who,
        verdict,
        headline: spread,
        worst_rules: smallest.map(|s| s.0),
        points,
        sentence,
    }
}

fn ahead<'a>(
    who: Contender,
    ns: &[usize],
    cells: impl Fn(usize) -> (Option<&'a Cell>, Option<&'a Cell>),
) -> Target {
    let points: Vec<Point> = ns
        .iter()
        .filter(|&&n| n >= AHEAD_FROM)
        .map(|&n| {
            let (ours, theirs) = cells(n);
            let (median, reference) = (ours.map(|c| c.median), theirs.map(|c| c.median));
            let (ratio, ok) = match (median, reference) {
                (Some(a), Some(b)) => ((b > 0.0).then(|| a / b), Some(a > b)),
                _ => (None, None),
            };
            Point {
                rules: n,
                median,
                ratio,
                reference,
                ok,
            }
        })
        .collect();
    let Tally {
        failed,
        missing,
        worst,
        verdict,
    } = tally(&points);
    let name = who.name();
    let from = rules_label(AHEAD_FROM);
    let vs = |p: &Point| {
        format!(
            "{} rules: {} vs {} Mpps{}",
            rules_label(p.rules),
            p.median.map_or("–".into(), number),
            p.reference.map_or("–".into(), number),
            p.ratio.map_or(String::new(), |r| format!(", ×{r:.2}"))
        )
    };
    let sentence = match verdict {
        _ if points.is_empty() => {
            format!("No N ≥ {from} was measured, so this target cannot be judged.")
        }
        Verdict::Met => format!(
            "{name} is ahead of iptables (linear) at every N ≥ {from}{}.",
            worst.map_or(String::new(), |(n, r)| format!(
                " (by ×{r:.2} at the least, at {} rules)",
                rules_label(n)
            ))
        ),
        Verdict::Missed => format!(
            "{name} is not ahead of iptables (linear) at {} of {} N ≥ {from} ({}).",
            failed.len(),
            points.len(),
            failed.iter().map(|&p| vs(p)).collect::<Vec<_>>().join("; ")
        ),
        Verdict::NotJudged => format!(
            "{name} or iptables (linear) was not measured at {} rules, so this target cannot be judged.",
            list(&missing)
        ),
    };
    Target {
        goal: Goal::AheadOfIptables,
        contender: who,
        verdict,
        headline: worst.map(|w| w.1),
        worst_rules: worst.map(|w| w.0),
        points,
        sentence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: [usize; 4] = [10, 1000, 10_000, 100_000];

    fn cell(contender: Contender, rules: usize, median: f64, to_bare: Option<f64>) -> Cell {
        Cell {
            contender,
            rules,
            metric: Metric::PacketRate,
            median,
            min: median,
            max: median,
            samples: 1,
            ratio_to_bare: to_bare,
            ratio_to_best: None,
        }
    }

    /// Bulkhead TC at `tc` Mpps and `to_bare` of B0 per N, iptables-linear
    /// at `ipt` Mpps.
    fn cells(tc: [f64; 4], to_bare: [f64; 4], ipt: [f64; 4]) -> Vec<Cell> {
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(cell(Contender::BulkheadTc, NS[i], tc[i], Some(to_bare[i])));
            out.push(cell(Contender::IptablesLinear, NS[i], ipt[i], None));
        }
        out
    }

    fn verdicts(t: &[Target]) -> Vec<Verdict> {
        t.iter().map(|t| t.verdict).collect()
    }

    #[test]
    fn all_met() {
        let c = cells(
            [1.00, 0.99, 0.98, 0.97],
            [0.99, 0.98, 0.97, 0.96],
            [1.01, 0.80, 0.40, 0.05],
        );
        let t = evaluate_for(&c, &NS, Contender::BulkheadTc);
        assert_eq!(verdicts(&t), [Verdict::Met; 3]);
        assert_eq!(t[0].headline, Some(0.96));
        assert_eq!(t[0].worst_rules, Some(100_000));
        assert!(
            t[0].sentence.contains("lowest 96.0%, at 100k rules"),
            "{}",
            t[0].sentence
        );
        assert!((t[1].headline.unwrap() - 1.0 / 0.97).abs() < 1e-12);
        // Behind at 10 rules does not count: the target starts at 1k.
        assert_eq!(t[2].points.len(), 3);
        assert_eq!(t[2].worst_rules, Some(1000));
    }

    #[test]
    fn all_missed() {
        let c = cells(
            [1.00, 0.90, 0.85, 0.80],
            [0.97, 0.93, 0.88, 0.85],
            [1.10, 0.95, 0.50, 0.10],
        );
        let t = evaluate_for(&c, &NS, Contender::BulkheadTc);
        assert_eq!(verdicts(&t), [Verdict::Missed; 3]);
        assert!(
            t[0].sentence
                .contains("at 3 of 4 N (lowest 85.0%, at 100k rules: 10.0 percentage points short"),
            "{}",
            t[0].sentence
        );
        assert!((t[1].headline.unwrap() - 1.25).abs() < 1e-12);
        assert!(t[1].sentence.contains("beyond ×1.10"), "{}", t[1].sentence);
        assert!(
            t[2].sentence
                .contains("at 1 of 3 N ≥ 1k (1k rules: 0.900 vs 0.950 Mpps, ×0.95)"),
            "{}",
            t[2].sentence
        );
    }

    #[test]
    fn missing_n_is_not_judged_but_a_failure_still_misses() {
        let mut c = cells([1.0; 4], [0.99; 4], [0.5; 4]);
        c.retain(|c| !(c.contender == Contender::BulkheadTc && c.rules == 10_000));
        let t = evaluate_for(&c, &NS, Contender::BulkheadTc);
        assert_eq!(verdicts(&t), [Verdict::NotJudged; 3]);
        assert!(
            t[0].sentence.contains("not measured at 10k rules"),
            "{}",
            t[0].sentence
        );

        let mut c = cells([1.0, 1.0, 0.5, 1.0], [0.99, 0.99, 0.5, 0.99], [0.8; 4]);
        c.retain(|c| c.rules != 100_000);
        let t = evaluate_for(&c, &NS, Contender::BulkheadTc);
        assert_eq!(verdicts(&t), [Verdict::Missed; 3]);

        // Nothing at all, or no N from 1k on.
        let t = evaluate(&[], &[]);
        assert_eq!(t.len(), 9);
        assert_eq!(verdicts(&t), [Verdict::NotJudged; 9]);
        let t = evaluate_for(
            &cells([1.0; 4], [1.0; 4], [0.5; 4]),
            &[10],
            Contender::BulkheadTc,
        );
        assert_eq!(t[2].verdict, Verdict::NotJudged);
        assert!(t[2].sentence.contains("No N ≥ 1k"), "{}", t[2].sentence);
    }

    #[test]
    fn zero_rates_do_not_divide() {
        let c = cells([0.0; 4], [0.0; 4], [0.0; 4]);
        let t = evaluate_for(&c, &NS, Contender::BulkheadTc);
        assert_eq!(t[0].verdict, Verdict::Missed);
        assert_eq!(t[1].verdict, Verdict::NotJudged);
        assert_eq!(t[1].headline, None);
        // Equal is not ahead.
        assert_eq!(t[2].verdict, Verdict::Missed);
        assert!(t[2].points.iter().all(|p| p.ratio.is_none()));
    }
}
