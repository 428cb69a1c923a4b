//! A `ConvTranspose` whose kernel equals its stride, as a pointwise `Conv`
//! and a `DepthToSpace`.

use tract_onnx::prelude::*;

use super::{bad_tensor, f32s, starts_at_zero};
use crate::edit::{Edit, Names};
use crate::error::Result;
use crate::model::{Attribute, AttributeValue, Initializer, Model, Node};

/// Rewrites each `ConvTranspose` whose kernel equals its stride (`k x k`,
/// no padding, dilation or output padding, one group) as a pointwise
/// `Conv` to `C_out * k * k` channels and a `DepthToSpace` of block `k`
/// (mode CRD): every output pixel then takes exactly one tap, so the two
/// compute the same values. A `Relu` (or `Clip` from zero) reading the
/// deconvolution alone moves before the `DepthToSpace`, where the
/// quantizer absorbs it into the convolution's output.
pub fn deconvs_to_convs(model: &mut Model) -> Result<usize> {
    let g = &model.graph;
    let outputs = g.output_names();
    let readers = g.readers();
    let mut names = Names::of(g);
    let mut edit = Edit::new();
    let mut count = 0;
    for (ix, node) in g.nodes.iter().enumerate() {
        if node.op_type != "ConvTranspose" || !node.domain.is_empty() {
            continue;
        }
        let Some(weight) = node.inputs.get(1).and_then(|w| g.initializer(w)) else {
            continue;
        };
        let shape = weight.tensor.shape().to_vec();
        let Some(w) = f32s(&weight.tensor).filter(|_| shape.len() == 4) else {
            continue;
        };
        let (c_in, c_out, k) = (shape[0], shape[1], shape[2]);
        let all = |name: &str, value: i64| {
            node.ints_attr(name)
                .is_none_or(|v| v.iter().all(|&x| x == value))
        };
        let auto_pad = match node.attribute("auto_pad") {
            Some(AttributeValue::String(s)) => s.as_slice() != b"NOTSET",
            _ => false,
        };
        let eligible = shape[3] == k
            && k > 1
            && node.int_attr("group", 1) == 1
            && node
                .ints_attr("kernel_shape")
                .is_none_or(|s| s == [k as i64, k as i64])
            && node.ints_attr("strides") == Some(&[k as i64, k as i64][..])
            && all("pads", 0)
            && all("dilations", 1)
            && all("output_padding", 0)
            && node.attribute("output_shape").is_none()
            && !auto_pad;
        if !eligible {
            continue;
        }
        let bias = match node.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(b) => match g.initializer(b).and_then(|i| f32s(&i.tensor)) {
                Some(b) if b.len() == c_out => Some(b),
                _ => continue,
            },
            None => None,
        };
        let taps = k * k;
        // w'[co * k * k + t, ci] = w[ci, co, t]
        let mut pointwise = vec![0f32; c_out * taps * c_in];
        for ci in 0..c_in {
            for co in 0..c_out {
                for t in 0..taps {
                    pointwise[(co * taps + t) * c_in + ci] = w[(ci * c_out + co) * taps + t];
                }
            }
        }
        let weight = Tensor::from_shape(&[c_out * taps, c_in, 1, 1], &pointwise)
            .map_err(|e| bad_tensor(&node.inputs[1], e))?;
        let w_name = names.fresh(&format!("{}_pointwise", node.inputs[1]));
        edit.add_initializer(Initializer {
            name: w_name.clone(),
            tensor: weight,
        });
        let mut inputs = vec![node.inputs[0].clone(), w_name];
        if let Some(bias) = bias {
            let repeated: Vec<f32> = bias
                .iter()
                .flat_map(|&b| std::iter::repeat_n(b, taps))
                .collect();
            let b_name = names.fresh(&format!("{}_pointwise_bias", node.name));
            edit.add_initializer(Initializer {
                name: b_name.clone(),
                tensor: tensor1(&repeated),
            });
            inputs.push(b_name);
        }
        let y = node.outputs[0].clone();
        let label = g.node_label(ix);
        let conv_out = names.fresh(&format!("{label}_channels"));
        let conv = Node {
            name: node.name.clone(),
            op_type: "Conv".into(),
            domain: String::new(),
            inputs,
            outputs: vec![conv_out.clone()],
            attributes: vec![Attribute {
                name: "kernel_shape".into(),
                value: AttributeValue::Ints(vec![1, 1]),
            }],
            doc_string: node.doc_string.clone(),
        };
        // The activation reading the deconvolution alone, if it moves.
        let activation = match readers.get(&y).map(Vec::as_slice) {
            Some(&[r]) if !outputs.contains(&y) && starts_at_zero(g, r) => Some(r),
            _ => None,
        };
        let shuffle = |input: String, output: String| Node {
            name: String::new(),
            op_type: "DepthToSpace".into(),
            domain: String::new(),
            inputs: vec![input],
            outputs: vec![output],
            attributes: vec![
                Attribute {
                    name: "blocksize".into(),
                    value: AttributeValue::Int(k as i64),
                },
                Attribute {
                    name: "mode".into(),
                    value: AttributeValue::String(b"CRD".to_vec()),
                },
            ],
            doc_string: String::new(),
        };
        let mut d2s = match activation {
            Some(a) => {
                let mut act = g.nodes[a].clone();
                let act_out = act.outputs[0].clone();
                let moved = names.fresh(&format!("{label}_channels_activated"));
                act.inputs[0] = conv_out;
                act.outputs[0] = moved.clone();
                edit.replace(a, act);
                shuffle(moved, act_out)
            }
            None => shuffle(conv_out, y),
        };
        // The deconvolution's name and a dot: a profile puts its time there.
        d2s.name = names.fresh(&format!("{label}.depth_to_space"));
        edit.replace(ix, conv);
        edit.insert_after(activation.map_or(ix, |a| a.max(ix)), [d2s]);
        count += 1;
    }
    edit.apply(&mut model.graph);
    model.graph.drop_unread_initializers();
    Ok(count)
}
