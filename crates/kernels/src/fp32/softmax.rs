//! `AxisSoftmax`: a float softmax over one axis that is not the last, or
//! over short rows of the last.
//!
//! tract's softmax is fast when its axis is the innermost one (one
//! contiguous row per softmax). Otherwise it walks every position of the
//! other axes and runs a 16-element softmax on a strided view: a YOLOv8
//! head's distribution (DFL) softmax, `[1, 4, 16, anchors]` over axis 2,
//! took 10.4 ms of a 137 ms frame for 134,400 values
//! (`docs/benchmarks.md`). Seen as `[outer, len, inner]`, the same softmax
//! is `len` contiguous rows of `inner` values per outer index: the maximum,
//! the exponentials and the sums run along the rows, element by element
//! across `inner`, in loops that vectorize.
//!
//! On the last axis tract pays a fixed cost per row: RetinaFace's class
//! softmax, `[1, 16800, 2]`, took 7 ms of a 31 ms frame. Rows of at most
//! [`SHORT_ROW`] values run here, a row at a time in one loop. Longer rows
//! stay with tract, whose vectorized exponential wins there: YOLO26's
//! attention softmax (rows of 400) took 19.8 ms this way against 4.2.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;

use crate::parallel::{self, ELEMENT_WORK};
use crate::tensor::new_tensor;

/// Rows of the last axis at most this long are worth taking from tract.
pub const SHORT_ROW: usize = 16;

/// A softmax over `axis` of an f32 tensor of a fixed `shape`: `axis` not
/// the last, or the last of at most [`SHORT_ROW`] values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AxisSoftmax {
    /// The input's (and output's) shape.
    pub shape: TVec<usize>,
    /// The softmax axis.
    pub axis: usize,
}

impl AxisSoftmax {
    /// `(outer, len, inner)`: the products of the dims before, at and after
    /// the axis.
    fn split(&self) -> (usize, usize, usize) {
        let outer = self.shape[..self.axis].iter().product();
        let inner = self.shape[self.axis + 1..].iter().product();
        (outer, self.shape[self.axis], inner)
    }
}

/// One outer index: `xs` and `ys` are `len` rows of `inner` values; `max`
/// and `sum` are scratch rows of `inner`.
fn softmax_block(xs: &[f32], ys: &mut [f32], inner: usize, max: &mut [f32], sum: &mut [f32]) {
    max.copy_from_slice(&xs[..inner]);
    for row in xs.chunks_exact(inner).skip(1) {
        for (m, &x) in max.iter_mut().zip(row) {
            *m = m.max(x);
        }
    }
    sum.fill(0.0);
    for (x_row, y_row) in xs.chunks_exact(inner).zip(ys.chunks_exact_mut(inner)) {
        for (((y, &x), &m), s) in y_row.iter_mut().zip(x_row).zip(&*max).zip(sum.iter_mut()) {
            let e = (x - m).exp();
            *y = e;
            *s += e;
        }
    }
    for s in sum.iter_mut() {
        *s = 1.0 / *s;
    }
    for y_row in ys.chunks_exact_mut(inner) {
        for (y, &r) in y_row.iter_mut().zip(&*sum) {
            *y *= r;
        }
    }
}

/// Softmaxes of consecutive rows of `len` values (`inner` is 1).
fn softmax_rows(xs: &[f32], ys: &mut [f32], len: usize) {
    for (x_row, y_row) in xs.chunks_exact(len).zip(ys.chunks_exact_mut(len)) {
        let max = x_row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0;
        for (y, &x) in y_row.iter_mut().zip(x_row) {
            let e = (x - max).exp();
            *y = e;
            sum += e;
        }
        let r = 1.0 / sum;
        for y in y_row.iter_mut() {
            *y *= r;
        }
    }
}

impl Op for AxisSoftmax {
    fn name(&self) -> StaticName {
        "AxisSoftmax".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {} of {:?}", self.axis, self.shape)])
    }

    op_as_typed_op!();
}

impl EvalOp for AxisSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        ensure!(
            input.shape() == &*self.shape,
            "AxisSoftmax built for {:?} got {:?}",
            self.shape,
            input.shape()
        );
        let xs = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let (outer, len, inner) = self.split();
        let block = len * inner;
        // An exponential costs about what a few multiply-accumulates do.
        let parts = parallel::parts(xs.len() * 4 * ELEMENT_WORK, outer);
        let blocks_per_part = outer.div_ceil(parts);
        let output = new_tensor(DatumType::F32, &self.shape, |ys: &mut [f32]| {
            let writer = parallel::DisjointWriter::new(ys);
            parallel::for_each_part(parts, |p| {
                let (start, end) = (p * blocks_per_part, ((p + 1) * blocks_per_part).min(outer));
                if inner == 1 {
                    if start < end {
                        // SAFETY: each part writes its own outer indices.
                        let ys = unsafe { writer.range(start * block, (end - start) * block) };
                        softmax_rows(&xs[start * block..end * block], ys, len);
                    }
                    return Ok(());
                }
                let (mut max, mut sum) = (vec![0f32; inner], vec![0f32; inner]);
                for o in start..end {
                    // SAFETY: each part writes its own outer indices.
                    let ys = unsafe { writer.range(o * block, block) };
                    softmax_block(
                        &xs[o * block..(o + 1) * block],
                        ys,
                        inner,
                        &mut max,
                        &mut sum,
                    );
                }
                Ok(())
            })
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for AxisSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_softmax_written_out() {
        let shape = [2usize, 3, 5, 7];
        let xs: Vec<f32> = (0..210)
            .map(|i| ((i * 37 % 41) as f32 - 20.0) * 0.4)
            .collect();
        // Axis 3 is the last: short rows, a row at a time.
        for axis in 0..4 {
            let op = AxisSoftmax {
                shape: shape.iter().copied().collect(),
                axis,
            };
            let (outer, len, inner) = op.split();

            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(shape)).unwrap();
            let y = model.wire_node("softmax", op, &[x]).unwrap();
            model.select_output_outlets(&y).unwrap();
            let input = Tensor::from_shape(&shape, &xs).unwrap();
            let out = SimplePlan::new(model)
                .unwrap()
                .run(tvec!(input.into_tvalue()))
                .unwrap();
            let ys = out[0]
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            for o in 0..outer {
                for i in 0..inner {
                    let at = |l: usize| o * len * inner + l * inner + i;
                    let max = (0..len).map(|l| xs[at(l)]).fold(f32::MIN, f32::max);
                    let sum: f32 = (0..len).map(|l| (xs[at(l)] - max).exp()).sum();
                    for l in 0..len {
                        let expected = (xs[at(l)] - max).exp() / sum;
                        assert!((ys[at(l)] - expected).abs() < 1e-6, "axis {axis}");
                    }
                }
            }
        }
    }
}
