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
//! per thread and reused from frame to frame.

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
use crate::geometry::Geometry;
use crate::unfold::unfold;

/// Bytes of scratch a chunk may use: the unfolded rows, the packed panels
/// and the accumulators. Well inside the L2 of the boards we target (1 MiB
/// shared on a Pi 4's Cortex-A72) and of x86 hosts.
const CHUNK_BYTES: usize = 256 * 1024;

/// Alignment of the packed panels (tract's kernels load them whole).
const PANEL_ALIGN: usize = 64;

/// A dense convolution's kernel: weights `[out_c, in_c * kh * kw]` packed once.
#[derive(Clone, Debug)]
pub(crate) struct DenseKernel {
    pub mmm: Box<dyn MatMatMul>,
    pub packing: usize,
    pub weights: Arc<dyn MMMInputValue>,
    /// The layout of the kernel's B input, found once when the op is built.
    pub layout: Layout,
}

/// Per-thread buffers, reused by every dense convolution the thread runs.
#[derive(Default)]
struct Scratch {
    unfolded: Vec<i8>,
    packed: Option<Arc<Blob>>,
    acc: Option<Tensor>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl DenseKernel {
    /// The kernel's name.
    pub fn name(&self) -> &str {
        self.mmm.name()
    }

    /// The output pixels one chunk takes for `geo`: a multiple of the
    /// kernel's panel width whose scratch fits in [`CHUNK_BYTES`].
    pub fn chunk_len(&self, geo: &Geometry) -> usize {
        let (m, n) = (geo.out_c, geo.out_h * geo.out_w);
        let k = geo.in_c * geo.kernel_h * geo.kernel_w;
        let r = self.layout.r();
        let unfolded = if geo.is_pointwise() { 0 } else { k };
        let per_column = unfolded + self.layout.panel_bytes(k) / r + 4 * m;
        let chunk = (CHUNK_BYTES / per_column / r).max(1) * r;
        chunk.min(n.next_multiple_of(r))
    }

    /// Runs the convolution on the output pixels `pixels` of one image
    /// (`[in_c, in_h * in_w]`, i8, zero point `x0`), adding `bias` per
    /// output channel, [`DenseKernel::chunk_len`] pixels at a time. For every
    /// chunk, calls `emit(channel, first_pixel, accumulators)` once per
    /// output channel with that channel's i32 sums for the chunk's pixels.
    /// The kernel runs on the calling thread: callers split the pixels.
    pub fn run(
        &self,
        geo: &Geometry,
        x0: i8,
        image: &[i8],
        bias: &Tensor,
        pixels: Range<usize>,
        mut emit: impl FnMut(usize, usize, &[i32]),
    ) -> TractResult<()> {
        let m = geo.out_c;
        let k = geo.in_c * geo.kernel_h * geo.kernel_w;
        let layout = self.layout;
        let r = layout.r();
        let pointwise = geo.is_pointwise();
        let chunk = self.chunk_len(geo);
        let columns = geo.valid_columns();
        let n = geo.out_h * geo.out_w;

        SCRATCH.with_borrow_mut(|scratch| -> TractResult<()> {
            let packed_len = chunk.div_ceil(r) * layout.panel_bytes(k);
            let mut blob = match scratch.packed.take() {
                Some(b) if b.len() >= packed_len => b,
                // SAFETY: uninitialized bytes; `pack_rows` writes every panel
                // the kernel reads before each run.
                _ => Arc::new(unsafe { Blob::new_for_size_and_align(packed_len, PANEL_ALIGN) }),
            };
            let acc = match scratch.acc.take() {
                Some(t) if t.len() >= m * chunk => t,
                // SAFETY: i32 has no invalid values, and the kernel's store
                // writes the `m * len` accumulators read after each run.
                _ => unsafe { Tensor::uninitialized::<i32>(&[m * chunk])? },
            };
            if !pointwise {
                scratch.unfolded.resize(k * chunk, 0);
            }
            // SAFETY: the scratch space is used with this kernel only.
            let mut scratch_space = unsafe { self.mmm.allocate_scratch_space() };
            for n0 in pixels.clone().step_by(chunk) {
                let len = chunk.min(pixels.end - n0);
                let (rows, stride) = if pointwise {
                    (&image[n0..], n)
                } else {
                    unfold(geo, &columns, x0, image, n0, len, &mut scratch.unfolded);
                    (&scratch.unfolded[..], len)
                };
                let packed = Arc::get_mut(&mut blob).expect("the packed chunk is not shared");
                // SAFETY: the blob holds bytes; i8 has no invalid values.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(packed.as_mut_ptr() as *mut i8, packed.len())
                };
                pack_rows(layout, rows, stride, k, len, dst);
                let input = EagerPackedInput {
                    fact: PackedExoticFact {
                        format: self.mmm.packings()[self.packing].1.clone(),
                        mn: len.to_dim(),
                        k,
                    },
                    packed: blob.clone(),
                    panel_bytes: layout.panel_bytes(k),
                    mn: len,
                };
                // SAFETY: the store is `m` rows of `len` i32s with row stride
                // `len`, inside `acc` (`m * chunk` values); the weights and the
                // input are packed in this kernel's packing `self.packing`,
                // and the scratch space was allocated by this kernel.
                unsafe {
                    let store = self
                        .mmm
                        .c_from_data_and_strides(4, len as isize, 1)
                        .wrap(&acc.view());
                    self.mmm.run_with_scratch_space(
                        m,
                        len,
                        &mut *scratch_space,
                        &[
                            FusedSpec::AddMatMul {
                                a: AsInputValue::Borrowed(&*self.weights),
                                b: AsInputValue::Borrowed(&input),
                                packing: self.packing,
                            },
                            FusedSpec::BinPerRow(bias.view(), BinOp::Add),
                            FusedSpec::Store(store),
                        ],
                    )?;
                }
                drop(input);
                // The kernel leaves the upper vector state dirty, which would
                // slow the requantization and the next unfold (see
                // `edgewise_graph::simd`).
                clear_upper_vector_state();
                let sums = acc.try_as_plain_ram()?.as_slice::<i32>()?;
                for c in 0..m {
                    emit(c, n0, &sums[c * len..(c + 1) * len]);
                }
            }
            scratch.packed = Some(blob);
            scratch.acc = Some(acc);
            Ok(())
        })
    }
}
