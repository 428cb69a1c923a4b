//! QDQ convolutions into `QLinearConv`.
//!
//! The pattern, as onnxruntime's quantizer writes it:
//!
//! ```text
//! x_q ─DequantizeLinear(sx, zx)─▶ Conv ◀─DequantizeLinear(sw[c], zw[c], axis 0)─ w_q (int8 constant)
//!                                   ▲ └─▶ QuantizeLinear(sy, zy) ─▶ y_q
//!       b_q (int32 constant) ─DequantizeLinear(sx·sw[c], 0)─┘ (or a float bias)
//! ```
//!
//! becomes `QLinearConv(x_q, sx, zx, w_q, sw, zw, sy, zy, b_q)`. The
//! `DequantizeLinear`/`QuantizeLinear` nodes that no longer have readers are
//! removed. A convolution that does not fit is left in float and named with
//! the reason.

use std::collections::{HashMap, HashSet};

use edgewise_graph::model::{Initializer, Node};
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{Edit, Model};

/// What [`fuse_qdq_convs`] did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Fusion {
    /// Convolutions rewritten into `QLinearConv`.
    pub fused: usize,
    /// Convolutions with some QDQ around them left in float: node and why.
    pub skipped: Vec<(String, String)>,
}

struct Dq<'a> {
    node: &'a Node,
}

impl<'a> Dq<'a> {
    fn value(&self) -> &'a str {
        &self.node.inputs[0]
    }
    fn scale(&self) -> &'a str {
        &self.node.inputs[1]
    }
    fn zero_point(&self) -> Option<&'a str> {
        self.node
            .inputs
            .get(2)
            .map(String::as_str)
            .filter(|z| !z.is_empty())
    }
}

/// Rewrites every QDQ convolution of `model` into `QLinearConv`.
pub fn fuse_qdq_convs(model: &mut Model) -> Fusion {
    let g = &model.graph;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (ix, node) in g.nodes.iter().enumerate() {
        for o in node.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, ix);
        }
        for i in node.inputs.iter().filter(|i| !i.is_empty()) {
            readers.entry(i).or_default().push(ix);
        }
    }
    let graph_outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let dq_of = |value: &str| -> Option<Dq<'_>> {
        let node = &g.nodes[*producer.get(value)?];
        (node.op_type == "DequantizeLinear" && node.domain.is_empty()).then_some(Dq { node })
    };

    let mut report = Fusion::default();
    let mut replaced: HashMap<usize, Node> = HashMap::new();
    let mut new_constants: Vec<Initializer> = vec![];
    for (ix, conv) in g.nodes.iter().enumerate() {
        if conv.op_type != "Conv" || !conv.domain.is_empty() {
            continue;
        }
        let label = g.node_label(ix);
        let x = conv.inputs.first().and_then(|v| dq_of(v));
        let w = conv.inputs.get(1).and_then(|v| dq_of(v));
        let (x, w) = match (x, w) {
            (Some(x), Some(w)) => (x, w),
            (None, None) => continue,
            _ => {
                report
                    .skipped
                    .push((label, "only one of input and weight is dequantized".into()));
                continue;
            }
        };
        let y = &conv.outputs[0];
        let q = match readers.get(y.as_str()).map(Vec::as_slice) {
            Some([r])
                if g.nodes[*r].op_type == "QuantizeLinear"
                    && !graph_outputs.contains(y.as_str()) =>
            {
                &g.nodes[*r]
            }
            _ => {
                report.skipped.push((
                    label,
                    "its output is not read by exactly one QuantizeLinear".into(),
                ));
                continue;
            }
        };
        let bias_dq = conv
            .inputs
            .get(2)
            .and_then(|b| producer.get(b.as_str()))
            .map(|&p| &g.nodes[p])
            .filter(|n| n.op_type == "DequantizeLinear");
        let weight_q = producer
            .get(w.value())
            .map(|&p| &g.nodes[p])
            .filter(|n| n.op_type == "QuantizeLinear" && n.domain.is_empty());
        match plan_fusion(model, conv, &x, &w, weight_q, bias_dq, q, &label) {
            Ok((node, constant)) => {
                replaced.insert(ix, node);
                new_constants.extend(constant);
                report.fused += 1;
            }
            Err(reason) => report.skipped.push((label, reason)),
        }
    }
    if report.fused == 0 {
        return report;
    }
    // The QuantizeLinear after each fused conv is replaced by the fused node.
    let mut edit = Edit::new();
    for (ix, node) in replaced {
        if let Some(&q) = producer.get(node.outputs[0].as_str()) {
            edit.drop(q);
        }
        edit.replace(ix, node);
    }
    for constant in new_constants {
        edit.add_initializer(constant);
    }
    edit.apply(&mut model.graph);
    remove_unread_qdq(model);
    report
}

/// The `QLinearConv` node replacing `conv`, and the constants it needs that
/// the model lacks: the int8 weight when the model quantizes a float weight at
/// run time, the int32 bias when the bias is float; `weight_q` quantizes the
/// weight when it is quantized at run time, `bias_dq` dequantizes the bias
/// when it is stored quantized.
#[allow(clippy::too_many_arguments)]
fn plan_fusion(
    model: &Model,
    conv: &Node,
    x: &Dq,
    w: &Dq,
    weight_q: Option<&Node>,
    bias_dq: Option<&Node>,
    q: &Node,
    label: &str,
) -> Result<(Node, Vec<Initializer>), String> {
    let g = &model.graph;
    let floats = |name: &str| -> Option<Vec<f32>> { as_f32s(&*g.constant(name)?) };
    let scalar =
        |name: &str| -> Option<f32> { floats(name).filter(|v| v.len() == 1).map(|v| v[0]) };
    let sx = scalar(x.scale()).ok_or("the input's scale is not one constant")?;
    let (Some(zx), Some(zw)) = (x.zero_point(), w.zero_point()) else {
        return Err("a DequantizeLinear has no zero point".into());
    };
    let zy = q
        .inputs
        .get(2)
        .filter(|z| !z.is_empty())
        .ok_or("the QuantizeLinear has no zero point")?;
    let axis = w.node.int_attr("axis", 1);
    let w_scales = floats(w.scale()).ok_or("the weight's scale is not a constant")?;
    let (weight, folded) = match g.constant(w.value()) {
        Some(weight) => (weight.into_owned(), None),
        None => {
            let q = weight_q.ok_or("the weight is neither a constant nor a quantized constant")?;
            let weight = quantize_constant_weight(model, q, &w_scales, axis)?;
            let name = format!("{label}.weight_i8");
            (
                weight.clone(),
                Some(Initializer {
                    name,
                    tensor: weight,
                }),
            )
        }
    };
    if weight.datum_type() != DatumType::I8 {
        return Err(format!("the weight is {:?}, not int8", weight.datum_type()));
    }
    let out_channels = weight.shape()[0];
    let per_channel = w_scales.len() > 1;
    if per_channel && (axis != 0 || w_scales.len() != out_channels) {
        return Err(format!(
            "the weight is quantized along axis {axis}, not per output channel"
        ));
    }
    let bias_scale = |c: usize| sx * w_scales[if per_channel { c } else { 0 }];

    let mut inputs = vec![
        x.value().to_string(),
        x.scale().to_string(),
        zx.to_string(),
        folded
            .as_ref()
            .map_or_else(|| w.value().to_string(), |f| f.name.clone()),
        w.scale().to_string(),
        zw.to_string(),
        q.inputs[1].clone(),
        zy.clone(),
    ];
    let mut new_constants: Vec<Initializer> = folded.into_iter().collect();
    if let Some(b) = conv.inputs.get(2).filter(|b| !b.is_empty()) {
        match bias_dq {
            Some(dq) => {
                let b_q = g
                    .constant(&dq.inputs[0])
                    .ok_or("the bias is not a constant")?;
                let b_scale = floats(&dq.inputs[1]).ok_or("the bias scale is not a constant")?;
                let agrees = (0..out_channels).all(|c| {
                    let s = b_scale[if b_scale.len() > 1 { c } else { 0 }];
                    (s - bias_scale(c)).abs() <= 1e-3 * s.abs().max(1e-30)
                });
                if b_q.datum_type() != DatumType::I32 || !agrees {
                    return Err(
                        "the bias is not int32 at the input scale times the weight scale".into(),
                    );
                }
                inputs.push(dq.inputs[0].clone());
            }
            None => {
                let bias = floats(b).ok_or("the bias is neither constant nor dequantized")?;
                let quantized: Vec<i32> = (0..out_channels)
                    .map(|c| (bias[c] / bias_scale(c)).round() as i32)
                    .collect();
                let name = format!("{label}.bias_i32");
                new_constants.push(Initializer {
                    name: name.clone(),
                    tensor: tensor1(&quantized),
                });
                inputs.push(name);
            }
        }
    }
    let attributes = conv.attributes.clone();
    Ok((
        Node {
            name: conv.name.clone(),
            op_type: "QLinearConv".into(),
            domain: String::new(),
            inputs,
            outputs: q.outputs.clone(),
            attributes,
            doc_string: String::new(),
        },
        new_constants,
    ))
}

/// The int8 weight of `QuantizeLinear(w, scale, zero point)` with a constant
/// float `w`, computed once here: onnxruntime's quantizer writes weights
/// that are `Constant` nodes (not initializers) in that form, and tract would
/// otherwise quantize and dequantize them back to float.
fn quantize_constant_weight(
    model: &Model,
    q: &Node,
    dq_scales: &[f32],
    dq_axis: i64,
) -> Result<Tensor, String> {
    let g = &model.graph;
    let float = g
        .constant(&q.inputs[0])
        .ok_or("the weight is quantized at run time from a value that is not a constant")?;
    let scales = g
        .constant(&q.inputs[1])
        .and_then(|t| as_f32s(&t))
        .ok_or("the weight's QuantizeLinear scale is not a constant")?;
    let zero_points = q
        .inputs
        .get(2)
        .filter(|z| !z.is_empty())
        .and_then(|z| g.constant(z))
        .ok_or("the weight's QuantizeLinear has no constant zero point")?;
    if zero_points.datum_type() != DatumType::I8 {
        return Err("the weight's QuantizeLinear does not produce int8".into());
    }
    let same_axis = scales.len() == 1 || q.int_attr("axis", 1) == dq_axis;
    if scales != dq_scales || !same_axis {
        return Err("the weight is quantized and dequantized with different scales".into());
    }
    let zero_points = edgewise_graph::tensor::values::<i8>(&zero_points)
        .ok_or("the weight's zero point is unreadable")?
        .to_vec();
    let weights = as_f32s(&float).ok_or("the float weight is unreadable")?;
    let channels = float.shape().first().copied().unwrap_or(1).max(1);
    if scales.len() > 1 && (dq_axis != 0 || scales.len() != channels) {
        return Err("the weight is quantized along an axis other than 0".into());
    }
    let per_channel = weights.len() / channels;
    let quantized: Vec<i8> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let c = if scales.len() > 1 { i / per_channel } else { 0 };
            let z = zero_points[if zero_points.len() > 1 { c } else { 0 }];
            // QuantizeLinear rounds half to even, then saturates.
            let q = (w / scales[c]).round_ties_even() + f32::from(z);
            q.clamp(-128.0, 127.0) as i8
        })
        .collect();
    Tensor::from_shape(float.shape(), &quantized).map_err(|e| e.to_string())
}

/// A constant's values as f32.
fn as_f32s(t: &Tensor) -> Option<Vec<f32>> {
    let t = t.cast_to::<f32>().ok()?;
    edgewise_graph::tensor::values::<f32>(&t).map(<[f32]>::to_vec)
}

/// Drops `DequantizeLinear` and `QuantizeLinear` nodes whose output nobody
/// reads any more (a folded weight leaves both behind).
fn remove_unread_qdq(model: &mut Model) {
    loop {
        let g = &model.graph;
        let read: HashSet<&str> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().map(String::as_str))
            .chain(g.outputs.iter().map(|o| o.name.as_str()))
            .collect();
        let unread: Vec<usize> = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                matches!(n.op_type.as_str(), "DequantizeLinear" | "QuantizeLinear")
                    && n.outputs.iter().all(|o| !read.contains(o.as_str()))
            })
            .map(|(ix, _)| ix)
            .collect();
        if unread.is_empty() {
            return;
        }
        let mut edit = Edit::new();
        for ix in unread {
            edit.drop(ix);
        }
        edit.apply(&mut model.graph);
    }
}
