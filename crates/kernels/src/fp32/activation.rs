//! The activations a float convolution runs on its sums before it stores
//! them, in one pass instead of one more over the whole feature map.
//!
//! Written as plain loops over a tile's rows with no branches and no
//! division, so that the compiler vectorizes them; the callers compile them
//! with the CPU's widest vectors and its fused multiply-add (see
//! [`super::conv`]): without FMA, `mul_add` is a slow library call.

/// What a convolution applies to each of its outputs, after the bias.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    /// `min(max(x, lo), hi)`: none (infinite bounds), `Relu`, `Clip`/`Relu6`.
    Clamp {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// The logistic function.
    Sigmoid,
    /// `x * sigmoid(x)` (SiLU, Swish), as YOLOv5 to YOLO11 and YOLOX write it.
    Silu,
    /// `x * clamp(alpha * x + beta, 0, 1)` (`HardSwish` is 1/6, 1/2).
    HardSwish {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `clamp(alpha * x + beta, 0, 1)` (ONNX's default 0.2, 0.5).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x` for `x >= 0`, else `alpha * x`.
    LeakyRelu {
        /// Slope below zero.
        alpha: f32,
    },
}

impl Default for Activation {
    fn default() -> Activation {
        Activation::IDENTITY
    }
}

impl Activation {
    /// One of every kind, with the parameters exporters write, for tests.
    #[cfg(test)]
    pub(crate) const EVERY_KIND: [Activation; 7] = [
        Activation::IDENTITY,
        Activation::Clamp { lo: 0.0, hi: 6.0 },
        Activation::Sigmoid,
        Activation::Silu,
        Activation::HardSwish {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::LeakyRelu { alpha: 0.1 },
    ];

    /// No activation.
    pub const IDENTITY: Activation = Activation::Clamp {
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };

    /// Whether this is no activation at all.
    pub fn is_identity(&self) -> bool {
        *self == Activation::IDENTITY
    }

    /// This activation followed by a clamp to `lo..=hi`, if one activation
    /// can do both.
    pub fn then_clamp(self, lo: f32, hi: f32) -> Option<Activation> {
        match self {
            Activation::Clamp { lo: l, hi: h } => Some(Activation::Clamp {
                lo: l.max(lo).min(hi),
                hi: h.min(hi).max(lo),
            }),
            _ => None,
        }
    }

    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Clamp { lo, hi } => min(max(x, lo), hi),
            Activation::Sigmoid => sigmoid(x),
            Activation::Silu => x * sigmoid(x),
            Activation::HardSwish { alpha, beta } => x * min(max(alpha * x + beta, 0.0), 1.0),
            Activation::HardSigmoid { alpha, beta } => min(max(alpha * x + beta, 0.0), 1.0),
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
        }
    }

    /// `to = self.apply(from + bias)` on rows of `rows.width` values, one
    /// per bias (in place when `rows` says so); then, with `post`,
    /// `to = to * scale + offset` (one scale and offset per row). Raw rows,
    /// because a tile stored straight into the output has its rows in
    /// planes whose other pixels other threads are writing.
    ///
    /// # Safety
    /// `rows` is valid for one row per bias ([`Rows`]).
    #[inline(always)]
    pub unsafe fn apply_rows(self, rows: Rows, biases: &[f32], post: Option<(&[f32], &[f32])>) {
        for (r, &bias) in biases.iter().enumerate() {
            let (from, to) = (rows.from_row(r), rows.to_row(r));
            // SAFETY: the caller's contract: `to`'s row is this call's
            // alone, and `from`'s is either the same row or apart from it.
            let to = unsafe { std::slice::from_raw_parts_mut(to, rows.width) };
            if std::ptr::eq(from, to.as_ptr()) {
                self.apply_row_from(None, to, bias);
            } else {
                // SAFETY: as above.
                let from = unsafe { std::slice::from_raw_parts(from, rows.width) };
                self.apply_row_from(Some(from), to, bias);
            }
            if let Some((scale, offset)) = post {
                let (scale, offset) = (scale[r], offset[r]);
                to.iter_mut().for_each(|v| *v = v.mul_add(scale, offset));
            }
        }
    }

    /// `row[i] = self.apply(row[i] + bias)`, for every `i`.
    #[inline(always)]
    pub fn apply_row(self, row: &mut [f32], bias: f32) {
        self.apply_row_from(None, row, bias);
    }

    /// `to[i] = self.apply(from[i] + bias)`, for every `i` of `to`; `to`
    /// in place when `from` is `None`.
    #[inline(always)]
    pub fn apply_row_from(self, from: Option<&[f32]>, to: &mut [f32], bias: f32) {
        // One loop per kind, so each vectorizes without a branch inside.
        macro_rules! each {
            (|$x:ident| $e:expr) => {
                match from {
                    None => {
                        for v in to.iter_mut() {
                            let $x = *v + bias;
                            *v = $e;
                        }
                    }
                    Some(from) => {
                        for (v, &f) in to.iter_mut().zip(from) {
                            let $x = f + bias;
                            *v = $e;
                        }
                    }
                }
            };
        }
        match self {
            Activation::Clamp { lo, hi } => each!(|x| min(max(x, lo), hi)),
            Activation::Sigmoid => each!(|x| sigmoid(x)),
            Activation::Silu => each!(|x| x * sigmoid(x)),
            Activation::HardSwish { alpha, beta } => {
                each!(|x| x * min(max(alpha * x + beta, 0.0), 1.0))
            }
            Activation::HardSigmoid { alpha, beta } => {
                each!(|x| min(max(alpha * x + beta, 0.0), 1.0))
            }
            Activation::LeakyRelu { alpha } => each!(|x| if x >= 0.0 { x } else { alpha * x }),
        }
    }
}

/// Rows of values an activation reads and writes: row `r` read at `from +
/// r * from_stride` and written at `to + r * to_stride`, `width` values
/// each. A tile finishes in place (the same rows), or on its way from its
/// tile of sums into the output planes, in one pass.
///
/// Whoever hands `Rows` to an unsafe function vouches that every row it
/// names is valid, that no one else reads or writes the rows written during
/// the call, and that a row read is either the row written or apart from
/// every row written.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    /// Row 0 read.
    pub from: *const f32,
    /// Distance between two rows read, in floats.
    pub from_stride: usize,
    /// Row 0 written.
    pub to: *mut f32,
    /// Distance between two rows written, in floats.
    pub to_stride: usize,
    /// Values per row.
    pub width: usize,
}

impl Rows {
    /// Rows of `width` values, `stride` apart from `rows`, finished in place.
    pub fn in_place(rows: *mut f32, width: usize, stride: usize) -> Rows {
        Rows {
            from: rows,
            from_stride: stride,
            to: rows,
            to_stride: stride,
            width,
        }
    }

    /// Where row `r` is read.
    #[inline(always)]
    pub fn from_row(&self, r: usize) -> *const f32 {
        self.from.wrapping_add(r * self.from_stride)
    }

    /// Where row `r` is written.
    #[inline(always)]
    pub fn to_row(&self, r: usize) -> *mut f32 {
        self.to.wrapping_add(r * self.to_stride)
    }
}

/// The logistic function `1 / (1 + exp(-x))`, to about 1e-7, with no branch
/// and no division (a vector division costs as much as the rest of a SiLU).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    // Below -69, 1 + exp(-x) would leave the range `reciprocal` covers;
    // sigmoid is under 1e-30 there.
    reciprocal(1.0 + exp(-max(x, -69.0)))
}

/// The larger of `a` and `b` (`b` if either is NaN): one vector
/// instruction, where `f32::max`'s NaN rule costs three.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// The smaller of `a` and `b` (`b` if either is NaN).
#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// `1 / d` for `d` in `[1, 1e30]`, to about 1e-7: a first guess from the
/// float's bits (within 12%), then three Newton steps, each squaring the
/// error.
#[inline(always)]
fn reciprocal(d: f32) -> f32 {
    let r = f32::from_bits(0x7EF3_11C7 - d.to_bits());
    // r + r * (1 - d * r): two fused multiply-adds a step.
    let r = r.mul_add((-d).mul_add(r, 1.0), r);
    let r = r.mul_add((-d).mul_add(r, 1.0), r);
    r.mul_add((-d).mul_add(r, 1.0), r)
}

/// `exp(x)` to about 2 ulps for `x` in the float range, with no branch or
/// table: `2^n * p(r)`, `r = x - n ln 2` in `[-ln2/2, ln2/2]`, `p` Cephes'
/// degree-6 polynomial. Saturates to about 1e-38 below -87.3 and to about
/// 2e38 (not infinity) above 88.3.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = min(max(x, -87.3), 88.3);
    let t = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 0.166_666_65);
    let p = p.mul_add(r, 0.5);
    let p = (p * r).mul_add(r, r) + 1.0;
    // The integer n sits in t's low mantissa bits.
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    p * f32::from_bits(((n + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_sigmoid_are_close_to_std() {
        let mut worst_exp = 0f32;
        let mut worst_sigmoid = 0f32;
        // Inside the range where neither saturates.
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0043;
            let (ours, std) = (exp(x), x.exp());
            worst_exp = worst_exp.max(((ours - std) / std).abs());
            let std_sigmoid = 1.0 / (1.0 + (-x).exp());
            worst_sigmoid = worst_sigmoid.max((sigmoid(x) - std_sigmoid).abs());
        }
        assert!(worst_exp < 4e-7, "relative error of exp {worst_exp}");
        assert!(worst_sigmoid < 2e-7, "error of sigmoid {worst_sigmoid}");
        let extremes = [
            (-200.0, 0.0, 1e-29),
            (f32::NEG_INFINITY, 0.0, 1e-29),
            (200.0, 1.0 - 1e-7, 1.0),
            (f32::INFINITY, 1.0 - 1e-7, 1.0),
        ];
        for (x, low, high) in extremes {
            let y = sigmoid(x);
            assert!((low..=high).contains(&y), "sigmoid({x}) = {y}");
        }
    }

    #[test]
    fn rows_match_single_values() {
        let sums: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let kinds = Activation::EVERY_KIND;
        for kind in kinds {
            let mut out = sums.clone();
            kind.apply_row(&mut out, 0.25);
            for (s, o) in sums.iter().zip(&out) {
                assert_eq!(*o, kind.apply(s + 0.25), "{kind:?} at {s}");
            }
        }
        // Two rows of 3, 4 apart: the value between them is not touched.
        let mut tile = vec![1.0; 7];
        let id = Activation::IDENTITY;
        // SAFETY: rows 0..3 and 4..7 of `tile`, borrowed alone.
        unsafe { id.apply_rows(Rows::in_place(tile.as_mut_ptr(), 3, 4), &[1.0, 2.0], None) };
        assert_eq!(tile, [2.0, 2.0, 2.0, 1.0, 3.0, 3.0, 3.0]);
        let post = ([2.0, 3.0], [0.5, -1.0]);
        let post = Some((&post.0[..], &post.1[..]));
        // SAFETY: as above.
        unsafe { id.apply_rows(Rows::in_place(tile.as_mut_ptr(), 3, 4), &[0.0, 0.0], post) };
        assert_eq!(tile, [4.5, 4.5, 4.5, 1.0, 8.0, 8.0, 8.0]);
        // From rows 3 apart into rows 4 apart: the sums stay as they were.
        let sums = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = vec![0.0; 7];
        let rows = Rows {
            from: sums.as_ptr(),
            from_stride: 3,
            to: out.as_mut_ptr(),
            to_stride: 4,
            width: 3,
        };
        let clamp = Activation::Clamp { lo: 2.5, hi: 5.5 };
        // SAFETY: rows of `sums` into rows of `out`, apart.
        unsafe { clamp.apply_rows(rows, &[0.0, 0.0], post) };
        assert_eq!(out, [5.5, 5.5, 6.5, 0.0, 11.0, 14.0, 15.5]);
        assert_eq!(sums, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(Activation::LeakyRelu { alpha: 0.1 }.apply(-2.0), -0.2);
    }

    #[test]
    fn clamps_combine_and_others_do_not() {
        let relu6 = Activation::IDENTITY
            .then_clamp(0.0, f32::INFINITY)
            .and_then(|a| a.then_clamp(f32::NEG_INFINITY, 6.0));
        assert_eq!(relu6, Some(Activation::Clamp { lo: 0.0, hi: 6.0 }));
        assert_eq!(Activation::Silu.then_clamp(0.0, 6.0), None);
        assert!(Activation::default().is_identity());
    }
}
