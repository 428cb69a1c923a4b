//! im2col, a chunk of output pixels at a time: the rows a convolution's
//! matrix kernel reads, for integer and float convolutions alike.

use crate::geometry::Geometry;

/// im2col of the output pixels `n0..n0 + len`: `out` becomes
/// `[in_c * kh * kw, len]`, the padding filled with `pad` (zero in float;
/// the input zero point in int8, which the bias correction cancels).
/// `columns` is [`Geometry::valid_columns`].
pub fn unfold<T: Copy>(
    g: &Geometry,
    columns: &[(usize, usize)],
    pad: T,
    image: &[T],
    n0: usize,
    len: usize,
    out: &mut [T],
) {
    let rows = g.in_c * g.kernel_h * g.kernel_w;
    let out = &mut out[..rows * len];
    out.fill(pad);
    let (first_oy, last_oy) = (n0 / g.out_w, (n0 + len - 1) / g.out_w);
    for c in 0..g.in_c {
        let plane = &image[c * g.in_h * g.in_w..(c + 1) * g.in_h * g.in_w];
        for ky in 0..g.kernel_h {
            let (oy_lo, oy_hi) = g.valid_rows(ky);
            for (kx, &(ox_lo, ox_hi)) in columns.iter().enumerate() {
                let row = (c * g.kernel_h + ky) * g.kernel_w + kx;
                let dst = &mut out[row * len..(row + 1) * len];
                for oy in first_oy.max(oy_lo)..(last_oy + 1).min(oy_hi) {
                    let row_start = oy * g.out_w;
                    let a = (row_start + ox_lo).max(n0);
                    let b = (row_start + ox_hi).min(n0 + len);
                    if a >= b {
                        continue;
                    }
                    let iy = oy * g.stride_h + ky * g.dilation_h - g.pad_top;
                    let ix = (a - row_start) * g.stride_w + kx * g.dilation_w - g.pad_left;
                    let src = &plane[iy * g.in_w + ix..(iy + 1) * g.in_w];
                    let dst = &mut dst[a - n0..b - n0];
                    if g.stride_w == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        for (o, &x) in dst.iter_mut().zip(src.iter().step_by(g.stride_w)) {
                            *o = x;
                        }
                    }
                }
            }
        }
    }
}
