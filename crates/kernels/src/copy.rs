//! Operators that only move values, split over the plan's threads, for
//! values of 1, 2 or 4 bytes: [`StridedCopy`] for tract's `Downsample` (a
//! `Slice` with a step: the focus stem of YOLOX and YOLOv5 takes every
//! other row and column of the image four ways) and [`Concat`].
//!
//! tract runs both on one thread, the strided one through a generic
//! `ndarray` slice: YOLOX's six focus slices took 0.8 ms at one thread and
//! at two, its concatenations 0.7 ms (`docs/benchmarks.md`).

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::Downsample;
use edgewise_graph::tract_onnx::tract_core::ops::array::TypedConcat;

use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

/// Outputs below which tract's own copy is left in place.
const MIN_VALUES: usize = 1 << 14;

/// Every `stride`-th index from `modulo` along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StridedCopy {
    /// The input's shape.
    pub input: Vec<usize>,
    /// The axis.
    pub axis: usize,
    /// The step, at least 1.
    pub stride: usize,
    /// The first index taken.
    pub modulo: usize,
}

impl StridedCopy {
    fn output_shape(&self) -> Vec<usize> {
        let mut shape = self.input.clone();
        shape[self.axis] = (self.input[self.axis] - self.modulo).div_ceil(self.stride);
        shape
    }

    fn run<T: Copy + Send + Sync>(&self, xs: &[T], ys: &mut [T]) -> TractResult<()> {
        let outer: usize = self.input[..self.axis].iter().product();
        let inner: usize = self.input[self.axis + 1..].iter().product();
        let (len_in, len_out) = (self.input[self.axis], self.output_shape()[self.axis]);
        let (s, m) = (self.stride, self.modulo);
        // Along the last axis a row is gathered value by value; along any
        // other, each taken index is a run of `inner` values.
        let (units, unit_len) = if inner == 1 {
            (outer, len_out)
        } else {
            (outer * len_out, inner)
        };
        let parts = parallel::parts(ys.len() * parallel::ELEMENT_WORK, units);
        let writer = DisjointWriter::new(ys);
        parallel::for_each_part(parts, |p| {
            for u in (units * p / parts)..(units * (p + 1) / parts) {
                // SAFETY: each part writes its own units.
                let out = unsafe { writer.range(u * unit_len, unit_len) };
                if inner == 1 {
                    let row = &xs[u * len_in..(u + 1) * len_in];
                    for (y, &x) in out.iter_mut().zip(row[m..].iter().step_by(s)) {
                        *y = x;
                    }
                } else {
                    let (o, i) = (u / len_out, u % len_out);
                    let start = (o * len_in + i * s + m) * inner;
                    out.copy_from_slice(&xs[start..start + inner]);
                }
            }
            Ok(())
        })
    }
}

impl Op for StridedCopy {
    fn name(&self) -> StaticName {
        "StridedCopy".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "axis {}, every {} from {}",
            self.axis, self.stride, self.modulo
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for StridedCopy {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        if x.shape() != &self.input[..] {
            bail!("StridedCopy: input of shape {:?} for {self:?}", x.shape());
        }
        let dt = x.datum_type();
        let shape = self.output_shape();
        let y = match dt.size_of() {
            1 => new_tensor(dt, &shape, |ys| self.run(numbers::<u8>(x)?, ys))?,
            2 => new_tensor(dt, &shape, |ys| self.run(numbers::<u16>(x)?, ys))?,
            4 => new_tensor(dt, &shape, |ys| self.run(numbers::<u32>(x)?, ys))?,
            size => bail!("StridedCopy takes 1, 2 or 4-byte values, not {size}"),
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for StridedCopy {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(self.output_shape())))
    }

    as_op!();
}

/// Tensors of fixed shapes joined along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Concat {
    /// The axis.
    pub axis: usize,
    /// Each input's shape.
    pub inputs: Vec<Vec<usize>>,
}

impl Concat {
    fn output_shape(&self) -> Vec<usize> {
        let mut shape = self.inputs[0].clone();
        shape[self.axis] = self.inputs.iter().map(|s| s[self.axis]).sum();
        shape
    }

    /// The output values `start..start + out.len()`.
    fn run<T: Copy>(&self, xs: &[&[T]], start: usize, out: &mut [T]) {
        let inner: usize = self.inputs[0][self.axis + 1..].iter().product();
        let blocks: Vec<usize> = self.inputs.iter().map(|s| s[self.axis] * inner).collect();
        let row: usize = blocks.iter().sum();
        let mut at = start;
        let end = start + out.len();
        while at < end {
            let (o, mut col) = (at / row, at % row);
            // The input whose block holds column `col` of row `o`.
            let mut i = 0;
            while col >= blocks[i] {
                col -= blocks[i];
                i += 1;
            }
            let len = (blocks[i] - col).min(end - at);
            let src = &xs[i][o * blocks[i] + col..][..len];
            out[at - start..at - start + len].copy_from_slice(src);
            at += len;
        }
    }

    fn eval_typed<T: Datum + Copy + Send + Sync>(
        &self,
        inputs: &TVec<TValue>,
        dt: DatumType,
    ) -> TractResult<Tensor> {
        let xs = inputs
            .iter()
            .map(|x| numbers::<T>(x))
            .collect::<TractResult<Vec<_>>>()?;
        new_tensor(dt, &self.output_shape(), |ys: &mut [T]| {
            let total = ys.len();
            // Equal shares of the output, cut anywhere: a concatenation of
            // two large inputs splits inside each.
            let parts = parallel::parts(total * parallel::ELEMENT_WORK, total.div_ceil(64));
            let writer = DisjointWriter::new(ys);
            parallel::for_each_part(parts, |p| {
                let (a, b) = (total * p / parts, total * (p + 1) / parts);
                // SAFETY: each part writes its own share.
                self.run(&xs, a, unsafe { writer.range(a, b - a) });
                Ok(())
            })
        })
    }
}

impl Op for Concat {
    fn name(&self) -> StaticName {
        "Concat".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} inputs, axis {}",
            self.inputs.len(),
            self.axis
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Concat {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if inputs.len() != self.inputs.len()
            || inputs
                .iter()
                .zip(&self.inputs)
                .any(|(x, s)| x.shape() != &s[..])
        {
            bail!("Concat: inputs of other shapes than {:?}", self.inputs);
        }
        let dt = inputs[0].datum_type();
        let y = match dt.size_of() {
            1 => self.eval_typed::<u8>(&inputs, dt)?,
            2 => self.eval_typed::<u16>(&inputs, dt)?,
            4 => self.eval_typed::<u32>(&inputs, dt)?,
            size => bail!("Concat takes 1, 2 or 4-byte values, not {size}"),
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for Concat {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(self.output_shape())))
    }

    as_op!();
}

/// What [`install_copies`] replaced.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CopiesInstalled {
    /// tract's `Downsample`s now [`StridedCopy`].
    pub strided: usize,
    /// tract's concatenations now [`Concat`].
    pub concats: usize,
}

/// Replaces tract's `Downsample` (positive step) and `TypedConcat` on fixed
/// shapes of 1, 2 or 4-byte values, with at least [`MIN_VALUES`] outputs,
/// by [`StridedCopy`] and [`Concat`].
pub fn install_copies(model: &mut TypedModel) -> TractResult<CopiesInstalled> {
    let mut report = CopiesInstalled::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        let facts = node
            .inputs
            .iter()
            .map(|&i| model.outlet_fact(i))
            .collect::<TractResult<Vec<_>>>()?;
        let Some(shapes) = facts
            .iter()
            .map(|f| f.shape.as_concrete().map(|s| s.to_vec()))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let dt = match facts.first() {
            Some(f) if f.datum_type.is_number() && matches!(f.datum_type.size_of(), 1 | 2 | 4) => {
                f.datum_type
            }
            _ => continue,
        };
        if facts.iter().any(|f| f.datum_type != dt) {
            continue;
        }
        let op: Box<dyn TypedOp> = if let Some(down) = node.op_as::<Downsample>() {
            let shape = &shapes[0];
            if down.stride < 1 || down.axis >= shape.len() || down.modulo >= shape[down.axis] {
                continue;
            }
            let op = StridedCopy {
                input: shape.clone(),
                axis: down.axis,
                stride: down.stride as usize,
                modulo: down.modulo,
            };
            if op.output_shape().iter().product::<usize>() < MIN_VALUES {
                continue;
            }
            report.strided += 1;
            Box::new(op)
        } else if let Some(concat) = node.op_as::<TypedConcat>() {
            let axis = concat.axis;
            let same_rank = shapes
                .iter()
                .all(|s| s.len() == shapes[0].len() && axis < s.len());
            let others_agree = same_rank
                && shapes.iter().all(|s| {
                    s.iter()
                        .zip(&shapes[0])
                        .enumerate()
                        .all(|(d, (a, b))| d == axis || a == b)
                });
            if shapes.is_empty() || !others_agree {
                continue;
            }
            let op = Concat {
                axis,
                inputs: shapes,
            };
            if op.output_shape().iter().product::<usize>() < MIN_VALUES {
                continue;
            }
            report.concats += 1;
            Box::new(op)
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
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;

    fn run(op: &dyn EvalOp, inputs: TVec<TValue>, threads: usize) -> Tensor {
        multithread_tract_scope(Executor::multithread(threads), || {
            op.eval(&EvalContext::out_of_plan(), inputs)
        })
        .unwrap()
        .remove(0)
        .into_tensor()
    }

    /// Against tract's own `Downsample`, on every axis, both byte sizes,
    /// one and two threads.
    #[test]
    fn strided_copies_match_tract() {
        let shape = [2usize, 3, 260, 517];
        let len: usize = shape.iter().product();
        let x =
            Tensor::from_shape(&shape, &(0..len).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        let x8 = Tensor::from_shape(
            &shape,
            &(0..len).map(|i| (i % 251) as i8).collect::<Vec<_>>(),
        )
        .unwrap();
        for x in [x, x8] {
            for (axis, stride, modulo) in [
                (3, 2, 0),
                (3, 2, 1),
                (2, 2, 1),
                (2, 3, 2),
                (1, 2, 1),
                (0, 1, 1),
            ] {
                let theirs = Downsample {
                    axis,
                    stride: stride as isize,
                    modulo,
                };
                let expected = theirs
                    .eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue()))
                    .unwrap()
                    .remove(0)
                    .into_tensor();
                let ours = StridedCopy {
                    input: shape.to_vec(),
                    axis,
                    stride,
                    modulo,
                };
                for threads in [1, 2] {
                    let got = run(&ours, tvec!(x.clone().into_tvalue()), threads);
                    assert_eq!(got, expected, "axis {axis} stride {stride} modulo {modulo}");
                }
            }
        }
    }

    /// Against tract's own concatenation, on the channel axis and the last,
    /// one and two threads.
    #[test]
    fn concatenations_match_tract() {
        for axis in [1, 3] {
            let shapes: Vec<Vec<usize>> = [5usize, 1, 12]
                .iter()
                .map(|&n| {
                    let mut s = vec![2, 7, 90, 83];
                    s[axis] = n;
                    s
                })
                .collect();
            let inputs: TVec<TValue> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let len: usize = s.iter().product();
                    let v: Vec<f32> = (0..len).map(|i| (i * 3 + k * 1000) as f32).collect();
                    Tensor::from_shape(s, &v).unwrap().into_tvalue()
                })
                .collect();
            let expected = TypedConcat { axis }
                .eval(&EvalContext::out_of_plan(), inputs.clone())
                .unwrap()
                .remove(0)
                .into_tensor();
            let ours = Concat {
                axis,
                inputs: shapes.clone(),
            };
            for threads in [1, 2] {
                assert_eq!(run(&ours, inputs.clone(), threads), expected, "axis {axis}");
            }
        }
    }
}
