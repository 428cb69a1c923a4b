//! Operators that only move float values: [`AxisMove`] (a transpose: one
//! axis moved, as `AxisOp::Move`) and [`NearestUpsample2d`] (a nearest,
//! integer-scale `Resize` or `Upsample` of the last two axes).
//!
//! tract runs both on one thread, one element at a time through generic
//! strided indexing: a RetinaNet head's ten `NCHW -> NHWC` transposes and
//! an FPN's two upsamples cost MobileNetV2+FPN+RetinaNet 2.7 ms of 47. Here
//! the transpose goes 64 output rows at a time (each input row gives them
//! four cache lines, and each is written in order), in squares transposed
//! in registers ([`super::transpose`]), the upsample repeats
//! each value along its row and copies whole rows, and the threads split
//! the output.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::change_axes::AxisOp;
use edgewise_graph::tract_onnx::tract_core::ops::nn::resize::{
    Interpolator, NearestUpsample, Resize, is_pixel_replication,
};

use super::transpose::Transposer;
use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

/// Output rows a transpose writes at once: 64 floats, four cache lines,
/// of every input row they read (16, one line, was 10-15% slower on
/// MobileNetV2's RetinaNet head, 720 rows of 1600).
const TILE: usize = 64;

/// A float tensor with one axis moved: `[outer, p, q, inner]` becomes
/// `[outer, q, p, inner]`. Moving axis 1 of NCHW to the end is `p = C`, `q
/// = H * W`, `inner = 1`; moving it back is `p = H * W`, `q = C`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AxisMove {
    /// Product of the axes before both blocks.
    pub outer: usize,
    /// The block that goes second.
    pub p: usize,
    /// The block that goes first.
    pub q: usize,
    /// Product of the axes after both blocks, which move as one.
    pub inner: usize,
    /// The output's shape.
    pub shape: Vec<usize>,
}

impl AxisMove {
    /// `AxisOp::Move(from, to)` on an input of `shape`, if the move changes
    /// the order of the values.
    pub fn of(from: usize, to: usize, shape: &[usize]) -> Option<AxisMove> {
        if from.max(to) >= shape.len() || from == to {
            return None;
        }
        let product = |axes: std::ops::Range<usize>| shape[axes].iter().product::<usize>();
        let (lo, hi) = (from.min(to), from.max(to));
        // Moving `from` right past the axes up to `to` swaps the block
        // `from` with the block after it; moving it left swaps the block
        // `to..from` with `from`.
        let (p, q) = if from < to {
            (shape[from], product(from + 1..to + 1))
        } else {
            (product(to..from), shape[from])
        };
        let op = AxisMove {
            outer: product(0..lo),
            p,
            q,
            inner: product(hi + 1..shape.len()),
            shape: {
                let mut moved = shape.to_vec();
                let axis = moved.remove(from);
                moved.insert(to, axis);
                moved
            },
        };
        (op.p > 1 && op.q > 1).then_some(op)
    }

    /// Output rows `rows` (each `p * inner` values; row `r` is `(o, q)` =
    /// `(r / q, r % q)`) of `x` into `out`.
    fn rows(&self, x: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
        let (p, q, inner) = (self.p, self.q, self.inner);
        let row_len = p * inner;
        let mut r = rows.start;
        while r < rows.end {
            let (o, first_q) = (r / q, r % q);
            // A tile of output rows, within one outer index.
            let n = TILE.min(q - first_q).min(rows.end - r);
            let plane = &x[o * p * q * inner..][..p * q * inner];
            let out = &mut out[(r - rows.start) * row_len..][..n * row_len];
            if inner == 1 {
                // SAFETY: `p` rows of `n <= q - first_q` values from
                // `first_q`, `q` apart, inside `plane`; into `n` rows of
                // `p`, `out`'s; `native` runs on this CPU.
                unsafe {
                    Transposer::native().rect(
                        plane[first_q..].as_ptr(),
                        q,
                        out.as_mut_ptr(),
                        p,
                        p,
                        n,
                    )
                };
            } else {
                for i in 0..n {
                    for j in 0..p {
                        out[(i * p + j) * inner..][..inner]
                            .copy_from_slice(&plane[(j * q + first_q + i) * inner..][..inner]);
                    }
                }
            }
            r += n;
        }
    }
}

impl Op for AxisMove {
    fn name(&self) -> StaticName {
        "AxisMove".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "[{}, {}, {}, {}] -> [{0}, {2}, {1}, {3}]",
            self.outer, self.p, self.q, self.inner
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for AxisMove {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = numbers::<f32>(&inputs[0])?;
        let total = self.outer * self.p * self.q * self.inner;
        if x.len() != total {
            bail!("AxisMove: {} input values for {self:?}", x.len());
        }
        let y = new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
            let rows = self.outer * self.q;
            let row_len = self.p * self.inner;
            let parts = parallel::parts(total * parallel::ELEMENT_WORK, rows);
            let writer = DisjointWriter::new(y);
            parallel::for_each_part(parts, |part| {
                let mine = rows * part / parts..rows * (part + 1) / parts;
                // SAFETY: each part writes its own rows.
                let out = unsafe { writer.range(mine.start * row_len, mine.len() * row_len) };
                self.rows(x, mine, out);
                Ok(())
            })
        })?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for AxisMove {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

/// A nearest upsample of the last two axes by whole factors: every value
/// repeated `scale.1` times along its row, every row `scale.0` times.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NearestUpsample2d {
    /// Planes: the product of the other axes.
    pub planes: usize,
    /// Input height and width.
    pub input: (usize, usize),
    /// Vertical and horizontal factors.
    pub scale: (usize, usize),
    /// The output's shape.
    pub shape: Vec<usize>,
}

impl NearestUpsample2d {
    /// The upsample from `input` to `output` shapes, if only the last two
    /// axes grow, each by a whole factor.
    pub fn of(input: &[usize], output: &[usize]) -> Option<NearestUpsample2d> {
        let rank = input.len();
        if rank < 2 || output.len() != rank || input[..rank - 2] != output[..rank - 2] {
            return None;
        }
        let factor = |a: usize| {
            (input[a] > 0 && output[a].is_multiple_of(input[a])).then(|| output[a] / input[a])
        };
        Some(NearestUpsample2d {
            planes: input[..rank - 2].iter().product(),
            input: (input[rank - 2], input[rank - 1]),
            scale: (factor(rank - 2)?, factor(rank - 1)?),
            shape: output.to_vec(),
        })
    }

    /// One plane.
    fn plane(&self, x: &[f32], out: &mut [f32]) {
        let ((h, w), (sy, sx)) = (self.input, self.scale);
        let out_w = w * sx;
        for (row, out) in x.chunks_exact(w).zip(out.chunks_exact_mut(out_w * sy)) {
            let (first, rest) = out.split_at_mut(out_w);
            for (&v, y) in row.iter().zip(first.chunks_exact_mut(sx)) {
                y.fill(v);
            }
            for copy in rest.chunks_exact_mut(out_w) {
                copy.copy_from_slice(first);
            }
        }
        debug_assert_eq!(x.len(), h * w);
    }
}

impl Op for NearestUpsample2d {
    fn name(&self) -> StaticName {
        "NearestUpsample2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} planes of {}x{}, x{} x{}",
            self.planes, self.input.0, self.input.1, self.scale.0, self.scale.1
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for NearestUpsample2d {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = numbers::<f32>(&inputs[0])?;
        let ((h, w), (sy, sx)) = (self.input, self.scale);
        if x.len() != self.planes * h * w {
            bail!("NearestUpsample2d: {} input values for {self:?}", x.len());
        }
        let out_plane = h * sy * w * sx;
        let y = new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
            let work = self.planes * out_plane * parallel::ELEMENT_WORK;
            let parts = parallel::parts(work, self.planes);
            let writer = DisjointWriter::new(y);
            parallel::for_each_part(parts, |part| {
                for plane in self.planes * part / parts..self.planes * (part + 1) / parts {
                    // SAFETY: each part writes its own planes.
                    let out = unsafe { writer.range(plane * out_plane, out_plane) };
                    self.plane(&x[plane * h * w..][..h * w], out);
                }
                Ok(())
            })
        })?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for NearestUpsample2d {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

/// What [`install_reorders`] replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReordersInstalled {
    /// Float transposes now [`AxisMove`].
    pub axis_moves: usize,
    /// Float nearest upsamples now [`NearestUpsample2d`].
    pub upsamples: usize,
}

/// Replaces every f32 axis move, and every f32 nearest upsample by whole
/// factors of the last two axes (tract's `NearestUpsample`, or a `Resize`
/// whose nearest neighbours are pixel replication), on fixed shapes.
pub fn install_reorders(model: &mut TypedModel) -> TractResult<ReordersInstalled> {
    let mut report = ReordersInstalled::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(&input) = node.inputs.first() else {
            continue;
        };
        let (fact, out_fact) = (model.outlet_fact(input)?, model.outlet_fact(id.into())?);
        let (Some(shape), Some(out_shape)) =
            (fact.shape.as_concrete(), out_fact.shape.as_concrete())
        else {
            continue;
        };
        if fact.datum_type != f32::datum_type() {
            continue;
        }
        let patch = if let Some(&AxisOp::Move(from, to)) = node.op_as::<AxisOp>() {
            let Some(op) = AxisMove::of(from, to, shape) else {
                continue;
            };
            report.axis_moves += 1;
            TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?
        } else if node.op_is::<NearestUpsample>() || replicates(node, shape, out_shape) {
            let Some(op) = NearestUpsample2d::of(shape, out_shape) else {
                continue;
            };
            report.upsamples += 1;
            TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?
        } else {
            continue;
        };
        patch.apply(model)?;
    }
    Ok(report)
}

/// Whether `node` is a nearest `Resize` from `shape` to `out_shape` that
/// repeats each value a whole number of times on every axis, as tract's own
/// rewrite to `NearestUpsample` checks (it needs the scales as a constant;
/// exporters that give the sizes instead leave tract's slow `Resize`).
fn replicates(node: &TypedNode, shape: &[usize], out_shape: &[usize]) -> bool {
    let Some(resize) = node.op_as::<Resize>() else {
        return false;
    };
    matches!(resize.interpolator, Interpolator::Nearest)
        && shape.len() == out_shape.len()
        && shape.iter().zip(out_shape).all(|(&len, &out)| {
            len > 0
                && out.is_multiple_of(len)
                && (out == len || {
                    let scale = out / len;
                    is_pixel_replication(&resize.plan_axis(scale as f32, len, out), scale)
                })
        })
}

#[cfg(test)]
mod tests {
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;

    fn run(op: &impl EvalOp, x: &Tensor) -> Vec<f32> {
        let y = op
            .eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue()))
            .unwrap()
            .remove(0);
        numbers::<f32>(&y).unwrap().to_vec()
    }

    fn tensor(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
        Tensor::from_shape(shape, &x).unwrap()
    }

    #[test]
    fn axis_moves_match_tract_on_one_and_two_threads() {
        let cases: [(&[usize], usize, usize); 6] = [
            (&[1, 45, 13, 17], 1, 3),
            (&[2, 13, 17, 45], 3, 1),
            (&[1, 40, 33], 2, 1),
            (&[3, 4, 5, 6, 7], 1, 3),
            (&[3, 4, 5, 6, 7], 4, 0),
            (&[1, 300, 1100], 1, 2),
        ];
        for (shape, from, to) in cases {
            let x = tensor(shape);
            let expected = x.clone().moved_axis(from, to).unwrap();
            let expected = numbers::<f32>(&expected).unwrap().to_vec();
            let op = AxisMove::of(from, to, shape).unwrap();
            let mut moved = shape.to_vec();
            let axis = moved.remove(from);
            moved.insert(to, axis);
            assert_eq!(op.shape, moved, "{shape:?} {from}->{to}");
            assert_eq!(run(&op, &x), expected, "{shape:?} {from}->{to}");
            let two = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
            assert_eq!(two, expected, "{shape:?} {from}->{to}, two threads");
        }
    }

    #[test]
    fn moves_that_keep_the_order_are_left_alone() {
        // Past an axis of one, or an axis of one moved: the same order.
        assert!(AxisMove::of(1, 2, &[1, 5, 1, 4]).is_none());
        assert!(AxisMove::of(0, 3, &[1, 5, 3, 4]).is_none());
        assert!(AxisMove::of(0, 3, &[2, 5, 3, 4]).is_some());
        // No such axis.
        assert!(AxisMove::of(1, 4, &[1, 5, 3, 4]).is_none());
    }

    #[test]
    fn upsamples_repeat_values_and_rows() {
        for (shape, out) in [
            (vec![1, 3, 4, 5], vec![1, 3, 8, 10]),
            (vec![2, 3, 5], vec![2, 9, 10]),
            (vec![1, 300, 20, 20], vec![1, 300, 40, 40]),
        ] {
            let x = tensor(&shape);
            let op = NearestUpsample2d::of(&shape, &out).unwrap();
            let ((h, w), (sy, sx)) = (op.input, op.scale);
            let xs = numbers::<f32>(&x).unwrap();
            let expected: Vec<f32> = (0..op.planes * h * sy * w * sx)
                .map(|i| {
                    let (plane, rest) = (i / (h * sy * w * sx), i % (h * sy * w * sx));
                    let (y, x) = (rest / (w * sx), rest % (w * sx));
                    xs[plane * h * w + (y / sy) * w + x / sx]
                })
                .collect();
            assert_eq!(run(&op, &x), expected, "{shape:?} -> {out:?}");
            let two = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
            assert_eq!(two, expected, "{shape:?} -> {out:?}, two threads");
        }
        assert!(NearestUpsample2d::of(&[1, 3, 4, 5], &[1, 6, 8, 10]).is_none());
        assert!(NearestUpsample2d::of(&[1, 3, 4, 5], &[1, 3, 6, 10]).is_none());
    }
}
