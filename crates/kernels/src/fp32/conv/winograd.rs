//! Winograd F(4x4, 3x3): a 3x3 convolution of stride 1 as 36 matrix
//! products, one per point of a 6x6 input tile that yields 4x4 outputs
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016; ncnn runs its float 3x3 convolutions this way). Per input channel
//! and 4x4 outputs it takes 36 multiply-adds where the direct loop takes
//! 144, for a transform of the input tiles (once per input channel, shared
//! by every output channel) and of the products (once per output channel).
//!
//! The products run on the same tile loops as the direct convolution, as
//! a 1x1 convolution whose "pixels" are tiles: each of the 36 points of the
//! transformed weights `[out_c][in_c]` times the transformed input tiles
//! `[in_c][tiles]`. The transforms work on bands of tiles laid out flat
//! ([`Flat`]), a tile per vector lane, so that they vectorize as plain
//! loops on every CPU.
//!
//! The output differs from the direct sum by rounding only: in float32,
//! relative errors of about 1e-6 of the largest term.

use super::{F32Conv, Geometry, TileArgs};
use crate::parallel::{self, DisjointWriter};
use crate::vectorize::vectorized;
use edgewise_graph::tract_onnx::prelude::TractResult;

/// Outputs per tile side.
const M: usize = 4;
/// Inputs per tile side: `M` and the kernel's 3, less one.
const ALPHA: usize = 6;
/// Points of a tile: one matrix product each.
pub(super) const POINTS: usize = ALPHA * ALPHA;

/// Output pixels per input channel's transformed weights (36 per output
/// channel) below which the direct loop keeps a convolution: see [`pays`].
const MAP_PER_WEIGHT: usize = 8;

/// The kernel transform `G` (6x3).
const G: [[f64; 3]; ALPHA] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Bytes of transformed input (and of one block's products) a band of
/// tiles keeps: about a core's second-level cache, from which every block
/// of output channels reads the transformed input.
const BAND_BYTES: usize = 768 << 10;

thread_local! {
    /// The transformed input of the band an image is at, `[POINTS][in_c]
    /// [stride]`: the calling thread's, shared with the threads that fill
    /// it and read it.
    static INPUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A thread's products and transform rows.
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

#[derive(Default)]
struct Buffers {
    /// One block's products: `[POINTS][mr][stride]`.
    products: Vec<f32>,
    /// Rows of the transforms.
    rows: Vec<f32>,
}

/// Whether F(4x4, 3x3) should replace the direct tile loops on `geo` with
/// `mr x nt` tiles: a dense 3x3 convolution of stride 1 with no dilation,
/// where the products and transforms cost less than four fifths of the
/// direct loop's multiply-adds over its flat pixels (`flat_pixels`), on a
/// map of at least [`MAP_PER_WEIGHT`] output pixels per input channel's 36
/// transformed weights.
pub(super) fn pays(geo: &Geometry, mr: usize, nt: usize, flat_pixels: usize) -> bool {
    let shape = (geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w);
    if shape != (3, 3, 1, 1) || (geo.dilation_h, geo.dilation_w) != (1, 1) {
        return false;
    }
    if std::env::var_os("EDGEWISE_NO_WINOGRAD").is_some() {
        return false;
    }
    // The transformed weights take four times the memory of the plain
    // ones: only where they are few next to the map they run on. Deep
    // layers on small maps (a ResNet's last stages) kept them all made a
    // ResNet18 detector's peak memory 1.7x.
    if POINTS * geo.in_c > MAP_PER_WEIGHT * geo.out_h * geo.out_w {
        return false;
    }
    let rows = geo.out_c.next_multiple_of(mr);
    let tiles = geo.out_h.div_ceil(M) * geo.out_w.div_ceil(M);
    let direct = rows * flat_pixels.next_multiple_of(nt) * 9 * geo.in_c;
    // The transforms: about 8 operations per point, a lane each, counted as
    // multiply-adds of the loop.
    let transforms = tiles * POINTS * (geo.in_c + geo.out_c) * 2;
    let winograd = rows * tiles.next_multiple_of(nt) * POINTS * geo.in_c + transforms;
    winograd * 5 < direct * 4
}

/// The weights `w` (OIHW, 3x3) transformed (`G g Gᵀ` per output and input
/// channel), packed for `mr`-channel tiles: per point, per block of `mr`
/// output channels, `[in_c][mr]`, zeros past the last channel.
pub(super) fn transform_weights(geo: &Geometry, w: &[f32], mr: usize) -> Vec<f32> {
    let blocks = geo.out_c.div_ceil(mr);
    let mut packed = vec![0f32; POINTS * blocks * geo.in_c * mr];
    for o in 0..geo.out_c {
        for c in 0..geo.in_c {
            let g = &w[(o * geo.in_c + c) * 9..][..9];
            // G g: 6x3.
            let mut gg = [[0f64; 3]; ALPHA];
            for (i, row) in gg.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|t| G[i][t] * g[t * 3 + j] as f64).sum();
                }
            }
            for (i, gg) in gg.iter().enumerate() {
                for (j, gj) in G.iter().enumerate() {
                    let u: f64 = (0..3).map(|t| gg[t] * gj[t]).sum();
                    let point = i * ALPHA + j;
                    packed[((point * blocks + o / mr) * geo.in_c + c) * mr + o % mr] = u as f32;
                }
            }
        }
    }
    packed
}

/// Scales output channel `o` of weights packed by [`transform_weights`].
pub(super) fn scale_output_channel(
    packed: &mut [f32],
    geo: &Geometry,
    mr: usize,
    o: usize,
    scale: f32,
) {
    let blocks = geo.out_c.div_ceil(mr);
    for point in 0..POINTS {
        let block = &mut packed[(point * blocks + o / mr) * geo.in_c * mr..][..geo.in_c * mr];
        block
            .iter_mut()
            .skip(o % mr)
            .step_by(mr)
            .for_each(|w| *w *= scale);
    }
}

/// `Bᵀ d`: the input transform of six values along one side of a tile.
#[inline(always)]
fn input_side(d: [f32; ALPHA]) -> [f32; ALPHA] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        2.0 * (d[3] - d[1]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `Aᵀ m`: the output transform of six products along one side of a tile.
#[inline(always)]
fn output_side(m: [f32; ALPHA]) -> [f32; M] {
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    [m[0] + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + m[5]]
}

/// A band of tiles, laid out flat: each row of tiles one tile wider than
/// the output needs, so that the rows run on into each other and the
/// transforms take a tile per lane across row ends, one dropped tile per
/// row (as the direct loop's flat pixels drop a column). A band is a run of
/// whole groups of the tile loop's `nt` flat tiles, which may start and end
/// inside rows: bands of whole rows padded each to whole groups computed
/// up to half again the tiles on 40x40 maps.
#[derive(Clone, Copy)]
struct Flat {
    /// Tiles an output row of tiles needs.
    per_row: usize,
    /// The first row of tiles the band covers.
    first_row: usize,
    /// The rows of tiles it covers.
    rows: usize,
    /// Its flat tiles, counted from its first row's first.
    lo: usize,
    /// Its flat tiles' end, counted alike.
    hi: usize,
}

impl Flat {
    /// Tiles per flat row: one dropped.
    fn row_tiles(&self) -> usize {
        self.per_row + 1
    }

    /// Input (and output) columns per flat row: four per tile.
    fn width(&self) -> usize {
        M * self.row_tiles()
    }

    /// The band of flat tiles `tiles` of an image `per_row` tiles wide.
    fn of(per_row: usize, tiles: std::ops::Range<usize>) -> Flat {
        let first_row = tiles.start / (per_row + 1);
        let skipped = first_row * (per_row + 1);
        Flat {
            per_row,
            first_row,
            rows: (tiles.end - 1) / (per_row + 1) + 1 - first_row,
            lo: tiles.start - skipped,
            hi: tiles.end - skipped,
        }
    }

    /// The band's flat tiles.
    fn tiles(&self) -> usize {
        self.hi - self.lo
    }

    /// The flat tiles of the rows it covers.
    fn covered(&self) -> usize {
        self.rows * self.row_tiles()
    }

    /// Where its tiles' outputs land, as `(j, m1, x, n)`: output row `m1`
    /// of its `j`th row of tiles, columns `x..x + n`, in an output with
    /// `out_rows` rows from its first and `out_w` columns.
    fn segments(&self, out_w: usize, out_rows: usize) -> Vec<(usize, usize, usize, usize)> {
        let row_tiles = self.row_tiles();
        let mut segments = vec![];
        for j in 0..self.rows {
            let a = self.lo.max(j * row_tiles) - j * row_tiles;
            let b = (self.hi.min((j + 1) * row_tiles) - j * row_tiles).min(self.per_row);
            if a >= b {
                continue;
            }
            let (x, end) = (M * a, (M * b).min(out_w));
            for m1 in 0..M.min(out_rows - M * j) {
                segments.push((j, m1, x, end - x));
            }
        }
        segments
    }
}

vectorized!(
    transform_input,
    transform_input_avx2,
    transform_input_plain,
    (
        geo: &Geometry,
        plane: &[f32],
        band: Flat,
        rows: &mut Vec<f32>,
        out: *mut f32,
        point_stride: usize
    )
);

vectorized!(
    transform_output,
    transform_output_avx2,
    transform_output_plain,
    (
        geo: &Geometry,
        products: &[f32],
        point_stride: usize,
        band: Flat,
        rows: &mut Vec<f32>,
        out: *mut f32,
        segments: &[(usize, usize, usize, usize)]
    )
);

/// Tiles the transforms take at once, one per lane: an AVX2 vector, two
/// NEON ones.
const LANES: usize = 8;

/// Spare values after a band's tiles in its buffers and rows: the
/// transforms' last block of [`LANES`] tiles writes and reads past the
/// last tile.
const SPARE: usize = 2 * LANES;

type Lanes = [f32; LANES];

/// `LANES` values from `at` in `row`.
#[inline(always)]
fn lanes(row: &[f32], at: usize) -> Lanes {
    row[at..at + LANES].try_into().expect("a block of lanes")
}

/// [`input_side`] on a tile per lane.
#[inline(always)]
fn input_sides(d: [Lanes; ALPHA]) -> [Lanes; ALPHA] {
    let mut e = [[0f32; LANES]; ALPHA];
    for l in 0..LANES {
        let v = input_side([d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]]);
        for (k, e) in e.iter_mut().enumerate() {
            e[l] = v[k];
        }
    }
    e
}

/// [`output_side`] on a tile per lane.
#[inline(always)]
fn output_sides(m: [Lanes; ALPHA]) -> [Lanes; M] {
    let mut s = [[0f32; LANES]; M];
    for l in 0..LANES {
        let v = output_side([m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]]);
        for (k, s) in s.iter_mut().enumerate() {
            s[l] = v[k];
        }
    }
    s
}

/// The input transform of `band`'s tiles in one input channel `plane`:
/// point `p` of its `t`th tile goes to `out[p * point_stride + t]`, and junk
/// to the [`SPARE`] places after the last, which the caller makes writable
/// for this call alone. `rows` is scratch.
#[inline(always)]
fn transform_input_plain(
    geo: &Geometry,
    plane: &[f32],
    band: Flat,
    rows: &mut Vec<f32>,
    out: *mut f32,
    point_stride: usize,
) {
    let width = band.width();
    let flat = band.rows * width;
    // The band's input rows, zero-padded to the flat width: four per row
    // of tiles and two more.
    let in_rows = M * band.rows + 2;
    let (padded_len, sides_len) = (in_rows * width + SPARE, ALPHA * (flat + SPARE));
    let phase_len = band.covered() + SPARE;
    let len = padded_len + sides_len + M * phase_len;
    if rows.len() < len {
        rows.resize(len, 0.0);
    }
    let (padded, rest) = rows.split_at_mut(padded_len);
    let (sides, phases) = rest.split_at_mut(sides_len);
    let y0 = (M * band.first_row) as isize - geo.pad_top as isize;
    let (first, last) = (
        geo.pad_left.min(width),
        (geo.pad_left + geo.in_w).min(width),
    );
    for (i, row) in padded.chunks_exact_mut(width).enumerate() {
        let y = y0 + i as isize;
        if y < 0 || y >= geo.in_h as isize || first >= last {
            row.fill(0.0);
            continue;
        }
        let line = &plane[y as usize * geo.in_w..][..last - first];
        row[..first].fill(0.0);
        row[first..last].copy_from_slice(line);
        row[last..].fill(0.0);
    }
    // Down the tiles: Bᵀ over each row of tiles' six input rows, a column
    // per lane. A block running past a flat row's end writes junk where the
    // next row's first block then writes.
    for j in 0..band.rows {
        for x in (0..width).step_by(LANES) {
            let mut d = [[0f32; LANES]; ALPHA];
            for (i, d) in d.iter_mut().enumerate() {
                *d = lanes(padded, (M * j + i) * width + x);
            }
            for (k1, e) in input_sides(d).iter().enumerate() {
                sides[k1 * (flat + SPARE) + j * width + x..][..LANES].copy_from_slice(e);
            }
        }
    }
    // Across the tiles: each flat row of the above split into its four
    // column phases (a tile per lane), then Bᵀ over a tile's six columns:
    // phases 0-3 of tile t and phases 0-1 of tile t + 1.
    for (k1, side) in sides.chunks_exact(flat + SPARE).enumerate() {
        {
            let (p0, p) = phases.split_at_mut(phase_len);
            let (p1, p) = p.split_at_mut(phase_len);
            let (p2, p3) = p.split_at_mut(phase_len);
            // Zipped, so that the loop vectorizes into shuffles.
            for ((((a, b), c), d), s) in p0
                .iter_mut()
                .zip(p1.iter_mut())
                .zip(p2.iter_mut())
                .zip(p3.iter_mut())
                .zip(side.chunks_exact(M))
            {
                (*a, *b, *c, *d) = (s[0], s[1], s[2], s[3]);
            }
        }
        for t in (band.lo..band.hi).step_by(LANES) {
            let mut d = [[0f32; LANES]; ALPHA];
            for (j, d) in d.iter_mut().enumerate() {
                *d = lanes(&phases[(j % M) * phase_len..], t + j / M);
            }
            for (k2, v) in input_sides(d).iter().enumerate() {
                let at = (k1 * ALPHA + k2) * point_stride + t - band.lo;
                // SAFETY: the caller's: `out` is writable at every point's
                // tiles and spare places, by this call alone.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(at), LANES) };
            }
        }
    }
}

/// The output transform of `band`'s tiles in one output channel: point
/// `p` of its `t`th tile is `products[p * point_stride + t]` (readable to
/// [`SPARE`] places past the last); the 4x4 outputs that land in the output
/// go to `out`, the output channel's rows from the band's first, at the
/// band's `segments` ([`Flat::segments`]), which the caller makes writable
/// for this call alone. `rows` is scratch.
#[inline(always)]
fn transform_output_plain(
    geo: &Geometry,
    products: &[f32],
    point_stride: usize,
    band: Flat,
    rows: &mut Vec<f32>,
    out: *mut f32,
    segments: &[(usize, usize, usize, usize)],
) {
    let width = band.width();
    let flat = band.covered() * M + M * LANES;
    if rows.len() < M * flat {
        rows.resize(M * flat, 0.0);
    }
    for t in (band.lo..band.hi).step_by(LANES) {
        // Down the tile: Aᵀ over the six rows of points, then across: Aᵀ
        // over each output row's six columns. (Loops, not closures: a
        // closure LLVM leaves out of line runs without AVX2.)
        let mut down = [[[0f32; LANES]; M]; ALPHA];
        for (k2, down) in down.iter_mut().enumerate() {
            let mut m = [[0f32; LANES]; ALPHA];
            for (k1, m) in m.iter_mut().enumerate() {
                *m = lanes(products, (k1 * ALPHA + k2) * point_stride + t - band.lo);
            }
            *down = output_sides(m);
        }
        for (m1, out) in rows.chunks_exact_mut(flat).take(M).enumerate() {
            let mut d = [[0f32; LANES]; ALPHA];
            for (k2, d) in d.iter_mut().enumerate() {
                *d = down[k2][m1];
            }
            let y = output_sides(d);
            // A tile's four columns side by side.
            let out: &mut [f32; M * LANES] = (&mut out[M * t..][..M * LANES])
                .try_into()
                .expect("a block of tiles");
            for (l, o) in out.chunks_exact_mut(M).enumerate() {
                (o[0], o[1], o[2], o[3]) = (y[0][l], y[1][l], y[2][l], y[3][l]);
            }
        }
    }
    for &(j, m1, x, n) in segments {
        let from = &rows[m1 * flat + j * width + x..][..n];
        // SAFETY: the caller's: the segments are writable by this call
        // alone.
        unsafe {
            let to = out.add((M * j + m1) * geo.out_w + x);
            std::ptr::copy_nonoverlapping(from.as_ptr(), to, n);
        }
    }
}

impl F32Conv {
    /// The convolution of one image `x` into `y` by F(4x4, 3x3), the
    /// weights transformed at load (`self.weights`, as
    /// [`transform_weights`] packs them).
    ///
    /// The output goes in bands of whole groups of `nt` flat tiles
    /// ([`Flat`]), as many as keep a band's transformed input near the
    /// second-level cache ([`BAND_BYTES`]). Per band: the input transform
    /// of every channel, then per block of output channels its 36 products
    /// on the tile loop and their output transform, bias and activation.
    /// The threads split the bands, or, on maps of fewer groups than
    /// threads, each band's input channels, then its blocks.
    pub(super) fn eval_winograd(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, k) = (&self.geo, &self.kernel);
        let per_row = g.out_w.div_ceil(M);
        let tiles = g.out_h.div_ceil(M) * (per_row + 1);
        let groups = tiles.div_ceil(k.nt);
        let group_bytes = POINTS * g.in_c * k.nt * std::mem::size_of::<f32>();
        let budget = self.band_bytes * BAND_BYTES / super::BAND_BYTES;
        let fits = (budget / group_bytes).clamp(1, groups);
        let threads = parallel::threads();
        // With a group per thread at least, the threads split the bands,
        // each its own whole bands: one hand-over per convolution.
        // Otherwise (a map of a few rows of tiles) band after band, the
        // threads splitting each band's input transform by input channels,
        // then its blocks of output channels.
        let split = threads > 1 && groups >= threads;
        let bands = if split {
            groups.div_ceil(fits).next_multiple_of(threads).min(groups)
        } else {
            groups.div_ceil(fits)
        };
        let band_of = |b: usize| {
            let start = (groups * b / bands * k.nt).min(tiles);
            Flat::of(per_row, start..(groups * (b + 1) / bands * k.nt).min(tiles))
        };
        let blocks = g.out_c.div_ceil(k.mr);
        let plane = g.in_h * g.in_w;
        let writer = DisjointWriter::new(y);
        if split {
            let work = POINTS * blocks * k.mr * g.in_c * tiles;
            let parts = parallel::parts(work, bands);
            return parallel::for_each_part(parts, |p| {
                INPUT.with_borrow_mut(|input| {
                    BUFFERS.with_borrow_mut(|buffers| {
                        for b in bands * p / parts..bands * (p + 1) / parts {
                            let band = band_of(b);
                            let stride = band.tiles().next_multiple_of(k.nt) + SPARE;
                            let len = POINTS * g.in_c * stride;
                            if input.len() < len {
                                input.resize(len, 0.0);
                            }
                            let input = DisjointWriter::new(&mut input[..len]);
                            for c in 0..g.in_c {
                                let out = self.channel_input(&input, c, stride);
                                let channel = &x[c * plane..][..plane];
                                let stride = g.in_c * stride;
                                transform_input(g, channel, band, &mut buffers.rows, out, stride);
                            }
                            // SAFETY: the transforms above are done.
                            let input = unsafe { input.range(0, len) };
                            for block in 0..blocks {
                                self.winograd_block(input, stride, band, block, buffers, &writer);
                            }
                        }
                    })
                });
                Ok(())
            });
        }
        // Taken, not borrowed, across the parallel parts: a pool thread
        // waiting on them may run another engine's frame meanwhile, whose
        // Winograd layers then make a buffer of their own instead of
        // panicking on a second borrow.
        let mut taken = INPUT.take();
        let input = &mut taken;
        let done = (|| -> TractResult<()> {
            for b in 0..bands {
                let band = band_of(b);
                let stride = band.tiles().next_multiple_of(k.nt) + SPARE;
                let len = POINTS * g.in_c * stride;
                if input.len() < len {
                    input.resize(len, 0.0);
                }
                {
                    let input = DisjointWriter::new(&mut input[..len]);
                    let work = g.in_c * band.tiles() * POINTS * 8;
                    let parts = parallel::parts(work, g.in_c);
                    parallel::for_each_part(parts, |p| {
                        BUFFERS.with_borrow_mut(|buffers| {
                            for c in g.in_c * p / parts..g.in_c * (p + 1) / parts {
                                let out = self.channel_input(&input, c, stride);
                                let channel = &x[c * plane..][..plane];
                                let stride = g.in_c * stride;
                                transform_input(g, channel, band, &mut buffers.rows, out, stride);
                            }
                        });
                        Ok(())
                    })?;
                }
                let input = &input[..len];
                let work = POINTS * blocks * k.mr * g.in_c * band.tiles();
                let parts = parallel::parts(work, blocks);
                parallel::for_each_part(parts, |p| {
                    BUFFERS.with_borrow_mut(|buffers| {
                        for block in blocks * p / parts..blocks * (p + 1) / parts {
                            self.winograd_block(input, stride, band, block, buffers, &writer);
                        }
                    });
                    Ok(())
                })?;
            }
            Ok(())
        })();
        INPUT.set(taken);
        done
    }

    /// Where input channel `c`'s transformed tiles start in a band's
    /// transformed input (`[POINTS][in_c][stride]`), for one input
    /// transform to write alone.
    fn channel_input(&self, input: &DisjointWriter<f32>, c: usize, stride: usize) -> *mut f32 {
        let reach = (POINTS - 1) * self.geo.in_c * stride + stride;
        // SAFETY: channel `c`'s places (`stride` at every point) are
        // written by its transform alone, which the caller runs once.
        unsafe { input.ptr(c * stride, reach) }
    }

    /// Output channel block `block` of a band: its 36 products of the
    /// transformed `input` (`stride` tiles per channel and point), then
    /// their output transform, bias and activation into the output.
    fn winograd_block(
        &self,
        input: &[f32],
        stride: usize,
        band: Flat,
        block: usize,
        buffers: &mut Buffers,
        y: &DisjointWriter<f32>,
    ) {
        let (g, k) = (&self.geo, &self.kernel);
        let blocks = g.out_c.div_ceil(k.mr);
        let groups_end = band.tiles().next_multiple_of(k.nt);
        let Buffers { products, rows } = buffers;
        // Tiles past the band's last (to its last whole group) are summed
        // and dropped: whatever they hold (the buffers' zeros, an earlier
        // band's values) stays in its own lanes.
        if products.len() < POINTS * k.mr * stride {
            products.resize(POINTS * k.mr * stride, 0.0);
        }
        // The input channels go in chunks whose tile groups stay in the
        // first-level cache.
        let chunk = (self.chunk_bytes / (k.nt * std::mem::size_of::<f32>())).clamp(1, g.in_c);
        let tap = [0isize];
        for point in 0..POINTS {
            for c0 in (0..g.in_c).step_by(chunk) {
                let in_c = chunk.min(g.in_c - c0);
                for group in (0..groups_end).step_by(k.nt) {
                    let w = ((point * blocks + block) * g.in_c + c0) * k.mr;
                    let args = TileArgs {
                        weights: self.weights[w..].as_ptr(),
                        taps: tap.as_ptr(),
                        tap_count: 1,
                        image: input[(point * g.in_c + c0) * stride + group..].as_ptr(),
                        channel_stride: stride as isize,
                        in_c,
                        out: products[point * k.mr * stride + group..].as_mut_ptr(),
                        out_stride: stride,
                        accumulate: c0 > 0,
                        finishing: None,
                    };
                    // SAFETY: the packed weights hold `in_c * mr` per point
                    // and block from `c0`'s; the transformed input holds
                    // `nt` tiles of every channel and point from `group`
                    // (`stride` is whole groups and spare tiles); the
                    // products hold `mr` rows of `nt` from there, `stride`
                    // apart, this thread's alone, written by the first
                    // chunk; the kernel came from `TileKernel::native`.
                    unsafe { (k.run)(&args) };
                }
            }
        }
        let out_plane = g.out_h * g.out_w;
        let y0 = M * band.first_row;
        let out_rows = (M * band.rows).min(g.out_h - y0);
        let segments = band.segments(g.out_w, out_rows);
        for r in 0..k.mr.min(g.out_c - block * k.mr) {
            let o = block * k.mr + r;
            // SAFETY: the band's segments of this block's channels are this
            // part's alone (bands meeting inside a row of tiles write their
            // own tiles' columns of it).
            let out = unsafe { y.ptr(o * out_plane + y0 * g.out_w, out_rows * g.out_w) };
            let products = &products[r * stride..];
            transform_output(g, products, k.mr * stride, band, rows, out, &segments);
            let post = self.post.as_ref().map(|p| (&p.0[o..o + 1], &p.1[o..o + 1]));
            for &(j, m1, x, n) in &segments {
                // SAFETY: as above, `n` values of one segment.
                let at = unsafe { out.add((M * j + m1) * g.out_w + x) };
                let finished = super::Rows::in_place(at, n, n);
                // SAFETY: one row of `n` values, this part's; the kernel
                // came from `TileKernel::native`.
                unsafe { (k.finish)(self.activation, finished, &self.bias[o..o + 1], post) };
            }
        }
    }
}
