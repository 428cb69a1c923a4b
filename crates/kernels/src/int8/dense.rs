//! Dense (group 1) int8 convolutions as matrix products on tract-linalg's
//! integer kernels, a chunk of output pixels at a time.
//!
//! Unfolding the whole input (im2col), packing it, and then storing every
//! i32 accumulator before requantizing is four passes over tensors that do
//! not fit in cache: for the 3x3 convolutions of PP-OCRv4 det's neck and
//! head, a 22 MB unfolded input and a 10 MB accumulator, which made them
//! slower in INT8 than in FP32 (`docs/benchmarks.md`). Here the output
//! pixels go in chunks sized so that a chunk's unfolded rows, its packed
//! panels and its accumulators stay in the L2 cache: unfold the chunk, pack
//! it ([`super::pack`]), run the kernel on it, and hand its accumulators
//! to the caller to requantize, before the next chunk. The buffers are kept
//! per thread and reused from frame to frame. Most convolutions skip the
//! unfold: a 1x1 convolution packs the input planes themselves, and a
//! larger one the shifted rows of a padded copy of its input
//! ([`super::shifted`]).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use edgewise_graph::simd::clear_upper_vector_state;
use edgewise_graph::tract_onnx::prelude::*;
use tract_linalg::BinOp;
use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputValue, MatMatMul, PackedExoticFact,
};

use super::pack::{Layout, pack_rows};
use super::pairs::{self, PairKernel, pack_pairs};
use super::shifted::Shifted;
use crate::geometry::Geometry;
use crate::unfold::unfold;

/// Bytes of scratch a chunk may use: the unfolded rows, the packed panels
/// and the accumulators. Well inside the L2 of the boards we target (1 MiB
/// shared on a Pi 4's Cortex-A72) and of x86 hosts.
const CHUNK_BYTES: usize = 256 * 1024;

/// Alignment of the packed panels (tract's kernels load them whole).
const PANEL_ALIGN: usize = 64;

/// What unfolding and packing one byte of im2col costs, in multiply-adds
/// of the matrix kernel: the shifted rows pay instead for the products of
/// their padding channels and thrown-away columns, `out_c` per extra
/// depth and column. MobileNetV2+RetinaNet's 720-channel class head at
/// 20x20 (10% more columns) ran 19% slower shifted; YOLOX's 24-channel
/// stem on a 12-channel input (35% more) ran faster.
const UNFOLD_MACS: f64 = 32.0;

/// Where the rows of the matrix product come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A 1x1, stride-1 convolution: the input planes are the rows.
    Planes,
    /// im2col of each chunk, in the weights' own depth order; the output
    /// columns each kernel column reads inside the input
    /// ([`Geometry::valid_columns`]).
    Unfolded(Vec<(usize, usize)>),
    /// The shifted rows of a padded copy of the input, the depth tap-major.
    Shifted(Shifted),
}

/// The matrix kernel a dense convolution runs on.
pub(crate) enum Matmul {
    /// One of tract-linalg's, with its packing and that packing's B layout.
    Tract(Box<dyn MatMatMul>, usize, Layout),
    /// [`PairKernel`], for x86 CPUs without VNNI ([`pairs::preferred`]).
    Pairs,
}

/// [`Matmul`] with the weights packed for it.
#[derive(Clone, Debug)]
enum Engine {
    Tract {
        mmm: Box<dyn MatMatMul>,
        packing: usize,
        weights: Arc<dyn MMMInputValue>,
        /// The layout of the kernel's B input.
        layout: Layout,
    },
    Pairs(PairKernel),
}

/// A dense convolution's kernel: weights `[out_c, depth]` packed once.
#[derive(Clone, Debug)]
pub(crate) struct DenseKernel {
    engine: Engine,
    source: Source,
}

/// Per-thread buffers, reused by every dense convolution the thread runs.
#[derive(Default)]
struct Scratch {
    unfolded: Vec<i8>,
    packed: Option<Arc<Blob>>,
    pairs: Vec<i32>,
    acc: Option<Tensor>,
    segments: Vec<(usize, Range<usize>)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
    /// The padded copy of the input a [`Source::Shifted`] convolution
    /// reads, filled on the thread that splits the work.
    static PHASES: RefCell<Vec<i8>> = RefCell::default();
}

impl DenseKernel {
    /// The kernel for `geo` on `matmul`, with the weights `[out_c, in_c *
    /// kh * kw]` (OIHW) packed in the depth order the rows will come in.
    pub fn new(geo: &Geometry, weights: &[i8], matmul: Matmul) -> Result<DenseKernel, String> {
        let taps = geo.kernel_h * geo.kernel_w;
        let k = geo.in_c * taps;
        if weights.len() != geo.out_c * k {
            return Err("its weights do not match its shape".into());
        }
        let source = if geo.is_pointwise() {
            Source::Planes
        } else {
            // VNNI and SDOT read four depths per lane: keep each tap's
            // channels in whole groups of four.
            let group = if matches!(matmul, Matmul::Tract(_, _, Layout::K4 { .. })) {
                4
            } else {
                1
            };
            let shifted = Shifted::new(geo, group);
            // im2col's depth is padded to a whole group only once.
            let unfolded_overhead = k.next_multiple_of(group) as f64 / k as f64;
            let extra = (shifted.overhead(geo) - unfolded_overhead) * geo.out_c as f64;
            if extra <= UNFOLD_MACS {
                Source::Shifted(shifted)
            } else {
                Source::Unfolded(geo.valid_columns())
            }
        };
        let (depth, matrix) = match &source {
            Source::Shifted(shifted) => {
                let depth = shifted.depth();
                let mut tap_major = vec![0i8; geo.out_c * depth];
                for (filter, out) in weights.chunks(k).zip(tap_major.chunks_mut(depth)) {
                    for c in 0..geo.in_c {
                        for tap in 0..taps {
                            out[tap * shifted.channels + c] = filter[c * taps + tap];
                        }
                    }
                }
                (depth, tap_major)
            }
            _ => (k, weights.to_vec()),
        };
        let engine = match matmul {
            Matmul::Tract(mmm, packing, layout) => {
                let w =
                    Tensor::from_shape(&[geo.out_c, depth], &matrix).map_err(|e| e.to_string())?;
                let packed = mmm.packings()[packing]
                    .0
                    .prepare_one(&w, 1, 0)
                    .map_err(|e| e.to_string())?;
                Engine::Tract {
                    mmm,
                    packing,
                    weights: Arc::from(packed),
                    layout,
                }
            }
            Matmul::Pairs => Engine::Pairs(PairKernel::new(geo.out_c, depth, &matrix)),
        };
        Ok(DenseKernel { engine, source })
    }

    /// The kernel's name.
    pub fn name(&self) -> &str {
        match &self.engine {
            Engine::Tract { mmm, .. } => mmm.name(),
            Engine::Pairs(kernel) => kernel.name(),
        }
    }

    /// Columns per panel of the packed input: a part's share of the
    /// columns is best a multiple of it.
    pub fn panel_width(&self) -> usize {
        match &self.engine {
            Engine::Tract { layout, .. } => layout.r(),
            Engine::Pairs(_) => pairs::NR,
        }
    }

    /// Bytes of one packed input panel for a depth of `k`.
    fn panel_bytes(&self, k: usize) -> usize {
        match &self.engine {
            Engine::Tract { layout, .. } => layout.panel_bytes(k),
            Engine::Pairs(_) => PairKernel::panel_len(k) * 4,
        }
    }

    /// The depth of the matrix product.
    fn depth(&self, geo: &Geometry) -> usize {
        match &self.source {
            Source::Shifted(shifted) => shifted.depth(),
            _ => geo.in_c * geo.kernel_h * geo.kernel_w,
        }
    }

    /// The columns of the matrix product: the output pixels, or for shifted
    /// rows the output rows at the padded width.
    pub fn columns(&self, geo: &Geometry) -> usize {
        match &self.source {
            Source::Shifted(shifted) => shifted.columns(geo),
            _ => geo.out_h * geo.out_w,
        }
    }

    /// The columns one chunk takes for `geo`: a multiple of the kernel's
    /// panel width whose scratch fits in [`CHUNK_BYTES`].
    pub fn chunk_len(&self, geo: &Geometry) -> usize {
        let m = geo.out_c;
        let k = self.depth(geo);
        let r = self.panel_width();
        let unfolded = if matches!(self.source, Source::Unfolded(_)) {
            k
        } else {
            0
        };
        let per_column = unfolded + self.panel_bytes(k) / r + 4 * m;
        let chunk = (CHUNK_BYTES / per_column / r).max(1) * r;
        chunk.min(self.columns(geo).next_multiple_of(r))
    }

    /// Calls `f` with what [`DenseKernel::run`] reads for `image`
    /// (`[in_c, in_h * in_w]`, i8, zero point `x0`): the image itself, or
    /// its padded copy for shifted rows, made here once for every part.
    pub fn with_input<R>(
        &self,
        geo: &Geometry,
        x0: i8,
        image: &[i8],
        f: impl FnOnce(&[i8]) -> TractResult<R>,
    ) -> TractResult<R> {
        match &self.source {
            Source::Shifted(shifted) => {
                // Out of the thread-local while the parts run: a thread that
                // waits for them may be handed another plan's convolution.
                let mut phases = PHASES.take();
                let done = shifted
                    .fill(geo, image, x0, self.chunk_len(geo), &mut phases)
                    .and_then(|()| f(&phases));
                PHASES.set(phases);
                done
            }
            _ => f(image),
        }
    }

    /// Runs the convolution on the columns `columns` of one image's matrix
    /// product (see [`DenseKernel::columns`]), reading `input` from
    /// [`DenseKernel::with_input`] (zero point `x0`), adding `bias` per
    /// output channel, [`DenseKernel::chunk_len`] columns at a time. For
    /// every chunk, calls `emit(channel, sums, segments)` for each output
    /// channel, with that channel's i32 sums over the chunk's columns and
    /// where they go: for each run of consecutive output pixels, its first
    /// pixel and its range in `sums` (the columns of shifted rows past the
    /// output's width belong to no run). The kernel runs on the calling
    /// thread: callers split the columns.
    pub fn run(
        &self,
        geo: &Geometry,
        x0: i8,
        input: &[i8],
        bias: &Tensor,
        columns: Range<usize>,
        mut emit: impl FnMut(usize, &[i32], &[(usize, Range<usize>)]),
    ) -> TractResult<()> {
        let m = geo.out_c;
        let k = self.depth(geo);
        let chunk = self.chunk_len(geo);
        let n = geo.out_h * geo.out_w;

        SCRATCH.with_borrow_mut(|scratch| -> TractResult<()> {
            let mut acc = match scratch.acc.take() {
                Some(t) if t.len() >= m * chunk => t,
                // SAFETY: i32 has no invalid values, and the kernel writes
                // the `m * len` sums read after each run.
                _ => unsafe { Tensor::uninitialized::<i32>(&[m * chunk])? },
            };
            if matches!(self.source, Source::Unfolded(_)) {
                scratch.unfolded.resize(k * chunk, 0);
            }
            let mut blob = None;
            let mut scratch_space = None;
            for n0 in columns.clone().step_by(chunk) {
                let len = chunk.min(columns.end - n0);
                // The chunk's rows of the matrix product: row `i` from `n0`.
                let unfolded = &mut scratch.unfolded;
                if let Source::Unfolded(valid_columns) = &self.source {
                    unfold(geo, valid_columns, x0, input, n0, len, unfolded);
                }
                let unfolded = &*unfolded;
                let row = |i: usize| -> &[i8] {
                    match &self.source {
                        Source::Planes => &input[i * n + n0..],
                        Source::Unfolded(_) => &unfolded[i * len..],
                        Source::Shifted(shifted) => shifted.row(input, i, n0, len),
                    }
                };
                match &self.engine {
                    Engine::Tract {
                        mmm,
                        packing,
                        weights,
                        layout,
                    } => {
                        let blob = blob.get_or_insert_with(|| {
                            let packed_len = chunk.div_ceil(layout.r()) * layout.panel_bytes(k);
                            match scratch.packed.take() {
                                Some(b) if b.len() >= packed_len => b,
                                // SAFETY: uninitialized bytes; `pack_rows`
                                // writes every panel the kernel reads before
                                // each run.
                                _ => Arc::new(unsafe {
                                    Blob::new_for_size_and_align(packed_len, PANEL_ALIGN)
                                }),
                            }
                        });
                        let packed = Arc::get_mut(blob).expect("the packed chunk is not shared");
                        // SAFETY: the blob holds bytes; i8 has no invalid
                        // values.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                packed.as_mut_ptr() as *mut i8,
                                packed.len(),
                            )
                        };
                        pack_rows(*layout, row, k, len, dst);
                        let input = EagerPackedInput {
                            fact: PackedExoticFact {
                                format: mmm.packings()[*packing].1.clone(),
                                mn: len.to_dim(),
                                k,
                            },
                            packed: blob.clone(),
                            panel_bytes: layout.panel_bytes(k),
                            mn: len,
                        };
                        // SAFETY: the store is `m` rows of `len` i32s with
                        // row stride `len`, inside `acc` (`m * chunk`
                        // values); the weights and the input are packed in
                        // this kernel's packing, and the scratch space is
                        // allocated by this kernel.
                        unsafe {
                            let scratch_space =
                                scratch_space.get_or_insert_with(|| mmm.allocate_scratch_space());
                            let store = mmm
                                .c_from_data_and_strides(4, len as isize, 1)
                                .wrap(&acc.view());
                            mmm.run_with_scratch_space(
                                m,
                                len,
                                &mut **scratch_space,
                                &[
                                    FusedSpec::AddMatMul {
                                        a: AsInputValue::Borrowed(&**weights),
                                        b: AsInputValue::Borrowed(&input),
                                        packing: *packing,
                                    },
                                    FusedSpec::BinPerRow(bias.view(), BinOp::Add),
                                    FusedSpec::Store(store),
                                ],
                            )?;
                        }
                        // The kernel leaves the upper vector state dirty,
                        // which would slow the requantization and the next
                        // unfold (see `edgewise_graph::simd`).
                        clear_upper_vector_state();
                    }
                    Engine::Pairs(kernel) => {
                        let packed = &mut scratch.pairs;
                        packed.resize(len.div_ceil(pairs::NR) * PairKernel::panel_len(k), 0);
                        pack_pairs(row, k, len, packed);
                        let bias = bias.try_as_plain_ram()?;
                        let mut sums = acc.try_as_plain_ram_mut()?;
                        let sums = &mut sums.as_slice_mut::<i32>()?[..m * len];
                        kernel.run(packed, len, bias.as_slice::<i32>()?, sums);
                    }
                }
                let sums = acc.try_as_plain_ram()?.as_slice::<i32>()?;
                let segments = &mut scratch.segments;
                segments.clear();
                match &self.source {
                    Source::Shifted(shifted) => segments.extend(shifted.segments(geo, n0, len)),
                    _ => segments.push((n0, 0..len)),
                }
                for c in 0..m {
                    emit(c, &sums[c * len..(c + 1) * len], segments);
                }
            }
            if blob.is_some() {
                scratch.packed = blob;
            }
            scratch.acc = Some(acc);
            Ok(())
        })
    }
}
