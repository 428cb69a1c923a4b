//! The rows of a dense convolution's matrix product read in place from a
//! padded copy of the input, instead of unfolded (im2col) for every chunk.
//!
//! With the depth ordered tap-major (`k = tap * channels + channel`), the
//! row of channel `c` at tap `(ky, kx)` is, for a stride-1 convolution, the
//! padded input plane shifted by `ky * width + kx`, provided the output is
//! computed on the padded width: each output row gets up to `kw - 1` extra
//! columns that are computed and thrown away (fewer where a row's trailing
//! padding doubles as the next row's leading padding). A stride of `s` splits each
//! padded plane into `s * s` phase planes (every `s`-th row and column from
//! each offset), after which every tap reads one phase plane, shifted, at
//! stride 1 again. The unfolded matrix (`k` bytes per output pixel, nine
//! times the input for a 3x3 convolution) is never written: the packer
//! reads the shifted rows directly, and the only extra pass is the padded
//! copy, the size of the input. On YOLOX-Nano the unfold was 13% of an INT8
//! frame (`docs/benchmarks.md`).
//!
//! The depth is padded per tap to a multiple of `channel_group` (4 for the
//! VNNI and SDOT layouts, which read four consecutive depths per lane) with
//! zero weights, whose rows read a zeroed region.

use std::ops::Range;

use edgewise_graph::tract_onnx::prelude::TractResult;

use crate::geometry::Geometry;
use crate::parallel::{self, DisjointWriter};

/// Where each row of the matrix product starts in the phase image, and the
/// phase image's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shifted {
    /// Vertical and horizontal strides: phase planes per channel are
    /// `stride_h * stride_w`.
    stride_h: usize,
    stride_w: usize,
    /// Rows and columns of each phase plane (a spare row of padding last);
    /// `width` is also the virtual output width, of which the first
    /// `out_w` columns are real.
    height: usize,
    /// See `height`.
    pub width: usize,
    /// Channels per tap in the depth: the input channels rounded up to the
    /// channel group.
    pub channels: usize,
    /// For each row of the depth, its start in the phase image at virtual
    /// pixel 0, or `None` for a padding channel (it reads [`Shifted::zeros`]).
    starts: Vec<Option<usize>>,
    /// Where the zeroed region starts; it is as long as a chunk.
    zeros: usize,
    /// Whether some tap reads each phase ([`Geometry::phases_read`]):
    /// [`Shifted::fill`] leaves the others alone.
    read: Vec<bool>,
}

impl Shifted {
    /// The layout for `geo`, with the depth's channels per tap rounded up
    /// to a multiple of `channel_group`.
    pub fn new(geo: &Geometry, channel_group: usize) -> Shifted {
        let (sh, sw) = (geo.stride_h, geo.stride_w);
        // The padded extents every real output reads, then split in phases.
        let padded_h = (geo.out_h - 1) * sh + (geo.kernel_h - 1) * geo.dilation_h + 1;
        let padded_w = (geo.out_w - 1) * sw + (geo.kernel_w - 1) * geo.dilation_w + 1;
        let full = padded_w.div_ceil(sw);
        // Phase rows run on into each other, so a row's trailing padding
        // columns can be the next row's leading ones: the row is as many
        // columns shorter as every column phase read has padding on both
        // sides (one of two for a 3x3 of stride 1 and padding 1), fewer
        // columns computed and thrown away. A tap past a row's end reads
        // the next row's padding, the last row's a spare row of padding.
        let shared = geo.shared_padding_columns(full);
        let (height, width) = (padded_h.div_ceil(sh) + 1, full - shared);
        let channels = geo.in_c.next_multiple_of(channel_group);
        let plane = height * width;
        let mut starts = Vec::with_capacity(geo.kernel_h * geo.kernel_w * channels);
        for (phase, row, column) in geo.tap_phases() {
            let shift = row * width + column;
            starts.extend(
                (0..channels)
                    .map(|c| (c < geo.in_c).then(|| (c * sh * sw + phase) * plane + shift)),
            );
        }
        // A row of a thrown-away column may read past its plane by the
        // largest horizontal shift, less than a phase row: one row of slack
        // keeps the last plane's reads inside the buffer.
        let zeros = geo.in_c * sh * sw * plane + width;
        Shifted {
            stride_h: sh,
            stride_w: sw,
            height,
            width,
            channels,
            starts,
            zeros,
            read: geo.phases_read(),
        }
    }

    /// The depth of the matrix product.
    pub fn depth(&self) -> usize {
        self.starts.len()
    }

    /// Output pixels on the virtual grid: `out_h` rows of [`Shifted::width`].
    pub fn columns(&self, geo: &Geometry) -> usize {
        geo.out_h * self.width
    }

    /// Multiply-adds it computes per real one: padding channels and
    /// thrown-away columns.
    pub fn overhead(&self, geo: &Geometry) -> f64 {
        let real = geo.in_c * geo.kernel_h * geo.kernel_w * geo.out_h * geo.out_w;
        (self.depth() * self.columns(geo)) as f64 / real as f64
    }

    /// Bytes of the phase image for chunks of `chunk` columns.
    fn len(&self, chunk: usize) -> usize {
        self.zeros + chunk
    }

    /// Fills `image` (resized as needed) with the phase planes of `input`
    /// (`[in_c, in_h * in_w]`, i8), the padding set to `pad`, and the zeroed
    /// region for chunks of up to `chunk` columns. The planes are split over
    /// the plan's threads when there are enough of them.
    pub fn fill(
        &self,
        geo: &Geometry,
        input: &[i8],
        pad: i8,
        chunk: usize,
        image: &mut Vec<i8>,
    ) -> TractResult<()> {
        let phases = self.stride_h * self.stride_w;
        let plane = self.height * self.width;
        let planes = geo.in_c * phases;
        image.resize(self.len(chunk), 0);
        let (image, rest) = image.split_at_mut(planes * plane);
        rest.fill(0);
        let parts = parallel::parts(image.len() * parallel::ELEMENT_WORK, planes);
        let writer = DisjointWriter::new(image);
        parallel::for_each_part(parts, |p| {
            for i in (p * planes / parts)..((p + 1) * planes / parts) {
                if !self.read[i % phases] {
                    continue;
                }
                // SAFETY: each part writes its own planes.
                let out = unsafe { writer.range(i * plane, plane) };
                self.fill_plane(geo, input, pad, i, out);
            }
            Ok(())
        })
    }

    /// Phase plane `i` (channel `i / phases`, phase `i % phases`) into `out`.
    fn fill_plane(&self, geo: &Geometry, input: &[i8], pad: i8, i: usize, out: &mut [i8]) {
        let (sh, sw) = (self.stride_h, self.stride_w);
        let c = i / (sh * sw);
        let (py, px) = ((i % (sh * sw)) / sw, i % sw);
        let source = &input[c * geo.in_h * geo.in_w..(c + 1) * geo.in_h * geo.in_w];
        // Phase columns `q` read input column `q * sw + px - pad_left`.
        let cols = inside(px, geo.pad_left, sw, geo.in_w, self.width);
        for (r, row) in out.chunks_exact_mut(self.width).enumerate() {
            let iy = (r * sh + py).wrapping_sub(geo.pad_top);
            if iy >= geo.in_h || cols.is_empty() {
                row.fill(pad);
                continue;
            }
            row[..cols.start].fill(pad);
            row[cols.end..].fill(pad);
            let first = cols.start * sw + px - geo.pad_left;
            let src = &source[iy * geo.in_w + first..(iy + 1) * geo.in_w];
            let dst = &mut row[cols.clone()];
            if sw == 1 {
                dst.copy_from_slice(&src[..dst.len()]);
            } else {
                for (d, &s) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                    *d = s;
                }
            }
        }
    }

    /// The row `i` of the depth for the virtual columns `q0..q0 + len`.
    #[inline]
    pub fn row<'a>(&self, image: &'a [i8], i: usize, q0: usize, len: usize) -> &'a [i8] {
        match self.starts[i] {
            Some(start) => &image[start + q0..start + q0 + len],
            None => &image[self.zeros..self.zeros + len],
        }
    }

    /// The real outputs among the virtual columns `q0..q0 + len`: for each
    /// output row they cross, `(first real pixel, range in the chunk)`.
    pub fn segments(
        &self,
        geo: &Geometry,
        q0: usize,
        len: usize,
    ) -> impl Iterator<Item = (usize, Range<usize>)> + use<> {
        let (width, out_w) = (self.width, geo.out_w);
        let rows = (q0 / width)..(q0 + len).div_ceil(width);
        rows.filter_map(move |oy| {
            let row = oy * width;
            let a = q0.max(row);
            let b = (q0 + len).min(row + out_w);
            (a < b).then(|| (oy * out_w + a - row, (a - q0)..(b - q0)))
        })
    }
}

/// The positions `q` in `0..len` whose source `q * stride + phase - pad`
/// falls inside `0..in_len`.
fn inside(phase: usize, pad: usize, stride: usize, in_len: usize, len: usize) -> Range<usize> {
    let lo = pad.saturating_sub(phase).div_ceil(stride);
    let hi = if in_len + pad > phase {
        ((in_len + pad - phase - 1) / stride + 1).min(len)
    } else {
        0
    };
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the depth, on every real output, reads what im2col
    /// would: the input at the tap's position, or the padding; read whole
    /// and in chunks that start inside output rows.
    #[test]
    fn rows_read_what_im2col_reads() {
        // (in_c, in_h, in_w, kh, kw, sh, sw, dh, dw, top, bottom, left, right)
        let cases = [
            (3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (5, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
            (4, 9, 6, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0),
            (2, 11, 10, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2),
            (6, 10, 13, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),
            (1, 6, 7, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0),
            (3, 13, 12, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1),
            // SAME_UPPER on an even input: nothing above, one row below.
            (3, 8, 10, 3, 3, 2, 2, 1, 1, 0, 1, 0, 1),
            // Other strides, kernels and dilations across than down.
            (2, 9, 14, 3, 5, 1, 2, 1, 1, 1, 1, 2, 2),
            (3, 12, 11, 3, 3, 2, 2, 2, 2, 2, 1, 1, 2),
            (2, 5, 9, 1, 3, 2, 1, 1, 1, 0, 0, 1, 1),
            // One phase of four read (a downsampling shortcut).
            (4, 9, 10, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0),
            // A one-column output.
            (4, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),
        ];
        for (in_c, in_h, in_w, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr) in cases {
            let geo = Geometry {
                batch: 1,
                in_c,
                in_h,
                in_w,
                out_c: 1,
                out_h: (in_h + pt + pb - dh * (kh - 1) - 1) / sh + 1,
                out_w: (in_w + pl + pr - dw * (kw - 1) - 1) / sw + 1,
                kernel_h: kh,
                kernel_w: kw,
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_top: pt,
                pad_left: pl,
            };
            let input: Vec<i8> = (0..in_c * in_h * in_w).map(|i| (i % 97) as i8).collect();
            let pad = -7;
            for group in [1, 4] {
                let shifted = Shifted::new(&geo, group);
                let columns = shifted.columns(&geo);
                for chunk in [columns, 5, 16] {
                    let mut image = vec![];
                    shifted.fill(&geo, &input, pad, chunk, &mut image).unwrap();
                    for q0 in (0..columns).step_by(chunk) {
                        let len = chunk.min(columns - q0);
                        for i in 0..shifted.depth() {
                            let (tap, c) = (i / shifted.channels, i % shifted.channels);
                            let (ky, kx) = (tap / kw, tap % kw);
                            let row = shifted.row(&image, i, q0, len);
                            for (n, range) in shifted.segments(&geo, q0, len) {
                                for (j, q) in range.enumerate() {
                                    let (oy, ox) = ((n + j) / geo.out_w, (n + j) % geo.out_w);
                                    let iy = (oy * sh + ky * dh).wrapping_sub(pt);
                                    let ix = (ox * sw + kx * dw).wrapping_sub(pl);
                                    let expected = if c >= in_c {
                                        0
                                    } else if iy < in_h && ix < in_w {
                                        input[(c * in_h + iy) * in_w + ix]
                                    } else {
                                        pad
                                    };
                                    assert_eq!(
                                        row[q], expected,
                                        "{geo:?} row {i} pixel {oy},{ox} chunk {chunk}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The segments of consecutive chunks cover every real output once, in
    /// order.
    #[test]
    fn segments_cover_the_real_outputs() {
        let geo = crate::geometry::geometry((1, 1, 10, 10), 1, (3, 3), (1, 1), 1, (1, 1), (1, 1));
        let shifted = Shifted::new(&geo, 4);
        // 10 columns and one of padding, shared by a row's end and the next
        // row's start.
        assert_eq!(shifted.width, 11);
        let columns = shifted.columns(&geo);
        for chunk in [1, 5, 12, 16, 48, 200] {
            let mut next = 0;
            for q0 in (0..columns).step_by(chunk) {
                let len = chunk.min(columns - q0);
                for (n, range) in shifted.segments(&geo, q0, len) {
                    assert_eq!(n, next, "chunk {chunk}");
                    assert!(range.end <= len);
                    next += range.len();
                }
            }
            assert_eq!(next, 100, "chunk {chunk}");
        }
    }
}
