//! `Int8Conv`: a quantized 2-D convolution (i8 or u8 in, i8 or u8 out,
//! int8 weights per output channel or per tensor, with or without a zero
//! point) with its zero-point corrections folded into the bias and its
//! requantization done in one pass.
//!
//! Dense convolutions run on tract-linalg's i8 x i8 -> i32 kernels (VNNI on
//! x86, SDOT or SMLAL on aarch64), picked through tract's dispatch (AMX
//! passed over, `super::install`), with the weights packed once;
//! depthwise ones on [`super::depthwise`]; dense 3x3 ones of stride 1, on
//! CPUs whose int8 products are i16 pairs, as Winograd F(2x2, 3x3)
//! ([`super::winograd`]).

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;

use super::dense::DenseKernel;
use super::depthwise::{Grid, depthwise_plane};
use super::winograd::Winograd;
use crate::geometry::Geometry;
use crate::parallel::{self, DisjointWriter};
use crate::round::{round_half_even, to_int};
use crate::tensor::{new_tensor, numbers};

/// How the products are computed.
#[derive(Clone, Debug)]
pub(crate) enum Kernel {
    /// One matrix product per image: weights `[out_c, in_c * kh * kw]`
    /// packed once, the input unfolded into `[in_c * kh * kw, out_h * out_w]`.
    Dense(DenseKernel),
    /// A dense 3x3 convolution of stride 1 as Winograd F(2x2, 3x3) on i16
    /// pairs ([`super::winograd`]): the same sums in fewer products.
    Winograd(Box<Winograd>),
    /// One filter per channel, `[channels, kh * kw]`, the weight zero
    /// point taken off; `wide` when one lies outside `-128..=128`. `grid`
    /// lays out each input plane for the taps.
    Depthwise {
        weights: Vec<i16>,
        wide: bool,
        grid: Grid,
    },
}

/// Per-thread buffers of the depthwise loop, reused by every depthwise
/// convolution the thread runs (a fresh allocation per frame costs page
/// faults on planes this large).
#[derive(Default)]
struct DepthwiseScratch {
    padded: Vec<i16>,
    row: Vec<i16>,
    acc: Vec<i32>,
}

thread_local! {
    static DEPTHWISE_SCRATCH: std::cell::RefCell<DepthwiseScratch> = Default::default();
}

/// A quantized convolution tract would run through im2col and separate
/// zero-point and requantization passes.
#[derive(Clone, Debug)]
pub struct Int8Conv {
    pub(crate) geo: Geometry,
    pub(crate) kernel: Kernel,
    /// Bias in i32 at scale `x_scale * w_scale[c]`, less the input zero
    /// point times each filter's sum for dense and Winograd kernels.
    pub(crate) bias: Tensor,
    /// `x_scale * w_scale[c] / y_scale`, per output channel.
    pub(crate) scales: Vec<f32>,
    /// The input zero point, in the i8 domain the kernels read.
    pub(crate) x0: i32,
    /// Dense kernels only: the weights' zero point per output channel, in
    /// the i8 domain, when one is not zero. The matrix kernel computes
    /// `sum(w * (x - x0))`; each output then takes off `w0 * sum(x - x0)`
    /// over its receptive field.
    pub(crate) weight_zero: Option<Vec<i32>>,
    /// The output zero point, in the output's own type.
    pub(crate) y0: i32,
    /// The input arrives as u8 (it is shifted into i8 first).
    pub(crate) input_u8: bool,
    /// The output datum type tract expects (i8 or u8, maybe quantized).
    pub(crate) output_dt: DatumType,
    /// The element-wise function its only reader computed, as a table
    /// applied to each requantized value ([`super::lut::fold_into_convs`]).
    pub(crate) table: Option<OutputTable>,
}

/// A 256-entry table applied to the requantized outputs while they are in
/// cache: a SiLU or hard-swish between two quantized convolutions costs no
/// pass of its own over the feature map.
#[derive(Clone, Debug)]
pub(crate) struct OutputTable {
    /// `output = bytes[requantized as u8]`.
    pub bytes: Box<[u8; 256]>,
    /// The type the requantization produces (i8 or u8, maybe quantized).
    pub requantized_dt: DatumType,
}

impl PartialEq for Int8Conv {
    fn eq(&self, other: &Self) -> bool {
        // Two instances are the same op only if they are the same node's:
        // packed weights have no cheap equality.
        std::ptr::eq(self, other)
    }
}
impl Eq for Int8Conv {}

impl Int8Conv {
    /// The name of the matrix kernel (or of the direct loop) it runs on.
    pub fn kernel_name(&self) -> String {
        match &self.kernel {
            Kernel::Dense(dense) => dense.name().to_string(),
            Kernel::Winograd(winograd) => winograd.name(),
            Kernel::Depthwise { .. } => "edgewise_depthwise_i8".into(),
        }
    }

    /// Whether it runs a depthwise filter.
    pub fn is_depthwise(&self) -> bool {
        matches!(self.kernel, Kernel::Depthwise { .. })
    }

    fn output_shape(&self) -> [usize; 4] {
        let g = &self.geo;
        [g.batch, g.out_c, g.out_h, g.out_w]
    }

    /// One image's input, `[in_c, in_h * in_w]`, as i8.
    fn image_i8<'a>(&self, input: &'a [i8], scratch: &'a mut Vec<i8>) -> &'a [i8] {
        if self.input_u8 {
            scratch.clear();
            // u8 -> i8 with the zero point moved by the same 128.
            scratch.extend(input.iter().map(|&x| (x as u8 ^ 0x80) as i8));
            scratch
        } else {
            input
        }
    }

    /// The requantization's range: of the output type, or of the table's input.
    fn output_range(&self) -> (f32, f32) {
        let dt = self
            .table
            .as_ref()
            .map_or(self.output_dt, |t| t.requantized_dt);
        if dt.unquantized() == DatumType::U8 {
            (0.0, 255.0)
        } else {
            (-128.0, 127.0)
        }
    }

    /// Requantizes `acc` (one channel's row of i32), less `w0 * sums` when
    /// given (the correction for a weight zero point `w0`, `sums` being each
    /// pixel's input sum), into `out`.
    fn requantize<T: Copy>(
        &self,
        acc: &[i32],
        less: Option<(i32, &[i32])>,
        scale: f32,
        out: &mut [T],
        cast: impl Fn(i32) -> T,
    ) {
        let (lo, hi) = self.output_range();
        let step = Requantize {
            scale,
            y0: self.y0 as f32,
            lo,
            hi,
        };
        step.run(acc, less, out, cast);
        if let Some(table) = &self.table {
            assert_eq!(std::mem::size_of::<T>(), 1, "int8 outputs");
            // SAFETY: `T` is one byte (i8 or u8, checked above) and every
            // byte is a valid `T`.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len()) };
            super::lookup::apply(&table.bytes, bytes);
        }
    }

    /// One image. A dense convolution splits its output pixels over the
    /// plan's threads (each part unfolds, packs and multiplies its own
    /// pixels), a Winograd one its blocks of tiles, a depthwise one its
    /// channels; small ones stay on one thread ([`parallel::parts`]).
    fn eval_image<T: Datum + Copy>(
        &self,
        image: &[i8],
        out: &mut [T],
        cast: impl Fn(i32) -> T + Copy + Sync + Send,
    ) -> TractResult<()> {
        let g = &self.geo;
        let n = g.out_h * g.out_w;
        let taps = g.kernel_h * g.kernel_w;
        match &self.kernel {
            Kernel::Dense(dense) => {
                let sums = self
                    .weight_zero
                    .as_ref()
                    .map(|_| window_sums(g, self.x0, image));
                let columns = dense.columns(g);
                let panel = dense.panel_width();
                let parts = parallel::parts(g.out_c * n * g.in_c * taps, columns.div_ceil(panel));
                // Equal shares of whole panels: whole chunks each (3 chunks
                // of a 13x13 map, 2 for one thread and 1 for the other)
                // left one thread idle a third of the time.
                let share = columns.div_ceil(parts).next_multiple_of(panel);
                let writer = DisjointWriter::new(out);
                dense.with_input(g, self.x0 as i8, image, |input| {
                    parallel::for_each_part(parts, |p| {
                        let range = (p * share).min(columns)..((p + 1) * share).min(columns);
                        // A row of shifted sums requantizes whole, in full
                        // vectors, and its output runs are copied out: runs
                        // of a few dozen pixels would spend their time in
                        // the loops' scalar tails.
                        let mut row: Vec<T> = Vec::new();
                        dense.run(
                            g,
                            self.x0 as i8,
                            input,
                            &self.bias,
                            range,
                            |c, acc, runs| {
                                let whole = matches!(runs, [(_, r)] if r.len() == acc.len());
                                if whole || self.weight_zero.is_some() {
                                    for (n0, r) in runs {
                                        // SAFETY: each part runs on its own
                                        // columns, so the parts' pixels of
                                        // channel `c` never overlap.
                                        let out = unsafe { writer.range(c * n + n0, r.len()) };
                                        let less = (self.weight_zero.as_ref())
                                            .zip(sums.as_ref())
                                            .map(|(w0, sums)| (w0[c], &sums[*n0..n0 + r.len()]));
                                        self.requantize(
                                            &acc[r.clone()],
                                            less,
                                            self.scales[c],
                                            out,
                                            cast,
                                        );
                                    }
                                    return;
                                }
                                row.resize(acc.len(), cast(0));
                                self.requantize(acc, None, self.scales[c], &mut row, cast);
                                for (n0, r) in runs {
                                    // SAFETY: as above.
                                    let out = unsafe { writer.range(c * n + n0, r.len()) };
                                    out.copy_from_slice(&row[r.clone()]);
                                }
                            },
                        )
                    })
                })?;
            }
            Kernel::Winograd(winograd) => {
                let bias = self.bias.try_as_plain_ram()?.as_slice::<i32>()?;
                let writer = DisjointWriter::new(out);
                winograd.run(g, image, self.x0 as i8, bias, |c, y, x, sums| {
                    // SAFETY: each block of tiles runs on one part and
                    // writes only its own tiles' pixels.
                    let out = unsafe { writer.range(c * n + y * g.out_w + x, sums.len()) };
                    self.requantize(sums, None, self.scales[c], out, cast);
                })?;
            }
            Kernel::Depthwise {
                weights,
                wide,
                grid,
            } => {
                let bias = self.bias.try_as_plain_ram()?.as_slice::<i32>()?;
                // A depthwise multiply-add costs about what an element
                // visit does, not a matrix kernel's: MobileNetV2's 20x20
                // layers (1.4 M of them, 0.22 ms) stayed on one thread.
                let work = g.out_c * n * taps * parallel::ELEMENT_WORK;
                let parts = parallel::parts(work, g.out_c);
                let planes = g.out_c.div_ceil(parts);
                let plane_len = g.in_h * g.in_w;
                let writer = DisjointWriter::new(out);
                parallel::for_each_part(parts, |p| {
                    DEPTHWISE_SCRATCH.with_borrow_mut(|scratch| {
                        let DepthwiseScratch { padded, row, acc } = scratch;
                        padded.resize(grid.len(g), 0);
                        acc.resize(grid.outputs, 0);
                        for c in (p * planes)..((p + 1) * planes).min(g.out_c) {
                            let plane = &image[c * plane_len..(c + 1) * plane_len];
                            grid.fill(g, plane, self.x0 as i16, padded, row);
                            let w = &weights[c * taps..(c + 1) * taps];
                            depthwise_plane(grid, padded, w, *wide, bias[c], acc);
                            // SAFETY: each part writes its own channels.
                            let out = unsafe { writer.range(c * n, n) };
                            for (row, sums) in
                                out.chunks_exact_mut(g.out_w).zip(acc.chunks(grid.width))
                            {
                                self.requantize(&sums[..g.out_w], None, self.scales[c], row, cast);
                            }
                        }
                    });
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn eval_typed<T: Datum + Copy>(
        &self,
        input: &Tensor,
        cast: impl Fn(i32) -> T + Copy + Sync + Send,
    ) -> TractResult<Tensor> {
        let g = &self.geo;
        let shape = self.output_shape();
        let input = numbers::<i8>(input)?;
        let mut scratch = vec![];
        let in_len = g.in_c * g.in_h * g.in_w;
        let out_len = g.out_c * g.out_h * g.out_w;
        new_tensor(self.output_dt, &shape, |out: &mut [T]| {
            for b in 0..g.batch {
                let image = self.image_i8(&input[b * in_len..(b + 1) * in_len], &mut scratch);
                self.eval_image(image, &mut out[b * out_len..(b + 1) * out_len], cast)?;
            }
            Ok(())
        })
    }
}

impl Op for Int8Conv {
    fn name(&self) -> StaticName {
        "Int8Conv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "{}x{} stride {}x{}, {} -> {} channels, kernel {}{}",
            g.kernel_h,
            g.kernel_w,
            g.stride_h,
            g.stride_w,
            g.in_c,
            g.out_c,
            self.kernel_name(),
            if self.table.is_some() {
                ", then a table"
            } else {
                ""
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Conv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let output = if self.output_dt.unquantized() == DatumType::U8 {
            self.eval_typed::<u8>(input, |v| v as u8)?
        } else {
            self.eval_typed::<i8>(input, |v| v as i8)?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Int8Conv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_dt.fact(self.output_shape())))
    }

    as_op!();
}

/// One channel's requantization: `clamp(round(acc * scale) + y0, lo, hi)`.
#[derive(Clone, Copy)]
struct Requantize {
    scale: f32,
    y0: f32,
    lo: f32,
    hi: f32,
}

impl Requantize {
    /// Requantizes `acc`, less `w0 * sums` when given, into `out`. x86 runs
    /// an AVX-512BW or AVX2 build where the CPU has it (four or two times
    /// the lanes of the baseline's SSE2): this pass touches every output
    /// value.
    fn run<T: Copy>(
        self,
        acc: &[i32],
        less: Option<(i32, &[i32])>,
        out: &mut [T],
        cast: impl Fn(i32) -> T,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW, checked just above.
            unsafe { self.run_avx512(acc, less, out, cast) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { self.run_avx2(acc, less, out, cast) };
            return;
        }
        self.run_loop(acc, less, out, cast);
    }

    /// The portable loop, compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2<T: Copy>(
        self,
        acc: &[i32],
        less: Option<(i32, &[i32])>,
        out: &mut [T],
        cast: impl Fn(i32) -> T,
    ) {
        self.run_loop(acc, less, out, cast);
    }

    /// The portable loop, compiled for AVX-512BW.
    ///
    /// # Safety
    /// The CPU must have AVX-512BW.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512bw")]
    unsafe fn run_avx512<T: Copy>(
        self,
        acc: &[i32],
        less: Option<(i32, &[i32])>,
        out: &mut [T],
        cast: impl Fn(i32) -> T,
    ) {
        self.run_loop(acc, less, out, cast);
    }

    #[inline(always)]
    fn run_loop<T: Copy>(
        self,
        acc: &[i32],
        less: Option<(i32, &[i32])>,
        out: &mut [T],
        cast: impl Fn(i32) -> T,
    ) {
        let Requantize { scale, y0, lo, hi } = self;
        match less {
            None => {
                for (o, &a) in out.iter_mut().zip(acc) {
                    *o = cast(to_int(round_half_even(a as f32 * scale) + y0, lo, hi));
                }
            }
            Some((w0, sums)) => {
                for ((o, &a), &s) in out.iter_mut().zip(acc).zip(sums) {
                    let a = a - w0 * s;
                    *o = cast(to_int(round_half_even(a as f32 * scale) + y0, lo, hi));
                }
            }
        }
    }
}

/// For each output pixel, the sum of `x - x0` over its receptive field
/// and every input channel (the padding, read as `x0`, adds nothing).
fn window_sums(g: &Geometry, x0: i32, image: &[i8]) -> Vec<i32> {
    let plane_len = g.in_h * g.in_w;
    let mut plane = vec![-(g.in_c as i32) * x0; plane_len];
    for channel in image.chunks_exact(plane_len).take(g.in_c) {
        for (p, &x) in plane.iter_mut().zip(channel) {
            *p += i32::from(x);
        }
    }
    let mut sums = vec![0i32; g.out_h * g.out_w];
    let columns = g.valid_columns();
    for ky in 0..g.kernel_h {
        let (oy_lo, oy_hi) = g.valid_rows(ky);
        for oy in oy_lo..oy_hi {
            let iy = oy * g.stride_h + ky * g.dilation_h - g.pad_top;
            let row = &plane[iy * g.in_w..(iy + 1) * g.in_w];
            let out = &mut sums[oy * g.out_w..(oy + 1) * g.out_w];
            for (kx, &(lo, hi)) in columns.iter().enumerate() {
                for (ox, s) in out.iter_mut().enumerate().take(hi).skip(lo) {
                    *s += row[ox * g.stride_w + kx * g.dilation_w - g.pad_left];
                }
            }
        }
    }
    sums
}
