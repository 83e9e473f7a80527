//! From samples to cells: per (contender, N, metric) the median, the range
//! and the two ratios the report prints. Pure, deterministic.

use std::collections::BTreeMap;

use super::model::{Cell, Contender, Metric, Sample};

/// Summarizes `samples` into one [`Cell`] per (contender, N, metric) that
/// has at least one finite sample, sorted by contender (report order), N,
/// metric (report order).
///
/// - `median`, `min`, `max`, `samples` count finite values only (a NaN or
///   infinite value is a failed measurement, not a number to average in).
/// - `ratio_to_bare`: the median over rounds of value / bare's value in the
///   same round at the same N and metric, over the rounds where bare has a
///   finite, non-zero value (pairing within a round cancels the machine's
///   drift between rounds); `None` when no round pairs. Bare's own is 1.
/// - `ratio_to_best`: `median` / the best enforcing contender's median at
///   this N and metric, where best is the largest if
///   [`Metric::higher_is_better`] and the smallest otherwise. The ratio is
///   always this over best, so for a "lower is better" metric a ratio above
///   1 means worse (×1.5 on latency: half as much again as the best). `None`
///   for the baselines (they enforce nothing, so they do not compete) and
///   when the best is not positive (a best of 0 drops, say, has no ratio).
pub fn cells(samples: &[Sample]) -> Vec<Cell> {
    let finite = || samples.iter().filter(|s| s.value.is_finite());

    let mut groups: BTreeMap<(Contender, usize, Metric), Vec<&Sample>> = BTreeMap::new();
    for s in finite() {
        groups
            .entry((s.contender, s.rules, s.metric))
            .or_default()
            .push(s);
    }
    // Bare's value per (N, metric, round); the first one wins should a
    // round hold two (the harness takes one per round).
    let mut bare: BTreeMap<(usize, Metric, usize), f64> = BTreeMap::new();
    for s in finite().filter(|s| s.contender == Contender::Bare) {
        bare.entry((s.rules, s.metric, s.round)).or_insert(s.value);
    }

    let mut out: Vec<Cell> = groups
        .iter()
        .filter_map(|(&(contender, rules, metric), group)| {
            let mut values: Vec<f64> = group.iter().map(|s| s.value).collect();
            // Sorts `values`, so the ends are the range.
            let mid = median(&mut values)?;
            let mut ratios: Vec<f64> = group
                .iter()
                .filter_map(|s| {
                    let b = *bare.get(&(rules, metric, s.round))?;
                    ratio(s.value, b)
                })
                .collect();
            Some(Cell {
                contender,
                rules,
                metric,
                median: mid,
                min: values[0],
                max: values[values.len() - 1],
                samples: values.len(),
                ratio_to_bare: median(&mut ratios),
                ratio_to_best: None,
            })
        })
        .collect();

    let mut best: BTreeMap<(usize, Metric), f64> = BTreeMap::new();
    for c in out.iter().filter(|c| c.contender.enforces()) {
        best.entry((c.rules, c.metric))
            .and_modify(|b| {
                *b = if c.metric.higher_is_better() {
                    b.max(c.median)
                } else {
                    b.min(c.median)
                }
            })
            .or_insert(c.median);
    }
    for c in out.iter_mut().filter(|c| c.contender.enforces()) {
        c.ratio_to_best = best
            .get(&(c.rules, c.metric))
            .and_then(|&b| if b > 0.0 { ratio(c.median, b) } else { None });
    }
    out
}

/// `a / b` when that is a finite number and `b` is not 0.
fn ratio(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

/// Sorts `values` (finite) ascending and returns their median (the mean of
/// the middle two for an even count), or `None` if there are none.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(contender: Contender, rules: usize, metric: Metric, round: usize, value: f64) -> Sample {
        Sample {
            contender,
            rules,
            metric,
            round,
            value,
        }
    }

    fn find(cells: &[Cell], c: Contender, rules: usize, m: Metric) -> &Cell {
        cells
            .iter()
            .find(|x| x.contender == c && x.rules == rules && x.metric == m)
            .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn medians_ranges_and_paired_ratios() {
        use Contender::*;
        let pr = Metric::PacketRate;
        // Bare drifts between rounds; Bulkhead is 0.9 of bare in every
        // round, so the paired ratio is exactly 0.9 while the ratio of
        // medians is not.
        let samples = vec![
            s(Bare, 10, pr, 0, 1.0),
            s(BulkheadTc, 10, pr, 0, 0.9),
            s(Bare, 10, pr, 1, 2.0),
            s(BulkheadTc, 10, pr, 1, 1.8),
            s(Bare, 10, pr, 2, 1.5),
            s(BulkheadTc, 10, pr, 2, 1.35),
            s(IptablesLinear, 10, pr, 0, 0.5),
            s(IptablesLinear, 10, pr, 1, 0.6),
        ];
        let cells = cells(&samples);
        let tc = find(&cells, BulkheadTc, 10, pr);
        assert_eq!(tc.samples, 3);
        assert!(close(tc.median, 1.35) && close(tc.min, 0.9) && close(tc.max, 1.8));
        assert!(close(tc.ratio_to_bare.unwrap(), 0.9));
        assert!(close(tc.ratio_to_best.unwrap(), 1.0));
        let ipt = find(&cells, IptablesLinear, 10, pr);
        assert!(close(ipt.median, 0.55));
        assert!(close(ipt.ratio_to_best.unwrap(), 0.55 / 1.35));
        // Median over its two paired rounds: 0.5 / 1.0 and 0.6 / 2.0.
        assert!(close(ipt.ratio_to_bare.unwrap(), (0.5 + 0.3) / 2.0));
        let bare = find(&cells, Bare, 10, pr);
        assert_eq!(bare.ratio_to_bare, Some(1.0));
        assert_eq!(bare.ratio_to_best, None);
    }

    #[test]
    fn lower_is_better_best_is_the_smallest() {
        use Contender::*;
        let m = Metric::LatencyP50;
        let samples = vec![
            s(HookFloor, 100, m, 0, 5.0),
            s(Nftables, 100, m, 0, 20.0),
            s(BulkheadTc, 100, m, 0, 10.0),
        ];
        let cells = cells(&samples);
        // The hook floor is faster but does not compete.
        assert!(close(
            find(&cells, BulkheadTc, 100, m).ratio_to_best.unwrap(),
            1.0
        ));
        assert!(close(
            find(&cells, Nftables, 100, m).ratio_to_best.unwrap(),
            2.0
        ));
        assert_eq!(find(&cells, HookFloor, 100, m).ratio_to_best, None);
        // No bare samples: no ratio to bare.
        assert_eq!(find(&cells, BulkheadTc, 100, m).ratio_to_bare, None);
    }

    #[test]
    fn zero_and_nan_do_not_make_ratios() {
        use Contender::*;
        let d = Metric::UpdateDrops;
        let pr = Metric::PacketRate;
        let samples = vec![
            s(BulkheadTc, 10, d, 0, 0.0),
            s(IptablesLinear, 10, d, 0, 3.0),
            s(Bare, 10, pr, 0, 0.0),
            s(BulkheadTc, 10, pr, 0, 1.0),
            s(Bare, 10, pr, 1, f64::NAN),
            s(BulkheadTc, 10, pr, 1, f64::NAN),
            s(Nftables, 10, pr, 0, f64::INFINITY),
        ];
        let cells = cells(&samples);
        assert_eq!(find(&cells, BulkheadTc, 10, d).ratio_to_best, None);
        assert_eq!(find(&cells, IptablesLinear, 10, d).ratio_to_best, None);
        let tc = find(&cells, BulkheadTc, 10, pr);
        assert_eq!(tc.samples, 1);
        assert_eq!(tc.ratio_to_bare, None);
        // Bare's only finite value is 0: it has no ratio to itself either.
        assert_eq!(find(&cells, Bare, 10, pr).ratio_to_bare, None);
        // A contender with no finite sample has no cell.
        assert!(!cells.iter().any(|c| c.contender == Nftables));
    }

    #[test]
    fn order_is_contender_then_n_then_metric() {
        use Contender::*;
        let samples = vec![
            s(BulkheadTc, 1000, Metric::LatencyP99, 0, 1.0),
            s(Bare, 1000, Metric::PacketRate, 0, 1.0),
            s(BulkheadTc, 10, Metric::PacketRate, 0, 1.0),
            s(BulkheadTc, 1000, Metric::PacketRate, 0, 1.0),
            s(Bare, 10, Metric::PacketRate, 0, 1.0),
        ];
        let got: Vec<(Contender, usize, Metric)> = cells(&samples)
            .iter()
            .map(|c| (c.contender, c.rules, c.metric))
            .collect();
        assert_eq!(
            got,
            [
                (Bare, 10, Metric::PacketRate),
                (Bare, 1000, Metric::PacketRate),
                (BulkheadTc, 10, Metric::PacketRate),
                (BulkheadTc, 1000, Metric::PacketRate),
                (BulkheadTc, 1000, Metric::LatencyP99),
            ]
        );
        assert!(super::cells(&[]).is_empty());
    }
}
