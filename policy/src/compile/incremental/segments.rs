//! One group of a rule table (a peer and a protocol) changed in place:
//! rules removed from its segments and new grants merged in, giving the
//! same disjoint, maximal segments the full compile's sweep makes from all
//! grants (a port's segment holds exactly the rules granting it, and
//! neighbours with equal rules are one segment).

use std::cmp::Ordering;
use std::collections::HashSet;

use super::super::Segment;

/// `segs` without the rules in `removed` and with the grants `added`
/// (lo, hi, rule) merged in. Rules stay ordered by `order` (content
/// order: the first is the one the kernel reports).
pub fn update(
    segs: &[Segment],
    removed: &HashSet<u32>,
    added: &[(u16, u16, u32)],
    order: &dyn Fn(u32, u32) -> Ordering,
) -> Vec<Segment> {
    // Every boundary where the set of rules may change, as u32 so that
    // hi + 1 never overflows.
    let mut points: Vec<u32> = segs
        .iter()
        .flat_map(|s| [u32::from(s.lo), u32::from(s.hi) + 1])
        .chain(
            added
                .iter()
                .flat_map(|&(lo, hi, _)| [u32::from(lo), u32::from(hi) + 1]),
        )
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<Segment> = Vec::new();
    let mut at = 0; // first segment that may cover the interval
    for w in points.windows(2) {
        let (lo, next) = (w[0], w[1]);
        while at < segs.len() && u32::from(segs[at].hi) < lo {
            at += 1;
        }
        let mut rules: Vec<u32> = match segs.get(at) {
            Some(s) if u32::from(s.lo) <= lo => s
                .rules
                .iter()
                .copied()
                .filter(|r| !removed.contains(r))
                .collect(),
            _ => Vec::new(),
        };
        for &(glo, ghi, rule) in added {
            if u32::from(glo) <= lo && next - 1 <= u32::from(ghi) && !rules.contains(&rule) {
                let i = rules.partition_point(|&r| order(r, rule) == Ordering::Less);
                rules.insert(i, rule);
            }
        }
        if rules.is_empty() {
            continue;
        }
        let hi = (next - 1) as u16;
        match out.last_mut() {
            Some(last) if u32::from(last.hi) + 1 == lo && last.rules == rules => last.hi = hi,
            _ => out.push(Segment::allow(lo as u16, hi, rules)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_number(a: u32, b: u32) -> Ordering {
        a.cmp(&b)
    }

    /// The reference: the full compile's table builder, every grant at once.
    fn sweep(grants: &[(u16, u16, u32)]) -> Vec<Segment> {
        let mut t = crate::compile::tables::TableBuilder::default();
        for &(lo, hi, rule) in grants {
            t.grant(1, 6, lo, hi, rule);
        }
        let table = t.build(crate::model::Direction::Ingress, Vec::new());
        table.groups.get(&(1, 6)).cloned().unwrap_or_default()
    }

    #[test]
    fn adding_and_removing_equals_sweeping_the_remaining_grants() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let grants: Vec<(u16, u16, u32)> = (0..next(6))
                .map(|_| {
                    let lo = next(20) as u16 * 3;
                    let hi = lo + next(10) as u16;
                    (lo, hi, next(5) as u32)
                })
                .collect();
            let extra: Vec<(u16, u16, u32)> = (0..next(3))
                .map(|_| {
                    let lo = next(20) as u16 * 3;
                    (lo, lo + next(12) as u16, 5 + next(3) as u32)
                })
                .collect();
            let removed: HashSet<u32> = (0..next(3)).map(|_| next(5) as u32).collect();
            let start = sweep(&grants);
            assert_eq!(update(&[], &HashSet::new(), &grants, &by_number), start);
            let got = update(&start, &removed, &extra, &by_number);
            let rest: Vec<_> = grants
                .iter()
                .chain(&extra)
                .filter(|g| !removed.contains(&g.2) || extra.contains(g))
                .copied()
                .collect();
            assert_eq!(got, sweep(&rest), "{grants:?} - {removed:?} + {extra:?}");
        }
    }

    #[test]
    fn the_whole_port_range_is_covered_without_overflow() {
        let segs = sweep(&[(0, u16::MAX, 1)]);
        let got = update(
            &segs,
            &HashSet::new(),
            &[(u16::MAX, u16::MAX, 2)],
            &by_number,
        );
        assert_eq!(
            got,
            vec![
                Segment::allow(0, u16::MAX - 1, vec![1]),
                Segment::allow(u16::MAX, u16::MAX, vec![1, 2]),
            ]
        );
    }
}
