//! The inner loops of [`super::F32Conv`]: one tile of `mr` output channels
//! by `nt` output pixels, summed over every input channel and kernel tap.
//!
//! The input is read straight from the (padded, phase-split) image: for
//! stride 1, the `nt` pixels a tap reads for a tile are `nt` consecutive
//! floats, so no im2col buffer is built or packed. The weights are packed
//! once at load, `mr` output channels side by side per (input channel, tap).
//! Each kernel keeps `mr x nt` sums in registers, loads its pixel vectors
//! once per tap and broadcasts each weight: XNNPACK's and onnxruntime's
//! register blocking, on NCHW.

use super::depthwise::{DepthwisePlanes, DepthwiseRuns, RUNS, RunsLoop, depthwise_planes};
use super::lanes::{LANES, LanesRow, depthwise_lanes};
use crate::fp32::activation::{Activation, Rows};

/// Where one tile reads and writes.
pub struct TileArgs {
    /// Packed weights of this tile's output channels: `[in_c][taps][mr]`.
    pub weights: *const f32,
    /// Offset of each tap in the image, in floats, from the tile's first pixel.
    pub taps: *const isize,
    /// Number of taps.
    pub tap_count: usize,
    /// The tile's first pixel in input channel 0.
    pub image: *const f32,
    /// Distance between two input channels in the image, in floats.
    pub channel_stride: isize,
    /// Input channels.
    pub in_c: usize,
    /// Where the `mr` rows of `nt` sums go.
    pub out: *mut f32,
    /// Distance between two rows of sums, in floats: `nt` into a tile of
    /// its own, an output plane straight into the output.
    pub out_stride: usize,
    /// Whether `out` already holds sums over earlier input channels, to
    /// add to rather than overwrite (the input channels in chunks that
    /// stay in the first-level cache).
    pub accumulate: bool,
    /// What to apply to the sums in registers before storing them, once
    /// they are complete; `None` stores the raw sums.
    pub finishing: Option<Finishing>,
}

/// The bias, the activation, then the scale and offset, applied by a tile
/// loop to its finished sums in registers, as [`TileKernel::finish`] would
/// apply them to the stored tile. A tile summed straight into the output
/// is then written once: finishing it there afterwards read back and wrote
/// again every output, a second pass over the feature map that cost a 1x1
/// convolution of 16 input channels at 160x160 a third of its time.
#[derive(Clone, Copy)]
pub struct Finishing {
    /// What runs on each sum after its bias.
    pub activation: Activation,
    /// `mr` biases, one per row of the tile.
    pub biases: *const f32,
    /// `mr` scales and `mr` offsets after the activation.
    pub post: Option<(*const f32, *const f32)>,
}

/// A per-row scale and offset after the activation.
pub type PostAffine<'a> = Option<(&'a [f32], &'a [f32])>;

/// [`TileKernel::finish`]: the bias, the activation, then the scale and
/// offset, on [`Rows`] (in place, or from a tile of sums into the output),
/// one row per bias.
pub type Finish = unsafe fn(Activation, Rows, &[f32], PostAffine);

/// [`TileKernel::depthwise`]: `(image, channels, scratch, out, finish)`,
/// as [`depthwise_planes`] takes them.
pub type Depthwise = unsafe fn(
    &DepthwisePlanes,
    std::ops::Range<usize>,
    &mut Vec<f32>,
    &mut [f32],
    &mut dyn FnMut(usize, &mut [f32]),
);

/// [`TileKernel::depthwise_lanes`]: `(image, channels, scratch, out,
/// finish)`, as [`depthwise_lanes`] takes them.
pub type DepthwiseLanes = unsafe fn(
    &DepthwisePlanes,
    std::ops::Range<usize>,
    &mut Vec<[f32; LANES]>,
    &mut [f32],
    &mut dyn FnMut(usize, &mut [f32]),
);

/// A tile loop and its shape.
#[derive(Clone, Copy)]
pub struct TileKernel {
    /// The loop's name, for the kernel audit.
    pub name: &'static str,
    /// The instruction set it needs, as `target_feature` names it.
    pub features: &'static str,
    /// Output channels per tile.
    pub mr: usize,
    /// Output pixels per tile.
    pub nt: usize,
    /// What finishing and storing a tile costs per output, in multiply-adds
    /// of the loop: shorter rows per channel store slower. Measured on
    /// 1x1 convolutions over 16 and 24 input channels, where it shows.
    pub store_cost: usize,
    /// The loop.
    ///
    /// # Safety
    /// `weights` holds `in_c * tap_count * mr` floats, `taps` holds
    /// `tap_count` offsets, and for every input channel `c` and tap `t`,
    /// `nt` floats from `image + c * channel_stride + taps[t]` are readable;
    /// for every row `r < mr`, `nt` floats from `out + r * out_stride` are
    /// writable, by this call alone (and initialized, if `accumulate`);
    /// `finishing`'s pointers hold `mr` values each. The CPU has the loop's
    /// features.
    pub run: unsafe fn(&TileArgs),
    /// [`Activation::apply_row`] and the scale and offset on each row,
    /// vectorized for the same CPU.
    ///
    /// # Safety
    /// The rows are valid for one row per bias, as [`Rows`] says. The CPU
    /// has the loop's features.
    pub finish: Finish,
    /// [`depthwise_planes`], vectorized for the same CPU.
    ///
    /// # Safety
    /// The CPU has the loop's features.
    pub depthwise: Depthwise,
    /// The loop that sums a depthwise convolution's runs of outputs, as
    /// [`depthwise_planes`] runs it, for the depthwise convolutions it
    /// leaves to a padded copy of the plane (short rows).
    ///
    /// # Safety
    /// As [`super::depthwise::RunsLoop`] says.
    pub depthwise_runs: RunsLoop,
    /// [`depthwise_lanes`], vectorized for the same CPU: depthwise
    /// convolutions of small maps, channels in the lanes.
    ///
    /// # Safety
    /// The CPU has the loop's features.
    pub depthwise_lanes: DepthwiseLanes,
    /// [`gather_phase`], vectorized for the same CPU: a run of one column
    /// phase of a strided convolution's input row, straight into the
    /// padded row that holds it.
    ///
    /// # Safety
    /// The CPU has the loop's features.
    pub gather: unsafe fn(&[f32], usize, usize, &mut [f32]),
}

/// Outputs of a row a depthwise convolution sums in registers at once, one
/// tap after another: one AVX-512 vector, two AVX2 or four NEON ones.
pub const DEPTHWISE_BLOCK: usize = 16;

/// Splits `row` into its `stride` phases: phase `p` (values `p`,
/// `p + stride`, ...) at `phases[p * len..]`, `len` being
/// `row.len().div_ceil(stride)`. Panics if `phases` is shorter than
/// `stride * len`.
#[inline(always)]
pub fn split(row: &[f32], stride: usize, phases: &mut [f32]) {
    let len = row.len().div_ceil(stride);
    let phases = &mut phases[..stride * len];
    if stride == 2 {
        // Pairs, so that the loop vectorizes into shuffles.
        let (even, odd) = phases.split_at_mut(len);
        let pairs = row.chunks_exact(2);
        if let [last] = pairs.remainder() {
            even[len - 1] = *last;
        }
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
            *e = pair[0];
            *o = pair[1];
        }
        return;
    }
    for (p, phase) in phases.chunks_exact_mut(len).enumerate() {
        for (o, &v) in phase.iter_mut().zip(row.iter().skip(p).step_by(stride)) {
            *o = v;
        }
    }
}

/// Every `stride`th value of `row` from column `first` into `out`:
/// `out[t] = row[first + t * stride]`, a run of one of the row's column
/// phases. A padded phase row takes its run this way, with no split row
/// in between (which cost a second pass and a copy per run). Panics if
/// `row` holds fewer than `out.len()` such values.
#[inline(always)]
pub fn gather_phase(row: &[f32], stride: usize, first: usize, out: &mut [f32]) {
    let from = &row[first..];
    assert!(
        out.len() <= from.len().div_ceil(stride),
        "{} values {stride} apart from column {first} of a row of {}",
        out.len(),
        row.len()
    );
    if stride == 1 {
        out.copy_from_slice(&from[..out.len()]);
        return;
    }
    if stride == 2 {
        // Pairs, so that the loop vectorizes into shuffles.
        let pairs = from.chunks_exact(2);
        let (n, last) = (pairs.len().min(out.len()), pairs.remainder());
        for (o, pair) in out[..n].iter_mut().zip(pairs) {
            *o = pair[0];
        }
        if let Some(o) = out.get_mut(n) {
            *o = last[0];
        }
        return;
    }
    for (o, &v) in out.iter_mut().zip(from.iter().step_by(stride)) {
        *o = v;
    }
}

/// Where value `column` of a row of `width` values lands once [`split`]
/// into its `stride` phases.
#[inline]
pub fn split_position(column: usize, stride: usize, width: usize) -> usize {
    (column % stride) * width.div_ceil(stride) + column / stride
}

impl std::fmt::Debug for TileKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for TileKernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TileKernel {}

impl TileKernel {
    /// The best tile loop for this CPU, if Edgewise has one for it; else the
    /// convolution stays tract's.
    pub fn native() -> Option<TileKernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(x86::AVX512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(x86::AVX2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Some(arm64::NEON);
        }
        #[allow(unreachable_code)]
        None
    }

    /// The tile loop of [`TileKernel::native`]'s instruction set that costs
    /// the least on a convolution of `out_c` output channels, `pixels` flat
    /// output pixels and `depth` multiply-adds per output (input channels
    /// times taps). Each loop computes and drops the rows past the last
    /// channel of its last block and the pixels past its last tile (64
    /// channels on 12-channel blocks: 72), and pays `store_cost` per output
    /// for finishing and storing its tile.
    pub fn best_for(out_c: usize, pixels: usize, depth: usize) -> Option<TileKernel> {
        let native = Self::native()?;
        let cost = |k: &TileKernel| {
            out_c.next_multiple_of(k.mr) * pixels.next_multiple_of(k.nt) * (depth + k.store_cost)
        };
        Self::all_native()
            .into_iter()
            .filter(|k| k.features == native.features)
            .min_by_key(cost)
    }

    /// Every tile loop this CPU can run, the best first (for tests).
    pub fn all_native() -> Vec<TileKernel> {
        let mut kernels = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(x86::AVX512);
                kernels.push(x86::AVX512_8X48);
                kernels.push(x86::AVX512_6X64);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(x86::AVX2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        kernels.push(arm64::NEON);
        kernels
    }
}

/// [`TileKernel::finish`], [`TileKernel::depthwise`] and [`TileKernel::gather`] compiled for one
/// instruction set's `$feature`s: the same plain loops, vectorized as wide
/// as it allows.
macro_rules! vector_loops {
    ($feature:literal, $finish:ident, $depthwise:ident, $lanes:ident, $gather:ident, $runs:ident,
     $lanes_row:ident, $transposer:path) => {
        #[target_feature(enable = $feature)]
        unsafe fn $finish(activation: Activation, rows: Rows, biases: &[f32], post: PostAffine) {
            // SAFETY: the caller's contract (`TileKernel::finish`).
            unsafe { activation.apply_rows(rows, biases, post) };
        }

        #[target_feature(enable = $feature)]
        unsafe fn $depthwise(
            planes: &DepthwisePlanes,
            channels: std::ops::Range<usize>,
            scratch: &mut Vec<f32>,
            out: &mut [f32],
            finish: &mut dyn FnMut(usize, &mut [f32]),
        ) {
            let gather = super::gather_phase;
            // SAFETY: `$runs` has this function's features.
            unsafe { depthwise_planes(planes, channels, scratch, out, finish, gather, $runs) };
        }

        #[target_feature(enable = $feature)]
        unsafe fn $lanes(
            planes: &DepthwisePlanes,
            channels: std::ops::Range<usize>,
            scratch: &mut Vec<[f32; LANES]>,
            out: &mut [f32],
            finish: &mut dyn FnMut(usize, &mut [f32]),
        ) {
            // SAFETY: `$lanes_row` has this function's features.
            unsafe {
                depthwise_lanes(
                    planes,
                    channels,
                    scratch,
                    out,
                    finish,
                    $lanes_row,
                    $transposer,
                )
            };
        }

        #[target_feature(enable = $feature)]
        unsafe fn $gather(row: &[f32], stride: usize, first: usize, out: &mut [f32]) {
            super::gather_phase(row, stride, first, out);
        }
    };
}

/// The depthwise loops of one instruction set, written once:
/// [`DepthwiseRuns`]'s, each of [`RUNS`] runs as [`DEPTHWISE_BLOCK`] /
/// `$lanes` vectors of sums, one weight broadcast per tap feeding every
/// run; and [`LanesRow`]'s, `$pixels` output pixels of [`LANES`] channels
/// at a time, each tap's weights loaded once for all of them.
macro_rules! depthwise_loops {
    ($runs:ident, $lanes_row:ident, $pixels:expr, $feature:literal, $vec:ty, $lanes:expr,
     $zero:expr, $load:path, $splat:path, $fma:path, $store:path) => {
        #[target_feature(enable = $feature)]
        unsafe fn $runs(a: &DepthwiseRuns) {
            const NV: usize = DEPTHWISE_BLOCK / $lanes;
            // SAFETY: the caller's contract (`RunsLoop`) makes every read
            // and write below in bounds.
            unsafe {
                let mut acc: [[$vec; NV]; RUNS] = [[$zero; NV]; RUNS];
                let rows = std::slice::from_raw_parts(a.rows, a.kernel_h);
                let columns = std::slice::from_raw_parts(a.columns, a.kernel_w);
                let mut w = a.weights;
                for row in rows {
                    for &column in columns {
                        let wv = $splat(*w);
                        w = w.add(1);
                        for i in 0..RUNS {
                            for v in 0..NV {
                                let x = $load(row[i].add(column + v * $lanes));
                                acc[i][v] = $fma(wv, x, acc[i][v]);
                            }
                        }
                    }
                }
                for i in 0..RUNS {
                    for v in 0..NV {
                        $store(a.out[i].add(v * $lanes), acc[i][v]);
                    }
                }
            }
        }

        #[target_feature(enable = $feature)]
        unsafe fn $lanes_row(a: &LanesRow) {
            const NV: usize = LANES / $lanes;
            // Up to `n` outputs from output `i`, their sums in registers.
            #[inline(always)]
            unsafe fn sum<const N: usize>(a: &LanesRow, offsets: &[usize], i: usize) {
                // SAFETY: the caller's contract (`LanesLoop`) makes every
                // read and write below in bounds.
                unsafe {
                    let mut acc: [[$vec; NV]; N] = [[$zero; NV]; N];
                    let first = a.image.add((a.first + i * a.step) * LANES);
                    let step = a.step * LANES;
                    for (t, &offset) in offsets.iter().enumerate() {
                        let x = first.add(offset * LANES);
                        for v in 0..NV {
                            let w = $load(a.weights.add(t * LANES + v * $lanes));
                            for p in 0..N {
                                let x = $load(x.add(p * step + v * $lanes));
                                acc[p][v] = $fma(w, x, acc[p][v]);
                            }
                        }
                    }
                    for p in 0..N {
                        for v in 0..NV {
                            $store(a.out.add((i + p) * LANES + v * $lanes), acc[p][v]);
                        }
                    }
                }
            }
            // SAFETY: as above.
            unsafe {
                let offsets = std::slice::from_raw_parts(a.offsets, a.taps);
                let mut i = 0;
                while i + $pixels <= a.count {
                    sum::<{ $pixels }>(a, offsets, i);
                    i += $pixels;
                }
                while i < a.count {
                    sum::<1>(a, offsets, i);
                    i += 1;
                }
            }
        }
    };
}

/// The tile loop of one instruction set, written once: `$mr` channels by
/// `$nv` vectors of `$lanes` pixels, with the instruction set's `$load`,
/// `$splat` (a weight to every lane), `$fma` and `$store`.
macro_rules! tile_loop {
    ($name:ident, $feature:literal, $vec:ty, $mr:expr, $nv:expr, $lanes:expr,
     $zero:expr, $load:path, $splat:path, $fma:path, $store:path, $finish_store:path) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(a: &TileArgs) {
            // SAFETY: the caller's contract (`TileKernel::run`) makes every
            // read and write below in bounds.
            unsafe {
                let mut acc: [[$vec; $nv]; $mr] = [[$zero; $nv]; $mr];
                if a.accumulate {
                    for r in 0..$mr {
                        for v in 0..$nv {
                            acc[r][v] = $load(a.out.add(r * a.out_stride + v * $lanes));
                        }
                    }
                }
                let mut w = a.weights;
                let taps = std::slice::from_raw_parts(a.taps, a.tap_count);
                for c in 0..a.in_c {
                    let channel = a.image.offset(c as isize * a.channel_stride);
                    for &tap in taps {
                        let p = channel.offset(tap);
                        let mut b: [$vec; $nv] = [$zero; $nv];
                        for v in 0..$nv {
                            b[v] = $load(p.add(v * $lanes));
                        }
                        for r in 0..$mr {
                            let wr = $splat(*w.add(r));
                            for v in 0..$nv {
                                acc[r][v] = $fma(wr, b[v], acc[r][v]);
                            }
                        }
                        w = w.add($mr);
                    }
                }
                if let Some(f) = &a.finishing {
                    // A copy, so that the sums' own registers never have
                    // their address taken (which would keep them in memory
                    // through the loop above).
                    let sums = acc;
                    $finish_store(f, sums.as_flattened(), $nv, a.out, a.out_stride);
                    return;
                }
                for r in 0..$mr {
                    for v in 0..$nv {
                        $store(a.out.add(r * a.out_stride + v * $lanes), acc[r][v]);
                    }
                }
            }
        }
    };
}

/// A tile loop's [`Finishing`] and store: `out` row `r`, vector `v` gets
/// `activate(sums[r * per_row + v] + bias[r])`, then its scale and offset.
/// Out of line from the tile loop, whose sums stay in registers.
macro_rules! finish_store {
    ($name:ident, $feature:literal, $vec:ty, $lanes:expr, $splat:path, $add:path, $fma:path,
     $store:path, $activate:path) => {
        #[target_feature(enable = $feature)]
        #[inline(never)]
        unsafe fn $name(
            f: &Finishing,
            sums: &[$vec],
            per_row: usize,
            out: *mut f32,
            out_stride: usize,
        ) {
            for (r, row) in sums.chunks_exact(per_row).enumerate() {
                // SAFETY: the tile loop's contract: `mr` biases, scales and
                // offsets, and `mr` rows of `per_row * lanes` outputs.
                unsafe {
                    let bias = $splat(*f.biases.add(r));
                    let post = f.post.map(|(s, o)| ($splat(*s.add(r)), $splat(*o.add(r))));
                    for (v, &x) in row.iter().enumerate() {
                        let y = $activate(f.activation, $add(x, bias));
                        let y = match post {
                            Some((scale, offset)) => $fma(y, scale, offset),
                            None => y,
                        };
                        $store(out.add(r * out_stride + v * $lanes), y);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{
        Activation, DEPTHWISE_BLOCK, DepthwisePlanes, DepthwiseRuns, Finishing, LANES, LanesRow,
        PostAffine, RUNS, Rows, TileArgs, TileKernel, depthwise_lanes, depthwise_planes,
    };

    /// 12 channels by 32 pixels: 24 of the 32 vector registers hold sums;
    /// per tap, 2 pixel loads and 12 weight broadcasts feed 24 FMAs.
    pub const AVX512: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx512_12x32",
        features: "avx512f",
        mr: 12,
        nt: 32,
        store_cost: 14,
        run: avx512_12x32,
        finish: finish_avx512,
        depthwise: depthwise_avx512,
        depthwise_runs: runs_avx512,
        depthwise_lanes: lanes_avx512,
        gather: gather_avx512,
    };

    /// 8 channels by 48 pixels: 24 sums again, from 3 pixel loads and 8
    /// broadcasts per tap; for output channels in multiples of 8 (16, 32,
    /// 64), which 12-channel blocks would pad.
    pub const AVX512_8X48: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx512_8x48",
        features: "avx512f",
        mr: 8,
        nt: 48,
        store_cost: 9,
        run: avx512_8x48,
        finish: finish_avx512,
        depthwise: depthwise_avx512,
        depthwise_runs: runs_avx512,
        depthwise_lanes: lanes_avx512,
        gather: gather_avx512,
    };

    /// 6 channels by 64 pixels: longer rows to store per channel, for
    /// convolutions that write more than they sum (1x1 over 16-32 input
    /// channels: MobileNet's expansions).
    pub const AVX512_6X64: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx512_6x64",
        features: "avx512f",
        mr: 6,
        nt: 64,
        store_cost: 4,
        run: avx512_6x64,
        finish: finish_avx512,
        depthwise: depthwise_avx512,
        depthwise_runs: runs_avx512,
        depthwise_lanes: lanes_avx512,
        gather: gather_avx512,
    };

    /// 6 channels by 16 pixels: 12 of the 16 registers hold sums.
    pub const AVX2: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx2_6x16",
        features: "avx2,fma",
        mr: 6,
        nt: 16,
        store_cost: 0,
        run: avx2_6x16,
        finish: finish_avx2,
        depthwise: depthwise_avx2,
        depthwise_runs: runs_avx2,
        depthwise_lanes: lanes_avx2,
        gather: gather_avx2,
    };

    vector_loops!(
        "avx512f",
        finish_plain_avx512,
        depthwise_avx512,
        lanes_avx512,
        gather_avx512,
        runs_avx512,
        lanes_row_avx512,
        crate::fp32::transpose::AVX512
    );
    depthwise_loops!(
        runs_avx512,
        lanes_row_avx512,
        8,
        "avx512f",
        __m512,
        16,
        _mm512_setzero_ps(),
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps
    );

    /// [`TileKernel::finish`] on AVX-512, 16 values at a time with masked
    /// tails: SiLU and sigmoid through [`sigmoid_avx512`], the clamps and
    /// hard activations as the plain loops compute them (LLVM's own
    /// AVX-512 loops take 64 values per turn and leave rows of 20 or 40 to
    /// a scalar tail).
    #[target_feature(enable = "avx512f")]
    unsafe fn finish_avx512(activation: Activation, rows: Rows, biases: &[f32], post: PostAffine) {
        let zero = _mm512_setzero_ps();
        let one = _mm512_set1_ps(1.0);
        // SAFETY: the caller's contract, for every arm.
        unsafe {
            match activation {
                Activation::Silu => {
                    finish_rows_avx512(rows, biases, post, |x| _mm512_mul_ps(x, sigmoid_avx512(x)))
                }
                Activation::Sigmoid => {
                    finish_rows_avx512(rows, biases, post, |x| sigmoid_avx512(x))
                }
                Activation::Clamp { lo, hi } => {
                    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                    finish_rows_avx512(rows, biases, post, |x| {
                        _mm512_min_ps(_mm512_max_ps(x, lo), hi)
                    })
                }
                Activation::HardSwish { alpha, beta } => {
                    let (alpha, beta) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
                    finish_rows_avx512(rows, biases, post, |x| {
                        let gate = _mm512_add_ps(_mm512_mul_ps(alpha, x), beta);
                        _mm512_mul_ps(x, _mm512_min_ps(_mm512_max_ps(gate, zero), one))
                    })
                }
                Activation::HardSigmoid { alpha, beta } => {
                    let (alpha, beta) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
                    finish_rows_avx512(rows, biases, post, |x| {
                        let gate = _mm512_add_ps(_mm512_mul_ps(alpha, x), beta);
                        _mm512_min_ps(_mm512_max_ps(gate, zero), one)
                    })
                }
                Activation::LeakyRelu { .. } => finish_plain_avx512(activation, rows, biases, post),
            }
        }
    }

    /// `to = f(from + bias)`, then `to * scale + offset` with a scale and
    /// offset, on every row of `rows`, 16 values at a time.
    ///
    /// # Safety
    /// As [`TileKernel::finish`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn finish_rows_avx512(
        rows: Rows,
        biases: &[f32],
        post: PostAffine,
        f: impl Fn(__m512) -> __m512,
    ) {
        let width = rows.width;
        for (r, &bias) in biases.iter().enumerate() {
            let bias = _mm512_set1_ps(bias);
            let post = post.map(|(s, o)| (_mm512_set1_ps(s[r]), _mm512_set1_ps(o[r])));
            let mut first = 0;
            while first < width {
                let n = (width - first).min(16);
                // All lanes, or the first `n`: no scalar tail.
                let mask: __mmask16 = if n == 16 { !0 } else { (1 << n) - 1 };
                // SAFETY: the caller's contract (`TileKernel::finish`): the
                // row's `width` values are valid, those written this call's.
                unsafe {
                    let from = rows.from_row(r).add(first);
                    let y = f(_mm512_add_ps(_mm512_maskz_loadu_ps(mask, from), bias));
                    let y = match post {
                        Some((scale, offset)) => _mm512_fmadd_ps(y, scale, offset),
                        None => y,
                    };
                    _mm512_mask_storeu_ps(rows.to_row(r).add(first), mask, y);
                }
                first += 16;
            }
        }
    }

    /// The logistic function of 16 values, as [`crate::fp32::activation::sigmoid`]
    /// computes it (to about 1e-7) in fewer instructions: the power of two
    /// by `vscalefps` instead of integer arithmetic on the exponent bits,
    /// the reciprocal from `vrcp14ps` (14 bits) and one Newton step
    /// instead of a guess from the bits and three steps.
    #[target_feature(enable = "avx512f")]
    fn sigmoid_avx512(x: __m512) -> __m512 {
        // exp(-x) = 2^n * p(r), n = round(-x / ln 2), r = -x - n ln 2; -x is
        // clamped where sigmoid is 0 or 1 to float precision.
        let minus_x = _mm512_min_ps(
            _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), _mm512_set1_ps(-87.3)),
            _mm512_set1_ps(69.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(minus_x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_359_4), minus_x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);
        let one = _mm512_set1_ps(1.0);
        let e = _mm512_scalef_ps(_mm512_add_ps(p, one), n);
        // 1 / (1 + e): a 14-bit guess, then r + r (1 - d r).
        let d = _mm512_add_ps(e, one);
        let g = _mm512_rcp14_ps(d);
        _mm512_fmadd_ps(g, _mm512_fnmadd_ps(d, g, one), g)
    }

    vector_loops!(
        "avx2,fma",
        finish_plain_avx2,
        depthwise_avx2,
        lanes_avx2,
        gather_avx2,
        runs_avx2,
        lanes_row_avx2,
        crate::fp32::transpose::AVX2
    );
    depthwise_loops!(
        runs_avx2,
        lanes_row_avx2,
        4,
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps(),
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );

    /// [`TileKernel::finish`] on AVX2, 8 values at a time with masked loads
    /// and stores for the tails: SiLU and sigmoid through [`sigmoid_avx2`],
    /// the rest as the plain loops compute them. The plain loop's SiLU was
    /// 17% of an FP32 YOLOX frame on an AVX2-only AMD EPYC, a sixth of it
    /// in the scalar tails of rows of 13 to 52 pixels.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish_avx2(activation: Activation, rows: Rows, biases: &[f32], post: PostAffine) {
        // SAFETY: the caller's contract, for every arm.
        unsafe {
            match activation {
                Activation::Silu => {
                    finish_rows_avx2(rows, biases, post, |x| _mm256_mul_ps(x, sigmoid_avx2(x)))
                }
                Activation::Sigmoid => finish_rows_avx2(rows, biases, post, |x| sigmoid_avx2(x)),
                _ => finish_plain_avx2(activation, rows, biases, post),
            }
        }
    }

    /// `to = f(from + bias)`, then `to * scale + offset` with a scale and
    /// offset, on every row of `rows`, 8 values at a time.
    ///
    /// # Safety
    /// As [`TileKernel::finish`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn finish_rows_avx2(
        rows: Rows,
        biases: &[f32],
        post: PostAffine,
        f: impl Fn(__m256) -> __m256,
    ) {
        let width = rows.width;
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (r, &bias) in biases.iter().enumerate() {
            let bias = _mm256_set1_ps(bias);
            let post = post.map(|(s, o)| (_mm256_set1_ps(s[r]), _mm256_set1_ps(o[r])));
            let mut first = 0;
            while first < width {
                let n = (width - first).min(8);
                // SAFETY: the caller's contract (`TileKernel::finish`): the
                // row's `width` values are valid, those written this call's;
                // a tail reads and writes only its first `n` lanes.
                unsafe {
                    let from = rows.from_row(r).add(first);
                    let to = rows.to_row(r).add(first);
                    let finish = |x: __m256| {
                        let y = f(_mm256_add_ps(x, bias));
                        match post {
                            Some((scale, offset)) => _mm256_fmadd_ps(y, scale, offset),
                            None => y,
                        }
                    };
                    if n == 8 {
                        _mm256_storeu_ps(to, finish(_mm256_loadu_ps(from)));
                    } else {
                        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                        let y = finish(_mm256_maskload_ps(from, mask));
                        _mm256_maskstore_ps(to, mask, y);
                    }
                }
                first += 8;
            }
        }
    }

    /// The logistic function of 8 values, as
    /// [`crate::fp32::activation::sigmoid`] computes it, with the
    /// reciprocal from `vrcpps` (12 bits) and one Newton step (about 23
    /// bits) instead of a guess from the bits and three steps.
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid_avx2(x: __m256) -> __m256 {
        // exp(-x) = 2^n * p(r), n = round(-x / ln 2), r = -x - n ln 2; -x is
        // clamped where sigmoid is 0 or 1 to float precision.
        let minus_x = _mm256_min_ps(
            _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), x), _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(69.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(minus_x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693_359_4), minus_x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r);
        let one = _mm256_set1_ps(1.0);
        // 2^n from the exponent bits: n is in [-126, 100] after the clamp.
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let e = _mm256_mul_ps(_mm256_add_ps(p, one), scale);
        // 1 / (1 + e): a 12-bit guess, then r + r (1 - d r).
        let d = _mm256_add_ps(e, one);
        let g = _mm256_rcp_ps(d);
        _mm256_fmadd_ps(g, _mm256_fnmadd_ps(d, g, one), g)
    }

    /// An AVX-512 tile loop of `$mr` channels by `$nv` vectors of 16 pixels.
    macro_rules! avx512_tile_loop {
        ($name:ident, $mr:expr, $nv:expr) => {
            tile_loop!(
                $name,
                "avx512f",
                __m512,
                $mr,
                $nv,
                16,
                _mm512_setzero_ps(),
                _mm512_loadu_ps,
                _mm512_set1_ps,
                _mm512_fmadd_ps,
                _mm512_storeu_ps,
                finish_store_avx512
            );
        };
    }
    finish_store!(
        finish_store_avx512,
        "avx512f",
        __m512,
        16,
        _mm512_set1_ps,
        _mm512_add_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps,
        activate_avx512
    );
    avx512_tile_loop!(avx512_12x32, 12, 2);
    avx512_tile_loop!(avx512_8x48, 8, 3);
    avx512_tile_loop!(avx512_6x64, 6, 4);
    tile_loop!(
        avx2_6x16,
        "avx2,fma",
        __m256,
        6,
        2,
        8,
        _mm256_setzero_ps(),
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps,
        finish_store_avx2
    );
    finish_store!(
        finish_store_avx2,
        "avx2,fma",
        __m256,
        8,
        _mm256_set1_ps,
        _mm256_add_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps,
        activate_avx2
    );

    /// [`Activation::apply`] on 16 values, for a tile's sums in registers:
    /// the same operations in the same order, SiLU and sigmoid through
    /// [`sigmoid_avx512`] as [`finish_avx512`] computes them.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn activate_avx512(activation: Activation, x: __m512) -> __m512 {
        let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
        let unit = |y: __m512| _mm512_min_ps(_mm512_max_ps(y, zero), one);
        match activation {
            Activation::Clamp { lo, hi } => {
                _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(lo)), _mm512_set1_ps(hi))
            }
            Activation::Sigmoid => sigmoid_avx512(x),
            Activation::Silu => _mm512_mul_ps(x, sigmoid_avx512(x)),
            Activation::HardSwish { alpha, beta } => {
                let y = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_set1_ps(alpha), x),
                    _mm512_set1_ps(beta),
                );
                _mm512_mul_ps(x, unit(y))
            }
            Activation::HardSigmoid { alpha, beta } => unit(_mm512_add_ps(
                _mm512_mul_ps(_mm512_set1_ps(alpha), x),
                _mm512_set1_ps(beta),
            )),
            Activation::LeakyRelu { alpha } => {
                let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero);
                _mm512_mask_mul_ps(x, below, x, _mm512_set1_ps(alpha))
            }
        }
    }

    /// [`Activation::apply`] on 8 values, for a tile's sums in registers,
    /// as [`activate_avx512`] does on 16.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn activate_avx2(activation: Activation, x: __m256) -> __m256 {
        let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
        let unit = |y: __m256| _mm256_min_ps(_mm256_max_ps(y, zero), one);
        match activation {
            Activation::Clamp { lo, hi } => {
                _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(lo)), _mm256_set1_ps(hi))
            }
            Activation::Sigmoid => sigmoid_avx2(x),
            Activation::Silu => _mm256_mul_ps(x, sigmoid_avx2(x)),
            Activation::HardSwish { alpha, beta } => {
                let y = _mm256_add_ps(
                    _mm256_mul_ps(_mm256_set1_ps(alpha), x),
                    _mm256_set1_ps(beta),
                );
                _mm256_mul_ps(x, unit(y))
            }
            Activation::HardSigmoid { alpha, beta } => unit(_mm256_add_ps(
                _mm256_mul_ps(_mm256_set1_ps(alpha), x),
                _mm256_set1_ps(beta),
            )),
            Activation::LeakyRelu { alpha } => {
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, zero);
                _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(alpha)), below)
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm64 {
    use std::arch::aarch64::*;

    use super::{
        Activation, DEPTHWISE_BLOCK, DepthwisePlanes, DepthwiseRuns, Finishing, LANES, LanesRow,
        PostAffine, RUNS, Rows, TileArgs, TileKernel, depthwise_lanes, depthwise_planes,
    };

    /// 8 channels by 12 pixels: 24 of the 32 vector registers hold sums;
    /// per tap, 3 pixel loads and 8 weight broadcasts feed 24 FMAs.
    pub const NEON: TileKernel = TileKernel {
        name: "edgewise_f32_conv_neon_8x12",
        features: "neon",
        mr: 8,
        nt: 12,
        store_cost: 0,
        run: neon_8x12,
        finish: finish_neon,
        depthwise: depthwise_neon,
        depthwise_runs: runs_neon,
        depthwise_lanes: lanes_neon,
        gather: gather_neon,
    };

    vector_loops!(
        "neon",
        finish_neon,
        depthwise_neon,
        lanes_neon,
        gather_neon,
        runs_neon,
        lanes_row_neon,
        crate::fp32::transpose::NEON
    );
    depthwise_loops!(
        runs_neon,
        lanes_row_neon,
        4,
        "neon",
        float32x4_t,
        4,
        vdupq_n_f32(0.0),
        vld1q_f32,
        vdupq_n_f32,
        fma,
        vst1q_f32
    );

    /// `acc + w * b`, in the argument order of the x86 intrinsics.
    #[target_feature(enable = "neon")]
    fn fma(w: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, w, b)
    }
    tile_loop!(
        neon_8x12,
        "neon",
        float32x4_t,
        8,
        3,
        4,
        vdupq_n_f32(0.0),
        vld1q_f32,
        vdupq_n_f32,
        fma,
        vst1q_f32,
        finish_store_neon
    );
    finish_store!(
        finish_store_neon,
        "neon",
        float32x4_t,
        4,
        vdupq_n_f32,
        vaddq_f32,
        fma,
        vst1q_f32,
        activate_neon
    );

    /// [`Activation::apply`] on 4 values, for a tile's sums in registers:
    /// the clamps (ReLU, ReLU6, none) as vector instructions, the others a
    /// lane at a time, as the plain loop of [`finish_neon`] computes them.
    #[target_feature(enable = "neon")]
    #[inline]
    fn activate_neon(activation: Activation, x: float32x4_t) -> float32x4_t {
        if let Activation::Clamp { lo, hi } = activation {
            // `max(x, lo)` is `lo` for a NaN, as the plain loop's.
            let above = vcgtq_f32(x, vdupq_n_f32(lo));
            let y = vbslq_f32(above, x, vdupq_n_f32(lo));
            let below = vcltq_f32(y, vdupq_n_f32(hi));
            return vbslq_f32(below, y, vdupq_n_f32(hi));
        }
        let mut lanes = [0f32; 4];
        // SAFETY: four floats, written then read back.
        unsafe {
            vst1q_f32(lanes.as_mut_ptr(), x);
            lanes.iter_mut().for_each(|v| *v = activation.apply(*v));
            vld1q_f32(lanes.as_ptr())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run of every column phase, gathered straight from the row,
    /// matches the same run of the row split into its phases, on every
    /// kernel's vectorized gather.
    #[test]
    fn gathered_phase_runs_match_the_split_row() {
        for kernel in TileKernel::all_native() {
            for stride in 1..=4 {
                for width in [1usize, 2, 7, 16, 33, 64] {
                    let row: Vec<f32> = (0..width).map(|i| i as f32 + 0.5).collect();
                    let mut phases = vec![f32::NAN; stride * width.div_ceil(stride)];
                    split(&row, stride, &mut phases);
                    for first in 0..width {
                        let available = (width - first).div_ceil(stride);
                        for len in [0, 1, available / 2, available] {
                            let mut out = vec![f32::NAN; len + 1];
                            // SAFETY: the kernel came from `all_native`.
                            unsafe { (kernel.gather)(&row, stride, first, &mut out[..len]) };
                            let at = split_position(first, stride, width);
                            assert_eq!(
                                out[..len],
                                phases[at..][..len],
                                "{} stride {stride} width {width} from {first}",
                                kernel.name
                            );
                            assert!(out[len].is_nan(), "{}: wrote past the run", kernel.name);
                        }
                    }
                }
            }
        }
    }

    /// Every finishing loop against the plain definition, on rows whose
    /// lengths leave every tail, with a bias and a scale and offset.
    #[test]
    fn finishing_matches_the_plain_activation_on_every_kernel() {
        let kinds = Activation::EVERY_KIND;
        // Past both ends of where sigmoid saturates, and NaN-free inputs
        // around 0.
        let values: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 1.37).collect();
        for kernel in TileKernel::all_native() {
            for kind in kinds {
                for width in [1, 15, 16, 17, 40, 101] {
                    let rows = values.len() / width;
                    let mut tile = values[..rows * width].to_vec();
                    let biases: Vec<f32> = (0..rows).map(|r| r as f32 * 0.25 - 1.0).collect();
                    let scale: Vec<f32> = (0..rows).map(|r| 1.0 + r as f32 * 0.5).collect();
                    let offset: Vec<f32> = (0..rows).map(|r| r as f32 * -0.125).collect();
                    let post = Some((&scale[..], &offset[..]));
                    // SAFETY: `rows` rows of `width`, the tile's.
                    unsafe {
                        let rows = Rows::in_place(tile.as_mut_ptr(), width, width);
                        (kernel.finish)(kind, rows, &biases, post)
                    };
                    // The same from the sums into rows further apart, as a
                    // tile finishes into the output planes: the same values,
                    // and nothing written between the rows.
                    let gap = 5;
                    let mut out = vec![f32::NAN; rows * (width + gap)];
                    let apart = Rows {
                        from: values.as_ptr(),
                        from_stride: width,
                        to: out.as_mut_ptr(),
                        to_stride: width + gap,
                        width,
                    };
                    // SAFETY: `rows` rows of `values` into as many of `out`.
                    unsafe { (kernel.finish)(kind, apart, &biases, post) };
                    for (r, row) in out.chunks_exact(width + gap).enumerate() {
                        assert_eq!(row[..width], tile[r * width..][..width], "{}", kernel.name);
                        assert!(row[width..].iter().all(|v| v.is_nan()), "{}", kernel.name);
                    }
                    for (i, (&got, &x)) in tile.iter().zip(&values).enumerate() {
                        let r = i / width;
                        let x = x + biases[r];
                        let y = kind.apply(x);
                        let want = y * scale[r] + offset[r];
                        let tolerance = 1e-6 * want.abs().max(1.0);
                        assert!(
                            (got - want).abs() <= tolerance,
                            "{} {kind:?} width {width}: {got} for {want} at {x}",
                            kernel.name
                        );
                    }
                }
            }
        }
    }
}
