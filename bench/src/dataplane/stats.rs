//! Sample summaries (median first: the benchmarks report medians).

use serde::Serialize;

/// Samples of one quantity and their order statistics.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Every sample, in the order taken.
    pub samples: Vec<f64>,
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarizes `samples` (all zero when empty).
    pub fn new(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Summary::new(vec![3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::new(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let s = Summary::new(vec![]);
        assert_eq!((s.median, s.min, s.max), (0.0, 0.0, 0.0));
    }
}
