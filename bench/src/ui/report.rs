//! The UI benchmark's report: what was served, each run's times, their
//! median and maximum against the target, and the all-namespaces view's
//! label overlaps.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::int;
use crate::run_info::RunInfo;

/// Target (issue 19): the synthetic map loads and is interactive within
/// this long after navigation.
pub const TARGET_MS: f64 = 2000.0;

/// One page load.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Navigation start → `whenReady()` resolved (`readyAt`, the page's
    /// own `performance.now()`), ms.
    pub ready_ms: f64,
    /// `goto` sent → `whenReady()` answered, as the driver saw it, ms.
    pub driver_ms: f64,
    /// `select()` of an edge → its details panel filled, ms.
    pub details_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run.
    #[serde(flatten)]
    pub run: RunInfo,
    /// How the map was served.
    pub source: String,
    /// Workloads, namespaces and edges of the served map (`/v1/map`).
    pub workloads: usize,
    /// Namespaces of the served map.
    pub namespaces: usize,
    /// Edges of the served map.
    pub edges: usize,
    /// Bytes of the `/v1/map` answer.
    pub map_bytes: usize,
    /// Flow records fed to the map.
    pub records: usize,
    /// Nodes and edges drawn in the default (all-namespaces) view.
    pub drawn_nodes: usize,
    /// Edges drawn in the default view.
    pub drawn_edges: usize,
    /// Whether the default view had every namespace collapsed.
    pub all_namespaces_view: bool,
    /// `labelOverlaps()` pairs in the default view (must be 0).
    pub label_overlaps: usize,
    /// A few of them, if any.
    pub overlap_examples: Vec<(String, String)>,
    /// Every page load, in order (the first with a cold cache).
    pub runs: Vec<Run>,
    /// Median of `ready_ms`.
    pub ready_median_ms: f64,
    /// Maximum of `ready_ms`.
    pub ready_max_ms: f64,
    /// Median of `details_ms`.
    pub details_median_ms: f64,
    /// Maximum of `details_ms`.
    pub details_max_ms: f64,
    /// The target.
    pub target_ms: f64,
    /// Whether the maximum is under the target.
    pub met: bool,
    /// Console errors the page logged.
    pub console_errors: Vec<String>,
}

/// Median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Maximum of `xs`.
pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run
            .markdown_header(&mut s, "UI benchmark (the network map)", true);
        let met = if self.met { "**met**" } else { "**missed**" };
        let _ = writeln!(
            s,
            "Target (issue 19): a synthetic {}-workload, {}-namespace, {}-edge map loads and is \
             interactive in under {:.0} ms: median {:.0} ms, max {:.0} ms over {} loads, {met}. \
             The all-namespaces view has **{}** overlapping labels at the default zoom (must be 0).\n",
            int(self.workloads),
            int(self.namespaces),
            int(self.edges),
            self.target_ms,
            self.ready_median_ms,
            self.ready_max_ms,
            self.runs.len(),
            self.label_overlaps,
        );
        let _ = writeln!(s, "| measure | median | max |\n| --- | ---: | ---: |");
        let _ = writeln!(
            s,
            "| navigation → `whenReady()` (`readyAt`) | {:.0} ms | {:.0} ms |",
            self.ready_median_ms, self.ready_max_ms
        );
        let driver: Vec<f64> = self.runs.iter().map(|r| r.driver_ms).collect();
        let _ = writeln!(
            s,
            "| `goto` sent → ready answered (driver round trips included) | {:.0} ms | {:.0} ms |",
            median(&driver),
            max(&driver)
        );
        let _ = writeln!(
            s,
            "| click (`select()`) on an edge → details filled (`/v1/map/edge`) | {:.0} ms | {:.0} ms |\n",
            self.details_median_ms, self.details_max_ms
        );
        let _ = writeln!(
            s,
            "| load | ready | driver | details |\n| ---: | ---: | ---: | ---: |"
        );
        for (i, r) in self.runs.iter().enumerate() {
            let note = if i == 0 { " (cold cache)" } else { "" };
            let _ = writeln!(
                s,
                "| {}{note} | {:.0} ms | {:.0} ms | {:.0} ms |",
                i + 1,
                r.ready_ms,
                r.driver_ms,
                r.details_ms
            );
        }
        let _ = writeln!(s, "\n| served | |\n| --- | ---: |");
        let _ = writeln!(s, "| flow records fed | {} |", int(self.records));
        let _ = writeln!(s, "| workloads | {} |", int(self.workloads));
        let _ = writeln!(s, "| namespaces | {} |", int(self.namespaces));
        let _ = writeln!(s, "| edges | {} |", int(self.edges));
        let _ = writeln!(s, "| `/v1/map` answer | {} bytes |", int(self.map_bytes));
        let _ = writeln!(
            s,
            "| default view | {} ({} nodes, {} edges drawn) |",
            if self.all_namespaces_view {
                "all namespaces, collapsed"
            } else {
                "NOT the all-namespaces view"
            },
            int(self.drawn_nodes),
            int(self.drawn_edges)
        );
        let _ = writeln!(s, "| label overlaps | {} |", self.label_overlaps);
        for (a, b) in &self.overlap_examples {
            let _ = writeln!(s, "| overlap | `{a}` × `{b}` |");
        }
        let _ = writeln!(s, "| console errors | {} |\n", self.console_errors.len());
        let _ = writeln!(s, "Method: {}", self.source);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_max() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(max(&[1.0, 5.0, 2.0]), 5.0);
    }
}
