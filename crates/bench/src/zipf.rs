//! A Zipf sampler over ranks `0..n`: rank `k` (0-based) is drawn with probability proportional
//! to `1 / (k + 1)^s`. The cumulative distribution is precomputed once; a draw is a binary search.

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ranks with exponent `s` (`s = 0` is uniform; web workloads are near `s = 1`).
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "a Zipf distribution needs at least one rank");
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        // Guard against rounding: the last bucket must catch every draw.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Self { cdf }
    }

    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of rank `k`.
    pub fn probability(&self, k: usize) -> f64 {
        let prev = if k == 0 { 0.0 } else { self.cdf[k - 1] };
        self.cdf[k] - prev
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.r#gen();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn probabilities_follow_the_power_law() {
        let z = Zipf::new(4, 1.0);
        let h = 1.0 + 0.5 + 1.0 / 3.0 + 0.25;
        for (k, expected) in [1.0 / h, 0.5 / h, (1.0 / 3.0) / h, 0.25 / h]
            .into_iter()
            .enumerate()
        {
            assert!((z.probability(k) - expected).abs() < 1e-12, "rank {k}");
        }
        let total: f64 = (0..4).map(|k| z.probability(k)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_exponent_is_uniform() {
        let z = Zipf::new(5, 0.0);
        for k in 0..5 {
            assert!((z.probability(k) - 0.2).abs() < 1e-12);
        }
    }

    #[test]
    fn draws_match_the_distribution() {
        let z = Zipf::new(200, 1.0);
        let mut rng = StdRng::seed_from_u64(7);
        let n = 200_000;
        let mut counts = vec![0u32; z.len()];
        for _ in 0..n {
            counts[z.sample(&mut rng)] += 1;
        }
        for k in [0, 1, 9, 99] {
            let observed = f64::from(counts[k]) / f64::from(n);
            let expected = z.probability(k);
            assert!(
                (observed - expected).abs() < 0.1 * expected + 0.001,
                "rank {k}: observed {observed}, expected {expected}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10]);
    }

    #[test]
    fn single_rank_always_draws_zero() {
        let z = Zipf::new(1, 1.2);
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| z.sample(&mut rng) == 0));
    }
}
