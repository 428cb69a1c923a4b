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
//!
//! A quantize/dequantize pair inside the graph is element-wise too (a
//! rounding): onnxruntime's quantizer writes a hard-swish as
//! `Mul(x, Q -> DQ(HardSigmoid(x)))`, and the whole of it folds into one
//! table, from the outermost quantize inwards.

use std::collections::HashSet;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::binary::TypedBinOp;
use edgewise_graph::tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use edgewise_graph::tract_onnx::tract_core::ops::quant::LookupTable;

use super::conv::{Int8Conv, OutputTable};
use super::quantize::{Dequantize, Quantize};
use crate::parallel;
use crate::tensor::{new_tensor, numbers};

/// int8 to int8 through a table: `y = table[x as u8]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lut {
    pub table: [u8; 256],
    /// I8 or U8, maybe with quantization parameters.
    pub output_dt: DatumType,
}

/// Replaces every [`Quantize`] whose input depends, through element-wise
/// nodes and scalar constants only, on one int8 tensor, by a [`Lut`]
/// reading that tensor, then removes the tables (ours or tract's) that map
/// every value to itself. Returns how many tables it made, and how many
/// identities it removed.
pub(crate) fn fold_into_tables(model: &mut TypedModel) -> TractResult<(usize, usize)> {
    // The last first: a graph folded whole takes its inner pairs with it.
    let mut quantizers: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|&id| model.node(id).op_is::<Quantize>())
        .collect();
    quantizers.reverse();
    let mut folded = 0;
    for q in quantizers {
        // A quantize inside a graph folded before is no longer computed.
        if !model.eval_order()?.contains(&q) {
            continue;
        }
        let Some((source, cone)) = cone_of(model, q)? else {
            continue;
        };
        let table = tabulate(model, source, &cone, q)?;
        let output_dt = model.outlet_fact(OutletId::new(q, 0))?.datum_type;
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, source)?;

        let name = format!("{}.lut", model.node(q).name);
        let y = patch.wire_node(name, Lut { table, output_dt }, &[x])?[0];
        patch.shunt_outside(model, OutletId::new(q, 0), y)?;
        patch.apply(model)?;
        folded += 1;
    }
    Ok((folded, remove_identities(model)?))
}

/// Removes the tables whose output is their input: ours, and tract's
/// `LookupTable`, which tract makes of a dequantize and a quantize with the
/// same parameters once it has moved the reshapes between them (a
/// `DepthToSpace`) to the int8 side.
fn remove_identities(model: &mut TypedModel) -> TractResult<usize> {
    let identity = |table: &[u8]| {
        table.len() == 256 && table.iter().enumerate().all(|(i, &v)| usize::from(v) == i)
    };
    let mut removed = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let table = if let Some(lut) = node.op_as::<Lut>() {
            identity(&lut.table)
        } else if let Some(ew) = node.op_as::<ElementWiseOp>() {
            ew.0.downcast_ref::<LookupTable>()
                .is_some_and(|l| identity(l.table.table()))
        } else {
            false
        };
        if !table {
            continue;
        }
        let (input, output) = (node.inputs[0], OutletId::new(id, 0));
        let same_type = model.outlet_fact(input)?.datum_type.unquantized()
            == model.outlet_fact(output)?.datum_type.unquantized();
        if !same_type || model.output_outlets()?.contains(&output) {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, input)?;
        patch.shunt_outside(model, output, x)?;
        patch.apply(model)?;
        removed += 1;
    }
    Ok(removed)
}

/// The table of `node`, ours or tract's `LookupTable`, if it is one.
fn table_of(node: &TypedNode) -> Option<[u8; 256]> {
    if let Some(lut) = node.op_as::<Lut>() {
        return Some(lut.table);
    }
    let lookup = node
        .op_as::<ElementWiseOp>()?
        .0
        .downcast_ref::<LookupTable>()?;
    lookup.table.table().try_into().ok()
}

/// Folds every table whose input is an [`Int8Conv`]'s output, read by
/// nothing else, into that convolution ([`Int8Conv::table`]): the SiLU of
/// YOLOX and the hard-swish of PP-OCRv4 no longer take a pass of their own
/// over each feature map. Returns how many it folded.
pub(crate) fn fold_into_convs(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(bytes) = table_of(node) else {
            continue;
        };
        let (input, output) = (node.inputs[0], OutletId::new(id, 0));
        let Some(conv) = model.node(input.node).op_as::<Int8Conv>() else {
            continue;
        };

        if model.outlet_successors(input).len() != 1 || model.output_outlets()?.contains(&input) {
            continue;
        }
        let output_fact = model.outlet_fact(output)?.clone();
        let mut conv = conv.clone();
        conv.table = Some(match conv.table.take() {
            // A table after a table: one table.
            Some(first) => OutputTable {
                bytes: Box::new(first.bytes.map(|b| bytes[usize::from(b)])),
                requantized_dt: first.requantized_dt,
            },
            None => OutputTable {
                bytes: Box::new(bytes),
                requantized_dt: conv.output_dt,
            },
        });
        conv.output_dt = output_fact.datum_type;
        model.node_mut(input.node).op = Box::new(conv);
        model.set_outlet_fact(input, output_fact)?;
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, input)?;
        patch.shunt_outside(model, output, x)?;
        patch.apply(model)?;
        folded += 1;
    }
    Ok(folded)
}

/// Whether `node` computes each output value from the values at the same
/// place in its inputs: then, on one int8 tensor, it is a function of a
/// byte. Binary ops count in float only (an integer one may be a shape
/// computation).
fn element_wise(node: &TypedNode, output: DatumType) -> bool {
    node.op_is::<ElementWiseOp>()
        || node.op_is::<Quantize>()
        || node.op_is::<Dequantize>()
        || node.op_is::<Lut>()
        || (node.op_is::<TypedBinOp>() && output == DatumType::F32)
}

fn is_int8(dt: DatumType) -> bool {
    matches!(dt.unquantized(), DatumType::I8 | DatumType::U8)
}

/// The int8 tensor quantize node `q` is a function of, and the nodes
/// between them (in evaluation order, `q` last), if there is one. Walking up
/// from `q` through element-wise nodes meets int8 tensors: a convolution's
/// output, and the quantized values inside the graph (a quantize, one of
/// tract's tables). The farthest that `q` depends on alone is the source.
fn cone_of(model: &TypedModel, q: usize) -> TractResult<Option<(OutletId, Vec<usize>)>> {
    let shape = &model.outlet_fact(model.node(q).inputs[0])?.shape;
    let mut candidates: Vec<OutletId> = vec![];
    let mut seen: HashSet<usize> = HashSet::new();
    let mut todo = std::collections::VecDeque::from([q]);
    while let Some(id) = todo.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        for input in &model.node(id).inputs {
            let fact = model.outlet_fact(*input)?;
            if fact.konst.is_some() || &fact.shape != shape {
                continue;
            }
            if is_int8(fact.datum_type) && !candidates.contains(input) {
                candidates.push(*input);
            }
            if element_wise(model.node(input.node), fact.datum_type) {
                todo.push_back(input.node);
            }
        }
    }
    for source in candidates.into_iter().rev() {
        if let Some(cone) = cone_from(model, q, source)? {
            return Ok(Some((source, cone)));
        }
    }
    Ok(None)
}

/// The nodes between `source` and `q`, if `q` depends on nothing else but
/// scalar constants, through element-wise nodes of one shape.
fn cone_from(model: &TypedModel, q: usize, source: OutletId) -> TractResult<Option<Vec<usize>>> {
    let shape = &model.outlet_fact(model.node(q).inputs[0])?.shape;
    let mut reached = false;
    let mut cone: HashSet<usize> = HashSet::new();
    let mut todo = vec![q];
    while let Some(id) = todo.pop() {
        if !cone.insert(id) {
            continue;
        }
        for input in &model.node(id).inputs {
            if *input == source {
                reached = true;
                continue;
            }
            let fact = model.outlet_fact(*input)?;
            if fact.konst.is_some() {
                if fact.shape.volume() != 1.to_dim() {
                    return Ok(None);
                }
                continue;
            }
            let node = model.node(input.node);
            if &fact.shape != shape || !element_wise(node, fact.datum_type) {
                return Ok(None);
            }
            todo.push(node.id);
        }
    }
    if !reached {
        return Ok(None);
    }
    let order: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|id| cone.contains(id))
        .collect();
    Ok(Some(order))
}

/// Runs `cone` (ending with the quantize node `q`) on the 256 values of
/// the int8 tensor `source`, in tract.
fn tabulate(
    model: &TypedModel,
    source: OutletId,
    cone: &[usize],
    q: usize,
) -> TractResult<[u8; 256]> {
    let input_fact = model.outlet_fact(source)?;
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
    wires.insert(source, x);
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
    let mut table = [0u8; 256];
    table.copy_from_slice(&numbers::<u8>(&result)?[..256]);
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
        let xs = numbers::<u8>(input)?;
        let output = new_tensor(self.output_dt, input.shape(), |ys: &mut [u8]| {
            parallel::for_each_chunk(ys, |first, ys| {
                // Copied and looked up a cache-sized piece at a time, so that
                // the lookup reads what the copy just wrote.
                const PIECE: usize = 16 << 10;
                for (i, piece) in ys.chunks_mut(PIECE).enumerate() {
                    let at = first + i * PIECE;
                    piece.copy_from_slice(&xs[at..at + piece.len()]);
                    super::lookup::apply(&self.table, piece);
                }
            })
        })?;
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
    use edgewise_graph::model::AttributeValue;

    use super::super::install::install;
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

    /// onnxruntime's hard-swish: `Mul(x, Q -> DQ(HardSigmoid(x)))` between
    /// two pairs, the inner pair rounding the sigmoid.
    #[test]
    fn a_pair_inside_the_graph_folds_with_it() {
        let mut b = ModelBuilder::new(17);
        let x = b.input("x", &[1, 3, 8, 10]);
        let pair = |b: &mut ModelBuilder, x: &str, scale: f32, zero: i8| {
            let s = b.initializer("s", tensor0(scale));
            let z = b.initializer("z", tensor0(zero));
            let q = b.op("QuantizeLinear", &[x, &s, &z], vec![]);
            b.op("DequantizeLinear", &[&q, &s, &z], vec![])
        };
        let d1 = pair(&mut b, &x, 0.03, -5);
        let sigmoid = b.op(
            "HardSigmoid",
            &[&d1],
            vec![
                ("alpha", AttributeValue::Float(1.0 / 6.0)),
                ("beta", AttributeValue::Float(0.5)),
            ],
        );
        let rounded = pair(&mut b, &sigmoid, 1.0 / 255.0, -128);
        let swish = b.op("Mul", &[&d1, &rounded], vec![]);
        let d2 = pair(&mut b, &swish, 0.02, 9);
        b.output(&d2);
        let model = b.finish();
        let shapes = vec![("x".to_string(), vec![1, 3, 8, 10])];
        let typed = tract_model(&model, &shapes).unwrap().into_typed().unwrap();
        let mut ours = typed.clone();
        let installed = install(&mut ours).unwrap();
        assert_eq!(installed.tables, 1, "{installed:?}");
        let x: Vec<f32> = (0..240).map(|i| (i as f32 - 120.0) * 0.037).collect();
        let x = Tensor::from_shape(&[1, 3, 8, 10], &x).unwrap();
        let run = |m: TypedModel| {
            let plan = m.into_optimized().unwrap();
            let ops: Vec<String> = plan
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            let out = plan
                .into_runnable()
                .unwrap()
                .run(tvec!(x.clone().into()))
                .unwrap();
            (out[0].clone().into_tensor(), ops)
        };
        let (expected, _) = run(typed);
        let (got, ops) = run(ours);
        assert_eq!(got, expected);
        // One quantize (the input's), one table, one dequantize (the output's).
        let count = |name: &str| ops.iter().filter(|o| o.as_str() == name).count();
        assert_eq!(
            (count("Quantize"), count("Lut"), count("Dequantize")),
            (1, 1, 1),
            "{ops:?}"
        );
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
