//! i8 matrix products as sums of i16 pairs, for x86 CPUs without VNNI.
//!
//! Without VNNI, tract-linalg's only x86 integer kernel
//! (`avx2_mmm_i32_8x8`) widens every byte and multiplies 8 or 16 lanes
//! per instruction: on an AVX2-only AMD EPYC it ran INT8 YOLOX 3x slower
//! than our FP32 and took 86% of the frame (`docs/benchmarks.md`). Here
//! both operands are widened once, when packed, to i16 pairs of
//! consecutive depths, and `vpmaddwd` multiplies 16 pairs and adds them
//! into 8 i32 lanes per instruction: twice the multiply-adds of an FP32
//! FMA, and exact (no i16 saturation, unlike `vpmaddubsw`).
//!
//! The tile is [`MR`] output channels by [`NR`] output pixels: the pixels
//! are the lanes, so that each accumulator row goes straight to its
//! channel's row of sums, and each channel's weight pair is broadcast.

/// Output channels per tile (accumulator rows).
pub(crate) const MR: usize = 6;
/// Output pixels per tile and per packed panel (two vectors of 8 lanes).
pub(crate) const NR: usize = 16;

/// Whether this CPU runs [`PairKernel`] faster than tract's integer
/// kernels: x86-64 with AVX2 but neither AVX-512 VNNI nor AVX-VNNI (those
/// multiply four bytes per lane, and tract has kernels for them).
pub(crate) fn preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && !std::arch::is_x86_feature_detected!("avx512vnni")
            && !std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Packs two values into one i32 holding them as i16s, `lo` first in
/// memory (the lane order `vpmaddwd` pairs).
pub(crate) fn pair(lo: impl Into<i16>, hi: impl Into<i16>) -> i32 {
    (i32::from(hi.into()) << 16) | (i32::from(lo.into()) & 0xffff)
}

/// A `[m, k]` i8 (or i16: Winograd's transformed weights) weight matrix
/// packed for the tile: per block of [`MR`]
/// channels, per pair of depths, the [`MR`] channels' pairs.
#[derive(Clone, Debug)]
pub(crate) struct PairKernel {
    m: usize,
    k: usize,
    packed: Vec<i32>,
}

impl PairKernel {
    /// Packs `weights` (`m` rows of `k`, i8 or i16), zero past the last
    /// channel and past an odd depth.
    pub fn new<W: Copy + Default + Into<i16>>(m: usize, k: usize, weights: &[W]) -> PairKernel {
        assert_eq!(weights.len(), m * k, "weights of {m} x {k}");
        let pairs = k.div_ceil(2);
        let at = |c: usize, d: usize| {
            if c < m && d < k {
                weights[c * k + d]
            } else {
                W::default()
            }
        };
        let mut packed = Vec::with_capacity(m.div_ceil(MR) * pairs * MR);
        for block in 0..m.div_ceil(MR) {
            for p in 0..pairs {
                for c in block * MR..(block + 1) * MR {
                    packed.push(pair(at(c, 2 * p), at(c, 2 * p + 1)));
                }
            }
        }
        PairKernel { m, k, packed }
    }

    /// The kernel's name, for the kernel audit.
    pub fn name(&self) -> &'static str {
        "edgewise_i8_pairs_avx2_6x16"
    }

    /// i32 values of one packed panel of [`NR`] columns for a depth of `k`.
    pub fn panel_len(k: usize) -> usize {
        k.div_ceil(2) * NR
    }

    /// Computes `sums[c * cols + j] = bias[c] + sum_d w[c, d] * x[d, j]`
    /// for the `cols` columns packed in `packed` by [`pack_pairs`] (or in
    /// the same layout by Winograd's `pack`).
    pub fn run(&self, packed: &[i32], cols: usize, bias: &[i32], sums: &mut [i32]) {
        let (m, panel) = (self.m, Self::panel_len(self.k));
        assert!(
            packed.len() >= cols.div_ceil(NR) * panel,
            "packed input too short"
        );
        assert!(
            bias.len() >= m && sums.len() >= m * cols,
            "sums or bias too short"
        );
        let block_len = self.k.div_ceil(2) * MR;
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        for (q, b) in packed.chunks(panel).take(cols.div_ceil(NR)).enumerate() {
            let j0 = q * NR;
            let width = NR.min(cols - j0);
            for (block, a) in self.packed.chunks(block_len).enumerate() {
                let c0 = block * MR;
                let rows = MR.min(m - c0);
                let mut tile_bias = [0i32; MR];
                tile_bias[..rows].copy_from_slice(&bias[c0..c0 + rows]);
                let out = &mut sums[c0 * cols + j0..];
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: AVX2 was detected before the loops; `a` and `b` hold
                    // `k.div_ceil(2)` pairs of `MR` and `NR` lanes, and the
                    // tile writes `rows` rows of `width` values at stride
                    // `cols` inside `out` (`sums` holds `m * cols`).
                    unsafe { tile_avx2(a, b, tile_bias, out, cols, rows, width) };
                    continue;
                }
                tile_portable(a, b, tile_bias, out, cols, rows, width);
            }
        }
    }
}

/// Packs the `k x cols` matrix whose row `i` is `row(i)` (at least `cols`
/// values long) into panels of [`NR`] columns of i16 pairs of consecutive
/// rows, in `dst` ([`PairKernel::panel_len`] per panel). Lanes past `cols`
/// and the pair past an odd `k` are zero.
pub(crate) fn pack_pairs<'a>(
    row: impl Fn(usize) -> &'a [i8],
    k: usize,
    cols: usize,
    dst: &mut [i32],
) {
    let panel = PairKernel::panel_len(k);
    let panels = cols.div_ceil(NR);
    assert!(dst.len() >= panels * panel, "destination too short");
    for p in 0..k.div_ceil(2) {
        let r0 = &row(2 * p)[..cols];
        let r1 = (2 * p + 1 < k).then(|| &row(2 * p + 1)[..cols]);
        // The whole panels in vectors where the CPU has them, the rest
        // below.
        #[cfg(target_arch = "x86_64")]
        let vectored = if std::arch::is_x86_feature_detected!("avx2") {
            let zeros = [0i8; NR];
            let full = cols / NR;
            for panel_ix in 0..full {
                let j0 = panel_ix * NR;
                let second = r1.map_or(&zeros[..], |r| &r[j0..j0 + NR]);
                let out = &mut dst[panel_ix * panel + p * NR..][..NR];
                // SAFETY: AVX2 was detected just above; both rows hold NR
                // values from `j0` and `out` holds NR.
                unsafe { interleave_avx2(&r0[j0..j0 + NR], second, out) };
            }
            full
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let vectored = 0;
        for panel_ix in vectored..panels {
            let j0 = panel_ix * NR;
            let out = &mut dst[panel_ix * panel + p * NR..][..NR];
            for (lane, o) in out.iter_mut().enumerate() {
                let j = j0 + lane;
                *o = if j < cols {
                    pair(r0[j], r1.map_or(0, |r| r[j]))
                } else {
                    0
                };
            }
        }
    }
}

/// One tile, in plain Rust: the reference for [`tile_avx2`].
fn tile_portable(
    a: &[i32],
    b: &[i32],
    bias: [i32; MR],
    out: &mut [i32],
    stride: usize,
    rows: usize,
    width: usize,
) {
    let halves = |v: i32| (i32::from(v as i16), v >> 16);
    let mut acc = [[0i32; NR]; MR];
    for (c, row) in acc.iter_mut().enumerate() {
        row.fill(bias[c]);
    }
    for (a, b) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &w) in acc.iter_mut().zip(a) {
            let (w0, w1) = halves(w);
            for (s, &x) in row.iter_mut().zip(b) {
                let (x0, x1) = halves(x);
                *s += w0 * x0 + w1 * x1;
            }
        }
    }
    for (c, row) in acc.iter().enumerate().take(rows) {
        out[c * stride..c * stride + width].copy_from_slice(&row[..width]);
    }
}

/// One tile: `MR x NR` sums over all depth pairs.
///
/// # Safety
/// The CPU must have AVX2; `a` and `b` must hold as many pairs of `MR` and
/// `NR` lanes, and `out` `rows` rows of `width` at `stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(
    a: &[i32],
    b: &[i32],
    bias: [i32; MR],
    out: &mut [i32],
    stride: usize,
    rows: usize,
    width: usize,
) {
    use std::arch::x86_64::*;
    let pairs = b.len() / NR;
    assert!(a.len() >= pairs * MR && (rows == 0 || out.len() >= (rows - 1) * stride + width));
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for (row, &v) in acc.iter_mut().zip(&bias) {
        *row = [_mm256_set1_epi32(v); 2];
    }
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    for _ in 0..pairs {
        // SAFETY: `pairs` pairs of MR and NR values, checked above.
        unsafe {
            let x0 = _mm256_loadu_si256(pb as *const __m256i);
            let x1 = _mm256_loadu_si256(pb.add(8) as *const __m256i);
            for (c, row) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(*pa.add(c));
                row[0] = _mm256_add_epi32(row[0], _mm256_madd_epi16(x0, w));
                row[1] = _mm256_add_epi32(row[1], _mm256_madd_epi16(x1, w));
            }
            pa = pa.add(MR);
            pb = pb.add(NR);
        }
    }
    if rows == MR && width == NR {
        for (c, row) in acc.iter().enumerate() {
            let dst = out[c * stride..c * stride + NR].as_mut_ptr() as *mut __m256i;
            // SAFETY: the slice above holds the 16 values written.
            unsafe {
                _mm256_storeu_si256(dst, row[0]);
                _mm256_storeu_si256(dst.add(1), row[1]);
            }
        }
    } else {
        let mut tile = [[0i32; NR]; MR];
        for (t, row) in tile.iter_mut().zip(&acc) {
            // SAFETY: each tile row holds the 16 values written.
            unsafe {
                _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, row[0]);
                _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, row[1]);
            }
        }
        for (c, t) in tile.iter().enumerate().take(rows) {
            out[c * stride..c * stride + width].copy_from_slice(&t[..width]);
        }
    }
}

/// `NR` columns of two rows as i16 pairs.
///
/// # Safety
/// The CPU must have AVX2; `r0` and `r1` hold at least `NR` values and
/// `out` `NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interleave_avx2(r0: &[i8], r1: &[i8], out: &mut [i32]) {
    use std::arch::x86_64::*;
    assert!(r0.len() >= NR && r1.len() >= NR && out.len() >= NR);
    // SAFETY: 16-byte loads and two 32-byte stores inside the checked
    // slices.
    unsafe {
        let x0 = _mm_loadu_si128(r0.as_ptr() as *const __m128i);
        let x1 = _mm_loadu_si128(r1.as_ptr() as *const __m128i);
        let dst = out.as_mut_ptr() as *mut __m256i;
        _mm256_storeu_si256(dst, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1)));
        _mm256_storeu_si256(dst.add(1), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums for every edge of the tile: channels not a multiple of MR,
    /// columns not a multiple of NR, an odd depth, extreme values, a row
    /// stride wider than the columns.
    #[test]
    fn sums_match_a_plain_product() {
        for (m, k, cols, stride) in [
            (1usize, 1usize, 1usize, 1usize),
            (6, 2, 16, 16),
            (7, 27, 37, 40),
            (13, 64, 48, 48),
            (32, 9, 100, 131),
            (24, 288, 20, 20),
        ] {
            let weights: Vec<i8> = (0..m * k)
                .map(|i| {
                    if i % 7 == 0 {
                        -128
                    } else {
                        (i * 37 % 255) as i8
                    }
                })
                .collect();
            let src: Vec<i8> = (0..k * stride)
                .map(|i| {
                    if i % 5 == 0 {
                        -128
                    } else {
                        (i * 31 % 251) as i8
                    }
                })
                .collect();
            let bias: Vec<i32> = (0..m as i32).map(|c| c * 1000 - 3000).collect();
            let kernel = PairKernel::new(m, k, &weights);
            let mut packed = vec![7i32; cols.div_ceil(NR) * PairKernel::panel_len(k)];
            pack_pairs(|i| &src[i * stride..], k, cols, &mut packed);
            let mut sums = vec![0i32; m * cols];
            kernel.run(&packed, cols, &bias, &mut sums);
            for c in 0..m {
                for j in 0..cols {
                    let expected: i32 = bias[c]
                        + (0..k)
                            .map(|d| i32::from(weights[c * k + d]) * i32::from(src[d * stride + j]))
                            .sum::<i32>();
                    assert_eq!(
                        sums[c * cols + j],
                        expected,
                        "m={m} k={k} cols={cols} at {c},{j}"
                    );
                }
            }
            // The portable tile agrees with the vector one.
            let mut portable = vec![0i32; m * cols];
            let block_len = k.div_ceil(2) * MR;
            let panel = PairKernel::panel_len(k);
            for (q, b) in packed.chunks(panel).take(cols.div_ceil(NR)).enumerate() {
                for (block, a) in kernel.packed.chunks(block_len).enumerate() {
                    let rows = MR.min(m - block * MR);
                    let mut tile_bias = [0; MR];
                    tile_bias[..rows].copy_from_slice(&bias[block * MR..block * MR + rows]);
                    let out = &mut portable[block * MR * cols + q * NR..];
                    tile_portable(a, b, tile_bias, out, cols, rows, NR.min(cols - q * NR));
                }
            }
            assert_eq!(portable, sums, "m={m} k={k} cols={cols}");
        }
    }
}
