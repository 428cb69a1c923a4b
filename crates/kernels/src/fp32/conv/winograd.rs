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
//! `[in_c][tiles]`. The transforms work on whole rows of tiles, a tile per
//! vector lane, so that they vectorize as plain loops on every CPU.
//!
//! The output differs from the direct sum by rounding only: in float32,
//! relative errors of about 1e-6 of the largest term.

use super::{F32Conv, Geometry, TileArgs};
use crate::parallel::{self, DisjointWriter};
use edgewise_graph::tract_onnx::prelude::TractResult;

/// Outputs per tile side.
const M: usize = 4;
/// Inputs per tile side: `M` and the kernel's 3, less one.
const ALPHA: usize = 6;
/// Points of a tile: one matrix product each.
pub(super) const POINTS: usize = ALPHA * ALPHA;

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
    /// A thread's transformed input tiles, products and transform rows.
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

#[derive(Default)]
struct Buffers {
    /// Transformed input: `[POINTS][in_c][stride]`.
    input: Vec<f32>,
    /// One block's products: `[POINTS][mr][stride]`.
    products: Vec<f32>,
    /// Rows of the transforms.
    rows: Vec<f32>,
}

/// Whether F(4x4, 3x3) should replace the direct tile loops on `geo` with
/// `mr x nt` tiles: a dense 3x3 convolution of stride 1 with no dilation,
/// where the products and transforms cost less than four fifths of the
/// direct loop's multiply-adds over its flat pixels (`flat_pixels`).
pub(super) fn pays(geo: &Geometry, mr: usize, nt: usize, flat_pixels: usize) -> bool {
    let shape = (geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w);
    if shape != (3, 3, 1, 1) || (geo.dilation_h, geo.dilation_w) != (1, 1) {
        return false;
    }
    if std::env::var_os("EDGEWISE_NO_WINOGRAD").is_some() {
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

/// One run of tiles within a row of tiles.
#[derive(Clone, Copy)]
struct TileRun {
    /// The row of tiles.
    row: usize,
    /// Its first tile's column of tiles.
    column: usize,
    /// Tiles in the run.
    len: usize,
    /// Its first tile's position in the band.
    at: usize,
}

/// The runs of tiles `tiles` covers, `per_row` tiles to a row.
fn tile_runs(tiles: std::ops::Range<usize>, per_row: usize) -> Vec<TileRun> {
    let mut runs = vec![];
    let mut t = tiles.start;
    while t < tiles.end {
        let (row, column) = (t / per_row, t % per_row);
        let len = (per_row - column).min(tiles.end - t);
        runs.push(TileRun {
            row,
            column,
            len,
            at: t - tiles.start,
        });
        t += len;
    }
    runs
}

/// Whether the transforms can run on AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Defines `$name`, which runs `$plain` (an `#[inline(always)]` function)
/// compiled for AVX2 and FMA where the CPU has them: the transforms are
/// plain loops, a tile per lane, and four more lanes per vector than the
/// x86-64 baseline gives them.
macro_rules! vectorized {
    ($name:ident, $avx2:ident, $plain:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $plain($($arg),*)
        }

        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { $avx2($($arg),*) };
            }
            $plain($($arg),*)
        }
    };
}

vectorized!(
    transform_input,
    transform_input_avx2,
    transform_input_run,
    (
        geo: &Geometry,
        plane: &[f32],
        run: TileRun,
        rows: &mut Vec<f32>,
        out: &mut [f32],
        point_stride: usize
    )
);

vectorized!(
    transform_output,
    transform_output_avx2,
    transform_output_run,
    (
        geo: &Geometry,
        products: &[f32],
        point_stride: usize,
        run: TileRun,
        rows: &mut Vec<f32>,
        region: &mut [f32]
    )
);

/// Tiles the transforms take at once, one per lane: an AVX2 vector, two
/// NEON ones.
const LANES: usize = 8;

/// Spare tiles after a band's in its buffers: the transforms of a run's
/// last block of [`LANES`] tiles write (and read) past its last tile.
const SPARE: usize = LANES;

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

/// The input transform of the tiles of `run` in one input channel `plane`:
/// point `p` of the run's `i`th tile goes to
/// `out[p * point_stride + run.at + i]`, and junk to the [`SPARE`] places
/// after its last. `rows` is scratch.
#[inline(always)]
fn transform_input_run(
    geo: &Geometry,
    plane: &[f32],
    run: TileRun,
    rows: &mut Vec<f32>,
    out: &mut [f32],
    point_stride: usize,
) {
    let blocks = run.len.div_ceil(LANES);
    // The input columns the run's blocks read, from its first tile's: four
    // per tile, two more, rounded up to whole blocks of lanes.
    let width = M * LANES * blocks + LANES;
    let len = 2 * ALPHA * width + M * (LANES * blocks + LANES);
    if rows.len() < len {
        rows.resize(len, 0.0);
    }
    let (padded, rest) = rows.split_at_mut(ALPHA * width);
    let (sides, phases) = rest.split_at_mut(ALPHA * width);
    let x0 = (M * run.column) as isize - geo.pad_left as isize;
    let y0 = (M * run.row) as isize - geo.pad_top as isize;
    for (i, row) in padded.chunks_exact_mut(width).enumerate() {
        let y = y0 + i as isize;
        let first = ((-x0).max(0) as usize).min(width);
        let last = ((geo.in_w as isize - x0).max(0) as usize).min(M * run.len + 2);
        if y < 0 || y >= geo.in_h as isize || first >= last {
            row.fill(0.0);
            continue;
        }
        let line = &plane[y as usize * geo.in_w..][..geo.in_w];
        let from = (x0 + first as isize) as usize;
        row[..first].fill(0.0);
        row[first..last].copy_from_slice(&line[from..from + last - first]);
        row[last..].fill(0.0);
    }
    // Down the tile: Bᵀ over its six rows, a column per lane.
    for x in (0..width).step_by(LANES) {
        let mut d = [[0f32; LANES]; ALPHA];
        for (i, d) in d.iter_mut().enumerate() {
            *d = lanes(&padded[i * width..], x);
        }
        for (k1, e) in input_sides(d).iter().enumerate() {
            sides[k1 * width + x..][..LANES].copy_from_slice(e);
        }
    }
    // Across the tile: each row of the above split into its four column
    // phases (a tile per lane), then Bᵀ over a tile's six columns: phases
    // 0-3 of tile i and phases 0-1 of tile i + 1.
    let per_phase = LANES * blocks + LANES;
    for (k1, side) in sides.chunks_exact(width).enumerate() {
        {
            let (p0, p) = phases.split_at_mut(per_phase);
            let (p1, p) = p.split_at_mut(per_phase);
            let (p2, p3) = p.split_at_mut(per_phase);
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
        for b in 0..blocks {
            let i = b * LANES;
            let mut d = [[0f32; LANES]; ALPHA];
            for (j, d) in d.iter_mut().enumerate() {
                // Phases 0-3 of tile i, then 0-1 of tile i + 1.
                *d = lanes(&phases[(j % M) * per_phase..], i + j / M);
            }
            let v = input_sides(d);
            for (k2, v) in v.iter().enumerate() {
                let at = (k1 * ALPHA + k2) * point_stride + run.at + i;
                out[at..at + LANES].copy_from_slice(v);
            }
        }
    }
}

/// The output transform of the tiles of `run` in one output channel: point
/// `p` of the run's `i`th tile is `products[p * point_stride + run.at + i]`
/// (readable to [`SPARE`] places past the last); its 4x4 outputs that land
/// in the output go to `region`, which starts at the run's first output
/// pixel, its rows `geo.out_w` apart. `rows` is scratch.
#[inline(always)]
fn transform_output_run(
    geo: &Geometry,
    products: &[f32],
    point_stride: usize,
    run: TileRun,
    rows: &mut Vec<f32>,
    region: &mut [f32],
) {
    let blocks = run.len.div_ceil(LANES);
    let width = M * LANES * blocks;
    if rows.len() < M * width {
        rows.resize(M * width, 0.0);
    }
    let (y0, x0) = (M * run.row, M * run.column);
    let columns = (geo.out_w - x0).min(M * run.len);
    let height = M.min(geo.out_h - y0);
    for b in 0..blocks {
        let i = run.at + b * LANES;
        // Down the tile: Aᵀ over the six rows of points, then across: Aᵀ
        // over each output row's six columns. (Loops, not closures: a
        // closure LLVM leaves out of line runs without AVX2.)
        let mut down = [[[0f32; LANES]; M]; ALPHA];
        for (k2, down) in down.iter_mut().enumerate() {
            let mut m = [[0f32; LANES]; ALPHA];
            for (k1, m) in m.iter_mut().enumerate() {
                *m = lanes(products, (k1 * ALPHA + k2) * point_stride + i);
            }
            *down = output_sides(m);
        }
        for (m1, out) in rows.chunks_exact_mut(width).take(height).enumerate() {
            let mut d = [[0f32; LANES]; ALPHA];
            for (k2, d) in d.iter_mut().enumerate() {
                *d = down[k2][m1];
            }
            let y = output_sides(d);
            // A tile's four columns side by side.
            let out: &mut [f32; M * LANES] = (&mut out[b * M * LANES..][..M * LANES])
                .try_into()
                .expect("a block of tiles");
            for (l, o) in out.chunks_exact_mut(M).enumerate() {
                (o[0], o[1], o[2], o[3]) = (y[0][l], y[1][l], y[2][l], y[3][l]);
            }
        }
    }
    for (m1, out) in rows.chunks_exact(width).take(height).enumerate() {
        region[m1 * geo.out_w..][..columns].copy_from_slice(&out[..columns]);
    }
}

impl F32Conv {
    /// The convolution of one image `x` into `y` by F(4x4, 3x3), the
    /// weights transformed at load (`self.weights`, as
    /// [`transform_weights`] packs them).
    ///
    /// The tiles go in bands of whole `nt`-tile groups, sized so that a
    /// band's transformed input and products stay near the second-level
    /// cache ([`BAND_BYTES`]); the threads split the bands. Per band: the
    /// input transform of every channel, the 36 products on the tile loop,
    /// and the output transform of every output channel with its bias and
    /// activation.
    pub(super) fn eval_winograd(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, k) = (&self.geo, &self.kernel);
        let per_row = g.out_w.div_ceil(M);
        let tiles = per_row * g.out_h.div_ceil(M);
        let rows = g.out_c.div_ceil(k.mr) * k.mr;
        let groups = tiles.div_ceil(k.nt);
        let group_bytes = POINTS * (g.in_c + k.mr) * k.nt * std::mem::size_of::<f32>();
        let fits =
            (self.band_bytes * BAND_BYTES / super::BAND_BYTES / group_bytes).clamp(1, groups);
        let bands = groups
            .div_ceil(fits)
            .next_multiple_of(parallel::threads())
            .min(groups);
        let band_tiles = |b: usize| (groups * b / bands * k.nt).min(tiles);
        let work = POINTS * rows * g.in_c * groups * k.nt;
        let parts = parallel::parts(work, bands);
        let writer = DisjointWriter::new(y);
        parallel::for_each_part(parts, |p| {
            BUFFERS.with_borrow_mut(|buffers| {
                for band in bands * p / parts..bands * (p + 1) / parts {
                    let (t0, t1) = (band_tiles(band), band_tiles(band + 1));
                    if t0 < t1 {
                        self.winograd_band(x, t0..t1, buffers, &writer);
                    }
                }
            });
            Ok(())
        })
    }

    /// Tiles `tiles` of one image: transforms, products, output.
    fn winograd_band(
        &self,
        x: &[f32],
        tiles: std::ops::Range<usize>,
        buffers: &mut Buffers,
        y: &DisjointWriter<f32>,
    ) {
        let (g, k) = (&self.geo, &self.kernel);
        let per_row = g.out_w.div_ceil(M);
        let blocks = g.out_c.div_ceil(k.mr);
        let groups_end = tiles.len().next_multiple_of(k.nt);
        let stride = groups_end + SPARE;
        let runs = tile_runs(tiles.clone(), per_row);
        let Buffers {
            input,
            products,
            rows: scratch,
        } = buffers;
        // Tiles past the band's last (to its last whole group) are summed
        // and dropped: whatever they hold is finite from the buffers' zeros
        // or an earlier band's transforms.
        if input.len() < POINTS * g.in_c * stride {
            input.resize(POINTS * g.in_c * stride, 0.0);
        }
        if products.len() < POINTS * k.mr * stride {
            products.resize(POINTS * k.mr * stride, 0.0);
        }
        let plane = g.in_h * g.in_w;
        for c in 0..g.in_c {
            let channel = &x[c * plane..][..plane];
            for &run in &runs {
                transform_input(
                    g,
                    channel,
                    run,
                    scratch,
                    &mut input[c * stride..],
                    g.in_c * stride,
                );
            }
        }
        // Per block of output channels: its products, a 1x1 convolution per
        // point whose pixels are tiles, then their output transform while
        // they are in cache. (The products of every block first, then every
        // output transform, read each output channel's 36 points from 36
        // places megabytes apart.)
        let chunk = (self.chunk_bytes / (k.nt * std::mem::size_of::<f32>())).clamp(1, g.in_c);
        let tap = [0isize];
        let out_plane = g.out_h * g.out_w;
        for block in 0..blocks {
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
                        // SAFETY: the packed weights hold `in_c * mr` per
                        // point and block from `c0`'s; the transformed input
                        // holds `nt` tiles of every channel from `group`
                        // (`stride` is whole groups and spare tiles); the
                        // products hold `mr` rows of `nt` from there,
                        // `stride` apart, this thread's alone, written by the
                        // first chunk; the kernel came from
                        // `TileKernel::native`.
                        unsafe { (k.run)(&args) };
                    }
                }
            }
            for r in 0..k.mr.min(g.out_c - block * k.mr) {
                let o = block * k.mr + r;
                let biases = [self.bias[o]; M];
                let post = self.post.as_ref().map(|p| ([p.0[o]; M], [p.1[o]; M]));
                for &run in &runs {
                    let (y0, x0) = (M * run.row, M * run.column);
                    let columns = (g.out_w - x0).min(M * run.len);
                    let height = M.min(g.out_h - y0);
                    let start = o * out_plane + y0 * g.out_w + x0;
                    let reach = (height - 1) * g.out_w + columns;
                    // SAFETY: this band's tiles are its own output pixels.
                    let at = unsafe { y.ptr(start, reach) };
                    // SAFETY: `reach` values from `at`, this thread's alone.
                    let region = unsafe { std::slice::from_raw_parts_mut(at, reach) };
                    transform_output(
                        g,
                        &products[r * stride..],
                        k.mr * stride,
                        run,
                        scratch,
                        region,
                    );
                    let rows = super::Rows::in_place(at, columns, g.out_w);
                    // SAFETY: `height` rows of `columns` values, `out_w`
                    // apart, this thread's; the kernel came from
                    // `TileKernel::native`.
                    unsafe {
                        (k.finish)(
                            self.activation,
                            rows,
                            &biases[..height],
                            post.as_ref().map(|(s, b)| (&s[..height], &b[..height])),
                        )
                    };
                }
            }
        }
    }
}
