//! Float element-wise operators split over the threads the plan gives:
//! [`Binary`] (`Add`, `Sub`, `Mul`, `Div`, `Max`, `Min`, with the
//! broadcasts detectors use: same shape, per channel, scalar) and
//! [`Unary`] (an [`Activation`] on its own: a SiLU after a dequantize, a
//! sigmoid on a head's output).
//!
//! tract runs these on one thread whatever the plan's executor: in an INT8
//! model of PP-OCRv4 det the float residual `Add` and squeeze-excitation
//! `Mul` of the neck (2.4 M values each) took 4.6 ms and did not get faster
//! with a second thread (`docs/benchmarks.md`). Small tensors stay with
//! tract: below [`MIN_VALUES`] a hand-off costs more than it saves.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::binary::TypedBinOp;
use edgewise_graph::tract_onnx::tract_core::ops::cnn::{Conv, Deconv};
use edgewise_graph::tract_onnx::tract_core::ops::einsum::EinSum;
use edgewise_graph::tract_onnx::tract_core::ops::element_wise::ElementWiseOp;

use super::activation::{Activation, Rows};
use super::conv::TileKernel;
use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

/// Values below which an element-wise node is left to tract.
pub const MIN_VALUES: usize = 1 << 16;

/// Values one step of a part processes: a chunk that stays in the first
/// level cache between the copy and the activation of [`Unary`].
const STEP: usize = 4096;

/// A binary float operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryKind {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// The larger (`Max`, `Relu` against a zero).
    Max,
    /// The smaller.
    Min,
}

impl BinaryKind {
    /// The kind of tract's binary mini-op named `name`.
    fn of(name: &str) -> Option<BinaryKind> {
        Some(match name {
            "Add" => BinaryKind::Add,
            "Sub" => BinaryKind::Sub,
            "Mul" => BinaryKind::Mul,
            "Div" => BinaryKind::Div,
            "Max" => BinaryKind::Max,
            "Min" => BinaryKind::Min,
            _ => return None,
        })
    }
}

/// How one operand of a [`Binary`] is read: the output is `outer` rows of
/// `inner` values, and each operand's row `i` starts at `rows[i]` and is
/// either `inner` consecutive values or one value repeated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operand {
    rows: Vec<usize>,
    splat: bool,
}

/// A binary float operation over operands broadcast to one shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binary {
    /// The operation.
    pub kind: BinaryKind,
    /// The output's shape.
    pub shape: Vec<usize>,
    inner: usize,
    a: Operand,
    b: Operand,
}

impl Binary {
    /// The operation on operands of shapes `a` and `b` (numpy broadcasting),
    /// if its rows are long enough to pay: each operand must be, over the
    /// output's last axes, either contiguous or one repeated value.
    pub fn new(kind: BinaryKind, a: &[usize], b: &[usize]) -> Option<Binary> {
        let rank = a.len().max(b.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (a, b) = (pad(a), pad(b));
        let shape: Vec<usize> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            })
            .collect::<Option<_>>()?;
        // Each operand's stride per output axis: 0 where it is broadcast.
        let strides = |s: &[usize]| {
            let mut strides = vec![0; rank];
            let mut step = 1;
            for d in (0..rank).rev() {
                strides[d] = if s[d] == 1 { 0 } else { step };
                step *= s[d];
            }
            strides
        };
        let (sa, sb) = (strides(&a), strides(&b));
        // The longest run of last axes over which each operand is either
        // contiguous (strides of the output's own) or constant.
        let mut split = rank;
        let mut step = 1;
        let (mut a_splat, mut b_splat) = (None, None);
        while split > 0 {
            let d = split - 1;
            if shape[d] == 1 {
                split -= 1;
                continue;
            }
            let fits = |stride: usize, splat: &mut Option<bool>| {
                let this = stride == 0;
                if this || stride == step {
                    *splat.get_or_insert(this) == this
                } else {
                    false
                }
            };
            if !(fits(sa[d], &mut a_splat) && fits(sb[d], &mut b_splat)) {
                break;
            }
            step *= shape[d];
            split -= 1;
        }
        let inner = step;
        if inner < 16 {
            return None;
        }
        let outer: usize = shape[..split].iter().product();
        let rows = |strides: &[usize]| -> Vec<usize> {
            (0..outer)
                .map(|mut i| {
                    let mut at = 0;
                    for d in (0..split).rev() {
                        at += (i % shape[d]) * strides[d];
                        i /= shape[d];
                    }
                    at
                })
                .collect()
        };
        Some(Binary {
            kind,
            inner,
            a: Operand {
                rows: rows(&sa),
                splat: a_splat.unwrap_or(true),
            },
            b: Operand {
                rows: rows(&sb),
                splat: b_splat.unwrap_or(true),
            },
            shape,
        })
    }

    /// Output values `start..start + out.len()` into `out`. An operand
    /// that is `None` is `out` itself (evaluated in place).
    fn run(&self, a: Option<&[f32]>, b: Option<&[f32]>, start: usize, out: &mut [f32]) {
        let mut done = 0;
        while done < out.len() {
            let at = start + done;
            let (row, col) = (at / self.inner, at % self.inner);
            let len = (self.inner - col).min(out.len() - done);
            fn side<'x>(
                op: &Operand,
                x: Option<&'x [f32]>,
                row: usize,
                col: usize,
                len: usize,
            ) -> Src<'x> {
                match x {
                    None => Src::Dst,
                    Some(x) if op.splat => Src::Splat(x[op.rows[row]]),
                    Some(x) => {
                        let first = op.rows[row] + col;
                        Src::Run(&x[first..first + len])
                    }
                }
            }
            rows_of(
                self.kind,
                side(&self.a, a, row, col, len),
                side(&self.b, b, row, col, len),
                &mut out[done..done + len],
            );
            done += len;
        }
    }

    /// Whether `value` can be the output, overwritten in place: a whole
    /// operand no other node reads.
    fn reusable(&self, op: &Operand, value: &TValue) -> bool {
        !op.splat && value.is_exclusive() && value.shape() == &self.shape[..]
    }
}

/// Where an operand's values for a stretch of output come from.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// Consecutive values.
    Run(&'a [f32]),
    /// One value for all.
    Splat(f32),
    /// The output itself, before it is overwritten.
    Dst,
}

/// `dst[i] = a[i] op b[i]`; compiled for the CPU's widest vectors.
fn rows_of(kind: BinaryKind, a: Src, b: Src, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { rows_avx512(kind, a, b, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { rows_avx2(kind, a, b, dst) };
    }
    rows_loop(kind, a, b, dst);
}

/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(kind: BinaryKind, a: Src, b: Src, dst: &mut [f32]) {
    rows_loop(kind, a, b, dst);
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(kind: BinaryKind, a: Src, b: Src, dst: &mut [f32]) {
    rows_loop(kind, a, b, dst);
}

#[inline(always)]
fn rows_loop(kind: BinaryKind, a: Src, b: Src, dst: &mut [f32]) {
    // One loop per (kind, operand forms), so each vectorizes.
    macro_rules! each {
        (|$x:ident, $y:ident| $e:expr) => {
            match (a, b) {
                (Src::Run(a), Src::Run(b)) => {
                    for ((d, &$x), &$y) in dst.iter_mut().zip(a).zip(b) {
                        *d = $e;
                    }
                }
                (Src::Run(a), Src::Splat($y)) => {
                    for (d, &$x) in dst.iter_mut().zip(a) {
                        *d = $e;
                    }
                }
                (Src::Splat($x), Src::Run(b)) => {
                    for (d, &$y) in dst.iter_mut().zip(b) {
                        *d = $e;
                    }
                }
                (Src::Splat($x), Src::Splat($y)) => dst.fill($e),
                (Src::Dst, Src::Run(b)) => {
                    for (d, &$y) in dst.iter_mut().zip(b) {
                        let $x = *d;
                        *d = $e;
                    }
                }
                (Src::Dst, Src::Splat($y)) => {
                    for d in dst.iter_mut() {
                        let $x = *d;
                        *d = $e;
                    }
                }
                (Src::Run(a), Src::Dst) => {
                    for (d, &$x) in dst.iter_mut().zip(a) {
                        let $y = *d;
                        *d = $e;
                    }
                }
                (Src::Splat($x), Src::Dst) => {
                    for d in dst.iter_mut() {
                        let $y = *d;
                        *d = $e;
                    }
                }
                (Src::Dst, Src::Dst) => {
                    for d in dst.iter_mut() {
                        let ($x, $y) = (*d, *d);
                        *d = $e;
                    }
                }
            }
        };
    }
    match kind {
        BinaryKind::Add => each!(|x, y| x + y),
        BinaryKind::Sub => each!(|x, y| x - y),
        BinaryKind::Mul => each!(|x, y| x * y),
        BinaryKind::Div => each!(|x, y| x / y),
        // As tract's `Max` and `Min` (`f32::max`, `min`): a NaN gives the
        // other operand. Written as comparisons: `f32::max` in these loops
        // crashed LLVM's instruction selection for AVX2 (rustc 1.95).
        #[allow(clippy::eq_op)]
        BinaryKind::Max => each!(|x, y| if x >= y || y != y { x } else { y }),
        #[allow(clippy::eq_op)]
        BinaryKind::Min => each!(|x, y| if x <= y || y != y { x } else { y }),
    }
}

impl Op for Binary {
    fn name(&self) -> StaticName {
        "Binary".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?}, rows of {}{}{}",
            self.kind,
            self.inner,
            if self.a.splat { ", a broadcast" } else { "" },
            if self.b.splat { ", b broadcast" } else { "" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Binary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let reach = |op: &Operand| {
            let last = op.rows.iter().max().copied().unwrap_or(0);
            last + if op.splat { 1 } else { self.inner }
        };
        if a.len() < reach(&self.a) || b.len() < reach(&self.b) {
            bail!(
                "Binary: operands of {} and {} values for {self:?}",
                a.len(),
                b.len()
            );
        }
        // The output overwrites an operand read by nothing else: a fresh
        // feature map would cost its page faults on every frame.
        let y = if self.reusable(&self.a, &a) {
            let (mut y, b) = (a.into_tensor(), numbers::<f32>(&b)?);
            each_step_in_place(&mut y, 1, |start, out| self.run(None, Some(b), start, out))?;
            y
        } else if self.reusable(&self.b, &b) {
            let (a, mut y) = (numbers::<f32>(&a)?, b.into_tensor());
            each_step_in_place(&mut y, 1, |start, out| self.run(Some(a), None, start, out))?;
            y
        } else {
            let (a, b) = (numbers::<f32>(&a)?, numbers::<f32>(&b)?);
            new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
                for_each_step(y, 1, |start, out| self.run(Some(a), Some(b), start, out))
            })?
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for Binary {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

/// An activation on its own, on every value.
#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    /// What it computes.
    pub activation: Activation,
    /// The loops of this CPU.
    kernel: TileKernel,
    /// The shape, in and out.
    pub shape: Vec<usize>,
}

impl Eq for Unary {}

impl Unary {
    /// The work of one value, in element visits: an exponential and a
    /// reciprocal for the logistic ones (about 20 vector instructions per
    /// vector), so that a SiLU over YOLOX's 52x52 maps splits too.
    fn weight(&self) -> usize {
        match self.activation {
            Activation::Sigmoid | Activation::Silu => 4,
            _ => 1,
        }
    }
}

impl Op for Unary {
    fn name(&self) -> StaticName {
        "Unary".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.activation)])
    }

    op_as_typed_op!();
}

impl EvalOp for Unary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let len: usize = self.shape.iter().product();
        if x.len() != len {
            bail!("Unary: {} values for {self:?}", x.len());
        }
        let finish = |out: &mut [f32]| {
            // SAFETY: one row of `out.len()` values, this call's; the
            // kernel came from `TileKernel::native`.
            unsafe {
                let rows = Rows::in_place(out.as_mut_ptr(), out.len(), out.len());
                (self.kernel.finish)(self.activation, rows, &[0.0], None)
            }
        };
        let y = if x.is_exclusive() {
            let mut y = x.into_tensor();
            each_step_in_place(&mut y, self.weight(), |_, out| finish(out))?;
            y
        } else {
            let x = numbers::<f32>(&x)?;
            new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
                for_each_step(y, self.weight(), |start, out| {
                    out.copy_from_slice(&x[start..start + out.len()]);
                    finish(out);
                })
            })?
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for Unary {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

/// Runs `f(first, values)` over `out` in steps of [`STEP`], the steps split
/// over the plan's threads; `weight` is the work of one value, in element
/// visits.
fn for_each_step(
    out: &mut [f32],
    weight: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> TractResult<()> {
    let total = out.len();
    let steps = total.div_ceil(STEP);
    let parts = parallel::parts(total * weight * parallel::ELEMENT_WORK, steps);
    let writer = DisjointWriter::new(out);
    parallel::for_each_part(parts, |p| {
        for s in (steps * p / parts)..(steps * (p + 1) / parts) {
            let start = s * STEP;
            let len = STEP.min(total - start);
            // SAFETY: each part writes its own steps.
            f(start, unsafe { writer.range(start, len) });
        }
        Ok(())
    })
}

/// [`for_each_step`] over the values of `tensor`, an f32 tensor.
fn each_step_in_place(
    tensor: &mut Tensor,
    weight: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> TractResult<()> {
    let mut view = tensor.try_as_plain_ram_mut()?;
    for_each_step(view.as_slice_mut::<f32>()?, weight, f)
}

/// How many element-wise nodes [`install_elementwise`] replaced.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ElementWiseInstalled {
    /// Binary operations now [`Binary`].
    pub binary: usize,
    /// Activations now [`Unary`].
    pub unary: usize,
}

/// Replaces every f32 binary operation and activation of `model` on at
/// least [`MIN_VALUES`] values of a fixed shape by [`Binary`] and
/// [`Unary`], where the CPU has vector loops for them.
pub fn install_elementwise(model: &mut TypedModel) -> TractResult<ElementWiseInstalled> {
    let mut report = ElementWiseInstalled::default();
    let Some(kernel) = TileKernel::native() else {
        return Ok(report);
    };
    // Element-wise nodes after one of tract's own convolutions,
    // deconvolutions or matrix products (the ones `F32Conv` left, or all
    // with `--float-conv tract`)
    // stay tract's: its optimizer fuses them into the kernel's store, which
    // beats any pass of their own.
    let mut fused_by_tract = std::collections::HashSet::new();
    for id in model.eval_order()? {
        let node = model.node(id);
        let after_tract = node.inputs.iter().any(|i| {
            let producer = model.node(i.node);
            producer.op_is::<Conv>()
                || producer.op_is::<Deconv>()
                || producer.op_is::<EinSum>()
                || fused_by_tract.contains(&i.node)
        });
        // Through reshapes and axis moves too: tract moves a batch norm
        // after a deconvolution's `DepthToSpace` back into the convolution.
        if after_tract && node.op_is::<AxisOp>() {
            fused_by_tract.insert(id);
        }
        if after_tract && (node.op_is::<TypedBinOp>() || node.op_is::<ElementWiseOp>()) {
            fused_by_tract.insert(id);
            continue;
        }
        let output = model.outlet_fact(OutletId::new(id, 0))?;
        let Some(shape) = output.shape.as_concrete().map(|s| s.to_vec()) else {
            continue;
        };
        if output.datum_type != DatumType::F32 || shape.iter().product::<usize>() < MIN_VALUES {
            continue;
        }
        let input_shapes = node
            .inputs
            .iter()
            .map(|&i| {
                let fact = model.outlet_fact(i)?;
                Ok((fact.datum_type == DatumType::F32)
                    .then(|| fact.shape.as_concrete().map(|s| s.to_vec()))
                    .flatten())
            })
            .collect::<TractResult<Vec<_>>>()?;
        let Some(input_shapes) = input_shapes.into_iter().collect::<Option<Vec<_>>>() else {
            continue;
        };
        let op: Box<dyn TypedOp> = if let Some(bin) = node.op_as::<TypedBinOp>() {
            let (Some(kind), [a, b]) = (BinaryKind::of(bin.0.name()), &input_shapes[..]) else {
                continue;
            };
            if bin.1.is_some() {
                continue;
            }
            match Binary::new(kind, a, b) {
                Some(op) if op.shape == shape => {
                    report.binary += 1;
                    Box::new(op)
                }
                _ => continue,
            }
        } else if node.op_is::<ElementWiseOp>() {
            let Some(activation) = super::conv::activation_of(node) else {
                continue;
            };
            report.unary += 1;
            Box::new(Unary {
                activation,
                kernel,
                shape,
            })
        } else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use edgewise_graph::tract_onnx::tract_core::ops::math;
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;

    /// Every broadcast a detector uses, against the arithmetic itself, on
    /// one and two threads.
    #[test]
    fn binary_broadcasts_match_the_definition() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 4, 20, 30], &[1, 4, 20, 30]),
            (&[1, 4, 20, 30], &[1, 4, 1, 1]),
            (&[1, 4, 1, 1], &[1, 4, 20, 30]),
            (&[1, 4, 20, 30], &[]),
            (&[2, 3, 50], &[3, 50]),
            (&[1, 3, 8, 40], &[1, 1, 8, 40]),
            (&[5, 1, 64], &[5, 7, 64]),
        ];
        for &(sa, sb) in cases {
            let a: Vec<f32> = (0..sa.iter().product::<usize>())
                .map(|i| (i % 13) as f32 - 6.5)
                .collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>())
                .map(|i| (i % 7) as f32 * 0.5 + 0.25)
                .collect();
            let ta = Tensor::from_shape(sa, &a).unwrap();
            let tb = Tensor::from_shape(sb, &b).unwrap();
            for kind in [
                BinaryKind::Add,
                BinaryKind::Sub,
                BinaryKind::Mul,
                BinaryKind::Div,
                BinaryKind::Max,
                BinaryKind::Min,
            ] {
                let op = Binary::new(kind, sa, sb).unwrap_or_else(|| panic!("{sa:?} {sb:?}"));
                let expected = {
                    let (x, y) = (
                        ta.to_plain_array_view::<f32>().unwrap(),
                        tb.to_plain_array_view::<f32>().unwrap(),
                    );
                    let shape = op.shape.clone();
                    let x = x.broadcast(shape.clone()).unwrap();
                    let y = y.broadcast(shape).unwrap();
                    let z: Vec<f32> = x
                        .iter()
                        .zip(y.iter())
                        .map(|(&x, &y)| match kind {
                            BinaryKind::Add => x + y,
                            BinaryKind::Sub => x - y,
                            BinaryKind::Mul => x * y,
                            BinaryKind::Div => x / y,
                            BinaryKind::Max => x.max(y),
                            BinaryKind::Min => x.min(y),
                        })
                        .collect();
                    z
                };
                // Operands held elsewhere too (a new output), and operands
                // read by nothing else (overwritten in place).
                for (threads, shared) in [(1, true), (2, true), (1, false), (2, false)] {
                    let (va, vb) = (ta.clone().into_tvalue(), tb.clone().into_tvalue());
                    let held = shared.then(|| (va.clone(), vb.clone()));
                    let pool = Executor::multithread(threads);
                    let got = multithread_tract_scope(pool, || {
                        op.eval(&EvalContext::out_of_plan(), tvec!(va, vb))
                    })
                    .unwrap();
                    let got = numbers::<f32>(&got[0]).unwrap();
                    assert_eq!(
                        got,
                        &expected[..],
                        "{kind:?} {sa:?} {sb:?} {threads} threads, shared {shared}"
                    );
                    drop(held);
                }
            }
        }
    }

    /// `Max` and `Min` give the other operand where one is NaN, as
    /// `f32::max` and `min` (tract's) do.
    #[test]
    fn max_and_min_pass_over_nan() {
        let a: Vec<f32> = (0..32)
            .map(|i| if i % 3 == 0 { f32::NAN } else { i as f32 })
            .collect();
        let b: Vec<f32> = (0..32)
            .map(|i| if i % 5 == 0 { f32::NAN } else { 10.0 })
            .collect();
        for kind in [BinaryKind::Max, BinaryKind::Min] {
            let op = Binary::new(kind, &[32], &[32]).unwrap();
            let out = op
                .eval(
                    &EvalContext::out_of_plan(),
                    tvec!(
                        Tensor::from_shape(&[32], &a).unwrap().into_tvalue(),
                        Tensor::from_shape(&[32], &b).unwrap().into_tvalue()
                    ),
                )
                .unwrap();
            let got = numbers::<f32>(&out[0]).unwrap();
            for ((g, x), y) in got.iter().zip(&a).zip(&b) {
                let e = if kind == BinaryKind::Max {
                    x.max(*y)
                } else {
                    x.min(*y)
                };
                assert!(
                    g == &e || (g.is_nan() && e.is_nan()),
                    "{kind:?} {x} {y}: {g}"
                );
            }
        }
    }

    /// A short row (a broadcast over the last axis) is left to tract.
    #[test]
    fn short_rows_are_refused() {
        assert!(Binary::new(BinaryKind::Add, &[1, 64, 20, 3], &[1, 64, 20, 1]).is_none());
        assert!(Binary::new(BinaryKind::Add, &[4, 5], &[3, 5]).is_none());
    }

    /// tract's own ops on a graph, replaced: the same outputs.
    #[test]
    fn installed_ops_give_tract_outputs() {
        let mut model = TypedModel::default();
        let shape = [1usize, 8, 64, 130];
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let s = model.add_source("s", f32::fact([1usize, 8, 1, 1])).unwrap();
        let silu = model
            .wire_node(
                "silu",
                ElementWiseOp(
                    Box::new(edgewise_graph::tract_onnx::tract_core::ops::nn::Silu {}),
                    None,
                ),
                &[x],
            )
            .unwrap();
        let scaled = model.wire_node("mul", math::mul(), &[silu[0], s]).unwrap();
        let y = model
            .wire_node("add", math::add(), &[scaled[0], x])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        let mut ours = model.clone();
        let report = install_elementwise(&mut ours).unwrap();
        if TileKernel::native().is_none() {
            return;
        }
        assert_eq!(
            report,
            ElementWiseInstalled {
                binary: 2,
                unary: 1
            }
        );
        let len: usize = shape.iter().product();
        let xv: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let inputs = tvec!(
            Tensor::from_shape(&shape, &xv).unwrap().into_tvalue(),
            Tensor::from_shape(
                &[1, 8, 1, 1],
                &[0.5f32, -1.0, 2.0, 0.0, 1.5, -0.25, 3.0, 1.0]
            )
            .unwrap()
            .into_tvalue()
        );
        let run = |m: TypedModel| {
            m.into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap()
                .run(inputs.clone())
                .unwrap()[0]
                .clone()
                .into_tensor()
        };
        let expected = run(model);
        let got = run(ours);
        let (e, g) = (
            numbers::<f32>(&expected).unwrap(),
            numbers::<f32>(&got).unwrap(),
        );
        let worst = e
            .iter()
            .zip(g)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
    }
}
