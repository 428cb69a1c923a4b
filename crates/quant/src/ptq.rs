//! Post-training static quantization into portable QDQ ONNX.
//!
//! [`prepare`] makes a float model ready: `Constant` nodes become
//! initializers, a constant `Add` and a BatchNormalization after a
//! convolution are folded into its weights, a `ConvTranspose` whose kernel
//! equals its stride (DBNet's upsampling head) becomes a pointwise `Conv`
//! and a `DepthToSpace`, and the operator set is raised to 13 (per-channel
//! `DequantizeLinear` needs it) when that changes no operator's meaning.
//! [`plan`] chooses the convolutions to quantize and the activations to
//! calibrate; [`quantize`] writes, for each chosen convolution, the form
//! onnxruntime and TensorRT read and that `edgewise_kernels::qdq` turns into
//! `QLinearConv`:
//!
//! ```text
//! x ─Q─▶─DQ─▶ Conv(w: int8 per output channel, symmetric; b: int32) ─Q─▶─DQ─▶ y
//! ```
//!
//! Activations are int8 per tensor, asymmetric. A `Relu` or `Clip(0, m)`
//! that is a convolution's only reader is dropped: the quantized range of its
//! output starts at zero, so the int8 saturation does its work (as
//! onnxruntime's quantizer does).

use std::collections::{HashMap, HashSet};

use edgewise_graph::model::{Attribute, AttributeValue, Initializer, Node};
use edgewise_graph::passes::{self, starts_at_zero};
use edgewise_graph::tensor::f32s;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{Edit, GraphError, Model, Names};
use serde::Serialize;

use crate::calib::int8_params;

/// Errors preparing or quantizing a model.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The model's operator set is below 13 and raising it would change an operator.
    #[error(
        "the model uses operator set {opset}, and per-channel quantization needs 13; \
         raising it would change the meaning of {op} (node {node}): convert the model first \
         (`python3 -c \"import onnx; from onnx import version_converter as v; \
         onnx.save(v.convert_version(onnx.load('in.onnx'), 13), 'out.onnx')\"`)"
    )]
    Opset {
        /// The model's default-domain opset.
        opset: i64,
        /// The operator whose meaning changes at 13.
        op: String,
        /// The first node using it.
        node: String,
    },
    /// A value to quantize has no calibrated range.
    #[error("activation {0} has no calibrated range: it was not observed during calibration")]
    MissingRange(String),
    /// A tensor the rewrite needs is unreadable.
    #[error("{0}")]
    Tensor(String),
    /// A graph pass failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// What [`prepare`] changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Prepared {
    /// `Constant` nodes turned into initializers.
    pub constants: usize,
    /// BatchNormalization nodes folded into the convolution before them.
    pub folded_batch_norms: usize,
    /// `Add`s of a constant per output channel folded into the bias of the
    /// convolution before them (which lets a BatchNormalization after them
    /// fold too).
    pub folded_bias_adds: usize,
    /// `ConvTranspose` nodes whose kernel equals their stride, rewritten as
    /// a pointwise `Conv` and a `DepthToSpace`: the same values, on the
    /// integer path once quantized.
    pub deconvs_as_convs: usize,
    /// The operator set before and after, when it was raised.
    pub opset_raised: Option<(i64, i64)>,
}

/// Operators whose inputs or attributes changed at opset 13.
const CHANGED_AT_13: &[&str] = &[
    "Split",
    "Squeeze",
    "Unsqueeze",
    "ReduceSum",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
];

/// Makes `model` ready for [`plan`] (see the module documentation).
pub fn prepare(model: &mut Model) -> Result<Prepared, QuantError> {
    let mut report = Prepared::default();
    let opset = model.opset();
    if opset < 13 {
        if let Some(ix) = model
            .graph
            .nodes
            .iter()
            .position(|n| n.domain.is_empty() && CHANGED_AT_13.contains(&n.op_type.as_str()))
        {
            return Err(QuantError::Opset {
                opset,
                op: model.graph.nodes[ix].op_type.clone(),
                node: model.graph.node_label(ix),
            });
        }
        for o in model
            .opsets
            .iter_mut()
            .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        {
            o.version = 13;
        }
        report.opset_raised = Some((opset, 13));
    }
    report.constants = model.constants_to_initializers();
    report.folded_bias_adds = passes::fold_bias_adds(model)?;
    report.folded_batch_norms = passes::fold_batch_norms(model)?;
    report.deconvs_as_convs = passes::deconvs_to_convs(model)?;
    Ok(report)
}

fn tensor_err(e: impl std::fmt::Display) -> QuantError {
    QuantError::Tensor(e.to_string())
}

/// One convolution chosen for int8.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedConv {
    /// The node's label.
    pub node: String,
    /// The float activation it reads.
    pub input: String,
    /// The value quantized after it: its output, or the output of the
    /// activation it absorbs.
    pub output: String,
    /// The `Relu` or `Clip` absorbed into the output's quantization.
    pub absorbed: Option<String>,
}

/// The convolutions to quantize and those left in float.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Convolutions to quantize.
    pub convs: Vec<PlannedConv>,
    /// Convolutions left in float: node and why.
    pub float: Vec<(String, String)>,
    /// Int8 weights chosen otherwise than by rounding to nearest (learned
    /// rounding), by node label.
    #[serde(skip)]
    pub weights: HashMap<String, FixedWeights>,
}

/// A convolution's int8 weights and their per-output-channel scales, as
/// [`quantize`] writes them instead of rounding the float weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FixedWeights {
    /// One symmetric scale per output channel.
    pub scales: Vec<f32>,
    /// The weights, in the float weight's layout.
    pub values: Vec<i8>,
}

impl Plan {
    /// The activations calibration must observe, each once.
    pub fn observed_values(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.convs
            .iter()
            .flat_map(|c| [&c.input, &c.output])
            .filter(|v| seen.insert(v.as_str()))
            .cloned()
            .collect()
    }
}

/// Chooses the convolutions of a [`prepare`]d model to quantize: those with a
/// constant float weight and a computed input, except where `keep_float`
/// says (given the node index and node, it returns why to keep it float)
/// and those that compute scores' logits ([`scores_read_by`]).
pub fn plan(model: &Model, keep_float: impl Fn(usize, &Node) -> Option<String>) -> Plan {
    let g = &model.graph;
    let readers = model.graph.readers();
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let constants: HashSet<&str> = g.initializers.iter().map(|i| i.name.as_str()).collect();
    let mut plan = Plan::default();
    for (ix, node) in g.nodes.iter().enumerate() {
        if node.op_type != "Conv" || !node.domain.is_empty() {
            continue;
        }
        let label = g.node_label(ix);
        if let Some(reason) = keep_float(ix, node) {
            plan.float.push((label, reason));
            continue;
        }
        if let Some(reader) = scores_read_by(model, &readers, &node.outputs[0]) {
            let reason = format!(
                "it computes logits that {reader} turns into scores: int8 would clip them to the range calibration saw"
            );
            plan.float.push((label, reason));
            continue;
        }
        let weight = node.inputs.get(1).and_then(|w| model.graph.initializer(w));
        let reason = match weight {
            None => Some("its weight is not a constant".to_string()),
            Some(w) if w.tensor.datum_type() != DatumType::F32 => Some(format!(
                "its weight is {:?}, not float",
                w.tensor.datum_type()
            )),
            Some(_) if constants.contains(node.inputs[0].as_str()) => {
                Some("its input is a constant".into())
            }
            Some(_) => node
                .inputs
                .get(2)
                .filter(|b| !b.is_empty() && model.graph.initializer(b).is_none())
                .map(|_| "its bias is not a constant".to_string()),
        };
        if let Some(reason) = reason {
            plan.float.push((label, reason));
            continue;
        }
        let y = &node.outputs[0];
        let absorbed = match readers.get(y).map(Vec::as_slice) {
            Some([r]) if !outputs.contains(y.as_str()) && starts_at_zero(&model.graph, *r) => {
                Some(*r)
            }
            _ => None,
        };
        plan.convs.push(PlannedConv {
            node: label,
            input: node.inputs[0].clone(),
            output: absorbed.map_or_else(|| y.clone(), |a| g.nodes[a].outputs[0].clone()),
            absorbed: absorbed.map(|a| g.node_label(a)),
        });
    }
    plan
}

/// The `Sigmoid`, `Softmax` or `Exp` (as `op node`) that alone reads
/// `value`, directly or through a chain of layout-only ops, if one does.
///
/// Such a value holds logits, and quantizing them is what ruins INT8
/// detectors most: calibration photos where nothing is found (PP-OCRv4 on
/// small images sees no positive text logit) set a range whose top is
/// below every real detection's logit, and the clip caps every score. Kept
/// in float, the convolution costs little: it has the head's fewest
/// output channels. A value read by anything else as well is a feature
/// map, not logits: SiLU reads its input twice (`x * Sigmoid(x)`).
fn scores_read_by(
    model: &Model,
    readers: &HashMap<String, Vec<usize>>,
    value: &str,
) -> Option<String> {
    const LAYOUT: &[&str] = &[
        "DepthToSpace",
        "SpaceToDepth",
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
    ];
    const SCORES: &[&str] = &["Sigmoid", "Softmax", "LogSoftmax", "Exp"];
    let g = &model.graph;
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut v = value;
    // A chain visits each node once at most: the model is acyclic.
    for _ in 0..g.nodes.len() {
        let &[r] = readers.get(v)?.as_slice() else {
            return None;
        };
        let node = &g.nodes[r];
        if outputs.contains(v) || !node.domain.is_empty() || node.inputs[0] != v {
            return None;
        }
        if SCORES.contains(&node.op_type.as_str()) {
            return Some(format!("{} {}", node.op_type, g.node_label(r)));
        }
        if !LAYOUT.contains(&node.op_type.as_str()) || node.outputs.len() != 1 {
            return None;
        }
        v = &node.outputs[0];
    }
    None
}

/// What [`quantize`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quantized {
    /// Convolutions in QDQ form.
    pub convs: usize,
    /// Activation quantize/dequantize pairs inserted.
    pub activation_pairs: usize,
    /// `Relu`/`Clip` nodes absorbed into an output's quantization.
    pub absorbed: usize,
    /// Convolutions whose bias stayed float (it does not fit int32 at the
    /// input scale times the weight scale).
    pub float_biases: Vec<String>,
}

/// Rewrites every convolution of `plan` into QDQ form, quantizing each
/// activation to its range in `ranges`.
pub fn quantize(
    model: &mut Model,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
) -> Result<Quantized, QuantError> {
    let range = |v: &str| {
        ranges
            .get(v)
            .copied()
            .ok_or_else(|| QuantError::MissingRange(v.to_string()))
    };
    let mut names = Names::of(&model.graph);
    let mut report = Quantized::default();
    let labels = model.graph.nodes_by_label();
    let producers = model.graph.producers();

    // Pairs to emit after a node (`None`: at the start of the graph).
    let mut after: HashMap<Option<usize>, Vec<Node>> = HashMap::new();
    let mut absorbed: HashSet<usize> = HashSet::new();
    let mut new_inits: Vec<Initializer> = vec![];
    let pair = |names: &mut Names,
                inits: &mut Vec<Initializer>,
                source: &str,
                target: &str,
                (lo, hi): (f32, f32)|
     -> [Node; 2] {
        let (scale, zero_point) = int8_params(lo, hi);
        let s = names.fresh(&format!("{target}_scale"));
        let z = names.fresh(&format!("{target}_zero_point"));
        let q = names.fresh(&format!("{target}_quantized"));
        inits.push(Initializer {
            name: s.clone(),
            tensor: tensor0(scale),
        });
        inits.push(Initializer {
            name: z.clone(),
            tensor: tensor0(zero_point),
        });
        [
            node(
                names.fresh(&format!("{target}_QuantizeLinear")),
                "QuantizeLinear",
                vec![source.into(), s.clone(), z.clone()],
                q.clone(),
                vec![],
            ),
            node(
                names.fresh(&format!("{target}_DequantizeLinear")),
                "DequantizeLinear",
                vec![q, s, z],
                target.into(),
                vec![],
            ),
        ]
    };

    // Outputs first: a quantized output read by another quantized conv needs no second pair.
    let mut dequantized: HashMap<String, f32> = HashMap::new();
    for conv in &plan.convs {
        let ix = labels[&conv.node];
        let r = range(&conv.output)?;
        let float_out = names.fresh(&format!("{}_float", conv.output));
        if let Some(a) = &conv.absorbed {
            absorbed.insert(labels[a]);
            report.absorbed += 1;
        }
        model.graph.nodes[ix].outputs[0] = float_out.clone();
        let nodes = pair(&mut names, &mut new_inits, &float_out, &conv.output, r);
        after.entry(Some(ix)).or_default().extend(nodes);
        dequantized.insert(conv.output.clone(), int8_params(r.0, r.1).0);
        report.activation_pairs += 1;
    }
    let mut input_pairs: HashMap<String, (String, f32)> = HashMap::new();
    for conv in &plan.convs {
        let ix = labels[&conv.node];
        let x = conv.input.clone();
        let scale = match dequantized.get(&x) {
            Some(&s) => s,
            None => match input_pairs.get(&x) {
                Some((dq, s)) => {
                    model.graph.nodes[ix].inputs[0] = dq.clone();
                    *s
                }
                None => {
                    let r = range(&x)?;
                    let dq = names.fresh(&format!("{x}_dequantized"));
                    let nodes = pair(&mut names, &mut new_inits, &x, &dq, r);
                    after
                        .entry(producers.get(&x).copied())
                        .or_default()
                        .extend(nodes);
                    let s = int8_params(r.0, r.1).0;
                    input_pairs.insert(x.clone(), (dq.clone(), s));
                    model.graph.nodes[ix].inputs[0] = dq;
                    report.activation_pairs += 1;
                    s
                }
            },
        };
        let fixed = plan.weights.get(&conv.node);
        let (weight_nodes, float_bias) =
            quantize_weights(model, ix, scale, fixed, &mut names, &mut new_inits)?;
        // The weights' DequantizeLinear nodes read only constants: they go first.
        after.entry(None).or_default().extend(weight_nodes);
        if float_bias {
            report.float_biases.push(conv.node.clone());
        }
        report.convs += 1;
    }

    let mut edit = Edit::new();
    for (at, nodes) in after {
        match at {
            None => edit.insert_first(nodes),
            Some(ix) => edit.insert_after(ix, nodes),
        }
    }
    // Absorbed activations: the conv now writes (through its pair) their output.
    for ix in absorbed {
        edit.drop(ix);
    }
    for init in new_inits {
        edit.add_initializer(init);
    }
    edit.apply(&mut model.graph);
    model.graph.drop_unread_initializers();
    Ok(report)
}

fn node(
    name: String,
    op: &str,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<Attribute>,
) -> Node {
    Node {
        name,
        op_type: op.into(),
        domain: String::new(),
        inputs,
        outputs: vec![output],
        attributes: attrs,
        doc_string: String::new(),
    }
}

/// Gives every planned convolution that has no int8 weights in the plan
/// yet its weights rounded to nearest at the scales [`weight_scale`]
/// chooses: what [`quantize`] would write. Searching each scale is the
/// costly part of quantizing; the searches that quantize a model again and
/// again (bias correction, mixed precision, learned rounding) do it once
/// with these in the plan.
pub fn fill_nearest_weights(model: &Model, plan: &mut Plan) -> Result<(), QuantError> {
    let labels = model.graph.nodes_by_label();
    for conv in &plan.convs {
        if plan.weights.contains_key(&conv.node) {
            continue;
        }
        let name = &model.graph.nodes[labels[&conv.node]].inputs[1];
        let weight = &model
            .graph
            .initializer(name)
            .ok_or_else(|| QuantError::Tensor(format!("weight {name} is gone")))?
            .tensor;
        let w =
            f32s(weight).ok_or_else(|| QuantError::Tensor(format!("weight {name} unreadable")))?;
        let nearest = FixedWeights::nearest(&w, weight.shape()[0]);
        plan.weights.insert(conv.node.clone(), nearest);
    }
    Ok(())
}

impl FixedWeights {
    /// `weights` of `channels` output channels at the scales [`weight_scale`]
    /// chooses, each rounded to the nearest int8.
    pub fn nearest(weights: &[f32], channels: usize) -> FixedWeights {
        let inner = (weights.len() / channels.max(1)).max(1);
        let scales: Vec<f32> = weights.chunks(inner).map(weight_scale).collect();
        let values = weights
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                (v / scales[i / inner])
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i8
            })
            .collect();
        FixedWeights { scales, values }
    }
}

/// Candidate clipping points of [`weight_scale`]: fractions
/// `1 - i / WEIGHT_STEPS` of the largest magnitude, down to half of it.
const WEIGHT_STEPS: usize = 50;

/// The symmetric int8 scale of one output channel's weights with the least
/// squared rounding and clipping error: the largest magnitude, or a
/// clipping point below it when one outlier would otherwise coarsen every
/// other weight's step.
pub fn weight_scale(weights: &[f32]) -> f32 {
    let max = weights.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max <= 0.0 {
        return 1.0;
    }
    let error = |scale: f32| -> f64 {
        weights
            .iter()
            .map(|&v| {
                let q = (v / scale).round_ties_even().clamp(-127.0, 127.0);
                ((v - q * scale) as f64).powi(2)
            })
            .sum()
    };
    (0..WEIGHT_STEPS / 2)
        .map(|i| max * (1.0 - i as f32 / WEIGHT_STEPS as f32) / 127.0)
        .map(|scale| (error(scale), scale))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(max / 127.0, |(_, scale)| scale)
}

/// Replaces the weight (and bias) of conv `ix` with int8 (int32) constants
/// and their `DequantizeLinear`; `input_scale` is the scale of its input,
/// `fixed` the int8 weights to write instead of the rounded float ones.
/// Returns those `DequantizeLinear` nodes, and whether the bias stayed float.
fn quantize_weights(
    model: &mut Model,
    ix: usize,
    input_scale: f32,
    fixed: Option<&FixedWeights>,
    names: &mut Names,
    inits: &mut Vec<Initializer>,
) -> Result<(Vec<Node>, bool), QuantError> {
    let conv = &model.graph.nodes[ix];
    let w_name = conv.inputs[1].clone();
    let weight = &model
        .graph
        .initializer(&w_name)
        .ok_or_else(|| QuantError::Tensor(format!("weight {w_name} is gone")))?
        .tensor;
    let shape = weight.shape().to_vec();
    let w =
        f32s(weight).ok_or_else(|| QuantError::Tensor(format!("weight {w_name} unreadable")))?;
    let channels = shape[0];
    let FixedWeights { scales, values: q } = match fixed {
        Some(f) if f.values.len() == w.len() && f.scales.len() == channels => f.clone(),
        Some(_) => {
            return Err(QuantError::Tensor(format!(
                "the int8 weights given for {w_name} do not have its shape {shape:?}"
            )));
        }
        None => FixedWeights::nearest(&w, channels),
    };
    let axis = vec![Attribute {
        name: "axis".into(),
        value: AttributeValue::Int(0),
    }];
    let wq = names.fresh(&format!("{w_name}_quantized"));
    let ws = names.fresh(&format!("{w_name}_scale"));
    let wz = names.fresh(&format!("{w_name}_zero_point"));
    let wdq = names.fresh(&format!("{w_name}_dequantized"));
    inits.push(Initializer {
        name: wq.clone(),
        tensor: Tensor::from_shape(&shape, &q).map_err(tensor_err)?,
    });
    inits.push(Initializer {
        name: ws.clone(),
        tensor: tensor1(&scales),
    });
    inits.push(Initializer {
        name: wz.clone(),
        tensor: tensor1(&vec![0i8; channels]),
    });
    let mut dq_nodes = vec![node(
        names.fresh(&format!("{w_name}_DequantizeLinear")),
        "DequantizeLinear",
        vec![wq, ws, wz],
        wdq.clone(),
        axis.clone(),
    )];
    let mut new_bias = None;
    let mut float_bias = false;
    if let Some(b_name) = conv.inputs.get(2).filter(|b| !b.is_empty()).cloned() {
        let bias = model
            .graph
            .initializer(&b_name)
            .and_then(|i| f32s(&i.tensor))
            .ok_or_else(|| QuantError::Tensor(format!("bias {b_name} unreadable")))?;
        let b_scales: Vec<f32> = scales.iter().map(|s| s * input_scale).collect();
        let quantized: Option<Vec<i32>> = bias
            .iter()
            .zip(&b_scales)
            .map(|(b, s)| {
                let q = (b / s).round_ties_even();
                (q.abs() < i32::MAX as f32).then_some(q as i32)
            })
            .collect();
        match quantized {
            Some(qb) if bias.len() == channels => {
                let bq = names.fresh(&format!("{b_name}_quantized"));
                let bs = names.fresh(&format!("{b_name}_scale"));
                let bz = names.fresh(&format!("{b_name}_zero_point"));
                let bdq = names.fresh(&format!("{b_name}_dequantized"));
                inits.push(Initializer {
                    name: bq.clone(),
                    tensor: tensor1(&qb),
                });
                inits.push(Initializer {
                    name: bs.clone(),
                    tensor: tensor1(&b_scales),
                });
                inits.push(Initializer {
                    name: bz.clone(),
                    tensor: tensor1(&vec![0i32; channels]),
                });
                dq_nodes.push(node(
                    names.fresh(&format!("{b_name}_DequantizeLinear")),
                    "DequantizeLinear",
                    vec![bq, bs, bz],
                    bdq.clone(),
                    axis,
                ));
                new_bias = Some(bdq);
            }
            _ => float_bias = true,
        }
    }
    let conv = &mut model.graph.nodes[ix];
    conv.inputs[1] = wdq;
    if let Some(b) = new_bias {
        conv.inputs[2] = b;
    }
    Ok((dq_nodes, float_bias))
}

#[cfg(test)]
mod tests {
    use edgewise_graph::analysis::tract_model;
    use edgewise_graph::builder::ModelBuilder;

    use super::*;
    use crate::calib::{Extremes, Histogram, Method};

    /// `x -> Conv -> BatchNormalization -> Relu -> Conv(depthwise) -> Add(x) -> y`.
    fn model() -> Model {
        let mut b = ModelBuilder::new(12);
        let x = b.input("x", &[1, 8, 12, 12]);
        let c = b.conv(&x, 8, 8, 3, 1, 1);
        let bn: Vec<String> = [1.5f32, 0.2, 0.1, 0.8]
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let values: Vec<f32> = (0..8).map(|c| v + 0.05 * c as f32 * (i as f32)).collect();
                b.initializer("bn", tensor1(&values))
            })
            .collect();
        let n = b.op(
            "BatchNormalization",
            &[&c, &bn[0], &bn[1], &bn[2], &bn[3]],
            vec![("epsilon", AttributeValue::Float(1e-5))],
        );
        let r = b.op("Relu", &[&n], vec![]);
        let d = b.conv(&r, 8, 8, 3, 1, 8);
        let y = b.op("Add", &[&d, &x], vec![]);
        b.output(&y);
        b.finish()
    }

    fn input() -> Tensor {
        let mut b = ModelBuilder::new(13);
        let v = b.random(8 * 12 * 12, 2.0);
        Tensor::from_shape(&[1, 8, 12, 12], &v).unwrap()
    }

    fn run(model: &Model, extra: &[String]) -> Vec<Vec<f32>> {
        let mut m = model.clone();
        for v in extra {
            m.graph.outputs.push(edgewise_graph::model::ValueInfo {
                name: v.clone(),
                elem_type: 1,
                shape: None,
                doc_string: String::new(),
            });
        }
        let shapes = vec![("x".to_string(), vec![1, 8, 12, 12])];
        let plan = tract_model(&m, &shapes)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        plan.run(tvec!(input().into()))
            .unwrap()
            .iter()
            .map(|t| f32s(&t.clone().into_tensor()).unwrap())
            .collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn weight_scales_clip_a_lone_outlier_and_never_lose_to_the_maximum() {
        let error = |w: &[f32], scale: f32| -> f32 {
            w.iter()
                .map(|&v| (v - (v / scale).round().clamp(-127.0, 127.0) * scale).powi(2))
                .sum()
        };
        // Many small weights and one large: a step set by the large one
        // rounds the rest coarsely. (At 8 bits clipping pays only for many
        // weights: 2 000 would keep the maximum.)
        let mut b = ModelBuilder::new(13);
        let mut w = b.random(20_000, 0.05);
        w.push(1.0);
        let scale = weight_scale(&w);
        assert!(scale < 0.97 / 127.0, "{scale}");
        assert!(error(&w, scale) < error(&w, 1.0 / 127.0));
        // Evenly spread weights keep their extremes (within a step).
        let even: Vec<f32> = (0..=254).map(|i| (i as f32 - 127.0) / 127.0).collect();
        assert!((weight_scale(&even) - 1.0 / 127.0).abs() < 1e-6);
        assert_eq!(weight_scale(&[0.0; 9]), 1.0);
    }

    #[test]
    fn prepare_folds_batch_norm_and_raises_the_opset() {
        let original = model();
        let mut m = original.clone();
        let report = prepare(&mut m).unwrap();
        assert_eq!(report.folded_batch_norms, 1);
        assert_eq!(report.opset_raised, Some((12, 13)));
        assert!(
            m.graph
                .nodes
                .iter()
                .all(|n| n.op_type != "BatchNormalization")
        );
        let (a, b) = (run(&original, &[]), run(&m, &[]));
        let diff = a[0]
            .iter()
            .zip(&b[0])
            .fold(0f32, |d, (x, y)| d.max((x - y).abs()));
        assert!(diff < 1e-4, "folding changed the output by {diff}");
    }

    /// DBNet's upsampling head: `ConvTranspose(k 2, stride 2) -> Add(bias)
    /// -> BatchNormalization -> Relu`. Prepared, it is a pointwise `Conv`
    /// with the bias and the normalization folded in, the `Relu`, then a
    /// `DepthToSpace`, and it computes the same values.
    #[test]
    fn a_deconvolution_whose_kernel_is_its_stride_becomes_a_conv() {
        let mut b = ModelBuilder::new(12);
        let x = b.input("x", &[1, 8, 12, 12]);
        let w = b.random(8 * 3 * 2 * 2, 0.5);
        let w = b.initializer("w", Tensor::from_shape(&[8, 3, 2, 2], &w).unwrap());
        let attrs = vec![
            ("kernel_shape", AttributeValue::Ints(vec![2, 2])),
            ("strides", AttributeValue::Ints(vec![2, 2])),
        ];
        let d = b.op("ConvTranspose", &[&x, &w], attrs);
        let bias = b.initializer(
            "bias",
            Tensor::from_shape(&[1, 3, 1, 1], &[0.3f32, -0.2, 0.1]).unwrap(),
        );
        let d = b.op("Add", &[&d, &bias], vec![]);
        let bn: Vec<String> = [
            [1.5f32, 0.7, 1.1],
            [0.2, -0.1, 0.0],
            [0.1, 0.3, -0.2],
            [0.8, 1.2, 0.5],
        ]
        .iter()
        .map(|v| b.initializer("bn", tensor1(v)))
        .collect();
        let n = b.op(
            "BatchNormalization",
            &[&d, &bn[0], &bn[1], &bn[2], &bn[3]],
            vec![("epsilon", AttributeValue::Float(1e-5))],
        );
        let y = b.op("Relu", &[&n], vec![]);
        b.output(&y);
        let original = b.finish();
        let mut m = original.clone();
        let report = prepare(&mut m).unwrap();
        assert_eq!(
            (
                report.folded_bias_adds,
                report.folded_batch_norms,
                report.deconvs_as_convs
            ),
            (1, 1, 1)
        );
        let ops: Vec<&str> = m.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Relu", "DepthToSpace"]);
        let (a, b) = (run(&original, &[]), run(&m, &[]));
        assert_eq!(a[0].len(), 3 * 24 * 24);
        let diff = a[0]
            .iter()
            .zip(&b[0])
            .fold(0f32, |d, (x, y)| d.max((x - y).abs()));
        assert!(diff < 1e-4, "the rewrite changed the output by {diff}");
        // The quantizer then takes the pointwise convolution, with the Relu.
        let plan = plan(&m, |_, _| None);
        assert_eq!(plan.convs.len(), 1);
        assert!(plan.convs[0].absorbed.is_some());
    }

    /// A convolution whose output a `Sigmoid` alone reads, here through a
    /// `Reshape` and a `Transpose`, computes logits: it stays float, and the
    /// one before it, in a SiLU, does not.
    #[test]
    fn convolutions_computing_logits_stay_float() {
        let mut b = ModelBuilder::new(13);
        let x = b.input("x", &[1, 4, 6, 6]);
        let conv = |b: &mut ModelBuilder, x: &str, out: usize| {
            let w = b.random(out * 4, 0.5);
            let w = b.initializer("w", Tensor::from_shape(&[out, 4, 1, 1], &w).unwrap());
            b.op("Conv", &[x, &w], vec![])
        };
        // SiLU reads its convolution twice: a feature map, quantized.
        let pre = conv(&mut b, &x, 4);
        let features = b.silu(&pre);
        let logits = conv(&mut b, &features, 2);
        let shape = b.initializer("shape", tensor1(&[1i64, 2, 36]));
        let flat = b.op("Reshape", &[&logits, &shape], vec![]);
        let t = b.op(
            "Transpose",
            &[&flat],
            vec![("perm", AttributeValue::Ints(vec![0, 2, 1]))],
        );
        let scores = b.op("Sigmoid", &[&t], vec![]);
        b.output(&scores);
        b.output(&features);
        let m = b.finish();
        let plan = plan(&m, |_, _| None);
        assert_eq!(plan.convs.len(), 1);
        assert_eq!(plan.convs[0].output, pre);
        assert_eq!(plan.float.len(), 1, "{:?}", plan.float);
        assert!(plan.float[0].1.contains("Sigmoid"), "{:?}", plan.float);
    }

    #[test]
    fn a_model_with_an_op_changed_at_13_is_refused_with_the_node() {
        let mut b = ModelBuilder::new(11);
        let x = b.input("x", &[1, 2, 4, 4]);
        let s = b.op(
            "Squeeze",
            &[&x],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        );
        b.output(&s);
        let err = prepare(&mut b.finish()).unwrap_err().to_string();
        assert!(
            err.contains("Squeeze") && err.contains("convert_version"),
            "{err}"
        );
    }

    #[test]
    fn quantized_convs_are_qdq_and_close_to_float() {
        let mut m = model();
        prepare(&mut m).unwrap();
        let plan = plan(&m, |_, _| None);
        assert_eq!(plan.convs.len(), 2);
        assert!(plan.convs[0].absorbed.is_some(), "the relu is absorbed");
        let observed = plan.observed_values();
        assert_eq!(observed.len(), 3, "{observed:?}");
        let values = run(&m, &observed);
        let ranges: HashMap<String, (f32, f32)> = observed
            .iter()
            .zip(&values[1..])
            .map(|(name, v)| {
                let mut e = Extremes::default();
                e.observe(v);
                let mut h = Histogram::new(e);
                h.add(v);
                (name.clone(), h.range(Method::MinMax))
            })
            .collect();
        assert_eq!(
            ranges[&plan.convs[0].output].0, 0.0,
            "post-relu range starts at 0"
        );
        let float = m.clone();
        let report = quantize(&mut m, &plan, &ranges).unwrap();
        assert_eq!(report.convs, 2);
        assert_eq!(report.activation_pairs, 3);
        assert_eq!(report.absorbed, 1);
        assert!(report.float_biases.is_empty());
        assert!(m.graph.nodes.iter().all(|n| n.op_type != "Relu"));
        let cos = cosine(&run(&float, &[])[0], &run(&m, &[])[0]);
        assert!(cos > 0.999, "cosine {cos}");

        // The integer path takes every quantized conv.
        let mut fused = m.clone();
        let fusion = edgewise_kernels::fuse_qdq_convs(&mut fused);
        assert_eq!((fusion.fused, fusion.skipped.len()), (2, 0), "{fusion:?}");
        let cos = cosine(&run(&float, &[])[0], &run(&fused, &[])[0]);
        assert!(cos > 0.999, "integer cosine {cos}");
        // Saved and read back, the model is the same.
        let bytes = m.to_bytes().unwrap();
        let back = Model::from_bytes(&bytes, "test", None).unwrap();
        assert_eq!(back.graph.nodes.len(), m.graph.nodes.len());

        // Weights given in the plan are written as given; a wrong shape is
        // refused with the weight's name.
        let conv = &plan.convs[1].node;
        let ix = (0..float.graph.nodes.len())
            .find(|&ix| float.graph.node_label(ix) == *conv)
            .unwrap();
        let w_name = float.graph.nodes[ix].inputs[1].clone();
        let w = f32s(&float.graph.initializer(&w_name).unwrap().tensor)
            .unwrap()
            .to_vec();
        let channels = float.graph.initializer(&w_name).unwrap().tensor.shape()[0];
        let given = FixedWeights {
            scales: vec![0.5; channels],
            values: (0..w.len()).map(|i| (i % 7) as i8 - 3).collect(),
        };
        let mut fixed = plan.clone();
        fixed.weights.insert(conv.clone(), given.clone());
        let mut written = float.clone();
        quantize(&mut written, &fixed, &ranges).unwrap();
        let init = |name: &str| &written.graph.initializer(name).unwrap().tensor;
        let q = init(&format!("{w_name}_quantized"));
        assert_eq!(
            edgewise_graph::tensor::values::<i8>(q).unwrap(),
            given.values.as_slice()
        );
        let scales = init(&format!("{w_name}_scale"));
        assert_eq!(f32s(scales).unwrap(), given.scales);
        fixed.weights.get_mut(conv).unwrap().values.pop();
        let err = quantize(&mut float.clone(), &fixed, &ranges).unwrap_err();
        assert!(err.to_string().contains(&w_name), "{err}");
    }

    #[test]
    fn keep_float_leaves_a_conv_alone_with_the_reason() {
        let mut m = model();
        prepare(&mut m).unwrap();
        let plan = plan(&m, |_, n| (n.group() > 1).then(|| "depthwise".to_string()));
        assert_eq!(plan.convs.len(), 1);
        assert_eq!(plan.float[0].1, "depthwise");
    }

    trait Group {
        fn group(&self) -> i64;
    }
    impl Group for Node {
        fn group(&self) -> i64 {
            self.int_attr("group", 1)
        }
    }
}
