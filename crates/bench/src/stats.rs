//! Latency samples and their summary. Samples are kept raw (nanoseconds) rather than in a
//! histogram: a run holds at most a few million, sorting them is cheap, and the plot needs the
//! whole distribution.

use std::time::Duration;

use serde::Serialize;

/// Raw latency samples in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ns: Vec<u64>,
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            ns: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn push_ms(&mut self, ms: f64) {
        self.ns.push((ms.max(0.0) * 1e6) as u64);
    }

    pub fn extend(&mut self, other: Samples) {
        self.ns.extend(other.ns);
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    /// The samples in milliseconds, sorted ascending.
    pub fn sorted_ms(&self) -> Vec<f64> {
        let mut v = self.ns.clone();
        v.sort_unstable();
        v.into_iter().map(|n| n as f64 / 1e6).collect()
    }

    pub fn summary(&self, errors: u64) -> Summary {
        Summary::of(&self.sorted_ms(), errors)
    }
}

/// Percentiles of one series, in milliseconds. `None` when there are no samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub errors: u64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    /// Summarises samples that are already sorted ascending.
    pub fn of(sorted_ms: &[f64], errors: u64) -> Self {
        let n = sorted_ms.len();
        let mean = (n > 0).then(|| sorted_ms.iter().sum::<f64>() / n as f64);
        Self {
            count: n as u64,
            errors,
            mean,
            min: sorted_ms.first().copied(),
            p50: percentile(sorted_ms, 50.0),
            p90: percentile(sorted_ms, 90.0),
            p99: percentile(sorted_ms, 99.0),
            max: sorted_ms.last().copied(),
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample such that at least `p`% of
/// the samples are at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The sample at quantile `q` (0..=1) of sorted samples, by rounding to the nearest index.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let last = sorted.len() - 1;
    Some(sorted[((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[f64], p: f64, expected: Option<f64>) {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        assert_eq!(percentile(&v, p), expected, "p{p} of {samples:?}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        check(&[], 50.0, None);
        check(&[7.0], 50.0, Some(7.0));
        check(&[7.0], 99.0, Some(7.0));
        check(&[3.0, 1.0, 2.0, 4.0], 50.0, Some(2.0));
        check(&[3.0, 1.0, 2.0, 4.0], 75.0, Some(3.0));
        check(&[3.0, 1.0, 2.0, 4.0], 100.0, Some(4.0));
        check(&[3.0, 1.0, 2.0, 4.0], 0.0, Some(1.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&hundred, 90.0, Some(90.0));
        check(&hundred, 99.0, Some(99.0));
        check(&hundred, 99.5, Some(100.0));
    }

    #[test]
    fn summary_of_samples() {
        let mut s = Samples::new();
        for us in [300, 100, 200, 400, 1000] {
            s.push(Duration::from_micros(us));
        }
        let sum = s.summary(2);
        assert_eq!(sum.count, 5);
        assert_eq!(sum.errors, 2);
        assert_eq!(sum.min, Some(0.1));
        assert_eq!(sum.p50, Some(0.3));
        assert_eq!(sum.p90, Some(1.0));
        assert_eq!(sum.max, Some(1.0));
        assert!((sum.mean.unwrap_or(0.0) - 0.4).abs() < 1e-9);
    }

    #[test]
    fn empty_summary_has_no_percentiles() {
        let sum = Samples::new().summary(3);
        assert_eq!(sum.count, 0);
        assert_eq!(sum.errors, 3);
        assert_eq!(sum.p50, None);
        assert_eq!(sum.mean, None);
    }

    #[test]
    fn quantiles_span_min_to_max() {
        let v: Vec<f64> = (0..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.0), Some(0.0));
        assert_eq!(quantile(&v, 0.5), Some(5.0));
        assert_eq!(quantile(&v, 1.0), Some(10.0));
        assert_eq!(quantile(&v, 7.0), Some(10.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
