//! [`F32Conv`]'s depthwise convolutions (one filter per channel), mostly a
//! channel at a time.
//!
//! A depthwise convolution does `kh * kw` multiply-adds per output, so it
//! is bound by memory and by the bookkeeping around its few sums, not by
//! arithmetic. Each input row is copied once, as the rows come, into a
//! small ring of padded rows split into their column phases (the layout
//! the dense convolutions read, one row high): every tap of an output row
//! is then a run of consecutive floats at a fixed offset, at any stride,
//! padding or dilation, with no edge to check. Four runs of
//! [`DEPTHWISE_BLOCK`] outputs at a time are summed over every tap in
//! registers and stored straight into the output plane, where a few rows
//! at a time are finished (bias, activation, scale) while in cache.
//!
//! Rows a few runs of whole vectors would overshoot (20 outputs summed as
//! 32, 40 as 48) belong to small maps, where a channel's bookkeeping
//! outweighs its sums: those go [`LANES`] channels at a time, in the
//! vector lanes (`lanes.rs`). With fewer channels than lanes, the
//! channel's plane is copied padded whole instead, as the dense
//! convolutions' bands are, and summed as one long flat row, a little of
//! it padding, on the rows' vector loop.

use edgewise_graph::tract_onnx::prelude::TractResult;

use super::lanes::LANES;
use super::tile::DEPTHWISE_BLOCK;
use super::{F32Conv, IMAGE};
use crate::fp32::activation::Rows;
use crate::geometry::Geometry;
use crate::parallel::{self, DisjointWriter};

/// Outputs summed before they are finished: 4 KiB, in the first-level cache.
const CHUNK: usize = 1024;

/// Output rows summed together: short rows give their runs to each other.
const ROWS: usize = 4;

/// Runs of [`DEPTHWISE_BLOCK`] outputs summed at once: four independent
/// sums per tap, each waiting on its own last multiply-add only.
pub const RUNS: usize = 4;

thread_local! {
    /// A thread's ring of padded input rows, reused from channel to channel.
    static RING: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A thread's padded, interleaved image for [`LANES`] channels.
    static LANES_SCRATCH: std::cell::RefCell<Vec<[f32; LANES]>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A depthwise convolution of one image, as [`super::TileKernel::depthwise`]
/// takes it.
pub struct DepthwisePlanes<'a> {
    /// The convolution's shape.
    pub geo: &'a Geometry,
    /// For each column phase, the columns of its padded row that come from
    /// the input and the input column the first of them holds (the
    /// layout's runs).
    pub runs: &'a [(usize, usize, usize)],
    /// The padded phase rows' width: the output's and the widest tap's.
    pub width: usize,
    /// The image, `in_c x in_h x in_w`.
    pub input: &'a [f32],
    /// The filters, `in_c x kh x kw`.
    pub weights: &'a [f32],
}

impl DepthwisePlanes<'_> {
    /// Panics unless `channels` are channels of the image and `out` holds
    /// their output planes, and the input and filters have their sizes.
    pub fn check(&self, channels: &std::ops::Range<usize>, out: &[f32]) {
        let g = self.geo;
        let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
        assert!(
            channels.end <= g.in_c,
            "channels {channels:?} of {}",
            g.in_c
        );
        assert_eq!(self.input.len(), g.in_c * in_plane, "a depthwise input");
        let taps = g.kernel_h * g.kernel_w;
        assert_eq!(self.weights.len(), g.in_c * taps, "depthwise filters");
        assert_eq!(out.len(), channels.len() * out_plane, "depthwise outputs");
    }
}

/// [`RUNS`] runs of [`DEPTHWISE_BLOCK`] outputs of a depthwise
/// convolution, as [`super::TileKernel`]'s vector loops sum them: every
/// tap's sums in registers, stored once.
pub struct DepthwiseRuns {
    /// Per kernel row, where each run's first output reads its tap column 0.
    pub rows: *const [*const f32; RUNS],
    /// Kernel rows.
    pub kernel_h: usize,
    /// Each tap column's offset from column 0.
    pub columns: *const usize,
    /// Kernel columns.
    pub kernel_w: usize,
    /// The filter, `kernel_h x kernel_w`.
    pub weights: *const f32,
    /// Where each run's sums go.
    pub out: [*mut f32; RUNS],
}

impl DepthwiseRuns {
    /// The runs whose kernel rows read from `rows` (one entry per kernel
    /// row), tap columns at `columns`, with `weights` (`rows.len() x
    /// columns.len()`), into `out`.
    fn new(
        rows: &[[*const f32; RUNS]],
        columns: &[usize],
        weights: &[f32],
        out: [*mut f32; RUNS],
    ) -> DepthwiseRuns {
        assert_eq!(
            weights.len(),
            rows.len() * columns.len(),
            "a depthwise filter"
        );
        DepthwiseRuns {
            rows: rows.as_ptr(),
            kernel_h: rows.len(),
            columns: columns.as_ptr(),
            kernel_w: columns.len(),
            weights: weights.as_ptr(),
            out,
        }
    }
}

/// [`DepthwiseRuns`]'s loop on one instruction set.
///
/// # Safety
/// For every kernel row `ky`, run `i` and tap column `kx`,
/// [`DEPTHWISE_BLOCK`] floats from `rows[ky][i] + columns[kx]` are readable;
/// `weights` holds `kernel_h * kernel_w` floats; [`DEPTHWISE_BLOCK`] floats
/// from each `out[i]` are writable, by this call alone. The CPU has the
/// loop's features.
pub type RunsLoop = unsafe fn(&DepthwiseRuns);

/// The output planes (`out_h x out_w`) of `channels` of `p` into `out`, as
/// raw sums (no bias); `finish(channel, rows)` runs on every few rows of a
/// plane once they are summed. `scratch` holds the ring of padded rows,
/// `gather` copies a run of an input row's column phase into its padded
/// row ([`super::tile::gather_phase`]) and `sum_runs` sums the runs.
///
/// # Safety
/// `sum_runs` can run on this CPU.
#[inline(always)]
pub unsafe fn depthwise_planes(
    p: &DepthwisePlanes,
    channels: std::ops::Range<usize>,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    finish: &mut dyn FnMut(usize, &mut [f32]),
    gather: impl Fn(&[f32], usize, usize, &mut [f32]),
    sum_runs: RunsLoop,
) {
    const B: usize = DEPTHWISE_BLOCK;
    p.check(&channels, out);
    let g = p.geo;
    let (kh, kw, sw) = (g.kernel_h, g.kernel_w, g.stride_w);
    let (in_plane, out_plane) = (g.in_h * g.in_w, g.out_h * g.out_w);
    assert_eq!(p.runs.len(), sw, "a depthwise layout");
    // A padded phase row: room for a whole run past the last output. A
    // slot holds one input row's phase rows; slot 0 stays zero, for the
    // rows of padding above and below the image.
    let row_len = p.width.max(g.out_w.max(B)) + B;
    let slot_len = sw * row_len;
    // Input rows kept: as many as `ROWS` output rows' taps span.
    let span = (ROWS - 1) * g.stride_h + (kh - 1) * g.dilation_h + 1;
    let ring_at = slot_len;
    scratch.clear();
    scratch.resize((span + 1) * slot_len, 0.0);
    // Which input row each ring slot holds, where each output row's taps
    // read (per kernel row, a slot), and each tap column's phase row and
    // offset in a slot.
    let mut held = vec![usize::MAX; span];
    let mut slots = vec![0usize; ROWS * kh];
    let columns: Vec<usize> = (0..kw)
        .map(|kx| {
            let dx = kx * g.dilation_w;
            (dx % sw) * row_len + dx / sw
        })
        .collect();
    // Where each run of a row starts: the last overlaps the one before
    // rather than spilling, unless the row is shorter than a run.
    let starts: Vec<usize> = if g.out_w >= B {
        let mut starts: Vec<usize> = (0..=g.out_w - B).step_by(B).collect();
        if !g.out_w.is_multiple_of(B) {
            starts.push(g.out_w - B);
        }
        starts
    } else {
        vec![0]
    };
    let mut spill = [[0f32; B]; RUNS];
    let mut run_rows = vec![[std::ptr::null(); RUNS]; kh];
    let rows_per_finish = (CHUNK / g.out_w.max(1)).max(1);
    for (c, out) in channels.zip(out.chunks_exact_mut(out_plane)) {
        let input = &p.input[c * in_plane..][..in_plane];
        let weights = &p.weights[c * kh * kw..][..kh * kw];
        held.fill(usize::MAX);
        let mut finished = 0;
        for first_row in (0..g.out_h).step_by(ROWS) {
            let rows = ROWS.min(g.out_h - first_row);
            for r in 0..rows {
                let top = (first_row + r) * g.stride_h;
                for ky in 0..kh {
                    // Input row `top + ky * dh - pad_top`, if in the image.
                    let y = (top + ky * g.dilation_h)
                        .checked_sub(g.pad_top)
                        .filter(|&y| y < g.in_h);
                    slots[r * kh + ky] = match y {
                        None => 0,
                        Some(y) => {
                            let at = ring_at + (y % span) * slot_len;
                            if held[y % span] != y {
                                held[y % span] = y;
                                let source = &input[y * g.in_w..][..g.in_w];
                                // The padding stays zero: only the runs are copied.
                                for (phase, &(lo, hi, first)) in p.runs.iter().enumerate() {
                                    let run = &mut scratch[at + phase * row_len + lo..][..hi - lo];
                                    gather(source, sw, first, run);
                                }
                            }
                            at
                        }
                    };
                }
            }
            let jobs = rows * starts.len();
            for chunk in (0..jobs).step_by(RUNS) {
                // The last chunk repeats its last run, summed and stored twice.
                let job = |i: usize| {
                    let j = (chunk + i).min(jobs - 1);
                    (j / starts.len(), starts[j % starts.len()])
                };
                let jobs: [(usize, usize); RUNS] = std::array::from_fn(job);
                for (ky, reads) in run_rows.iter_mut().enumerate() {
                    for (read, &(r, start)) in reads.iter_mut().zip(&jobs) {
                        *read = scratch[slots[r * kh + ky] + start..].as_ptr();
                    }
                }
                let spills = spill.as_mut_ptr();
                let out_at = |i: usize| {
                    let (r, start) = jobs[i];
                    if g.out_w >= B {
                        out[(first_row + r) * g.out_w + start..][..B].as_mut_ptr()
                    } else {
                        // SAFETY: `i < RUNS`, within `spill`.
                        unsafe { spills.add(i).cast::<f32>() }
                    }
                };
                let runs =
                    DepthwiseRuns::new(&run_rows, &columns, weights, std::array::from_fn(out_at));
                // SAFETY: each run's taps read within its slots, which hold a
                // whole run past the last output and past the widest tap; its
                // sums go to its own output row or spill row; the caller
                // vouches for the CPU.
                unsafe { sum_runs(&runs) };
                if g.out_w < B {
                    for (i, &(r, _)) in jobs.iter().enumerate() {
                        out[(first_row + r) * g.out_w..][..g.out_w]
                            .copy_from_slice(&spill[i][..g.out_w]);
                    }
                }
            }
            let done = first_row + rows;
            if done - finished >= rows_per_finish || done == g.out_h {
                finish(c, &mut out[finished * g.out_w..done * g.out_w]);
                finished = done;
            }
        }
    }
}

/// How a depthwise convolution walks its channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthwiseWay {
    /// A channel at a time, a padded input row at a time.
    Rows,
    /// A channel at a time, its plane copied padded whole and summed as
    /// one flat row.
    Flat,
    /// [`LANES`] channels at a time, in the vector lanes.
    Lanes,
}

impl DepthwiseWay {
    /// The fastest way for `g` on a layout of padded rows `width` wide.
    pub fn best(g: &Geometry, width: usize) -> DepthwiseWay {
        // A row shorter than a few runs would sum, in runs of whole
        // vectors, more outputs than it has (20 outputs as 32).
        let runs_per_row = g.out_w.div_ceil(DEPTHWISE_BLOCK);
        // Those maps are small: a block of channels in the lanes wastes
        // none, unless there are fewer channels than lanes (whose squares
        // then transpose a value at a time).
        if runs_per_row * DEPTHWISE_BLOCK <= width {
            DepthwiseWay::Rows
        } else if g.in_c >= LANES {
            DepthwiseWay::Lanes
        } else {
            DepthwiseWay::Flat
        }
    }
}

impl F32Conv {
    /// A depthwise convolution of one image `x` into `y`, walked `way`; the
    /// threads split the channels.
    pub(super) fn eval_depthwise(
        &self,
        way: DepthwiseWay,
        x: &[f32],
        y: &mut [f32],
    ) -> TractResult<()> {
        match way {
            DepthwiseWay::Rows => self.eval_depthwise_rows(x, y),
            DepthwiseWay::Flat => self.eval_depthwise_flat(x, y),
            DepthwiseWay::Lanes => self.eval_depthwise_lanes(x, y),
        }
    }

    /// [`Self::eval_depthwise`] [`LANES`] channels at a time.
    fn eval_depthwise_lanes(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, k) = (&self.geo, &self.kernel);
        let out_plane = g.out_h * g.out_w;
        let work = g.out_c * g.kernel_h * g.kernel_w * out_plane * parallel::ELEMENT_WORK;
        let blocks = g.out_c.div_ceil(LANES);
        let parts = parallel::parts(work, blocks);
        let writer = DisjointWriter::new(y);
        let planes = self.planes(x);
        parallel::for_each_part(parts, |part| {
            let first = (blocks * part / parts) * LANES;
            let channels = first..((blocks * (part + 1) / parts) * LANES).min(g.out_c);
            // SAFETY: this part owns these output channels.
            let out =
                unsafe { writer.range(channels.start * out_plane, channels.len() * out_plane) };
            LANES_SCRATCH.with_borrow_mut(|scratch| {
                // SAFETY: the CPU has the kernel's features.
                unsafe {
                    (k.depthwise_lanes)(&planes, channels, scratch, out, &mut |c, plane| {
                        self.finish_plane(c, plane)
                    })
                };
            });
            Ok(())
        })
    }

    /// The image `x` and the filters, as the depthwise loops take them.
    fn planes<'a>(&'a self, x: &'a [f32]) -> DepthwisePlanes<'a> {
        DepthwisePlanes {
            geo: &self.geo,
            runs: &self.layout.runs,
            width: self.layout.width,
            input: x,
            weights: &self.weights,
        }
    }

    /// The bias, the activation and the scale and offset of channel `c` on
    /// `rows` of its output plane.
    fn finish_plane(&self, c: usize, rows: &mut [f32]) {
        let bias = &self.bias[c..c + 1];
        let post = self.post.as_ref().map(|p| (&p.0[c..c + 1], &p.1[c..c + 1]));
        let n = rows.len();
        let rows = Rows::in_place(rows.as_mut_ptr(), n, n);
        // SAFETY: the CPU has the kernel's features; one row of `n`, `rows`.
        unsafe { (self.kernel.finish)(self.activation, rows, bias, post) };
    }

    /// [`Self::eval_depthwise`] a padded input row at a time.
    fn eval_depthwise_rows(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, k) = (&self.geo, &self.kernel);
        let taps = g.kernel_h * g.kernel_w;
        let out_plane = g.out_h * g.out_w;
        let work = g.out_c * taps * out_plane * parallel::ELEMENT_WORK;
        let parts = parallel::parts(work, g.out_c);
        let writer = DisjointWriter::new(y);
        let planes = self.planes(x);
        parallel::for_each_part(parts, |part| {
            let channels = g.out_c * part / parts..g.out_c * (part + 1) / parts;
            let mut finish = |c: usize, rows: &mut [f32]| self.finish_plane(c, rows);
            // SAFETY: this part owns these output channels.
            let out =
                unsafe { writer.range(channels.start * out_plane, channels.len() * out_plane) };
            RING.with_borrow_mut(|scratch| {
                // SAFETY: the CPU has the kernel's features.
                unsafe { (k.depthwise)(&planes, channels, scratch, out, &mut finish) };
            });
            Ok(())
        })
    }

    /// [`Self::eval_depthwise`] a padded plane at a time: each channel's
    /// input copied into its padded phase planes (as the dense
    /// convolutions' bands), where every tap of a run of flat outputs is a
    /// fixed offset, then summed [`CHUNK`] flat outputs at a time, finished
    /// and stored without the padding columns.
    fn eval_depthwise_flat(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        const BLOCK: usize = RUNS * DEPTHWISE_BLOCK;
        const { assert!(CHUNK.is_multiple_of(BLOCK)) };
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        let rows = g.out_h + l.halo;
        let stride = l.channel_stride(rows);
        // Each tap's offset (`Layout::taps`) is its kernel row's part plus
        // its kernel column's: tap (ky, 0) and tap (0, kx), tap (0, 0)
        // being at 0.
        let taps: Vec<usize> = l.taps(1, rows).into_iter().map(|t| t as usize).collect();
        let row_parts: Vec<usize> = taps.iter().step_by(kw).copied().collect();
        let columns = &taps[..kw];
        debug_assert!((0..kh * kw).all(|t| taps[t] == row_parts[t / kw] + columns[t % kw]));
        let pixels = g.out_h * l.width;
        let plane = g.out_h * g.out_w;
        let work = g.out_c * kh * kw * pixels * parallel::ELEMENT_WORK;
        let parts = parallel::parts(work, g.out_c);
        let writer = DisjointWriter::new(y);
        parallel::for_each_part(parts, |p| {
            let mut sums = [0f32; CHUNK];
            let mut run_rows = vec![[std::ptr::null(); RUNS]; kh];
            IMAGE.with_borrow_mut(|image| {
                let len = l.phases * stride;
                // The last runs read on past the planes.
                if image.len() < len + BLOCK {
                    image.resize(len + BLOCK, 0.0);
                }
                for c in g.out_c * p / parts..g.out_c * (p + 1) / parts {
                    self.fill_band(x, &mut image[..len], 0, rows, c..c + 1);
                    let weights = &self.weights[c * kh * kw..][..kh * kw];
                    let bias = &self.bias[c..c + 1];
                    let post = self.post.as_ref().map(|p| (&p.0[c..c + 1], &p.1[c..c + 1]));
                    for first in (0..pixels).step_by(CHUNK) {
                        let n = CHUNK.min(pixels - first);
                        for at in (0..n).step_by(BLOCK) {
                            for (reads, &row) in run_rows.iter_mut().zip(&row_parts) {
                                for (i, read) in reads.iter_mut().enumerate() {
                                    let from = first + at + i * DEPTHWISE_BLOCK + row;
                                    *read = image[from..].as_ptr();
                                }
                            }
                            let sums = sums[at..].as_mut_ptr();
                            // SAFETY: `at + BLOCK <= CHUNK`, a multiple.
                            let out =
                                std::array::from_fn(|i| unsafe { sums.add(i * DEPTHWISE_BLOCK) });
                            let runs = DepthwiseRuns::new(&run_rows, columns, weights, out);
                            // SAFETY: every tap of every run reads within
                            // the planes and their `BLOCK` of slack; the
                            // CPU has the kernel's features.
                            unsafe { (k.depthwise_runs)(&runs) };
                        }
                        // Finished on their way from the sums to the plane.
                        self.for_each_output_run(first, n, |at, pixel, len| {
                            let rows = Rows {
                                from: sums[at..].as_ptr(),
                                from_stride: 0,
                                // SAFETY: this part owns channel `c`.
                                to: unsafe { writer.ptr(c * plane + pixel, len) },
                                to_stride: 0,
                                width: len,
                            };
                            // SAFETY: one row of `len` sums into as many
                            // pixels of the plane; the CPU has the kernel's
                            // features.
                            unsafe { (k.finish)(self.activation, rows, bias, post) };
                        });
                    }
                }
            });
            Ok(())
        })
    }
}
