//! QDQ models run in float, at FP32 speed.
//!
//! tract 0.23 runs a quantized convolution as im2col, zero-point sums and a
//! requantization chain in separate passes over the tensor, and quantizes
//! every activation with a scalar loop: onnxruntime's INT8 model of PP-OCRv4
//! det runs several times slower than the FP32 model (`docs/benchmarks.md`).
//! Where [`crate::int8::install`] cannot take every quantized convolution
//! (`--qdq auto` falls back), or on request (`--qdq float`), a QDQ model runs
//! as float:
//!
//! ```text
//! x ─QuantizeLinear(s, z)─▶ q ─DequantizeLinear(s, z)─▶ y
//! ```
//!
//! becomes `y = x`, or `y = Clip(x, 0, (qmax − z)·s)` when the range starts
//! at zero (`z` is the type's minimum). That is the mark of an activation the
//! quantizer removed because the pair's saturation does its work:
//! onnxruntime's drops a `Relu` or `Clip(0, 6)` in front of a
//! `QuantizeLinear`, and the clip puts it back. Other pairs only saturate
//! outliers beyond the calibrated range, an effect of quantization that float
//! execution does without. Weights keep their quantized values:
//! `DequantizeLinear` of an int8 constant is folded to float by tract when it
//! optimizes the model.

use std::collections::{HashMap, HashSet};

use edgewise_graph::model::{Attribute, AttributeValue, Initializer, Node};
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{Edit, Model};

/// What [`dequantize_activations`] did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Dequantized {
    /// Activation QuantizeLinear → DequantizeLinear pairs removed.
    pub pairs: usize,
    /// Of those, the pairs replaced by a clip to their range (a removed
    /// activation).
    pub clips: usize,
    /// Activation `QuantizeLinear` nodes left as they are: node and why.
    pub kept: Vec<(String, String)>,
}

/// Removes every activation quantize/dequantize pair of `model`, keeping the
/// clip of those whose range starts at zero.
pub fn dequantize_activations(model: &mut Model) -> Dequantized {
    let g = &model.graph;
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (ix, node) in g.nodes.iter().enumerate() {
        for i in node.inputs.iter().filter(|i| !i.is_empty()) {
            readers.entry(i).or_default().push(ix);
        }
    }
    let graph_outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let clip_takes_inputs = model.opset() >= 11;

    let mut report = Dequantized::default();
    let mut dropped: HashSet<usize> = HashSet::new();
    let mut clips: Vec<(usize, Node)> = vec![];
    let mut constants: Vec<Initializer> = vec![];
    let mut renamed: HashMap<String, String> = HashMap::new();
    for (ix, q) in g.nodes.iter().enumerate() {
        if q.op_type != "QuantizeLinear" || !q.domain.is_empty() {
            continue;
        }
        if g.constant(&q.inputs[0]).is_some() {
            continue; // a weight: tract folds it
        }
        let label = g.node_label(ix);
        let Some(params) = QParams::of(model, q) else {
            report
                .kept
                .push((label, "its scale or zero point is not one constant".into()));
            continue;
        };
        let q_out = q.outputs[0].as_str();
        let dqs = readers.get(q_out).map(Vec::as_slice).unwrap_or_default();
        let pairs_up = !dqs.is_empty()
            && !graph_outputs.contains(q_out)
            && dqs.iter().all(|&r| {
                let dq = &g.nodes[r];
                dq.op_type == "DequantizeLinear"
                    && dq.domain.is_empty()
                    && QParams::of(model, dq).as_ref() == Some(&params)
            });
        if !pairs_up {
            report.kept.push((
                label,
                "its output is read by something other than a DequantizeLinear with the same scale and zero point".into(),
            ));
            continue;
        }
        let dq_outputs: Vec<&str> = dqs
            .iter()
            .map(|&r| g.nodes[r].outputs[0].as_str())
            .collect();
        let exposed: Vec<&str> = dq_outputs
            .iter()
            .copied()
            .filter(|o| graph_outputs.contains(o))
            .collect();
        if exposed.len() > 1 {
            report.kept.push((
                label,
                "two of its dequantized copies are graph outputs".into(),
            ));
            continue;
        }
        dropped.insert(ix);
        dropped.extend(dqs.iter().copied());
        report.pairs += 1;
        let x = &q.inputs[0];
        let clip_needed = params.zero_point == params.qmin;
        if !clip_needed && exposed.is_empty() {
            for o in &dq_outputs {
                renamed.insert(o.to_string(), x.clone());
            }
            continue;
        }
        // A node writes the value the readers (or the graph output) expect.
        let written = exposed
            .first()
            .copied()
            .unwrap_or(dq_outputs[0])
            .to_string();
        for o in dq_outputs.iter().filter(|o| **o != written) {
            renamed.insert(o.to_string(), written.clone());
        }
        let mut node = Node {
            name: format!("{label}.dequantized"),
            op_type: "Identity".into(),
            domain: String::new(),
            inputs: vec![x.clone()],
            outputs: vec![written],
            attributes: vec![],
            doc_string: String::new(),
        };
        if clip_needed {
            node.name = format!("{label}.range");
            node.op_type = "Clip".into();
            node.doc_string = "the activation a quantizer folded into a QDQ pair's range".into();
            let (lo, hi) = params.range();
            if clip_takes_inputs {
                for (bound, value) in [("min", lo), ("max", hi)] {
                    let name = format!("{label}.range_{bound}");
                    constants.push(Initializer {
                        name: name.clone(),
                        tensor: tensor0(value),
                    });
                    node.inputs.push(name);
                }
            } else {
                for (bound, value) in [("min", lo), ("max", hi)] {
                    node.attributes.push(Attribute {
                        name: bound.into(),
                        value: AttributeValue::Float(value),
                    });
                }
            }
            report.clips += 1;
        }
        clips.push((ix, node));
    }
    if report.pairs == 0 {
        return report;
    }
    // Each clip or identity takes the place of its QuantizeLinear, which keeps the nodes
    // in topological order. Rewirings are followed to the end: a pair may read
    // the output of another.
    let mut edit = Edit::new();
    for ix in dropped {
        edit.drop(ix);
    }
    for (ix, clip) in clips {
        edit.replace(ix, clip);
    }
    for (from, to) in renamed {
        edit.rewire(from, to);
    }
    for constant in constants {
        edit.add_initializer(constant);
    }
    edit.apply(&mut model.graph);
    report
}

/// A per-tensor quantization: scale, zero point and the integer type's range.
#[derive(Debug, PartialEq)]
struct QParams {
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
}

impl QParams {
    /// The parameters of a `QuantizeLinear` or `DequantizeLinear` node, when
    /// they are scalar constants.
    fn of(model: &Model, node: &Node) -> Option<QParams> {
        let g = &model.graph;
        let scale = g.constant(node.inputs.get(1)?)?;
        let scale = scale.cast_to::<f32>().ok()?;
        let [scale] = edgewise_graph::tensor::values::<f32>(&scale)? else {
            return None;
        };
        let zero = match node.inputs.get(2).filter(|z| !z.is_empty()) {
            Some(z) => Some(g.constant(z)?.into_owned()),
            None => None, // uint8, zero point 0
        };
        let (zero_point, qmin, qmax) = match &zero {
            None => (0, 0, 255),
            Some(z) if z.datum_type() == DatumType::U8 => {
                let [z] = edgewise_graph::tensor::values::<u8>(z)? else {
                    return None;
                };
                (i32::from(*z), 0, 255)
            }
            Some(z) if z.datum_type() == DatumType::I8 => {
                let [z] = edgewise_graph::tensor::values::<i8>(z)? else {
                    return None;
                };
                (i32::from(*z), -128, 127)
            }
            Some(_) => return None,
        };
        Some(QParams {
            scale: *scale,
            zero_point,
            qmin,
            qmax,
        })
    }

    /// The float range the quantized type represents.
    fn range(&self) -> (f32, f32) {
        (
            (self.qmin - self.zero_point) as f32 * self.scale,
            (self.qmax - self.zero_point) as f32 * self.scale,
        )
    }
}
