//! A direct int8 depthwise convolution, one channel plane at a time.
//!
//! tract has no integer depthwise kernel: it runs a quantized depthwise
//! convolution as im2col and one m=1 matrix product per channel, which
//! wastes most of each kernel tile and costs more than the float model's
//! whole convolution (`docs/benchmarks.md`). Here each output row of a
//! channel accumulates its taps in i32 over contiguous input runs (stride
//! 1 vectorizes), so the input is read in place and nothing is copied.

use super::conv::Geometry;

/// Accumulates one channel: `acc[oy * ow + ox] = bias + sum over the taps of
/// (x - x0) * w`, where taps that fall in the padding contribute nothing
/// (the padding value is the zero point). `columns` is
/// [`Geometry::valid_columns`], computed once for all channels.
pub(crate) fn depthwise_plane(
    geo: &Geometry,
    columns: &[(usize, usize)],
    plane: &[i8],
    weights: &[i8],
    x0: i32,
    bias: i32,
    acc: &mut [i32],
) {
    let (oh, ow) = (geo.out_h, geo.out_w);
    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
    acc.fill(bias);
    let mut shifted = vec![0i32; geo.in_w];
    for oy in 0..oh {
        let row = &mut acc[oy * ow..(oy + 1) * ow];
        for ky in 0..kh {
            let iy = (oy * geo.stride_h + ky * geo.dilation_h) as isize - geo.pad_top as isize;
            if iy < 0 || iy as usize >= geo.in_h {
                continue;
            }
            let input = &plane[iy as usize * geo.in_w..(iy as usize + 1) * geo.in_w];
            for (s, &x) in shifted.iter_mut().zip(input) {
                *s = i32::from(x) - x0;
            }
            for (kx, &(lo, hi)) in columns.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let w = i32::from(weights[ky * kw + kx]);
                let first = lo * geo.stride_w + kx * geo.dilation_w - geo.pad_left;
                let out = &mut row[lo..hi];
                if geo.stride_w == 1 {
                    for (a, &x) in out.iter_mut().zip(&shifted[first..first + (hi - lo)]) {
                        *a += x * w;
                    }
                } else {
                    for (a, &x) in out
                        .iter_mut()
                        .zip(shifted[first..].iter().step_by(geo.stride_w))
                    {
                        *a += x * w;
                    }
                }
            }
        }
    }
}
