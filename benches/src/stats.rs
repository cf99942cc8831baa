//! Medians over rounds, and the store of every sample a run takes.

use std::collections::BTreeMap;

/// The median of `values`, or `None` when there are none. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `a / b`, when both are known and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Every sample of a run, by metric and target, in the order taken.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: BTreeMap<(String, String), Vec<f64>>,
}

impl Samples {
    /// Adds one sample of `metric` for `target`.
    pub fn record(&mut self, metric: &str, target: &str, value: f64) {
        self.values
            .entry((metric.to_string(), target.to_string()))
            .or_default()
            .push(value);
    }

    /// The median of `metric` for `target`, once there is a sample.
    pub fn median(&self, metric: &str, target: &str) -> Option<f64> {
        self.values
            .get(&(metric.to_string(), target.to_string()))
            .and_then(|v| median(v))
    }

    /// Every sample of `metric` for `target`, in the order taken.
    pub fn values(&self, metric: &str, target: &str) -> &[f64] {
        self.values
            .get(&(metric.to_string(), target.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// How many samples the median of `metric` for `target` rests on.
    pub fn count(&self, metric: &str, target: &str) -> usize {
        self.values
            .get(&(metric.to_string(), target.to_string()))
            .map_or(0, Vec::len)
    }
}

/// The order in which round `round` visits `n` targets: rotated each round, so no target is
/// always first (on a cold cache) or always last (after the others warmed the machine up).
pub fn rotation(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratio_needs_both_sides_and_a_nonzero_divisor() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn samples_keep_targets_apart() {
        let mut s = Samples::default();
        s.record("rps", "ferry", 10.0);
        s.record("rps", "ferry", 30.0);
        s.record("rps", "direct", 100.0);
        assert_eq!(s.median("rps", "ferry"), Some(20.0));
        assert_eq!(s.count("rps", "direct"), 1);
        assert_eq!(s.median("rps", "haproxy"), None);
    }

    #[test]
    fn rotation_starts_each_round_elsewhere() {
        assert_eq!(rotation(3, 0), vec![0, 1, 2]);
        assert_eq!(rotation(3, 1), vec![1, 2, 0]);
        assert_eq!(rotation(3, 5), vec![2, 0, 1]);
    }
}
