//! A direct int8 depthwise convolution, one channel plane at a time.
//!
//! tract has no integer depthwise kernel: it runs a quantized depthwise
//! convolution as im2col and one m=1 matrix product per channel, which
//! wastes most of each kernel tile and costs more than the float model's
//! whole convolution (`docs/benchmarks.md`).
//!
//! Here each plane is first copied, less its zero point and as i16, into a
//! padded grid split by stride phase ([`Grid`]): in that grid every tap of
//! the filter reads the *same* flat run of values shifted by a constant, so
//! the whole plane is one long loop per block of outputs, whatever the
//! stride, the padding or the row width (PP-OCRv4's rows are as short as 20
//! pixels, which left row-by-row loops mostly in their scalar remainders).
//! A block's accumulators stay in vector registers across all taps. The
//! grid computes a few columns past each output row, which the caller
//! skips.
//!
//! Weights arrive with their zero point already taken off, as i16. When
//! they all lie in `-128..=128` (symmetric int8 weights always do) each
//! product fits i16; weights with a zero point (onnxruntime's per-tensor
//! asymmetric ones) may reach 255 and take the wide loop, which multiplies
//! in i32.

use crate::geometry::Geometry;

/// Outputs accumulated together: four AVX-512 registers of i32, eight
/// AVX2 ones, sixteen NEON ones.
const BLOCK: usize = 64;

/// Where the taps of one convolution read in its padded, phase-split copy
/// of a plane.
///
/// Phase `(py, px)` (`py < stride_h`, `px < stride_w`) holds the padded
/// input's rows `py, py + stride_h, ...` and columns `px, px + stride_w,
/// ...`, as rows of `width` values. Output `(oy, ox)` sits at flat index
/// `oy * width + ox` of the output grid, and tap `(ky, kx)` reads it at that
/// index plus a constant offset in its phase.
#[derive(Clone, Debug)]
pub(crate) struct Grid {
    /// Values per phase row: the output width and the largest column
    /// shift of a tap.
    pub width: usize,
    /// Values per phase, including what the last block reads.
    phase_len: usize,
    /// Outputs computed per plane: `out_h * width` rounded up to a block.
    pub outputs: usize,
    /// Per tap, row-major like the weights: the offset it reads at.
    taps: Vec<usize>,
}

impl Grid {
    pub fn new(g: &Geometry) -> Grid {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let shift = |k: usize, dilation: usize, stride: usize| (k * dilation) / stride;
        let width = g.out_w + shift(g.kernel_w - 1, g.dilation_w, sw);
        let outputs = (g.out_h * width).next_multiple_of(BLOCK);
        let reach = shift(g.kernel_h - 1, g.dilation_h, sh) * width
            + shift(g.kernel_w - 1, g.dilation_w, sw);
        let phase_len = reach + outputs;
        let taps = (0..g.kernel_h)
            .flat_map(|ky| (0..g.kernel_w).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| {
                let (a, b) = (ky * g.dilation_h, kx * g.dilation_w);
                let phase = (a % sh) * sw + b % sw;
                phase * phase_len + (a / sh) * width + b / sw
            })
            .collect();
        Grid {
            width,
            phase_len,
            outputs,
            taps,
        }
    }

    /// Values in the padded copy of one plane.
    pub fn len(&self, g: &Geometry) -> usize {
        g.stride_h * g.stride_w * self.phase_len
    }

    /// Copies `plane` (`in_h x in_w`), less `x0`, into `out` laid out as
    /// the grid says; the padding reads as 0 (the zero point). `row` is
    /// scratch for one padded input row, which strided filters split into
    /// their column phases.
    pub fn fill(&self, g: &Geometry, plane: &[i8], x0: i16, out: &mut [i16], row: &mut Vec<i16>) {
        let (sh, sw, width) = (g.stride_h, g.stride_w, self.width);
        let phase = |py: usize, px: usize| (py * sw + px) * self.phase_len;
        // The padded row's columns that fall inside the input.
        let padded_len = sw * width;
        let (lo, hi) = (
            g.pad_left.min(padded_len),
            (g.pad_left + g.in_w).min(padded_len),
        );
        let convert = |dst: &mut [i16], iy: usize| {
            dst[..lo].fill(0);
            dst[hi..].fill(0);
            let source = &plane[iy * g.in_w..][..hi - lo];
            for (d, &x) in dst[lo..hi].iter_mut().zip(source) {
                *d = i16::from(x) - x0;
            }
        };
        row.resize(padded_len, 0);
        for py in 0..sh {
            for start in (0..self.phase_len).step_by(width) {
                let len = width.min(self.phase_len - start);
                let iy = (start / width * sh + py).wrapping_sub(g.pad_top);
                if iy >= g.in_h {
                    for px in 0..sw {
                        out[phase(py, px) + start..][..len].fill(0);
                    }
                    continue;
                }
                if sw == 1 {
                    if len == width {
                        convert(&mut out[phase(py, 0) + start..][..width], iy);
                    } else {
                        convert(row, iy);
                        out[phase(py, 0) + start..][..len].copy_from_slice(&row[..len]);
                    }
                    continue;
                }
                convert(row, iy);
                if sw == 2 {
                    let (even, odd) = out[phase(py, 0)..].split_at_mut(self.phase_len);
                    let even = &mut even[start..start + len];
                    let odd = &mut odd[start..start + len];
                    for ((e, o), pair) in even.iter_mut().zip(odd).zip(row.chunks_exact(2)) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                } else {
                    for px in 0..sw {
                        let dst = &mut out[phase(py, px) + start..][..len];
                        for (d, column) in dst.iter_mut().zip(row[px..].chunks(sw)) {
                            *d = column[0];
                        }
                    }
                }
            }
        }
    }
}

/// Accumulates one channel: `acc[oy * grid.width + ox] = bias + sum over
/// the taps of (x - x0) * w` for the padded plane `padded` that
/// [`Grid::fill`] wrote. `weights` are `w - w0`, and `wide` says that one
/// of them lies outside `-128..=128`. `acc` holds `grid.outputs` values.
pub(crate) fn depthwise_plane(
    grid: &Grid,
    padded: &[i16],
    weights: &[i16],
    wide: bool,
    bias: i32,
    acc: &mut [i32],
) {
    if wide {
        plane_best::<true>(grid, padded, weights, bias, acc);
    } else {
        plane_best::<false>(grid, padded, weights, bias, acc);
    }
}

/// [`accumulate`] in the widest build the CPU runs.
fn plane_best<const WIDE: bool>(
    grid: &Grid,
    padded: &[i16],
    weights: &[i16],
    bias: i32,
    acc: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512BW, checked just above.
        unsafe { plane_avx512::<WIDE>(grid, padded, weights, bias, acc) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { plane_avx2::<WIDE>(grid, padded, weights, bias, acc) };
        return;
    }
    accumulate::<WIDE>(grid, padded, weights, bias, acc);
}

/// [`accumulate`] compiled for AVX-512 (BW for the 16-bit lanes): twice
/// AVX2's lanes.
///
/// # Safety
/// The CPU must have AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn plane_avx512<const WIDE: bool>(
    grid: &Grid,
    padded: &[i16],
    weights: &[i16],
    bias: i32,
    acc: &mut [i32],
) {
    accumulate::<WIDE>(grid, padded, weights, bias, acc);
}

/// [`accumulate`] compiled for AVX2: the baseline x86-64 target has no 32-bit
/// vector multiply (SSE4.1's `pmulld`) and only 4 lanes.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plane_avx2<const WIDE: bool>(
    grid: &Grid,
    padded: &[i16],
    weights: &[i16],
    bias: i32,
    acc: &mut [i32],
) {
    accumulate::<WIDE>(grid, padded, weights, bias, acc);
}

/// The loop itself, inlined into each caller so that each gets the
/// caller's target features: per block of outputs, every tap multiplies a
/// run of [`BLOCK`] values at its offset (|x - x0| <= 255 and, unless
/// `WIDE`, |w| <= 128, so each product fits i16) into accumulators that
/// stay in registers, stored once.
#[inline(always)]
fn accumulate<const WIDE: bool>(
    grid: &Grid,
    padded: &[i16],
    weights: &[i16],
    bias: i32,
    acc: &mut [i32],
) {
    for (b, out) in acc[..grid.outputs].chunks_exact_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let mut sums = [bias; BLOCK];
        for (&offset, &w) in grid.taps.iter().zip(weights) {
            let x: &[i16; BLOCK] = padded[offset + start..][..BLOCK]
                .try_into()
                .expect("a block");
            for (s, &x) in sums.iter_mut().zip(x) {
                *s += if WIDE {
                    i32::from(x) * i32::from(w)
                } else {
                    i32::from(x * w)
                };
            }
        }
        out.copy_from_slice(&sums);
    }
}
