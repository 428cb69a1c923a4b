//! Float matrices transposed in squares of a vector's width, in
//! registers: the channels of a block of pixels into the vector lanes and
//! back (depthwise convolutions of small maps), and `NCHW -> NHWC`
//! transposes ([`super::AxisMove`]).

/// A loop that transposes a square of [`Transposer::side`] values: value
/// `c` of row `r` of `(src, src_stride)` to value `r` of row `c` of
/// `(dst, dst_stride)`.
///
/// # Safety
/// The rows of both squares are inside their buffers, and the CPU has the
/// loop's features.
pub type Square = unsafe fn(*const f32, usize, *mut f32, usize);

/// A CPU's transpose: its square loop and the square's side.
#[derive(Clone, Copy)]
pub struct Transposer {
    /// The loop.
    pub square: Square,
    /// Values on a side of its square.
    pub side: usize,
}

/// One value at a time, for CPUs with no vector loop here.
pub const PLAIN: Transposer = Transposer {
    square: square_plain,
    side: 1,
};

/// # Safety
/// `src` and `dst` are valid for one value.
unsafe fn square_plain(src: *const f32, _: usize, dst: *mut f32, _: usize) {
    // SAFETY: the caller's contract (`Square`).
    unsafe { *dst = *src };
}

impl Transposer {
    /// The widest transpose this CPU runs.
    pub fn native() -> Transposer {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return AVX512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return AVX2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return NEON;
        }
        #[allow(unreachable_code)]
        PLAIN
    }

    /// Value `c` of row `r` of `(src, src_stride)` to value `r` of row `c`
    /// of `(dst, dst_stride)`, for `rows` rows of `columns` values: whole
    /// squares through [`Self::square`], the edges a value at a time.
    ///
    /// # Safety
    /// Both are inside their buffers, and the CPU has the square loop's
    /// features.
    #[inline(always)]
    pub unsafe fn rect(
        &self,
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        rows: usize,
        columns: usize,
    ) {
        let side = self.side;
        let (full_rows, full_columns) = (rows - rows % side, columns - columns % side);
        // SAFETY: the caller's contract.
        unsafe {
            for r in (0..full_rows).step_by(side) {
                for c in (0..full_columns).step_by(side) {
                    (self.square)(
                        src.add(r * src_stride + c),
                        src_stride,
                        dst.add(c * dst_stride + r),
                        dst_stride,
                    );
                }
            }
            for r in 0..rows {
                let edge = if r < full_rows { full_columns } else { 0 };
                for c in edge..columns {
                    *dst.add(c * dst_stride + r) = *src.add(r * src_stride + c);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use self::x86::{AVX2, AVX512};

#[cfg(target_arch = "aarch64")]
pub use self::arm64::NEON;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Transposer;

    /// 16x16 squares on AVX-512.
    pub const AVX512: Transposer = Transposer {
        square: square_avx512,
        side: 16,
    };

    /// 8x8 squares on AVX2.
    pub const AVX2: Transposer = Transposer {
        square: square_avx2,
        side: 8,
    };

    /// A 16x16 transpose on AVX-512 ([`super::Square`]):
    /// pairs of rows interleaved as floats, then as pairs of floats, then
    /// their 128-bit quarters gathered.
    #[target_feature(enable = "avx512f")]
    unsafe fn square_avx512(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller's contract (`Square`).
        unsafe {
            let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(i * src_stride)));
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // u[4k + m]: in each quarter j, rows 4k..4k + 4 of column 4j + m.
            let u: [__m512; 16] = std::array::from_fn(|i| {
                let (k, m) = (i / 4, i % 4);
                let (a, b) = (
                    _mm512_castps_pd(t[4 * k + m / 2]),
                    _mm512_castps_pd(t[4 * k + 2 + m / 2]),
                );
                _mm512_castpd_ps(if m % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                })
            });
            for m in 0..4 {
                let low_a = _mm512_shuffle_f32x4::<0x44>(u[m], u[4 + m]);
                let low_b = _mm512_shuffle_f32x4::<0x44>(u[8 + m], u[12 + m]);
                let high_a = _mm512_shuffle_f32x4::<0xEE>(u[m], u[4 + m]);
                let high_b = _mm512_shuffle_f32x4::<0xEE>(u[8 + m], u[12 + m]);
                let rows = [
                    _mm512_shuffle_f32x4::<0x88>(low_a, low_b),
                    _mm512_shuffle_f32x4::<0xDD>(low_a, low_b),
                    _mm512_shuffle_f32x4::<0x88>(high_a, high_b),
                    _mm512_shuffle_f32x4::<0xDD>(high_a, high_b),
                ];
                for (j, row) in rows.into_iter().enumerate() {
                    _mm512_storeu_ps(dst.add((4 * j + m) * dst_stride), row);
                }
            }
        }
    }

    /// An 8x8 transpose on AVX2 ([`super::Square`]), as
    /// [`square_avx512`] without its last step.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn square_avx2(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller's contract (`Square`).
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            let u: [__m256; 8] = std::array::from_fn(|i| {
                let (k, m) = (i / 4, i % 4);
                let (a, b) = (
                    _mm256_castps_pd(t[4 * k + m / 2]),
                    _mm256_castps_pd(t[4 * k + 2 + m / 2]),
                );
                _mm256_castpd_ps(if m % 2 == 0 {
                    _mm256_unpacklo_pd(a, b)
                } else {
                    _mm256_unpackhi_pd(a, b)
                })
            });
            for m in 0..4 {
                _mm256_storeu_ps(
                    dst.add(m * dst_stride),
                    _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]),
                );
                _mm256_storeu_ps(
                    dst.add((4 + m) * dst_stride),
                    _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]),
                );
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm64 {
    use std::arch::aarch64::*;

    use super::Transposer;

    /// 4x4 squares on NEON.
    pub const NEON: Transposer = Transposer {
        square: square_neon,
        side: 4,
    };

    /// A 4x4 transpose on NEON ([`super::Square`]).
    #[target_feature(enable = "neon")]
    unsafe fn square_neon(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        // SAFETY: the caller's contract (`Square`).
        unsafe {
            let r: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(src.add(i * src_stride)));
            let (t0, t1) = (vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]));
            let (t2, t3) = (vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3]));
            let pairs = |a: float32x4_t, b: float32x4_t, high: bool| {
                let (a, b) = (vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b));
                vreinterpretq_f32_f64(if high {
                    vtrn2q_f64(a, b)
                } else {
                    vtrn1q_f64(a, b)
                })
            };
            let rows = [
                pairs(t0, t2, false),
                pairs(t1, t3, false),
                pairs(t0, t2, true),
                pairs(t1, t3, true),
            ];
            for (c, row) in rows.into_iter().enumerate() {
                vst1q_f32(dst.add(c * dst_stride), row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transposer_matches_the_definition_on_squares_and_edges() {
        // Mutable for x86's AVX2 transposer only.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut transposers = vec![PLAIN, Transposer::native()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            transposers.push(AVX2);
        }
        for t in transposers {
            for (rows, columns) in [(16, 16), (37, 21), (5, 40), (32, 8), (1, 1), (9, 3)] {
                let (src_stride, dst_stride) = (columns + 3, rows + 5);
                let src: Vec<f32> = (0..rows * src_stride).map(|i| i as f32).collect();
                let mut dst = vec![-1.0; columns * dst_stride];
                // SAFETY: both buffers hold their rows; the CPU runs
                // `native` and the checked AVX2.
                unsafe {
                    t.rect(
                        src.as_ptr(),
                        src_stride,
                        dst.as_mut_ptr(),
                        dst_stride,
                        rows,
                        columns,
                    )
                };
                for r in 0..rows {
                    for c in 0..columns {
                        assert_eq!(
                            dst[c * dst_stride + r],
                            src[r * src_stride + c],
                            "side {}",
                            t.side
                        );
                    }
                }
                // Nothing past each row is touched.
                for c in 0..columns {
                    assert!(
                        dst[c * dst_stride + rows..(c + 1) * dst_stride]
                            .iter()
                            .all(|&v| v == -1.0)
                    );
                }
            }
        }
    }
}
