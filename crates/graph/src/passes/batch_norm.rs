//! BatchNormalization folded into the convolution before it.

use tract_onnx::prelude::*;

use super::{bad_tensor, f32s};
use crate::edit::{Edit, Names};
use crate::error::Result;
use crate::model::{AttributeValue, Initializer, Model};

/// Folds `Conv -> BatchNormalization` (and `ConvTranspose` with one group)
/// into the convolution: `w' = w·γ/√(σ²+ε)` along the output channels, `b' =
/// (b − μ)·γ/√(σ²+ε) + β`.
pub fn fold_batch_norms(model: &mut Model) -> Result<usize> {
    let g = &model.graph;
    let readers = g.readers();
    let outputs = g.output_names();
    let producers = g.producers();
    let mut folds: Vec<(usize, usize, Tensor, Vec<f32>)> = vec![];
    for (bn_ix, bn) in g.nodes.iter().enumerate() {
        if bn.op_type != "BatchNormalization" || bn.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            continue;
        }
        let Some(&conv_ix) = producers.get(&bn.inputs[0]) else {
            continue;
        };
        let conv = &g.nodes[conv_ix];
        let out_axis = match conv.op_type.as_str() {
            "Conv" => 0,
            "ConvTranspose" if conv.int_attr("group", 1) == 1 => 1,
            _ => continue,
        };
        let only_reader = readers.get(&bn.inputs[0]).is_some_and(|r| r.len() == 1)
            && !outputs.contains(&bn.inputs[0]);
        let params: Option<Vec<Vec<f32>>> = bn.inputs[1..5]
            .iter()
            .map(|p| g.initializer(p).and_then(|i| f32s(&i.tensor)))
            .collect();
        let weight = conv.inputs.get(1).and_then(|w| g.initializer(w));
        let (true, Some(params), Some(weight)) = (only_reader, params, weight) else {
            continue;
        };
        let Some(w) = f32s(&weight.tensor) else {
            continue;
        };
        let [gamma, beta, mean, var] = [&params[0], &params[1], &params[2], &params[3]];
        let eps = match bn.attribute("epsilon") {
            Some(AttributeValue::Float(e)) => *e,
            _ => 1e-5,
        };
        let shape = weight.tensor.shape().to_vec();
        let channels = shape[out_axis];
        if [gamma, beta, mean, var].iter().any(|p| p.len() != channels) {
            continue;
        }
        let factor: Vec<f32> = (0..channels)
            .map(|c| gamma[c] / (var[c] + eps).sqrt())
            .collect();
        let inner: usize = shape[out_axis + 1..].iter().product();
        let folded: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| v * factor[(i / inner) % channels])
            .collect();
        let bias = match conv.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(b) => g
                .initializer(b)
                .and_then(|i| f32s(&i.tensor))
                .filter(|b| b.len() == channels),
            None => Some(vec![0.0; channels]),
        };
        let Some(bias) = bias else { continue };
        let bias = (0..channels)
            .map(|c| (bias[c] - mean[c]) * factor[c] + beta[c])
            .collect();
        let weight =
            Tensor::from_shape(&shape, &folded).map_err(|e| bad_tensor(&conv.inputs[1], e))?;
        folds.push((conv_ix, bn_ix, weight, bias));
    }
    let mut names = Names::of(&model.graph);
    let mut edit = Edit::new();
    let count = folds.len();
    for (conv_ix, bn_ix, weight, bias) in folds {
        let mut conv = model.graph.nodes[conv_ix].clone();
        let w_name = names.fresh(&format!("{}_bn_folded", conv.inputs[1]));
        let b_name = names.fresh(&format!("{}_bn_folded_bias", conv.inputs[1]));
        edit.add_initializer(Initializer {
            name: w_name.clone(),
            tensor: weight,
        });
        edit.add_initializer(Initializer {
            name: b_name.clone(),
            tensor: tensor1(&bias),
        });
        conv.inputs[1] = w_name;
        conv.inputs.resize(2, String::new());
        conv.inputs.push(b_name);
        conv.outputs[0] = model.graph.nodes[bn_ix].outputs[0].clone();
        edit.replace(conv_ix, conv);
        edit.drop(bn_ix);
    }
    edit.apply(&mut model.graph);
    model.graph.drop_unread_initializers();
    Ok(count)
}
