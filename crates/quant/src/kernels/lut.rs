//! Float element-wise work between a dequantize and a quantize, folded
//! into a 256-entry lookup table.
//!
//! Between two quantized convolutions, a detector often computes an
//! element-wise function in float: PP-OCRv4 det's backbone dequantizes each
//! convolution's output, applies a learnable affine, a hard-swish (whose
//! input is read twice, so it is a small graph, not a chain) and another
//! affine, and quantizes again: eight full-tensor float passes. Whatever the
//! graph, if every node is element-wise, reads only the one int8 tensor and
//! scalar constants, its result is a function of one byte: tract runs it
//! once on all 256 values and [`Lut`] replaces it by a table lookup. tract
//! folds only single chains of unary ops this way, which misses this shape.
//! The table holds exactly the values the float graph would give.

use std::collections::HashSet;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::binary::TypedBinOp;
use edgewise_graph::tract_onnx::tract_core::ops::element_wise::ElementWiseOp;

use super::quantize::{Dequantize, Quantize};

/// int8 to int8 through a table: `y = table[x as u8]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lut {
    pub table: [u8; 256],
    /// I8 or U8, maybe with quantization parameters.
    pub output_dt: DatumType,
}

/// Replaces every [`Quantize`] whose input depends, through element-wise
/// nodes and scalar constants only, on one [`Dequantize`], by a [`Lut`]
/// reading the dequantize's int8 input. Returns how many it replaced.
pub(crate) fn fold_into_tables(model: &mut TypedModel) -> TractResult<usize> {
    let quantizers: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Quantize>())
        .map(|n| n.id)
        .collect();
    let mut folded = 0;
    for q in quantizers {
        let Some((source, cone)) = cone_of(model, q)? else {
            continue;
        };
        let table = tabulate(model, source, &cone, q)?;
        let output_dt = model.outlet_fact(OutletId::new(q, 0))?.datum_type;
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, model.node(source).inputs[0])?;
        let name = format!("{}.lut", model.node(q).name);
        let y = patch.wire_node(name, Lut { table, output_dt }, &[x])?[0];
        patch.shunt_outside(model, OutletId::new(q, 0), y)?;
        patch.apply(model)?;
        folded += 1;
    }
    Ok(folded)
}

/// The [`Dequantize`] node feeding quantize node `q` and the element-wise
/// nodes between them (in evaluation order, `q` last), if that is all `q`
/// depends on besides scalar constants.
fn cone_of(model: &TypedModel, q: usize) -> TractResult<Option<(usize, Vec<usize>)>> {
    let shape = &model.outlet_fact(model.node(q).inputs[0])?.shape;
    let mut source = None;
    let mut cone: HashSet<usize> = HashSet::new();
    let mut todo = vec![q];
    while let Some(id) = todo.pop() {
        if !cone.insert(id) {
            continue;
        }
        for input in &model.node(id).inputs {
            let fact = model.outlet_fact(*input)?;
            if fact.konst.is_some() {
                if fact.shape.volume() != 1.to_dim() {
                    return Ok(None);
                }
                continue;
            }
            let node = model.node(input.node);
            if &fact.shape != shape {
                return Ok(None);
            }
            if node.op_is::<Dequantize>() {
                if source.replace(node.id).is_some_and(|s| s != node.id) {
                    return Ok(None);
                }
            } else if node.op_is::<TypedBinOp>() || node.op_is::<ElementWiseOp>() {
                if fact.datum_type != DatumType::F32 {
                    return Ok(None);
                }
                todo.push(node.id);
            } else {
                return Ok(None);
            }
        }
    }
    let Some(source) = source else {
        return Ok(None);
    };
    let order: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|id| cone.contains(id))
        .collect();
    Ok(Some((source, order)))
}

/// Runs the dequantize node `source` and `cone` (ending with the quantize
/// node `q`) on the 256 int8 values, in tract.
fn tabulate(model: &TypedModel, source: usize, cone: &[usize], q: usize) -> TractResult<[u8; 256]> {
    let dq = model.node(source);
    let input_fact = model.outlet_fact(dq.inputs[0])?;
    let rank = input_fact.rank();
    let mut shape = vec![1usize; rank];
    shape[rank - 1] = 256;
    let bytes: Vec<u8> = (0..=255).collect();
    let mut values = Tensor::from_shape(&shape, &bytes)?;
    // SAFETY: i8 and u8 (quantized or not) are one byte each, any value valid.
    unsafe { values.set_datum_type(input_fact.datum_type) };

    let mut adhoc = TypedModel::default();
    let x = adhoc.add_source("x", input_fact.datum_type.fact(&shape))?;
    let mut wires: HashMap<OutletId, OutletId> = HashMap::new();
    let dq_out = adhoc.wire_node(&dq.name, dq.op.clone(), &[x])?[0];
    wires.insert(OutletId::new(source, 0), dq_out);
    for &id in cone {
        let node = model.node(id);
        let mut inputs = tvec![];
        for (ix, input) in node.inputs.iter().enumerate() {
            let wire = match wires.get(input) {
                Some(w) => *w,
                None => {
                    let konst = model.outlet_fact(*input)?.konst.clone().with_context(|| {
                        format!("input {ix} of {} is neither folded nor constant", node.name)
                    })?;
                    adhoc.add_const(format!("{}.{ix}", node.name), konst)?
                }
            };
            inputs.push(wire);
        }
        let out = adhoc.wire_node(&node.name, node.op.clone(), &inputs)?[0];
        wires.insert(OutletId::new(id, 0), out);
    }
    let output = wires[&OutletId::new(q, 0)];
    adhoc.select_output_outlets(&[output])?;
    let result = SimplePlan::new(adhoc)?
        .run(tvec!(values.into_tvalue()))?
        .remove(0);
    let out = unsafe { result.try_as_plain_ram()?.as_slice_unchecked::<u8>() };
    let mut table = [0u8; 256];
    table.copy_from_slice(&out[..256]);
    Ok(table)
}

impl Op for Lut {
    fn name(&self) -> StaticName {
        "Lut".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("256-entry table to {:?}", self.output_dt)])
    }

    op_as_typed_op!();
}

impl EvalOp for Lut {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let xs = unsafe { input.try_as_plain_ram()?.as_slice_unchecked::<u8>() };
        let mut output = unsafe { Tensor::uninitialized_dt(self.output_dt, input.shape())? };
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let ys = unsafe { view.as_slice_mut_unchecked::<u8>() };
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = self.table[x as usize];
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Lut {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_dt.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use edgewise_graph::analysis::tract_model;
    use edgewise_graph::builder::ModelBuilder;

    use super::super::install;
    use super::*;

    /// `x -> Q -> DQ -> affine -> hard-swish (its input read twice) ->
    /// affine -> Q -> DQ`, as PP-OCRv4 det's backbone has it between two
    /// convolutions.
    fn model(unsigned: bool) -> edgewise_graph::Model {
        let mut b = ModelBuilder::new(17);
        let x = b.input("x", &[1, 3, 8, 10]);
        let zero = |b: &mut ModelBuilder, z: i32| {
            if unsigned {
                b.initializer("z", tensor0((z + 128) as u8))
            } else {
                b.initializer("z", tensor0(z as i8))
            }
        };
        let s1 = b.initializer("s1", tensor0(0.03f32));
        let z1 = zero(&mut b, -5);
        let q1 = b.op("QuantizeLinear", &[&x, &s1, &z1], vec![]);
        let d1 = b.op("DequantizeLinear", &[&q1, &s1, &z1], vec![]);
        let a = b.initializer("a", tensor0(1.3f32));
        let c = b.initializer("c", tensor0(-0.2f32));
        let scaled = b.op("Mul", &[&a, &d1], vec![]);
        let shifted = b.op("Add", &[&scaled, &c], vec![]);
        let three = b.initializer("three", tensor0(3.0f32));
        let plus3 = b.op("Add", &[&shifted, &three], vec![]);
        let lo = b.initializer("lo", tensor0(0.0f32));
        let hi = b.initializer("hi", tensor0(6.0f32));
        let relu6 = b.op("Clip", &[&plus3, &lo, &hi], vec![]);
        let prod = b.op("Mul", &[&shifted, &relu6], vec![]);
        let six = b.initializer("six", tensor0(6.0f32));
        let swish = b.op("Div", &[&prod, &six], vec![]);
        let s2 = b.initializer("s2", tensor0(0.02f32));
        let z2 = zero(&mut b, 9);
        let q2 = b.op("QuantizeLinear", &[&swish, &s2, &z2], vec![]);
        let d2 = b.op("DequantizeLinear", &[&q2, &s2, &z2], vec![]);
        b.output(&d2);
        b.finish()
    }

    #[test]
    fn element_wise_graph_becomes_an_exact_table() {
        for unsigned in [false, true] {
            let model = model(unsigned);
            let shapes = vec![("x".to_string(), vec![1, 3, 8, 10])];
            let typed = tract_model(&model, &shapes).unwrap().into_typed().unwrap();
            let mut ours = typed.clone();
            let installed = install(&mut ours).unwrap();
            assert_eq!(installed.tables, 1, "{installed:?}");
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().any(|n| n.op_is::<Lut>()));
            let x: Vec<f32> = (0..240).map(|i| (i as f32 - 120.0) * 0.037).collect();
            let x = Tensor::from_shape(&[1, 3, 8, 10], &x).unwrap();
            let run = |m: TypedModel| {
                m.into_optimized()
                    .unwrap()
                    .into_runnable()
                    .unwrap()
                    .run(tvec!(x.clone().into()))
                    .unwrap()[0]
                    .clone()
                    .into_tensor()
            };
            let expected = run(typed);
            let got = run(ours);
            assert_eq!(got, expected, "unsigned {unsigned}");
        }
    }

    #[test]
    fn a_per_channel_constant_keeps_the_graph_in_float() {
        // A per-channel constant makes the graph a function of more than the
        // byte: it must be left alone.
        let mut b = ModelBuilder::new(17);
        let x = b.input("x", &[1, 2, 4, 4]);
        let s = b.initializer("s", tensor0(0.05f32));
        let z = b.initializer("z", tensor0(0i8));
        let q1 = b.op("QuantizeLinear", &[&x, &s, &z], vec![]);
        let d1 = b.op("DequantizeLinear", &[&q1, &s, &z], vec![]);
        let per_channel = b.initializer(
            "k",
            Tensor::from_shape(&[1, 2, 1, 1], &[0.5f32, 2.0]).unwrap(),
        );
        let y = b.op("Mul", &[&d1, &per_channel], vec![]);
        let q2 = b.op("QuantizeLinear", &[&y, &s, &z], vec![]);
        let d2 = b.op("DequantizeLinear", &[&q2, &s, &z], vec![]);
        b.output(&d2);
        let model = b.finish();
        let shapes = vec![("x".to_string(), vec![1, 2, 4, 4])];
        let mut typed = tract_model(&model, &shapes).unwrap().into_typed().unwrap();
        let installed = install(&mut typed).unwrap();
        assert_eq!(installed.tables, 0, "{installed:?}");
    }
}
