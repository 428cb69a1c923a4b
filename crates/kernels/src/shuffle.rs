//! `DepthToSpace` in one pass, on int8, f16 or f32 tensors.
//!
//! tract expands ONNX's `DepthToSpace` into a reshape, two axis moves and a
//! reshape, and runs the moves as a generic six-dimensional copy: 1.9 ms for
//! the 2.4 MB int8 tensor that PP-OCRv4 det's head upsamples once its
//! `ConvTranspose` is a pointwise convolution and a `DepthToSpace`
//! (`edgewise_graph::passes::deconvs_to_convs`), 5.1 ms in f32
//! (`docs/benchmarks.md`). [`PixelShuffle`] writes each output row by
//! interleaving `block` input rows.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;

use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

/// `[n, c * b * b, h, w] -> [n, c, h * b, w * b]` for values of 1, 2 or 4 bytes,
/// input channel `(c * b + dy) * b + dx` going to row offset `dy` and
/// column offset `dx` (ONNX's CRD mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelShuffle {
    /// The block size `b`.
    pub block: usize,
}

/// Replaces each chain of axis ops that tract makes of a CRD
/// `DepthToSpace` on a tensor of 1, 2 or 4-byte values by a
/// [`PixelShuffle`]. Returns how many it replaced.
pub fn install_pixel_shuffles(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some((block, last)) = depth_to_space_chain(model, id)? else {
            continue;
        };
        let node = model.node(id);
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let name = model.node(last).name.clone();
        let y = patch.wire_node(name, PixelShuffle { block }, &[x])?[0];
        patch.shunt_outside(model, OutletId::new(last, 0), y)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// If node `id` starts tract's expansion of a CRD `DepthToSpace` on a
/// rank-4 tensor of 1, 2 or 4-byte values (`Reshape(1, [c*b*b], [c, b, b])`, `Move(3, 5)`,
/// `Move(2, 3)`, `Reshape(2, [h, b, w, b], [h*b, w*b])`, each the only
/// reader of the one before), the block size and the chain's last node.
fn depth_to_space_chain(model: &TypedModel, id: usize) -> TractResult<Option<(usize, usize)>> {
    let node = model.node(id);
    let Some(AxisOp::Reshape(1, from, to)) = node.op_as::<AxisOp>() else {
        return Ok(None);
    };
    let fact = model.outlet_fact(node.inputs[0])?;
    let sized = matches!(fact.datum_type.size_of(), 1 | 2 | 4) && fact.datum_type.is_number();
    if !sized || fact.rank() != 4 || from.len() != 1 || to.len() != 3 {
        return Ok(None);
    }
    let Ok(block) = to[1].to_usize() else {
        return Ok(None);
    };
    if to[2] != to[1] || block < 2 {
        return Ok(None);
    }
    let only_reader = |id: usize| -> Option<&TypedNode> {
        let outputs = model.output_outlets().ok()?;
        let node = model.node(id);
        match node.outputs[0].successors.as_slice() {
            [s] if !outputs.contains(&OutletId::new(id, 0)) => Some(model.node(s.node)),
            _ => None,
        }
    };
    let Some(first_move) = only_reader(id) else {
        return Ok(None);
    };
    if first_move.op_as::<AxisOp>() != Some(&AxisOp::Move(3, 5)) {
        return Ok(None);
    }
    let Some(second_move) = only_reader(first_move.id) else {
        return Ok(None);
    };
    if second_move.op_as::<AxisOp>() != Some(&AxisOp::Move(2, 3)) {
        return Ok(None);
    }
    let Some(last) = only_reader(second_move.id) else {
        return Ok(None);
    };
    let (h, w) = (&fact.shape[2], &fact.shape[3]);
    let b = TDim::from(block);
    let expected = AxisOp::Reshape(
        2,
        tvec![h.clone(), b.clone(), w.clone(), b.clone()],
        tvec![h.clone() * &b, w.clone() * &b],
    );
    if last.op_as::<AxisOp>() != Some(&expected) {
        return Ok(None);
    }
    Ok(Some((block, last.id)))
}

impl Op for PixelShuffle {
    fn name(&self) -> StaticName {
        "PixelShuffle".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("block {}", self.block)])
    }

    op_as_typed_op!();
}

impl EvalOp for PixelShuffle {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let [n, c_in, h, w] = *input.shape() else {
            bail!(
                "PixelShuffle takes a rank-4 tensor, got {:?}",
                input.shape()
            );
        };
        let b = self.block;
        let c = c_in / (b * b);
        let shape = [n, c, h * b, w * b];
        let dt = input.datum_type();
        fn run<T: Datum + Copy + Send + Sync>(
            input: &Tensor,
            dt: DatumType,
            shape: &[usize; 4],
            b: usize,
        ) -> TractResult<Tensor> {
            let [n, c, _, _] = *shape;
            let [_, _, h, w] = *input.shape() else {
                unreachable!("checked rank 4")
            };
            let xs = numbers::<T>(input)?;
            new_tensor(dt, shape, |ys: &mut [T]| shuffle(xs, ys, c * n, b, h, w))
        }
        let output = match dt.size_of() {
            1 => run::<u8>(input, dt, &shape, b)?,
            2 => run::<u16>(input, dt, &shape, b)?,
            4 => run::<u32>(input, dt, &shape, b)?,
            size => bail!("PixelShuffle takes 1, 2 or 4-byte values, not {size}"),
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

/// The loops: `planes` output planes, each of `h * b` rows of `w * b`, the
/// rows split over the plan's threads.
fn shuffle<T: Copy + Send + Sync>(
    xs: &[T],
    ys: &mut [T],
    planes: usize,
    b: usize,
    h: usize,
    w: usize,
) -> TractResult<()> {
    let (plane_in, row_out) = (h * w, w * b);
    let rows = planes * h * b;
    let parts = parallel::parts(rows * row_out * parallel::ELEMENT_WORK, rows);
    let writer = DisjointWriter::new(&mut ys[..rows * row_out]);
    parallel::for_each_part(parts, |part| {
        for r in (rows * part / parts)..(rows * (part + 1) / parts) {
            let (p, oy) = (r / (h * b), r % (h * b));
            // SAFETY: each part writes its own rows.
            let row = unsafe { writer.range(r * row_out, row_out) };
            let inputs = &xs[p * b * b * plane_in..(p + 1) * b * b * plane_in];
            let (y, dy) = (oy / b, oy % b);
            let source = |dx: usize| &inputs[(dy * b + dx) * plane_in + y * w..][..w];
            if b == 2 {
                let (s0, s1) = (source(0), source(1));
                for ((pair, &a), &c) in row.chunks_exact_mut(2).zip(s0).zip(s1) {
                    pair[0] = a;
                    pair[1] = c;
                }
            } else {
                for dx in 0..b {
                    for (o, &v) in row[dx..].iter_mut().step_by(b).zip(source(dx)) {
                        *o = v;
                    }
                }
            }
        }
        Ok(())
    })
}

impl TypedOp for PixelShuffle {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        let b = TDim::from(self.block);
        let shape = tvec![
            s[0].clone(),
            s[1].clone() / (self.block * self.block),
            s[2].clone() * &b,
            s[3].clone() * &b
        ];
        Ok(tvec!(inputs[0].datum_type.fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The op against tract's own expansion of `DepthToSpace`, found and
    /// replaced in a decluttered model, for blocks 2 and 3.
    #[test]
    fn pixel_shuffle_matches_tracts_depth_to_space() {
        let cases = [
            (2usize, [2usize, 12, 3, 5], DatumType::I8),
            (3, [1, 18, 4, 2], DatumType::I8),
            (2, [1, 8, 3, 7], DatumType::F32),
            (2, [1, 4, 2, 3], DatumType::F16),
        ];
        for (block, shape, dt) in cases {
            let mut model = TypedModel::default();
            let x = model.add_source("x", dt.fact(shape)).unwrap();
            let [_, c, h, w] = shape;
            let b = block;
            let ops = [
                AxisOp::Reshape(
                    1,
                    tvec![c.into()],
                    tvec![(c / b / b).into(), b.into(), b.into()],
                ),
                AxisOp::Move(3, 5),
                AxisOp::Move(2, 3),
                AxisOp::Reshape(
                    2,
                    tvec![h.into(), b.into(), w.into(), b.into()],
                    tvec![(h * b).into(), (w * b).into()],
                ),
            ];
            let mut wire = x;
            for (i, op) in ops.into_iter().enumerate() {
                wire = model.wire_node(format!("d2s.{i}"), op, &[wire]).unwrap()[0];
            }
            model.select_output_outlets(&[wire]).unwrap();
            let len: usize = shape.iter().product();
            let values: Vec<i8> = (0..len).map(|i| (i * 7 % 251) as i8).collect();
            let input = Tensor::from_shape(&shape, &values)
                .unwrap()
                .cast_to_dt(dt)
                .unwrap()
                .into_owned();
            let run = |m: TypedModel| {
                m.into_runnable()
                    .unwrap()
                    .run(tvec!(input.clone().into()))
                    .unwrap()[0]
                    .clone()
                    .into_tensor()
            };
            let expected = run(model.clone());
            let mut ours = model;
            assert_eq!(install_pixel_shuffles(&mut ours).unwrap(), 1);
            assert!(ours.nodes().iter().any(|n| n.op_is::<PixelShuffle>()));
            assert!(!ours.nodes().iter().any(|n| n.op_is::<AxisOp>()));
            assert_eq!(run(ours), expected, "block {block}, {dt:?}");
        }
    }

    /// A map large enough to split its rows over two threads: the same
    /// bytes as on one.
    #[test]
    fn two_threads_shuffle_as_one() {
        use tract_linalg::multithread::{Executor, multithread_tract_scope};
        let (planes, b, h, w) = (3, 2, 301, 257);
        let xs: Vec<u8> = (0..planes * b * b * h * w)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let run = || {
            let mut ys = vec![0u8; xs.len()];
            shuffle(&xs, &mut ys, planes, b, h, w).unwrap();
            ys
        };
        let one = run();
        let two = multithread_tract_scope(Executor::multithread(2), run);
        assert_eq!(one, two);
        // Output plane 1, row 3 (input row 1, dy 1), column 5 (input
        // column 2, dx 1): input channel (1 * 2 + 1) * 2 + 1 of plane 1.
        let at = (b * h * b * w) + 3 * (w * b) + 5;
        assert_eq!(one[at], xs[(4 + 3) * h * w + w + 2]);
    }
}
