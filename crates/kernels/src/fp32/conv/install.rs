//! The rewrites that put [`F32Conv`] into a typed model, in two steps
//! around tract's decluttering:
//!
//! - [`install_convs`], before it: every dense float convolution with
//!   constant weights becomes an [`F32Conv`], 1x1 ones included (once
//!   decluttered, tract has made those matrix products and split the ones
//!   that read a concatenation in two);
//! - [`fuse_into_convs`], after it: the per-channel scales and offsets (a
//!   batch norm) and the activation that alone read each one fold into it,
//!   in the forms tract's decluttering leaves them (`Silu` found, `Relu` and
//!   `Clip` as `Max` and `Min`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ops::array::Slice;
use edgewise_graph::tract_onnx::tract_core::ops::binary::TypedBinOp;
use edgewise_graph::tract_onnx::tract_core::ops::cnn::Conv;
use edgewise_graph::tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use edgewise_graph::tract_onnx::tract_core::ops::nn::LeakyRelu;

use super::{F32Conv, TileKernel};
use crate::constant::{const_value, constant};
use crate::fp32::activation::Activation;
use crate::geometry::Geometry;

/// What [`install_convs`] and [`fuse_into_convs`] did, and what they left
/// to tract, with why.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ConvsInstalled {
    /// The tile loop they run on (empty when this CPU has none of ours).
    pub kernel: String,
    /// Convolutions with a kernel larger than 1x1, now [`F32Conv`]s.
    pub convs: usize,
    /// 1x1 convolutions, now [`F32Conv`]s.
    pub pointwise: usize,
    /// Depthwise convolutions (one filter per channel), now [`F32Conv`]s.
    pub depthwise: usize,
    /// Per-channel scales and offsets (a batch norm, a bias) folded in.
    pub affine: usize,
    /// Activations folded in.
    pub activations: usize,
    /// Convolutions whose packed weights are another's (the same values,
    /// packed the same way): held once.
    pub shared_weights: usize,
    /// Dense float convolutions left to tract: node and why.
    pub skipped: Vec<(String, String)>,
}

/// Replaces every dense float convolution of `model` (typed, not yet
/// decluttered) with an [`F32Conv`]. Does nothing on a CPU without a tile
/// loop of ours: tract's kernels stay.
pub fn install_convs(model: &mut TypedModel) -> TractResult<ConvsInstalled> {
    let mut report = ConvsInstalled::default();
    let Some(kernel) = TileKernel::native() else {
        return Ok(report);
    };
    report.kernel = kernel.name.into();
    let mut shared = SharedWeights::default();
    let candidates: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_as::<Conv>().is_some_and(|c| c.q_params.is_none()))
        .map(|n| n.id)
        .collect();
    for id in candidates {
        let node = model.node(id);
        let mut op = match conv_op(model, node, kernel) {
            Ok(Some(op)) => op,
            Ok(None) => continue,
            Err(reason) => {
                report.skipped.push((node.name.clone(), reason));
                continue;
            }
        };
        if shared.share(&mut op.weights) {
            report.shared_weights += 1;
        }
        if op.is_depthwise() {
            report.depthwise += 1;
        } else if op.geo.kernel_h * op.geo.kernel_w == 1 {
            report.pointwise += 1;
        } else {
            report.convs += 1;
        }
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
        patch.apply(model)?;
    }
    Ok(report)
}

/// Packed weights installed so far, by content. Detectors whose head is
/// shared across pyramid levels (RetinaNet, FCOS) run one filter bank on
/// five maps: packed once per node, MobileNetV2+RetinaNet's head held five
/// copies, four times that in Winograd's transformed weights.
#[derive(Default)]
struct SharedWeights(HashMap<u64, Vec<Arc<Vec<f32>>>>);

impl SharedWeights {
    /// Points `weights` at an installed copy of the same values, if there
    /// is one (and says so); else records them. Folding a batch norm into
    /// one of the sharers later copies its weights first (`Arc::make_mut`).
    fn share(&mut self, weights: &mut Arc<Vec<f32>>) -> bool {
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for v in weights.iter() {
            v.to_bits().hash(&mut hasher);
        }
        let candidates = self.0.entry(hasher.finish()).or_default();
        if let Some(installed) = candidates.iter().find(|w| same(w, weights)) {
            *weights = installed.clone();
            return true;
        }
        candidates.push(weights.clone());
        false
    }
}

/// The [`F32Conv`] for `node`: `Ok(None)` when it is not a dense float
/// convolution at all (a depthwise one), `Err` when it is one that stays
/// tract's, and why.
fn conv_op(
    model: &TypedModel,
    node: &TypedNode,
    kernel: TileKernel,
) -> Result<Option<F32Conv>, String> {
    let conv = node.op_as::<Conv>().expect("a Conv");
    let fact = |outlet| model.outlet_fact(outlet).map_err(|e| e.to_string());
    let x = fact(node.inputs[0])?;
    let y = fact(OutletId::new(node.id, 0))?;
    if x.datum_type != f32::datum_type() || y.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let channels = conv.pool_spec.input_channels;
    let depthwise = conv.group > 1 && conv.group == channels && conv.output_channels() == channels;
    if conv.group != 1 && !depthwise {
        // Grouped but not depthwise (or with a channel multiplier): tract's.
        return Ok(None);
    }
    let Some(shape) = y.shape.as_concrete().map(<[usize]>::to_vec) else {
        return Err("its output shape is not fixed".into());
    };
    if node.inputs.len() != 3 {
        return Err(format!("{} inputs, not 3", node.inputs.len()));
    }
    let geo = Geometry::of_conv(conv, &x.shape)?;
    let weights = constant::<f32>(model, node, 1)?;
    let bias = match constant::<f32>(model, node, 2)?[..] {
        [] => vec![0.0; geo.out_c],
        [b] => vec![b; geo.out_c],
        ref b if b.len() == geo.out_c => b.to_vec(),
        ref b => return Err(format!("{} biases for {} channels", b.len(), geo.out_c)),
    };
    if depthwise {
        return F32Conv::depthwise(geo, kernel, &weights, bias, Activation::IDENTITY, shape)
            .map(Some);
    }
    let kernel = F32Conv::best_kernel(&geo).unwrap_or(kernel);
    F32Conv::new(geo, kernel, &weights, bias, Activation::IDENTITY, shape).map(Some)
}

/// Folds into every [`F32Conv`] of the decluttered `model` what alone
/// follows it and it can run as it stores: per-channel constant `Add`,
/// `Sub` and `Mul` (batch norms), then one activation; counts them in
/// `report`.
pub fn fuse_into_convs(model: &mut TypedModel, report: &mut ConvsInstalled) -> TractResult<()> {
    let convs: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<F32Conv>())
        .map(|n| n.id)
        .collect();
    for id in convs {
        let node = model.node(id);
        let mut op = node.op_as::<F32Conv>().expect("an F32Conv").clone();
        let mut last = OutletId::new(id, 0);
        loop {
            if let Some((next, folded)) = fold_successor(model, last, &mut op)? {
                match folded {
                    Folded::Affine => report.affine += 1,
                    Folded::Activation => report.activations += 1,
                }
                last = OutletId::new(next, 0);
                continue;
            }
            let chain = if op.activation.is_identity() && !op.has_post_affine() {
                hard_swish_chain(model, last, op.shape())
            } else {
                None
            };
            if let Some((end, activation, factor)) = chain {
                op.activation = activation;
                report.activations += 1;
                if factor != 1.0 {
                    op.fold_post_affine((0..op.geo.out_c).map(|_| (factor, 0.0)));
                }
                last = OutletId::new(end, 0);
                continue;
            }
            break;
        }
        if last.node == id {
            if let Some((activation, pairs)) = sliced_activation(model, last) {
                op.activation = activation;
                report.activations += pairs.len();
                let mut patch = TypedModelPatch::default();
                let x = patch.tap_model(model, node.inputs[0])?;
                let y = patch.wire_node(&node.name, op, &[x])?[0];
                for (slice, activation) in pairs {
                    let slice = model.node(slice);
                    let sliced = patch.wire_node(&slice.name, slice.op.clone(), &[y])?[0];
                    patch.shunt_outside(model, OutletId::new(activation, 0), sliced)?;
                }
                patch.apply(model)?;
            }
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, node.inputs[0])?;
        let y = patch.wire_node(&node.name, op, &[x])?[0];
        patch.shunt_outside(model, last, y)?;
        patch.apply(model)?;
    }
    Ok(())
}

/// The activation an element-wise `node` is, if [`F32Conv`] has it.
pub(crate) fn activation_of(node: &TypedNode) -> Option<Activation> {
    let ew = node.op_as::<ElementWiseOp>()?;
    if ew.1.is_some() {
        return None;
    }
    Some(match ew.0.name().as_ref() {
        "Silu" => Activation::Silu,
        "Sigmoid" => Activation::Sigmoid,
        "HardSwish" => Activation::HardSwish {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        _ => Activation::LeakyRelu {
            alpha: ew.0.downcast_ref::<LeakyRelu>()?.alpha,
        },
    })
}

/// When every reader of `outlet` is a `Slice` read only by one same
/// activation, that activation and the (slice, activation) pairs: tract
/// moves the activation of a split output below its slices (YOLOv8's C2f
/// splits its first convolution's SiLU in two), and an element-wise
/// activation of a slice is the slice of the activation.
fn sliced_activation(
    model: &TypedModel,
    outlet: OutletId,
) -> Option<(Activation, Vec<(usize, usize)>)> {
    if model.outputs.contains(&outlet) {
        return None;
    }
    let mut found: Option<Activation> = None;
    let mut pairs = vec![];
    for reader in model.outlet_successors(outlet) {
        let slice = model.node(reader.node);
        if !slice.op_is::<Slice>() || model.outputs.contains(&OutletId::new(slice.id, 0)) {
            return None;
        }
        let [next] = model.outlet_successors(OutletId::new(slice.id, 0)) else {
            return None;
        };
        let activation = activation_of(model.node(next.node))?;
        if found.is_some_and(|f| f != activation) {
            return None;
        }
        found = Some(activation);
        pairs.push((slice.id, next.node));
    }
    Some((found?, pairs))
}

/// The scalar constant `node` (a binary operator, `op` by name) combines
/// with its input from `from`, if that is what it is.
fn scalar_with(model: &TypedModel, node: &TypedNode, op: &str, from: OutletId) -> Option<f32> {
    let bin = node.op_as::<TypedBinOp>()?;
    if bin.0.name() != op || bin.1.is_some() || node.inputs.len() != 2 {
        return None;
    }
    let slot = node.inputs.iter().position(|&i| i == from)?;
    let value = const_value(model, node.inputs[1 - slot], 2)?;
    if value.len() != 1 {
        return None;
    }
    value.cast_to_scalar::<f32>().ok()
}

/// The one node reading `outlet` (not a model output).
fn sole_reader(model: &TypedModel, outlet: OutletId) -> Option<&TypedNode> {
    if model.outputs.contains(&outlet) {
        return None;
    }
    let [reader] = model.outlet_successors(outlet) else {
        return None;
    };
    Some(model.node(reader.node))
}

/// Hard-swish written out, as Paddle exports it: `c * clip(c + k, 0, hi)
/// * s` (`Add`, `Max`, `Min`, `Mul` by `c`, the scale `s`, `1/hi` or what
/// tract made of it and a following scale, before or after that `Mul`),
/// all on the output `c` of shape `shape`. The last node of the chain, the
/// activation, and the factor `hi * s` left after it.
fn hard_swish_chain(
    model: &TypedModel,
    c: OutletId,
    shape: &[usize],
) -> Option<(usize, Activation, f32)> {
    if model.outputs.contains(&c) {
        return None;
    }
    let readers = model.outlet_successors(c);
    let [a, b] = readers else {
        return None;
    };
    let (a, b) = (model.node(a.node), model.node(b.node));
    let (add, mul) = if scalar_with(model, a, "Add", c).is_some() {
        (a, b)
    } else {
        (b, a)
    };
    let k = scalar_with(model, add, "Add", c)?;
    let max = sole_reader(model, OutletId::new(add.id, 0))?;
    let lo = scalar_with(model, max, "Max", OutletId::new(add.id, 0))?;
    let min = sole_reader(model, OutletId::new(max.id, 0))?;
    let hi = scalar_with(model, min, "Min", OutletId::new(max.id, 0))?;
    let mut gate = OutletId::new(min.id, 0);
    let mut scale = 1.0;
    let mut next = sole_reader(model, gate)?;
    if next.id != mul.id {
        scale *= scalar_with(model, next, "Mul", gate)?;
        gate = OutletId::new(next.id, 0);
        next = sole_reader(model, gate)?;
    }
    // `mul` multiplies `c` by the gate.
    let mul_bin = mul.op_as::<TypedBinOp>()?;
    if next.id != mul.id || mul_bin.0.name() != "Mul" || mul_bin.1.is_some() {
        return None;
    }
    if !(mul.inputs.contains(&c) && mul.inputs.contains(&gate)) {
        return None;
    }
    let mut end = mul.id;
    let after = sole_reader(model, OutletId::new(mul.id, 0));
    if let Some((after, s)) =
        after.and_then(|a| Some((a, scalar_with(model, a, "Mul", OutletId::new(mul.id, 0))?)))
    {
        scale *= s;
        end = after.id;
    }
    let fact = model.outlet_fact(OutletId::new(end, 0)).ok()?;
    if lo != 0.0 || hi <= 0.0 || fact.shape.as_concrete() != Some(shape) {
        return None;
    }
    let activation = Activation::HardSwish {
        alpha: 1.0 / hi,
        beta: k / hi,
    };
    Some((end, activation, hi * scale))
}

/// What [`fold_successor`] folded.
enum Folded {
    Affine,
    Activation,
}

/// Folds into `pending` the node that alone reads `outlet`, when it can:
/// a per-channel (or scalar) constant `Add`, `Sub` or `Mul` before any
/// activation, or an activation (`Max`/`Min` with a scalar, `Sigmoid`,
/// `Silu`, `HardSwish`, `LeakyRelu`). Returns that node.
fn fold_successor(
    model: &TypedModel,
    outlet: OutletId,
    conv: &mut F32Conv,
) -> TractResult<Option<(usize, Folded)>> {
    if model.outputs.contains(&outlet) {
        return Ok(None);
    }
    let [reader] = model.outlet_successors(outlet) else {
        return Ok(None);
    };
    let node = model.node(reader.node);
    let out = model.outlet_fact(OutletId::new(node.id, 0))?;
    if out.datum_type != f32::datum_type() || out.shape.as_concrete() != Some(conv.shape()) {
        return Ok(None);
    }
    let identity = conv.activation.is_identity();
    if node.op_is::<ElementWiseOp>() {
        let Some(activation) = activation_of(node).filter(|_| identity) else {
            return Ok(None);
        };
        conv.activation = activation;
        return Ok(Some((node.id, Folded::Activation)));
    }
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if bin.1.is_some() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let other = node.inputs[1 - reader.slot];
    let Some(value) = const_value(model, other, 2) else {
        return Ok(None);
    };
    let Some(values) = per_channel(&value, conv) else {
        return Ok(None);
    };
    let name = bin.0.name();
    match name {
        "Max" | "Min" if values.len() == 1 && !conv.has_post_affine() => {
            let (lo, hi) = if name == "Max" {
                (values[0], f32::INFINITY)
            } else {
                (f32::NEG_INFINITY, values[0])
            };
            let Some(clamped) = conv.activation.then_clamp(lo, hi) else {
                return Ok(None);
            };
            conv.activation = clamped;
            Ok(Some((node.id, Folded::Activation)))
        }
        // Before the activation, into the weights and bias; after it, a
        // scale and an offset as it stores.
        "Add" | "Sub" | "Mul" => {
            let value = |o: usize| values[if values.len() == 1 { 0 } else { o }];
            // `c - x` is not an affine of the output with a positive sign.
            let Some(per_channel) = (0..conv.geo.out_c)
                .map(|o| match (name, reader.slot) {
                    ("Add", _) => Some((1.0, value(o))),
                    ("Sub", 0) => Some((1.0, -value(o))),
                    ("Mul", _) => Some((value(o), 0.0)),
                    _ => None,
                })
                .collect::<Option<Vec<(f32, f32)>>>()
            else {
                return Ok(None);
            };
            if identity {
                conv.fold_affine(per_channel.into_iter());
            } else {
                conv.fold_post_affine(per_channel.into_iter());
            }
            Ok(Some((node.id, Folded::Affine)))
        }
        _ => Ok(None),
    }
}

/// `value` as one number per output channel of `conv` (or one for all):
/// its shape, aligned right on the output's, is 1 but on the channel axis.
fn per_channel(value: &Tensor, conv: &F32Conv) -> Option<Vec<f32>> {
    let rank = conv.shape().len();
    let channel_axis = rank - 3;
    let shape = value.shape();
    if shape.len() > rank {
        return None;
    }
    let offset = rank - shape.len();
    let fits = shape
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || (i + offset == channel_axis && d == conv.geo.out_c));
    if !fits {
        return None;
    }
    let values = value.cast_to::<f32>().ok()?;
    let values = values
        .try_as_plain_ram()
        .ok()?
        .as_slice::<f32>()
        .ok()?
        .to_vec();
    (values.len() == 1 || values.len() == conv.geo.out_c).then_some(values)
}

#[cfg(test)]
mod tests {
    use edgewise_graph::analysis::tract_model;
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_graph::model::AttributeValue;
    use edgewise_graph::tract_onnx::prelude::tract_itertools::Itertools;
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use crate::fp32::{Installed, install};

    use super::*;

    /// Equal packed weights are held once; weights that differ in one bit
    /// (0.0 and -0.0) or in length are not shared.
    #[test]
    fn equal_packed_weights_are_held_once() {
        let mut shared = SharedWeights::default();
        let first = Arc::new(vec![1.0f32, 0.0, -2.5]);
        let mut a = first.clone();
        assert!(!shared.share(&mut a));
        let mut b = Arc::new(vec![1.0f32, 0.0, -2.5]);
        assert!(shared.share(&mut b));
        assert!(Arc::ptr_eq(&b, &first));
        let mut c = Arc::new(vec![1.0f32, -0.0, -2.5]);
        assert!(!shared.share(&mut c));
        let mut d = Arc::new(vec![1.0f32, 0.0]);
        assert!(!shared.share(&mut d));
        assert!(!Arc::ptr_eq(&c, &first) && !Arc::ptr_eq(&d, &first));
    }

    /// Every pattern the rewrite takes, and two it leaves: a 3x3 convolution
    /// with `Relu`, a strided 5x5 one with `Clip(0, 6)`, a batch norm then
    /// SiLU (`x * sigmoid(x)`), a depthwise convolution, a
    /// pointwise one with `HardSwish`, one with `LeakyRelu`, one with
    /// hard-swish written out and a scalar scale and offset after it, a
    /// dilated one read by two nodes (nothing folds), and one without a
    /// bias.
    fn model(c: usize, h: usize, w: usize) -> edgewise_graph::Model {
        let mut b = ModelBuilder::new(13);
        let x = b.input("x", &[1, c as i64, h as i64, w as i64]);
        let y = b.conv_relu(&x, c, 16, 3, 1);
        let y = b.conv(&y, 16, 24, 5, 2, 1);
        let lo = b.initializer("lo", tensor0(0f32));
        let hi = b.initializer("hi", tensor0(6f32));
        let y = b.op("Clip", &[&y, &lo, &hi], vec![]);
        let y = b.conv(&y, 24, 24, 3, 1, 1);
        let bn: Vec<Tensor> = (0..4)
            .map(|i| {
                tensor1(
                    &(0..24)
                        .map(|o| 0.5 + 0.1 * ((o * 7 + i * 3) % 11) as f32)
                        .collect_vec(),
                )
            })
            .collect();
        let bn: Vec<String> = bn.into_iter().map(|t| b.initializer("bn", t)).collect();
        let y = b.op(
            "BatchNormalization",
            &[&y, &bn[0], &bn[1], &bn[2], &bn[3]],
            vec![],
        );
        let y = b.silu(&y);
        let y = b.conv(&y, 24, 24, 3, 1, 24);
        let y = b.conv(&y, 24, 8, 1, 1, 1);
        let y = b.op("HardSwish", &[&y], vec![]);
        let y = b.conv(&y, 8, 8, 3, 1, 1);
        let y = b.op(
            "LeakyRelu",
            &[&y],
            vec![("alpha", AttributeValue::Float(0.1))],
        );
        // Hard-swish written out as Paddle does, then a learnable affine.
        let y = b.conv(&y, 8, 8, 3, 1, 1);
        let three = b.initializer("three", tensor0(3f32));
        let six = b.initializer("six", tensor0(6f32));
        let gate = b.op("Add", &[&y, &three], vec![]);
        let gate = b.op("Clip", &[&gate, &lo, &six], vec![]);
        let y = b.op("Mul", &[&y, &gate], vec![]);
        let y = b.op("Div", &[&y, &six], vec![]);
        let scale = b.initializer("scale", tensor1(&[0.9f32]));
        let offset = b.initializer("offset", tensor1(&[0.1f32]));
        let y = b.op("Mul", &[&y, &scale], vec![]);
        let y = b.op("Add", &[&y, &offset], vec![]);
        let dilated = b.conv(&x, c, 4, 3, 1, 1);
        let wd = Tensor::from_shape(&[4, 4, 3, 3], &b.random(144, 0.3)).unwrap();
        let wd = b.initializer("wd", wd);
        let dilated = b.op(
            "Conv",
            &[&dilated, &wd],
            vec![
                ("kernel_shape", AttributeValue::Ints(vec![3, 3])),
                ("dilations", AttributeValue::Ints(vec![2, 2])),
                ("pads", AttributeValue::Ints(vec![2, 2, 2, 2])),
            ],
        );
        let twice = b.op("Add", &[&dilated, &dilated], vec![]);
        let relu = b.op("Relu", &[&dilated], vec![]);
        b.output(&y);
        b.output(&twice);
        b.output(&relu);
        b.finish()
    }

    fn plan(
        model: &edgewise_graph::Model,
        c: usize,
        h: usize,
        w: usize,
        convs: bool,
    ) -> (TypedModel, Installed) {
        let shapes = vec![("x".to_string(), vec![1, c, h, w])];
        let mut typed = tract_model(model, &shapes).unwrap().into_typed().unwrap();
        let convs = convs.then(|| install_convs(&mut typed).unwrap());
        let installed = install(&mut typed, convs).unwrap();
        (typed.into_optimized().unwrap(), installed)
    }

    fn run(model: &TypedModel, x: &Tensor) -> Vec<Vec<f32>> {
        let plan = model.clone().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into()))
            .unwrap()
            .into_iter()
            .map(|t| {
                edgewise_graph::tensor::values::<f32>(&t.into_tensor())
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn convolutions_and_what_follows_them_match_tract_on_one_thread_and_two() {
        let (c, h, w) = (5, 37, 45);
        let m = model(c, h, w);
        let (tract, _) = plan(&m, c, h, w, false);
        let (ours, installed) = plan(&m, c, h, w, true);
        let Some(kernel) = TileKernel::native() else {
            assert_eq!(installed.convs, ConvsInstalled::default());
            return;
        };
        let convs = &installed.convs;
        assert_eq!(convs.kernel, kernel.name);
        assert_eq!((convs.convs, convs.pointwise), (7, 1), "{convs:?}");
        assert!(convs.skipped.is_empty(), "{convs:?}");
        // Batch norm: a scale and an offset; the offset after hard-swish
        // (tract merges its 1/6 and the scale after it). Relu, Clip (two
        // bounds), SiLU, HardSwish, LeakyRelu, hard-swish written out; the
        // dilated convolution's two readers fold nothing.
        assert_eq!((convs.affine, convs.activations), (3, 7), "{convs:?}");
        assert_eq!(convs.depthwise, 1, "{convs:?}");
        let tracts = ours
            .nodes()
            .iter()
            .filter(|n| n.op.name() == "DepthWiseConv")
            .count();
        assert_eq!(tracts, 0, "the depthwise convolution is ours too");
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 29 % 83) as f32 - 41.0) * 0.03)
            .collect();
        let x = Tensor::from_shape(&[1, c, h, w], &x).unwrap();
        let theirs = run(&tract, &x);
        let one = run(&ours, &x);
        let two = multithread_tract_scope(Executor::multithread(2), || run(&ours, &x));
        assert_eq!(one, two, "two threads give the bytes one does");
        for (output, (a, b)) in theirs.iter().zip(&one).enumerate() {
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-4,
                "output {output}: largest difference from tract {worst}"
            );
        }
    }
}
