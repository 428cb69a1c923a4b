//! A constant per-channel `Add` folded into the bias of the convolution
//! before it.

use tract_onnx::prelude::*;

use super::f32s;
use crate::edit::{Edit, Names};
use crate::error::Result;
use crate::model::{Initializer, Model, Node};

/// The number of output channels of `Conv` or `ConvTranspose` node `conv`,
/// read off its constant weight.
fn output_channels(model: &Model, conv: &Node) -> Option<usize> {
    let shape = model
        .graph
        .initializer(conv.inputs.get(1)?)?
        .tensor
        .shape()
        .to_vec();
    match conv.op_type.as_str() {
        "Conv" => shape.first().copied(),
        "ConvTranspose" => Some(shape.get(1)? * conv.int_attr("group", 1) as usize),
        _ => None,
    }
}

/// Folds `Conv|ConvTranspose -> Add(c)`, where `c` is a constant holding one
/// value per output channel (shape `[C, 1, 1]` or `[1, C, 1, 1]`), into the
/// convolution's bias. Paddle's exports write a deconvolution's bias this
/// way, which kept the BatchNormalization after it from folding.
pub fn fold_bias_adds(model: &mut Model) -> Result<usize> {
    let readers = model.graph.readers();
    let outputs = model.graph.output_names();
    let mut folds: Vec<(usize, usize, Vec<f32>)> = vec![];
    for (conv_ix, conv) in model.graph.nodes.iter().enumerate() {
        if !matches!(conv.op_type.as_str(), "Conv" | "ConvTranspose") || !conv.domain.is_empty() {
            continue;
        }
        let y = &conv.outputs[0];
        let (Some(&[add_ix]), false) = (readers.get(y).map(Vec::as_slice), outputs.contains(y))
        else {
            continue;
        };
        let add = &model.graph.nodes[add_ix];
        if add.op_type != "Add" || add.inputs.len() != 2 {
            continue;
        }
        let other = if add.inputs[0] == *y {
            &add.inputs[1]
        } else {
            &add.inputs[0]
        };
        let (Some(channels), Some(constant)) =
            (output_channels(model, conv), model.graph.initializer(other))
        else {
            continue;
        };
        let shape = constant.tensor.shape();
        let per_channel = shape.len() <= 4
            && shape.len() >= 3
            && shape[shape.len() - 3] == channels
            && shape[shape.len() - 2..] == [1, 1]
            && shape[..shape.len() - 3].iter().all(|&d| d == 1);
        let Some(values) = f32s(&constant.tensor).filter(|_| per_channel) else {
            continue;
        };
        let bias = match conv.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(b) => model
                .graph
                .initializer(b)
                .and_then(|i| f32s(&i.tensor))
                .filter(|b| b.len() == channels),
            None => Some(vec![0.0; channels]),
        };
        let Some(bias) = bias else { continue };
        let bias = bias.iter().zip(&values).map(|(b, v)| b + v).collect();
        folds.push((conv_ix, add_ix, bias));
    }
    let mut names = Names::of(&model.graph);
    let mut edit = Edit::new();
    let count = folds.len();
    for (conv_ix, add_ix, bias) in folds {
        let mut conv = model.graph.nodes[conv_ix].clone();
        let b_name = names.fresh(&format!("{}_bias_folded", conv.name));
        edit.add_initializer(Initializer {
            name: b_name.clone(),
            tensor: tensor1(&bias),
        });
        conv.inputs.resize(2, String::new());
        conv.inputs.push(b_name);
        conv.outputs[0] = model.graph.nodes[add_ix].outputs[0].clone();
        edit.replace(conv_ix, conv);
        edit.drop(add_ix);
    }
    edit.apply(&mut model.graph);
    model.graph.drop_unread_initializers();
    Ok(count)
}
