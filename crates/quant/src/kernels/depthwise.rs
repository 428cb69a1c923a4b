//! A direct int8 depthwise convolution, one channel plane at a time.
//!
//! tract has no integer depthwise kernel: it runs a quantized depthwise
//! convolution as im2col and one m=1 matrix product per channel, which
//! wastes most of each kernel tile and costs more than the float model's
//! whole convolution (`docs/benchmarks.md`). Here each output row of a
//! channel accumulates its taps in i32 over contiguous runs of one input
//! row, split by column phase so that strided filters read contiguously
//! too; x86 runs an AVX2 build of the loops where the CPU has it.
//!
//! Weights arrive with their zero point already taken off, as i16. When
//! they all lie in `-128..=128` (symmetric int8 weights always do) each
//! product fits i16; weights with a zero point (onnxruntime's per-tensor
//! asymmetric ones) may reach 255 and take the wide loop, which multiplies
//! in i32.

use super::conv::Geometry;

/// Accumulates one channel: `acc[oy * ow + ox] = bias + sum over the taps of
/// (x - x0) * w`, where taps that fall in the padding contribute nothing
/// (the padding value is the zero point). `columns` is
/// [`Geometry::valid_columns`], computed once for all channels; `weights`
/// are `w - w0`, and `wide` says that one of them lies outside `-128..=128`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_plane(
    geo: &Geometry,
    columns: &[(usize, usize)],
    plane: &[i8],
    weights: &[i16],
    wide: bool,
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    if wide {
        plane_best::<true>(geo, columns, plane, weights, x0, bias, acc);
    } else {
        plane_best::<false>(geo, columns, plane, weights, x0, bias, acc);
    }
}

/// [`accumulate`] in the widest build the CPU runs.
fn plane_best<const WIDE: bool>(
    geo: &Geometry,
    columns: &[(usize, usize)],
    plane: &[i8],
    weights: &[i16],
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512BW, checked just above.
        unsafe { plane_avx512::<WIDE>(geo, columns, plane, weights, x0, bias, acc) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { plane_avx2::<WIDE>(geo, columns, plane, weights, x0, bias, acc) };
        return;
    }
    accumulate::<WIDE>(geo, columns, plane, weights, x0, bias, acc);
}

/// [`accumulate`] compiled for AVX-512 (BW for the 16-bit lanes): twice
/// AVX2's lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn plane_avx512<const WIDE: bool>(
    geo: &Geometry,
    columns: &[(usize, usize)],
    input: &[i8],
    weights: &[i16],
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    accumulate::<WIDE>(geo, columns, input, weights, x0, bias, acc);
}

/// [`accumulate`] compiled for AVX2: the baseline x86-64 target has no 32-bit
/// vector multiply (SSE4.1's `pmulld`) and only 4 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plane_avx2<const WIDE: bool>(
    geo: &Geometry,
    columns: &[(usize, usize)],
    input: &[i8],
    weights: &[i16],
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    accumulate::<WIDE>(geo, columns, input, weights, x0, bias, acc);
}

/// The loops themselves, inlined into each caller so that each gets the
/// caller's target features. The plane is first read once with the zero
/// point taken off, as i16 (|x - x0| <= 255 and, unless `WIDE`, |w| <= 128,
/// so each product fits i16), each row split by column modulo the stride, so that every tap
/// reads a contiguous run whatever the stride: the multiply-accumulate
/// loops vectorize.
#[inline(always)]
fn accumulate<const WIDE: bool>(
    geo: &Geometry,
    columns: &[(usize, usize)],
    input: &[i8],
    weights: &[i16],
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    let (oh, ow) = (geo.out_h, geo.out_w);
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    let (in_h, in_w) = (geo.in_h, geo.in_w);
    let stride = geo.stride_w;
    let x0 = x0 as i16;
    let phase_len = in_w.div_ceil(stride);
    let row_len = stride * phase_len;
    let mut rows = vec![0i16; in_h * row_len];
    for (row, source) in rows.chunks_exact_mut(row_len).zip(input.chunks_exact(in_w)) {
        if stride == 1 {
            for (r, &x) in row.iter_mut().zip(source) {
                *r = i16::from(x) - x0;
            }
        } else {
            for (p, phase) in row.chunks_exact_mut(phase_len).enumerate() {
                for (r, &x) in phase.iter_mut().zip(source[p..].iter().step_by(stride)) {
                    *r = i16::from(x) - x0;
                }
            }
        }
    }
    acc.fill(bias);
    for oy in 0..oh {
        let out_row = &mut acc[oy * ow..(oy + 1) * ow];
        for ky in 0..kh {
            let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
            if iy < 0 || iy as usize >= in_h {
                continue;
            }
            let row = &rows[iy as usize * row_len..(iy as usize + 1) * row_len];
            for (kx, &(lo, hi)) in columns.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let w = weights[ky * kw + kx];
                let first = lo * stride + kx * geo.dilation_w - geo.pad_left;
                let start = (first % stride) * phase_len + first / stride;
                for (a, &x) in out_row[lo..hi]
                    .iter_mut()
                    .zip(&row[start..start + (hi - lo)])
                {
                    *a += if WIDE {
                        i32::from(x) * i32::from(w)
                    } else {
                        i32::from(x * w)
                    };
                }
            }
        }
    }
}
