//! How far a fidelity figure would move on other photos: a percentile
//! bootstrap over the photos it was measured on, and the spread of the
//! per-photo figures.
//!
//! F1 and mAP over a handful of photos move in steps of 0.05 or more when
//! one photo changes; two conversion methods whose intervals overlap are
//! not told apart by them. The photos are resampled with replacement
//! ([`RESAMPLES`] times, from a fixed seed, so that a report is
//! reproducible) and the figure recomputed on each resample; the 2.5th and
//! 97.5th percentiles bound it.

use edgewise_graph::rng::Rng;
use serde::Serialize;

/// Resamples drawn per interval.
pub const RESAMPLES: usize = 1000;

/// A 95% percentile-bootstrap interval of a figure over photos.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// The 2.5th percentile of the resampled figure.
    pub low: f64,
    /// The 97.5th percentile.
    pub high: f64,
}

/// The interval of `statistic` (computed on a resample, given as the
/// indices of its photos among `0..photos`, `None` where it is undefined)
/// over [`RESAMPLES`] resamples; `None` for fewer than two photos or when
/// no resample defines it.
pub fn bootstrap(photos: usize, statistic: impl Fn(&[usize]) -> Option<f64>) -> Option<Interval> {
    if photos < 2 {
        return None;
    }
    let mut random = Rng::new(0x5EED_F1DE_11E7);
    let mut sample = vec![0; photos];
    let mut values: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            for s in sample.iter_mut() {
                *s = random.below(photos);
            }
            statistic(&sample)
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Interval {
        low: percentile(&values, 0.025),
        high: percentile(&values, 0.975),
    })
}

/// The per-photo values' smallest, median and largest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PerPhoto {
    /// The smallest.
    pub min: f64,
    /// The median.
    pub median: f64,
    /// The largest.
    pub max: f64,
}

impl PerPhoto {
    /// The spread of `values`, `None` when there are none.
    pub fn of(values: &[f64]) -> Option<PerPhoto> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(PerPhoto {
            min: *sorted.first()?,
            median: percentile(&sorted, 0.5),
            max: *sorted.last()?,
        })
    }
}

/// The `q` quantile of `sorted` (not empty), interpolated linearly.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert!((percentile(&v, 0.125) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn identical_photos_give_a_point_and_different_ones_an_interval() {
        // (0.75: ten of them sum and divide back exactly.)
        let same = bootstrap(10, |s| {
            Some(s.iter().map(|_| 0.75).sum::<f64>() / s.len() as f64)
        });
        assert_eq!(
            same,
            Some(Interval {
                low: 0.75,
                high: 0.75
            })
        );
        // Half the photos at 0, half at 1: the mean of 10 resampled ones
        // lies around 0.5, within 0.2-0.8 at 95%.
        let values: Vec<f64> = (0..10).map(|i| (i % 2) as f64).collect();
        let mean = |s: &[usize]| Some(s.iter().map(|&i| values[i]).sum::<f64>() / s.len() as f64);
        let i = bootstrap(10, mean).unwrap();
        assert!(i.low < 0.5 && i.high > 0.5, "{i:?}");
        assert!(i.low >= 0.1 && i.high <= 0.9, "{i:?}");
        // More photos, a narrower interval.
        let values: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
        let mean = |s: &[usize]| Some(s.iter().map(|&i| values[i]).sum::<f64>() / s.len() as f64);
        let wide = bootstrap(200, mean).unwrap();
        assert!(
            wide.high - wide.low < i.high - i.low,
            "{wide:?} against {i:?}"
        );
        // The same seed, the same interval.
        assert_eq!(bootstrap(200, mean), Some(wide));
    }

    #[test]
    fn one_photo_or_an_undefined_figure_gives_no_interval() {
        assert_eq!(bootstrap(1, |_| Some(1.0)), None);
        assert_eq!(bootstrap(5, |_| None), None);
    }

    #[test]
    fn per_photo_spread() {
        let p = PerPhoto::of(&[0.9, 0.5, 1.0, 0.7]).unwrap();
        assert_eq!((p.min, p.median, p.max), (0.5, 0.8, 1.0));
        assert_eq!(PerPhoto::of(&[]), None);
    }
}
