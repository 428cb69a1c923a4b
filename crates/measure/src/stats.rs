//! Order statistics of repeated timings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Min, median, 90th percentile and max of a set of timings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Number of samples.
    pub runs: usize,
    /// Fastest.
    pub min_ms: f64,
    /// Median (mean of the two middle samples for an even count).
    pub median_ms: f64,
    /// 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Summary {
    /// Summarizes `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        // Nearest-rank percentile: the smallest sample with at least 90% at or below it.
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Some(Summary {
            runs: n,
            min_ms: ms[0],
            median_ms: median,
            p90_ms: ms[rank - 1],
            max_ms: ms[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn order_statistics() {
        let s = Summary::of(&ms(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6])).unwrap();
        assert_eq!(
            (s.min_ms, s.median_ms, s.p90_ms, s.max_ms),
            (1.0, 5.5, 9.0, 10.0)
        );
        let s = Summary::of(&ms(&[7])).unwrap();
        assert_eq!(
            (s.min_ms, s.median_ms, s.p90_ms, s.max_ms),
            (7.0, 7.0, 7.0, 7.0)
        );
        let s = Summary::of(&ms(&[3, 1, 2])).unwrap();
        assert_eq!((s.median_ms, s.p90_ms), (2.0, 3.0));
        assert!(Summary::of(&[]).is_none());
    }
}
