//! Calibration: the range each activation is quantized to, chosen from a
//! histogram of the values it took on real images.
//!
//! Every observed tensor gets a [`Histogram`] over its observed `[min, max]`
//! (a first pass finds the extremes, a second fills the bins). A [`Method`]
//! then picks the range `[lo, hi]` that the tensor's 256 int8 levels cover:
//! the extremes, a percentile of the values, or the range whose quantized
//! distribution is closest to the real one in KL divergence (the "entropy"
//! calibration of TensorRT, here over asymmetric ranges). The range always
//! contains zero, so that zero is exactly representable (padding, ReLU).

use serde::{Deserialize, Serialize};

/// Bins of every calibration histogram.
pub const BINS: usize = 2048;

/// Levels of an 8-bit integer.
const LEVELS: usize = 256;

/// Candidate ends per side of [`Method::Mse`]'s search: fractions
/// `1/MSE_STEPS ..= 1` of the observed extremes.
const MSE_STEPS: usize = 200;

/// How the quantization range of an activation is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Method {
    /// The smallest and largest values seen.
    MinMax,
    /// The values at `percentile` and `100 - percentile` percent, so that the
    /// rarest outliers saturate instead of stretching the range.
    Percentile {
        /// Percent of the values inside the range, e.g. `99.99`.
        percentile: f64,
    },
    /// The range minimizing the KL divergence between the values'
    /// distribution and its 8-bit quantization.
    Entropy,
    /// The range minimizing the mean squared error of the 8-bit
    /// quantization: the rounding error inside it against the clipping
    /// error of the values outside.
    Mse,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::MinMax => write!(f, "minmax"),
            Method::Percentile { percentile } => write!(f, "percentile {percentile}"),
            Method::Entropy => write!(f, "entropy"),
            Method::Mse => write!(f, "mse"),
        }
    }
}

/// The values one tensor took, binned over its observed range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The smallest value seen.
    pub min: f32,
    /// The largest value seen.
    pub max: f32,
    /// [`BINS`] counts over `[min, max]`.
    pub counts: Vec<u64>,
}

/// The observed extremes of a tensor, from the first calibration pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extremes {
    /// The smallest value seen.
    pub min: f32,
    /// The largest value seen.
    pub max: f32,
}

impl Default for Extremes {
    fn default() -> Self {
        Extremes {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl Extremes {
    /// Widens the extremes to cover `values` (NaNs are ignored).
    pub fn observe(&mut self, values: &[f32]) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    /// Whether any value was seen.
    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }
}

impl Histogram {
    /// An empty histogram over `extremes`.
    pub fn new(extremes: Extremes) -> Histogram {
        let (min, max) = if extremes.is_empty() {
            (0.0, 0.0)
        } else {
            (extremes.min, extremes.max)
        };
        Histogram {
            min,
            max,
            counts: vec![0; BINS],
        }
    }

    fn bin_width(&self) -> f64 {
        (self.max as f64 - self.min as f64) / BINS as f64
    }

    /// Counts `values`; values outside the range count in the edge bins.
    pub fn add(&mut self, values: &[f32]) {
        let width = self.bin_width();
        if width <= 0.0 {
            self.counts[0] += values.len() as u64;
            return;
        }
        let (min, inv) = (self.min as f64, 1.0 / width);
        for &v in values {
            if v.is_nan() {
                continue;
            }
            let bin = ((v as f64 - min) * inv).floor();
            let bin = (bin.max(0.0) as usize).min(BINS - 1);
            self.counts[bin] += 1;
        }
    }

    /// The number of values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which `fraction` of the values lie (linear within a bin).
    fn quantile(&self, fraction: f64) -> f32 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let target = fraction.clamp(0.0, 1.0) * total as f64;
        let width = self.bin_width();
        let mut below = 0.0;
        for (bin, &count) in self.counts.iter().enumerate() {
            let count = count as f64;
            if below + count >= target && count > 0.0 {
                let within = (target - below) / count;
                return (self.min as f64 + (bin as f64 + within) * width) as f32;
            }
            below += count;
        }
        self.max
    }

    /// The range [`Method`] chooses, widened to contain zero.
    pub fn range(&self, method: Method) -> (f32, f32) {
        let (lo, hi) = match method {
            Method::MinMax => (self.min, self.max),
            Method::Percentile { percentile } => {
                let tail = (1.0 - percentile / 100.0).clamp(0.0, 0.5);
                let lo = if self.min >= 0.0 {
                    self.min
                } else {
                    self.quantile(tail)
                };
                let hi = if self.max <= 0.0 {
                    self.max
                } else {
                    self.quantile(1.0 - tail)
                };
                (lo, hi)
            }
            Method::Entropy => self.entropy_range(),
            Method::Mse => self.mse_range(),
        };
        (lo.min(0.0), hi.max(0.0))
    }

    /// [`Histogram::range`], the quantization error judged through `then`
    /// (the element-wise function the tensor's readers compute of it,
    /// [`crate::follow`]) for [`Method::Mse`]; the other methods look at the
    /// values alone.
    pub fn range_through(&self, method: Method, then: Option<&dyn Fn(f64) -> f64>) -> (f32, f32) {
        match (method, then) {
            (Method::Mse, Some(f)) => {
                let (lo, hi) = self.mse_range_through(f);
                (lo.min(0.0), hi.max(0.0))
            }
            _ => self.range(method),
        }
    }

    /// The range `[lo, hi]` (containing zero) whose 256-level quantization
    /// has the smallest squared error after `f`: a value inside rounds by
    /// up to half a step, an error of `(f'(x) step)^2 / 12` on average; one
    /// outside is clipped, an error of `(f(x) - f(end))^2`. SiLU's flat
    /// negative tail thus costs nothing to clip. Same grid as
    /// [`Self::mse_range`]; the clipping errors are summed per candidate
    /// end, the rounding errors from prefix sums.
    fn mse_range_through(&self, f: &dyn Fn(f64) -> f64) -> (f32, f32) {
        let width = self.bin_width();
        if width <= 0.0 || self.total() == 0 {
            return (self.min, self.max);
        }
        let centre = |bin: usize| self.min as f64 + (bin as f64 + 0.5) * width;
        let values: Vec<f64> = (0..BINS).map(|b| f(centre(b))).collect();
        // Prefix sums of n f'(x)^2, the slope over one bin.
        let mut slope2 = vec![0f64; BINS + 1];
        for (bin, &count) in self.counts.iter().enumerate() {
            let x = centre(bin);
            let slope = (f(x + 0.5 * width) - f(x - 0.5 * width)) / width;
            slope2[bin + 1] = slope2[bin] + count as f64 * slope * slope;
        }
        let first_at =
            |v: f64| (((v - self.min as f64) / width - 0.5).ceil().max(0.0) as usize).min(BINS);
        let clipped = |bins: std::ops::Range<usize>, end: f64| {
            let at_end = f(end);
            bins.map(|b| self.counts[b] as f64 * (values[b] - at_end).powi(2))
                .sum::<f64>()
        };
        let (min, max) = ((self.min as f64).min(0.0), (self.max as f64).max(0.0));
        let candidates = |end: f64| -> Vec<f64> {
            (1..=MSE_STEPS)
                .map(|i| end * i as f64 / MSE_STEPS as f64)
                .collect()
        };
        let los = candidates(min);
        let his = candidates(max);
        let below: Vec<f64> = los.iter().map(|&lo| clipped(0..first_at(lo), lo)).collect();
        let above: Vec<f64> = his
            .iter()
            .map(|&hi| clipped(first_at(hi)..BINS, hi))
            .collect();
        let mut best = (f64::INFINITY, min, max);
        for (&lo, &below) in los.iter().zip(&below) {
            for (&hi, &above) in his.iter().zip(&above) {
                if hi - lo <= 0.0 {
                    continue;
                }
                let (a, b) = (first_at(lo), first_at(hi).max(first_at(lo)));
                let step = (hi - lo) / (LEVELS - 1) as f64;
                let inside = (slope2[b] - slope2[a]) * step * step / 12.0;
                let e = below + above + inside;
                if e < best.0 {
                    best = (e, lo, hi);
                }
            }
        }
        (best.1 as f32, best.2 as f32)
    }

    /// The range `[lo, hi]` (containing zero) whose 256-level quantization
    /// has the smallest squared error over the histogram: each value
    /// (a bin's centre) inside rounds with an error of `step^2 / 12` on
    /// average, each outside is clipped to the nearer end. Both ends are
    /// searched on a grid of [`MSE_STEPS`] fractions of the observed
    /// extremes, the errors summed in constant time from prefix sums.
    fn mse_range(&self) -> (f32, f32) {
        let width = self.bin_width();
        if width <= 0.0 || self.total() == 0 {
            return (self.min, self.max);
        }
        let centre = |bin: usize| self.min as f64 + (bin as f64 + 0.5) * width;
        // Prefix sums of n, n x and n x^2 over the bins.
        let mut prefix = vec![[0f64; 3]; BINS + 1];
        for (bin, &count) in self.counts.iter().enumerate() {
            let (n, x) = (count as f64, centre(bin));
            let [a, b, c] = prefix[bin];
            prefix[bin + 1] = [a + n, b + n * x, c + n * x * x];
        }
        let sums = |from: usize, to: usize| -> [f64; 3] {
            let (p, q) = (prefix[from], prefix[to]);
            [q[0] - p[0], q[1] - p[1], q[2] - p[2]]
        };
        // The first bin whose centre is at least `v`.
        let first_at =
            |v: f64| (((v - self.min as f64) / width - 0.5).ceil().max(0.0) as usize).min(BINS);
        let error = |lo: f64, hi: f64| {
            let (a, b) = (first_at(lo), first_at(hi).max(first_at(lo)));
            // Below lo: sum n (lo - x)^2; above hi: sum n (x - hi)^2.
            let [n, x, xx] = sums(0, a);
            let below = n * lo * lo - 2.0 * lo * x + xx;
            let [n, x, xx] = sums(b, BINS);
            let above = xx - 2.0 * hi * x + n * hi * hi;
            let step = (hi - lo) / (LEVELS - 1) as f64;
            let inside = sums(a, b)[0] * step * step / 12.0;
            below + above + inside
        };
        let (min, max) = ((self.min as f64).min(0.0), (self.max as f64).max(0.0));
        let mut best = (error(min, max), min, max);
        for i in 1..=MSE_STEPS {
            let lo = min * i as f64 / MSE_STEPS as f64;
            for j in 1..=MSE_STEPS {
                let hi = max * j as f64 / MSE_STEPS as f64;
                if hi - lo <= 0.0 {
                    continue;
                }
                let e = error(lo, hi);
                if e < best.0 {
                    best = (e, lo, hi);
                }
            }
        }
        (best.1 as f32, best.2 as f32)
    }

    /// The range whose 256-level quantization loses the least information:
    /// for each candidate magnitude `t`, the values are clipped to
    /// `[max(min, -t), min(max, t)]` (the clipped mass lands in the edge
    /// bins), that distribution `P` is merged into 256 levels and spread back
    /// over the bins as `Q`, and the `t` with the smallest KL(P || Q) wins.
    fn entropy_range(&self) -> (f32, f32) {
        let width = self.bin_width();
        if width <= 0.0 || self.total() == 0 {
            return (self.min, self.max);
        }
        let magnitude = self.min.abs().max(self.max.abs()) as f64;
        let bin_of = |v: f64| (((v - self.min as f64) / width).round().max(0.0) as usize).min(BINS);
        let candidates = 256;
        let mut best = (f64::INFINITY, self.min, self.max);
        for step in (candidates / 16)..=candidates {
            let t = magnitude * step as f64 / candidates as f64;
            let lo = (self.min as f64).max(-t);
            let hi = (self.max as f64).min(t);
            let (a, b) = (bin_of(lo), bin_of(hi));
            if b <= a || b - a < LEVELS {
                continue;
            }
            let kl = self.clipping_divergence(a, b);
            if kl < best.0 {
                best = (kl, lo as f32, hi as f32);
            }
        }
        (best.1, best.2)
    }

    /// KL(P || Q) for the bins `a..b` quantized to 256 levels.
    fn clipping_divergence(&self, a: usize, b: usize) -> f64 {
        let inside = &self.counts[a..b];
        let mut p: Vec<f64> = inside.iter().map(|&c| c as f64).collect();
        let below: u64 = self.counts[..a].iter().sum();
        let above: u64 = self.counts[b..].iter().sum();
        p[0] += below as f64;
        *p.last_mut().expect("b > a") += above as f64;

        let n = inside.len();
        let mut q = vec![0f64; n];
        for level in 0..LEVELS {
            let (start, end) = (level * n / LEVELS, (level + 1) * n / LEVELS);
            let chunk = &inside[start..end];
            let used = chunk.iter().filter(|&&c| c > 0).count();
            if used == 0 {
                continue;
            }
            let share = chunk.iter().sum::<u64>() as f64 / used as f64;
            for (qi, &c) in q[start..end].iter_mut().zip(chunk) {
                if c > 0 {
                    *qi = share;
                }
            }
        }
        let (p_total, q_total) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
        if p_total == 0.0 || q_total == 0.0 {
            return f64::INFINITY;
        }
        // Bins where P has mass and Q has none (clipped mass folded into an
        // empty edge bin) get a small floor instead of an infinite cost.
        let floor = 1e-6 / n as f64;
        p.iter()
            .zip(&q)
            .filter(|(p, _)| **p > 0.0)
            .map(|(&p, &q)| {
                let (p, q) = (p / p_total, (q / q_total).max(floor));
                p * (p / q).ln()
            })
            .sum()
    }
}

/// Scale and zero point of an asymmetric int8 quantization of `[lo, hi]`
/// (a range containing zero): `x = scale * (q - zero_point)`.
pub fn int8_params(lo: f32, hi: f32) -> (f32, i8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let span = hi - lo;
    if span <= f32::MIN_POSITIVE {
        return (1.0, 0);
    }
    let scale = span / 255.0;
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0);
    (scale, zero_point as i8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[f32]) -> Histogram {
        let mut extremes = Extremes::default();
        extremes.observe(values);
        let mut h = Histogram::new(extremes);
        h.add(values);
        h
    }

    /// A deterministic standard normal sample (Box-Muller on a LCG).
    fn normal(n: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn minmax_is_the_extremes_widened_to_zero() {
        let h = histogram(&[0.5, 2.0, 3.0]);
        assert_eq!(h.range(Method::MinMax), (0.0, 3.0));
        let h = histogram(&[-4.0, 1.0]);
        assert_eq!(h.range(Method::MinMax), (-4.0, 1.0));
        assert_eq!(h.total(), 2);
    }

    #[test]
    fn percentile_cuts_the_outliers() {
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(100.0);
        let h = histogram(&values);
        let (lo, hi) = h.range(Method::Percentile { percentile: 99.9 });
        assert_eq!(lo, 0.0);
        assert!((0.95..1.1).contains(&hi), "{hi}");
        assert_eq!(h.range(Method::MinMax).1, 100.0);
    }

    #[test]
    fn entropy_clips_a_long_tail_but_not_a_uniform_range() {
        // A normal sample with one far outlier: the KL range ends well inside
        // the outlier but covers the bulk (|x| < 3 holds 99.7%).
        let mut values = normal(200_000);
        values.push(60.0);
        let (lo, hi) = histogram(&values).range(Method::Entropy);
        assert!(hi < 20.0 && hi > 2.5, "hi {hi}");
        assert!(lo < -2.5, "lo {lo}");
        // Uniform values have no tail worth cutting.
        let uniform: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        let (lo, hi) = histogram(&uniform).range(Method::Entropy);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.9, "hi {hi}");
    }

    #[test]
    fn mse_clips_a_long_tail_and_keeps_a_uniform_range() {
        // A million normal values and one far outlier: clipping it costs
        // less than the rounding error its range would add to every other
        // value; the bulk (|x| < 4.5) stays inside.
        let mut values = normal(1_000_000);
        values.push(40.0);
        let (lo, hi) = histogram(&values).range(Method::Mse);
        assert!((3.0..20.0).contains(&hi), "hi {hi}");
        assert!(lo < -3.0, "lo {lo}");
        // Two outliers in 200 000 cost more clipped than kept: squared error
        // weighs a far value heavily, unlike KL.
        let mut values = normal(200_000);
        values.extend([40.0, -35.0]);
        let (lo, hi) = histogram(&values).range(Method::Mse);
        assert!(hi > 20.0 && lo < -20.0, "{lo} {hi}");
        // Uniform values have no tail worth cutting; one-sided values keep
        // zero as their lower end.
        let uniform: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        let (lo, hi) = histogram(&uniform).range(Method::Mse);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.97, "hi {hi}");
        // A constant stays a valid range.
        let (lo, hi) = histogram(&[2.0; 10]).range(Method::Mse);
        assert!(lo <= 0.0 && hi >= 2.0, "{lo} {hi}");
    }

    /// Mean squared error after `f` of quantizing `values` to `range`, as
    /// int8 does it.
    fn error_after(values: &[f32], (lo, hi): (f32, f32), f: &dyn Fn(f64) -> f64) -> f64 {
        let (scale, zp) = int8_params(lo, hi);
        let sum: f64 = values
            .iter()
            .map(|&v| {
                let q = ((v / scale).round() + zp as f32).clamp(-128.0, 127.0);
                let back = (q - zp as f32) * scale;
                (f(back as f64) - f(v as f64)).powi(2)
            })
            .sum();
        sum / values.len() as f64
    }

    #[test]
    fn mse_through_silu_clips_its_flat_tail() {
        // Pre-activations with a long negative tail, as YOLO convolutions
        // give: SiLU flattens everything below -6 to about zero.
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let mut values: Vec<f32> = normal(200_000).iter().map(|v| 1.5 * v).collect();
        values.extend((0..2_000).map(|i| -8.0 - 22.0 * i as f32 / 2_000.0));
        let h = histogram(&values);
        let plain = h.range(Method::Mse);
        let through = h.range_through(Method::Mse, Some(&silu));
        assert!(plain.0 < -15.0, "{plain:?}");
        assert!(through.0 > -9.0 && through.0 < -2.0, "{through:?}");
        let (e_plain, e_through) = (
            error_after(&values, plain, &silu),
            error_after(&values, through, &silu),
        );
        assert!(e_through < 0.5 * e_plain, "{e_through} {e_plain}");
        // Without a function, or with another method, nothing changes.
        assert_eq!(h.range_through(Method::Mse, None), plain);
        assert_eq!(
            h.range_through(Method::MinMax, Some(&silu)),
            h.range(Method::MinMax)
        );
        // The identity gives about the plain range.
        let same = h.range_through(Method::Mse, Some(&|x| x));
        assert!(
            (same.0 - plain.0).abs() < 0.5 && (same.1 - plain.1).abs() < 0.2,
            "{same:?}"
        );
    }

    #[test]
    fn int8_params_map_the_range_onto_all_levels() {
        let (scale, zp) = int8_params(0.0, 6.0);
        assert_eq!(zp, -128);
        assert!((scale - 6.0 / 255.0).abs() < 1e-7);
        let (scale, zp) = int8_params(-1.0, 1.0);
        assert!((scale * (127.0 - zp as f32) - 1.0).abs() < scale);
        assert!((scale * (-128.0 - zp as f32) + 1.0).abs() < scale);
        assert_eq!(int8_params(0.0, 0.0), (1.0, 0));
    }
}
