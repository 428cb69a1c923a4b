//! Depthwise convolutions of small maps, [`LANES`] channels at a time in
//! the vector lanes (the orientation of onnxruntime's NCHWc kernels).
//!
//! On a 10x10 or 20x20 map a channel's plane is a few vectors long, and a
//! channel at a time spends more on its bookkeeping (copying the plane
//! padded, setting up its runs, finishing and storing it) than on its
//! nine multiply-adds per output, and it sums lanes of padding at each
//! row's end. Here a block of sixteen channels is copied, interleaved,
//! into a zero-padded image of sixteen-float pixels: each output pixel is
//! then one multiply-add per tap, its taps' pixels times their sixteen
//! weights, at any width, stride, dilation or padding, with no lane
//! wasted. A row of sums at a time goes back to the channels' planes,
//! which are finished (bias, activation) once the block is done, while in
//! cache.

use std::ops::Range;

use super::depthwise::DepthwisePlanes;
use crate::fp32::transpose::Transposer;

/// Channels summed together, one per lane: one AVX-512 vector, two AVX2
/// or four NEON ones.
pub const LANES: usize = 16;

/// The channels of one padded input pixel, one output pixel or one tap of
/// a block.
type Pixel = [f32; LANES];

/// A row of output pixels of a block, as [`super::TileKernel`]'s vector
/// loops sum them: output `i` is the sum over the taps `t` of the padded
/// image's pixel `first + i * step + offsets[t]` times `weights[t]`, every
/// lane apart.
pub struct LanesRow {
    /// The padded, interleaved image: pixels of [`LANES`] floats.
    pub image: *const f32,
    /// Each tap's offset, in pixels, from its output's first tap.
    pub offsets: *const usize,
    /// Taps.
    pub taps: usize,
    /// The taps' weights, [`LANES`] per tap.
    pub weights: *const f32,
    /// Where output 0's first tap reads.
    pub first: usize,
    /// Pixels from one output's first tap to the next's.
    pub step: usize,
    /// Outputs.
    pub count: usize,
    /// Where the sums go, [`LANES`] per output.
    pub out: *mut f32,
}

/// A vector loop that sums a [`LanesRow`].
///
/// # Safety
/// Every tap of every output reads a pixel inside `image`; `out` holds
/// `count` pixels; the CPU has the loop's features.
pub type LanesLoop = unsafe fn(&LanesRow);

/// [`super::TileKernel::depthwise_lanes`]'s loop, inlined into a wrapper
/// compiled for each instruction set: the depthwise convolution of
/// `p.input`'s `channels` into `out` (their planes, one after another),
/// [`LANES`] channels at a time, calling `finish(c, plane)` on each output
/// plane once it is summed. `channels` starts on a block's first channel.
/// `scratch` grows to the padded image, a row of sums and the weights.
///
/// # Safety
/// `sum_row` and `transposer` can run on this CPU.
#[inline(always)]
pub unsafe fn depthwise_lanes(
    p: &DepthwisePlanes,
    channels: Range<usize>,
    scratch: &mut Vec<Pixel>,
    out: &mut [f32],
    finish: &mut dyn FnMut(usize, &mut [f32]),
    sum_row: LanesLoop,
    transposer: Transposer,
) {
    p.check(&channels, out);
    let g = p.geo;
    let (kh, kw, taps) = (g.kernel_h, g.kernel_w, g.kernel_h * g.kernel_w);
    let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
    // The padded image: the rows and columns the taps reach, from the
    // first tap of the first output.
    let height = (g.out_h - 1) * g.stride_h + (kh - 1) * g.dilation_h + 1;
    let width = (g.out_w - 1) * g.stride_w + (kw - 1) * g.dilation_w + 1;
    // The padded columns that come from the input, and the first of them.
    let (left, right) = (g.pad_left.min(width), (g.pad_left + g.in_w).min(width));
    let offsets: Vec<usize> = (0..kh)
        .flat_map(|ky| (0..kw).map(move |kx| ky * g.dilation_h * width + kx * g.dilation_w))
        .collect();
    // The padded image, the block's planes interleaved (whole, so that
    // the transposes run on squares even when the rows are short), its
    // sums, and its weights.
    scratch.resize(height * width + in_plane + out_plane + taps, [0.0; LANES]);
    let (image, rest) = scratch.split_at_mut(height * width);
    // The padding rows and columns, zero for every block (a convolution
    // before may have left anything there).
    for (y, pixels) in image.chunks_exact_mut(width).enumerate() {
        if y.checked_sub(g.pad_top).is_some_and(|iy| iy < g.in_h) {
            pixels[..left].fill([0.0; LANES]);
            pixels[right..].fill([0.0; LANES]);
        } else {
            pixels.fill([0.0; LANES]);
        }
    }
    let (interleaved, rest) = rest.split_at_mut(in_plane);
    let (sums, weights) = rest.split_at_mut(out_plane);
    let (first, end) = (channels.start, channels.end);
    for c0 in channels.step_by(LANES) {
        let block = LANES.min(end - c0);
        for (t, w) in weights.iter_mut().enumerate() {
            *w = std::array::from_fn(|l| {
                if l < block {
                    p.weights[(c0 + l) * taps + t]
                } else {
                    0.0
                }
            });
        }
        // Interleave the block's planes, then copy them into the padded
        // image a row at a time. In a last block of fewer channels, the
        // lanes past them keep what was there: their weights are zero and
        // their sums never stored.
        let input = &p.input[c0 * in_plane..][..block * in_plane];
        // SAFETY: `block` planes of `in_plane` values into as many pixels;
        // the caller vouches for `transposer`.
        unsafe {
            transposer.rect(
                input.as_ptr(),
                in_plane,
                interleaved.as_mut_ptr().cast(),
                LANES,
                block,
                in_plane,
            )
        };
        for (y, pixels) in image.chunks_exact_mut(width).enumerate() {
            if let Some(iy) = y.checked_sub(g.pad_top).filter(|&iy| iy < g.in_h) {
                pixels[left..right].copy_from_slice(&interleaved[iy * g.in_w..][..right - left]);
            }
        }
        for (oy, sums) in sums.chunks_exact_mut(g.out_w).enumerate() {
            let row = LanesRow {
                image: image.as_ptr().cast(),
                offsets: offsets.as_ptr(),
                taps,
                weights: weights.as_ptr().cast(),
                first: oy * g.stride_h * width,
                step: g.stride_w,
                count: g.out_w,
                out: sums.as_mut_ptr().cast(),
            };
            // SAFETY: output `i`'s last tap reads pixel `first + i * step +
            // offsets[taps - 1]`, at most the image's last; `sums` holds
            // `out_w` pixels; the caller vouches for the CPU.
            unsafe { sum_row(&row) };
        }
        let planes = &mut out[(c0 - first) * out_plane..][..block * out_plane];
        // SAFETY: `out_plane` pixels of `block` sums into as many planes.
        unsafe {
            transposer.rect(
                sums.as_ptr().cast(),
                LANES,
                planes.as_mut_ptr(),
                out_plane,
                out_plane,
                block,
            )
        };
        for (l, plane) in planes.chunks_exact_mut(out_plane).enumerate() {
            finish(c0 + l, plane);
        }
    }
}
