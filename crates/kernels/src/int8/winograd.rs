//! Dense 3x3 int8 convolutions of stride 1 as Winograd F(2x2, 3x3), exact
//! in integers, for the CPUs that multiply i16 pairs ([`pairs::preferred`]).
//!
//! On those CPUs an int8 multiply-add costs what an FP32 one does
//! (`vpmaddwd` runs at the FMA's rate on an AVX2-only EPYC,
//! `docs/benchmarks.md`, ninth pass), so INT8 ran slower than our FP32,
//! which does a 3x3 convolution in a quarter of the multiply-adds
//! (F(4x4, 3x3)). F(2x2, 3x3) takes 16 products per input channel and 2x2
//! outputs instead of 36, and every one of its matrices is integer once
//! the weight transform is doubled:
//!
//! - the input transform `Bᵀ d B` has coefficients 0 and ±1, so a tile of
//!   raw i8 inputs becomes i16 values of at most 4 x 128;
//! - the weight transform `(2G) g (2G)ᵀ` has entries 0, 1 and 2, so it
//!   makes i16 values of at most 9 x 128, four times `G g Gᵀ`;
//! - the output transform `Aᵀ M A` has coefficients 0 and ±1.
//!
//! The 16 products per point run on [`PairKernel`] (i16 pairs into i32,
//! no saturation: 2 x 512 x 1152 is far below 2³¹), and all the sums wrap
//! in i32: four times the true sum is below 2³¹ for up to
//! [`MAX_IN_CHANNELS`] input channels, so the result, divided by four, is
//! the direct convolution's sum to the bit. The outputs are the same bytes
//! as the dense kernel's, and the test checks exactly that.

use std::cell::RefCell;
use std::ops::Range;

use edgewise_graph::tract_onnx::prelude::TractResult;

use super::pairs::{self, NR, PairKernel, pair};
use crate::geometry::{Geometry, valid_range};
use crate::parallel;
use crate::vectorize::vectorized;

/// Input channels up to which four times the largest sum (`in_c * 9 *
/// 128 * 128`) stays inside an i32.
pub(crate) const MAX_IN_CHANNELS: usize = 2048;

/// Points of a transformed 4x4 tile.
const POINTS: usize = 16;

/// Scratch bytes a block of tiles may use (its packed transformed input
/// and its 16 points' sums): inside the L2 cache of the hosts and boards
/// we target.
const BLOCK_BYTES: usize = 384 * 1024;

/// Whether `g` runs as Winograd F(2x2, 3x3) on this CPU: a dense 3x3
/// convolution of stride 1 and dilation 1, with symmetric weights, on a
/// CPU whose int8 products are i16 pairs, on a map where it takes fewer
/// products, with enough output channels for the transforms to pay (each
/// block of tiles is transformed once for all `out_c` output channels).
pub(crate) fn pays(g: &Geometry, symmetric_weights: bool) -> bool {
    if std::env::var_os("EDGEWISE_NO_WINOGRAD").is_some() {
        return false;
    }
    // Fewer products than the direct loop's, counting the outputs that
    // tiles past the map's edge compute and throw away (a 1x1 map: 16
    // against 9).
    let tiles = g.out_h.div_ceil(2) * g.out_w.div_ceil(2);
    let fewer = 16 * tiles < 9 * g.out_h * g.out_w;
    pairs::preferred() && fits(g, symmetric_weights) && g.out_c >= 16 && fewer
}

/// Whether [`Winograd`] can compute `g` (on any CPU).
fn fits(g: &Geometry, symmetric_weights: bool) -> bool {
    symmetric_weights
        && (g.kernel_h, g.kernel_w) == (3, 3)
        && (g.stride_h, g.stride_w) == (1, 1)
        && (g.dilation_h, g.dilation_w) == (1, 1)
        && g.in_c <= MAX_IN_CHANNELS
}

/// The transformed weights: for each of the 16 points, a `[out_c, in_c]`
/// matrix of i16 packed for [`PairKernel`].
#[derive(Clone, Debug)]
pub(crate) struct Winograd {
    points: Vec<PairKernel>,
}

/// A thread's buffers, reused from block to block and frame to frame.
#[derive(Default)]
struct Scratch {
    /// Per point, the block's transformed input as [`PairKernel`] panels.
    packed: Vec<i32>,
    /// Per point, `[out_c][cols]` sums.
    sums: Vec<i32>,
    /// One tile row segment's four input rows, and the same after the
    /// row transform.
    rows: Vec<i16>,
    /// A pair of channels' transformed segment: `[channel][point][tile]`.
    points: Vec<i16>,
    /// Two output rows of a segment.
    out: Vec<i32>,
    /// A zero bias per output channel, for the products.
    zeros: Vec<i32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = Default::default();
}

impl Winograd {
    /// Transforms and packs `weights` (`[out_c, in_c, 3, 3]`, i8).
    pub fn new(g: &Geometry, weights: &[i8]) -> Result<Winograd, String> {
        if !fits(g, true) {
            return Err("not a 3x3 convolution of stride 1 with few enough channels".into());
        }
        let (out_c, in_c) = (g.out_c, g.in_c);
        if weights.len() != out_c * in_c * 9 {
            return Err("its weights do not match its shape".into());
        }
        // (2G) g (2G)ᵀ, one filter at a time.
        const G2: [[i16; 3]; 4] = [[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]];
        let mut transformed = vec![vec![0i16; out_c * in_c]; POINTS];
        for (f, filter) in weights.chunks_exact(9).enumerate() {
            let w = |r: usize, c: usize| i16::from(filter[r * 3 + c]);
            for (i, gi) in G2.iter().enumerate() {
                for (j, gj) in G2.iter().enumerate() {
                    let mut u = 0i16;
                    for (r, &a) in gi.iter().enumerate() {
                        for (c, &b) in gj.iter().enumerate() {
                            u += a * b * w(r, c);
                        }
                    }
                    transformed[i * 4 + j][f] = u;
                }
            }
        }
        let points = transformed
            .iter()
            .map(|u| PairKernel::new(out_c, in_c, u))
            .collect();
        Ok(Winograd { points })
    }

    /// The kernel's name, for the kernel audit.
    pub fn name(&self) -> String {
        format!("{}_winograd_f2x2_3x3", self.points[0].name())
    }

    /// Tiles per block: as many as keep a block's scratch inside
    /// [`BLOCK_BYTES`], in whole panels of [`NR`].
    fn block_tiles(g: &Geometry) -> usize {
        let per_tile = POINTS * 4 * (g.in_c.div_ceil(2) + g.out_c);
        (BLOCK_BYTES / per_tile / NR).clamp(1, 16) * NR
    }

    /// Computes one image: `image` is `[in_c, in_h, in_w]` i8, read as
    /// `x0` outside; `bias` is added to each output channel's sums. Each
    /// output row segment's sums go to `emit(channel, row, column, sums)`,
    /// from the plan's threads (each block of tiles on one).
    pub fn run(
        &self,
        g: &Geometry,
        image: &[i8],
        x0: i8,
        bias: &[i32],
        emit: impl Fn(usize, usize, usize, &[i32]) + Sync,
    ) -> TractResult<()> {
        let tiles_w = g.out_w.div_ceil(2);
        let tiles = g.out_h.div_ceil(2) * tiles_w;
        let block = Self::block_tiles(g);
        let blocks = tiles.div_ceil(block);
        let work = tiles * POINTS * g.in_c * g.out_c;
        let parts = parallel::parts(work, blocks);
        let share = blocks.div_ceil(parts);
        parallel::for_each_part(parts, |p| {
            SCRATCH.with_borrow_mut(|scratch| {
                for b in (p * share)..((p + 1) * share).min(blocks) {
                    let range = b * block..((b + 1) * block).min(tiles);
                    self.run_block(g, image, x0, bias, range, scratch, &emit);
                }
            });
            Ok(())
        })
    }

    /// One block of tiles, in raster order: transform its input, multiply
    /// each point, transform its outputs back.
    #[allow(clippy::too_many_arguments)]
    fn run_block(
        &self,
        g: &Geometry,
        image: &[i8],
        x0: i8,
        bias: &[i32],
        tiles: Range<usize>,
        scratch: &mut Scratch,
        emit: &impl Fn(usize, usize, usize, &[i32]),
    ) {
        let cols = tiles.len();
        let panel = PairKernel::panel_len(g.in_c);
        let point_len = cols.div_ceil(NR) * panel;
        scratch.packed.resize(POINTS * point_len, 0);
        scratch.sums.resize(POINTS * g.out_c * cols, 0);
        // Lanes past `cols` are multiplied too (and thrown away): zeros,
        // not another block's values. `pack` writes the missing half of
        // an odd channel count's last pair.
        if !cols.is_multiple_of(NR) {
            scratch.packed.fill(0);
        }
        let tiles_w = g.out_w.div_ceil(2);
        let segments = row_segments(tiles.clone(), tiles_w);
        for c in (0..g.in_c).step_by(2) {
            for &(ty, tx, j0, len) in &segments {
                scratch.points.resize(2 * POINTS * len, 0);
                let channels = c..(c + 2).min(g.in_c);
                for (k, channel) in channels.clone().enumerate() {
                    let out = &mut scratch.points[k * POINTS * len..(k + 1) * POINTS * len];
                    let plane = &image[channel * g.in_h * g.in_w..(channel + 1) * g.in_h * g.in_w];
                    transform_input(g, plane, x0, (ty, tx), &mut scratch.rows, out);
                }
                let (first, second) = scratch.points.split_at(POINTS * len);
                let second = (channels.len() == 2).then_some(second);
                let at = Packed {
                    first: j0,
                    pair: c / 2,
                    panel,
                    point_len,
                };
                pack(first, second, at, &mut scratch.packed);
            }
        }
        scratch.zeros.resize(g.out_c, 0);
        for (point, kernel) in self.points.iter().enumerate() {
            let packed = &scratch.packed[point * point_len..(point + 1) * point_len];
            let sums = &mut scratch.sums[point * g.out_c * cols..(point + 1) * g.out_c * cols];
            kernel.run(packed, cols, &scratch.zeros, sums);
        }
        let stride = g.out_c * cols;
        for (o, &bias) in bias.iter().enumerate().take(g.out_c) {
            for &(ty, tx, j0, len) in &segments {
                let width = (2 * len).min(g.out_w - 2 * tx);
                scratch.out.resize(4 * len, 0);
                let (top, bottom) = scratch.out.split_at_mut(2 * len);
                let first = o * cols + j0;
                transform_output(&scratch.sums[first..], stride, bias, top, bottom);
                emit(o, 2 * ty, 2 * tx, &top[..width]);
                if 2 * ty + 1 < g.out_h {
                    emit(o, 2 * ty + 1, 2 * tx, &bottom[..width]);
                }
            }
        }
    }
}

/// The parts of `tiles` (raster order, `tiles_w` per row) in each tile
/// row: `(tile row, first tile column, index in the block, length)`.
fn row_segments(tiles: Range<usize>, tiles_w: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut segments = vec![];
    let mut t = tiles.start;
    while t < tiles.end {
        let (ty, tx) = (t / tiles_w, t % tiles_w);
        let len = (tiles_w - tx).min(tiles.end - t);
        segments.push((ty, tx, t - tiles.start, len));
        t += len;
    }
    segments
}

/// Where a pair of channels' transformed tiles go in the packed input.
#[derive(Clone, Copy)]
struct Packed {
    /// The first tile's index in the block.
    first: usize,
    /// The pair of channels' index.
    pair: usize,
    /// [`PairKernel::panel_len`] of the input channels.
    panel: usize,
    /// Each point's packed length.
    point_len: usize,
}

vectorized!(
    transform_input,
    transform_input_avx2,
    transform_input_plain,
    (
        g: &Geometry,
        plane: &[i8],
        x0: i8,
        tile: (usize, usize),
        rows: &mut Vec<i16>,
        out: &mut [i16]
    )
);

/// The 16 transformed points (`Bᵀ d B`) of `out.len() / 16` tiles from
/// `tile` (tile row, tile column) of one input plane, `[point][tile]`.
#[inline(always)]
fn transform_input_plain(
    g: &Geometry,
    plane: &[i8],
    x0: i8,
    (ty, tx): (usize, usize),
    rows: &mut Vec<i16>,
    out: &mut [i16],
) {
    let len = out.len() / POINTS;
    let width = 2 * len + 2;
    rows.resize(8 * width, 0);
    let (d, t) = rows.split_at_mut(4 * width);
    // The four input rows the tiles read, x0 outside the plane.
    let (inside_from, inside_to) = valid_range(2 * tx, g.pad_left, 1, g.in_w, width);
    for (i, row) in d.chunks_exact_mut(width).enumerate() {
        let y = (2 * ty + i) as isize - g.pad_top as isize;
        if y < 0 || y >= g.in_h as isize || inside_from == inside_to {
            row.fill(i16::from(x0));
            continue;
        }
        let start = y as usize * g.in_w + inside_from + 2 * tx - g.pad_left;
        let src = &plane[start..start + (inside_to - inside_from)];
        row[..inside_from].fill(i16::from(x0));
        for (v, &x) in row[inside_from..inside_to].iter_mut().zip(src) {
            *v = i16::from(x);
        }
        row[inside_to..].fill(i16::from(x0));
    }
    // Bᵀ d: rows 0 - 2, 1 + 2, 2 - 1, 1 - 3 (at most 2 x 128).
    let (d0, rest) = d.split_at(width);
    let (d1, rest) = rest.split_at(width);
    let (d2, d3) = rest.split_at(width);
    let (t0, rest) = t.split_at_mut(width);
    let (t1, rest) = rest.split_at_mut(width);
    let (t2, t3) = rest.split_at_mut(width);
    for x in 0..width {
        t0[x] = d0[x] - d2[x];
        t1[x] = d1[x] + d2[x];
        t2[x] = d2[x] - d1[x];
        t3[x] = d1[x] - d3[x];
    }
    // (Bᵀ d) B: the same combinations of each tile's four columns.
    for (r, t) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
        let (p0, rest) = out[4 * r * len..(4 * r + 4) * len].split_at_mut(len);
        let (p1, rest) = rest.split_at_mut(len);
        let (p2, p3) = rest.split_at_mut(len);
        for x in 0..len {
            let (a, b, c, d) = (t[2 * x], t[2 * x + 1], t[2 * x + 2], t[2 * x + 3]);
            p0[x] = a - c;
            p1[x] = b + c;
            p2[x] = c - b;
            p3[x] = b - d;
        }
    }
}

vectorized!(
    pack,
    pack_avx2,
    pack_plain,
    (first: &[i16], second: Option<&[i16]>, at: Packed, packed: &mut [i32])
);

/// Packs the transformed tiles of a pair of channels (`[point][tile]`
/// each; zeros for a missing second) as i16 pairs into each point's
/// panels.
#[inline(always)]
fn pack_plain(first: &[i16], second: Option<&[i16]>, at: Packed, packed: &mut [i32]) {
    let len = first.len() / POINTS;
    for point in 0..POINTS {
        let lo = &first[point * len..(point + 1) * len];
        let hi = second.map(|s| &s[point * len..(point + 1) * len]);
        let dst = &mut packed[point * at.point_len..(point + 1) * at.point_len];
        // Runs of tiles inside one panel are contiguous lanes.
        let mut x = 0;
        while x < len {
            let j = at.first + x;
            let run = (NR - j % NR).min(len - x);
            let start = (j / NR) * at.panel + at.pair * NR + j % NR;
            let dst = &mut dst[start..start + run];
            match hi {
                Some(hi) => {
                    for ((d, &l), &h) in dst.iter_mut().zip(&lo[x..x + run]).zip(&hi[x..x + run]) {
                        *d = pair(l, h);
                    }
                }
                None => {
                    for (d, &l) in dst.iter_mut().zip(&lo[x..x + run]) {
                        *d = pair(l, 0i16);
                    }
                }
            }
            x += run;
        }
    }
}

vectorized!(
    transform_output,
    transform_output_avx2,
    transform_output_plain,
    (sums: &[i32], stride: usize, bias: i32, top: &mut [i32], bottom: &mut [i32])
);

/// `Aᵀ M A` for `top.len() / 2` tiles whose point `p` sums start at
/// `sums[p * stride]`, divided by four, plus `bias`: the tiles' two output
/// rows.
#[inline(always)]
fn transform_output_plain(
    sums: &[i32],
    stride: usize,
    bias: i32,
    top: &mut [i32],
    bottom: &mut [i32],
) {
    let len = top.len() / 2;
    let m: [&[i32]; POINTS] = std::array::from_fn(|p| &sums[p * stride..p * stride + len]);
    let bottom = &mut bottom[..2 * len];
    for x in 0..len {
        let v = |p: usize| m[p][x];
        // Aᵀ M: rows 0 + 1 + 2 and 1 - 2 - 3, column by column; all
        // wrapping, as the products' sums are (see the module's docs).
        let s0: [i32; 4] =
            std::array::from_fn(|k| v(k).wrapping_add(v(4 + k)).wrapping_add(v(8 + k)));
        let s1: [i32; 4] =
            std::array::from_fn(|k| v(4 + k).wrapping_sub(v(8 + k)).wrapping_sub(v(12 + k)));
        let y = |s: [i32; 4]| {
            (
                s[0].wrapping_add(s[1]).wrapping_add(s[2]),
                s[1].wrapping_sub(s[2]).wrapping_sub(s[3]),
            )
        };
        let ((a, b), (c, d)) = (y(s0), y(s1));
        top[2 * x] = (a >> 2) + bias;
        top[2 * x + 1] = (b >> 2) + bias;
        bottom[2 * x] = (c >> 2) + bias;
        bottom[2 * x + 1] = (d >> 2) + bias;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;

    /// A 3x3 convolution of stride 1 on `in_c` planes of `h x w` into
    /// `out_c`, padded `(top, left)` before and `(bottom, right)` after.
    fn conv3x3(
        in_c: usize,
        (h, w): (usize, usize),
        out_c: usize,
        before: (usize, usize),
        after: (usize, usize),
    ) -> Geometry {
        crate::geometry::geometry((1, in_c, h, w), out_c, (3, 3), (1, 1), 1, before, after)
    }

    /// `bias[o] + sum(w * x)`, `x` read as `x0` in the padding.
    fn direct(g: &Geometry, image: &[i8], x0: i8, weights: &[i8], bias: &[i32]) -> Vec<i32> {
        let mut out = vec![0; g.out_c * g.out_h * g.out_w];
        for o in 0..g.out_c {
            for y in 0..g.out_h {
                for x in 0..g.out_w {
                    let mut sum = bias[o];
                    for c in 0..g.in_c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (y + ky) as isize - g.pad_top as isize;
                                let ix = (x + kx) as isize - g.pad_left as isize;
                                let inside = (0..g.in_h as isize).contains(&iy)
                                    && (0..g.in_w as isize).contains(&ix);
                                let v = if inside {
                                    image[(c * g.in_h + iy as usize) * g.in_w + ix as usize]
                                } else {
                                    x0
                                };
                                let w = weights[((o * g.in_c + c) * 3 + ky) * 3 + kx];
                                sum += i32::from(v) * i32::from(w);
                            }
                        }
                    }
                    out[(o * g.out_h + y) * g.out_w + x] = sum;
                }
            }
        }
        out
    }

    /// What [`Winograd::run`] emits, gathered into `[out_c, out_h, out_w]`,
    /// with how many times each output was emitted.
    fn run(op: &Winograd, g: &Geometry, image: &[i8], x0: i8, bias: &[i32]) -> Vec<(i32, u8)> {
        let out = Mutex::new(vec![(0, 0u8); g.out_c * g.out_h * g.out_w]);
        op.run(g, image, x0, bias, |o, y, x, sums| {
            let mut out = out.lock().unwrap();
            for (i, &s) in sums.iter().enumerate() {
                let cell = &mut out[(o * g.out_h + y) * g.out_w + x + i];
                *cell = (s, cell.1 + 1);
            }
        })
        .unwrap();
        out.into_inner().unwrap()
    }

    /// The sums are the direct convolution's to the bit, each output
    /// emitted once, on maps no tile divides, with paddings 0, 1, 2 and
    /// uneven, odd and even channel counts, blocks of tiles that start
    /// inside tile rows, extreme values (every product at -128 x -128 over
    /// many channels), and on one thread and two.
    #[test]
    fn sums_match_the_direct_convolution() {
        let cases = [
            (conv3x3(5, (9, 11), 7, (1, 1), (1, 1)), false),
            (conv3x3(4, (8, 8), 16, (0, 0), (0, 0)), false),
            (conv3x3(3, (7, 6), 17, (2, 0), (0, 2)), false),
            (conv3x3(1, (3, 3), 2, (1, 1), (1, 1)), false),
            (conv3x3(16, (37, 83), 20, (1, 1), (1, 1)), false),
            (conv3x3(64, (32, 32), 64, (1, 1), (1, 1)), false),
            (conv3x3(301, (6, 5), 3, (1, 1), (1, 1)), true),
        ];
        for (i, (g, extreme)) in cases.iter().enumerate() {
            let pseudo = |n: usize, a: usize, m: usize| -> Vec<i8> {
                (0..n).map(|j| ((j * a + i) % m) as u8 as i8).collect()
            };
            let (image, weights, x0) = if *extreme {
                let image = vec![-128i8; g.in_c * g.in_h * g.in_w];
                (image, vec![-128i8; g.out_c * g.in_c * 9], -128)
            } else {
                let image = pseudo(g.in_c * g.in_h * g.in_w, 53, 256);
                (image, pseudo(g.out_c * g.in_c * 9, 37, 255), -7)
            };
            let bias: Vec<i32> = (0..g.out_c as i32).map(|o| o * 997 - 3000).collect();
            let op = Winograd::new(g, &weights).unwrap();
            let expected: Vec<(i32, u8)> = direct(g, &image, x0, &weights, &bias)
                .into_iter()
                .map(|s| (s, 1))
                .collect();
            let one = run(&op, g, &image, x0, &bias);
            assert!(one == expected, "case {i} {g:?}: sums differ");
            let two = multithread_tract_scope(Executor::multithread(2), || {
                run(&op, g, &image, x0, &bias)
            });
            assert!(two == expected, "case {i} {g:?}: two threads");
        }
        // The 64-channel case splits into two parts on two threads.
        let g = &cases[5].0;
        let tiles = g.out_h.div_ceil(2) * g.out_w.div_ceil(2);
        assert!(tiles.div_ceil(Winograd::block_tiles(g)) >= 2);
        assert!(tiles * POINTS * g.in_c * g.out_c >= 2 * parallel::MIN_WORK_PER_PART);
    }
}
