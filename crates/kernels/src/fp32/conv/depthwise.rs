//! [`F32Conv`]'s depthwise convolutions (one filter per channel), a channel
//! at a time.
//!
//! A depthwise convolution does `kh * kw` multiply-adds per output, so it
//! is bound by memory, not arithmetic: each value should be touched few
//! times, and in cache. Each channel's input is copied once into its padded
//! phase planes, the same flat layout the dense convolutions read (every
//! tap a fixed offset from the output pixel, no bounds to check); then a
//! chunk of flat outputs at a time is summed over every tap in registers
//! ([`super::tile::depthwise`]), finished (bias, activation, scale) and
//! stored, all while it is in the first-level cache. Long runs keep the
//! loops on full vectors: a row at a time, the scalar tails of 13-, 40- or
//! 80-wide rows would cost more than the vectors.

use edgewise_graph::tract_onnx::prelude::TractResult;

use super::tile::DEPTHWISE_BLOCK;
use super::{F32Conv, IMAGE};
use crate::parallel::{self, DisjointWriter};

/// Flat pixels a depthwise convolution sums over all its taps at once: 4
/// KiB of sums, and the input rows they read, in the first-level cache.
const CHUNK: usize = 1024;

impl F32Conv {
    /// A depthwise convolution of one image `x` into `y`; the threads split
    /// the channels.
    pub(super) fn eval_depthwise(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        let rows = g.out_h + l.halo;
        let stride = l.channel_stride(rows);
        let taps: Vec<usize> = l.taps(1, rows).into_iter().map(|t| t as usize).collect();
        let pixels = g.out_h * l.width;
        let work = g.out_c * taps.len() * pixels * parallel::ELEMENT_WORK;
        let parts = parallel::parts(work, g.out_c);
        let writer = DisjointWriter::new(y);
        parallel::for_each_part(parts, |p| {
            let (mut sums, mut split) = ([0f32; CHUNK], vec![]);
            IMAGE.with_borrow_mut(|image| {
                let len = l.phases * stride;
                // The last block of sums reads on past the planes.
                let slack = DEPTHWISE_BLOCK;
                if image.len() < len + slack {
                    image.resize(len + slack, 0.0);
                }
                for c in g.out_c * p / parts..g.out_c * (p + 1) / parts {
                    self.fill_band(x, &mut image[..len], 0, rows, c..c + 1, &mut split);
                    let weights = &self.weights[c * taps.len()..][..taps.len()];
                    let bias = &self.bias[c..c + 1];
                    let post = self.post.as_ref().map(|p| (&p.0[c..c + 1], &p.1[c..c + 1]));
                    for first in (0..pixels).step_by(CHUNK) {
                        let chunk = &mut sums[..CHUNK.min(pixels - first)];
                        // SAFETY: the CPU has the kernel's features.
                        unsafe { (k.depthwise)(chunk, &image[first..], &taps, weights) };
                        let n = chunk.len();
                        let sums = chunk.as_mut_ptr();
                        // SAFETY: as above; one row of `n`, `chunk`'s.
                        unsafe { (k.finish)(self.activation, sums, n, n, bias, post) };
                        self.store(c, first, chunk, &writer);
                    }
                }
            });
            Ok(())
        })
    }
}
