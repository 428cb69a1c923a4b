//! Reshapes of constant tensors folded into the constant.

use crate::edit::Edit;
use crate::error::Result;
use crate::model::{Initializer, Model, Node};

/// The integers of a constant value.
fn ints(model: &Model, name: &str) -> Option<Vec<i64>> {
    let t = model.graph.constant(name)?;
    let t = t.cast_to::<i64>().ok()?;
    Some(crate::tensor::values::<i64>(&t)?.to_vec())
}

/// The output shape of `node` (a `Reshape`, `Squeeze`, `Unsqueeze` or
/// `Flatten`) on an input of `shape`, when its parameters are constants.
fn reshaped(model: &Model, node: &Node, shape: &[usize]) -> Option<Vec<usize>> {
    let axes = || -> Option<Vec<i64>> {
        match node.inputs.get(1).filter(|a| !a.is_empty()) {
            Some(a) => ints(model, a),
            None => node.ints_attr("axes").map(<[i64]>::to_vec),
        }
    };
    let normalized = |axes: Vec<i64>, rank: usize| -> Option<Vec<usize>> {
        let mut v: Vec<usize> = axes
            .into_iter()
            .map(|a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).ok())
            .collect::<Option<_>>()?;
        v.sort_unstable();
        v.dedup();
        v.iter().all(|&a| a < rank).then_some(v)
    };
    let total: usize = shape.iter().product();
    match node.op_type.as_str() {
        "Reshape" => {
            let target = ints(model, node.inputs.get(1)?)?;
            let allow_zero = node.int_attr("allowzero", 0) != 0;
            let mut out: Vec<Option<usize>> = target
                .iter()
                .enumerate()
                .map(|(i, &d)| match d {
                    0 if !allow_zero => shape.get(i).copied(),
                    -1 => None,
                    d => usize::try_from(d).ok(),
                })
                .collect();
            let known: usize = out.iter().flatten().product();
            let unknown = out.iter().filter(|d| d.is_none()).count();
            match unknown {
                0 => {}
                1 if known > 0 && total.is_multiple_of(known) => {
                    *out.iter_mut().find(|d| d.is_none())? = Some(total / known);
                }
                _ => return None,
            }
            let out: Vec<usize> = out.into_iter().collect::<Option<_>>()?;
            (out.iter().product::<usize>() == total).then_some(out)
        }
        "Unsqueeze" => {
            let rank = shape.len() + axes()?.len();
            let axes = normalized(axes()?, rank)?;
            let mut rest = shape.iter();
            (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        Some(1)
                    } else {
                        rest.next().copied()
                    }
                })
                .collect()
        }
        "Squeeze" => match axes() {
            Some(a) => {
                let axes = normalized(a, shape.len())?;
                axes.iter().all(|&a| shape[a] == 1).then(|| {
                    (0..shape.len())
                        .filter(|i| !axes.contains(i))
                        .map(|i| shape[i])
                        .collect()
                })
            }
            None => Some(shape.iter().copied().filter(|&d| d != 1).collect()),
        },
        "Flatten" => {
            let axis = node.int_attr("axis", 1);
            let axis = usize::try_from(if axis < 0 {
                axis + shape.len() as i64
            } else {
                axis
            })
            .ok()?;
            (axis <= shape.len()).then(|| {
                vec![
                    shape[..axis].iter().product(),
                    shape[axis..].iter().product(),
                ]
            })
        }
        _ => None,
    }
}

/// Folds `Reshape`, `Squeeze`, `Unsqueeze` and `Flatten` of an initializer
/// (with constant parameters) into a reshaped initializer of the same name
/// as the node's output. Paddle's exports write every per-channel constant
/// (biases, BatchNorm-like scales) as a reshape of a 1-D weight, which hid
/// them from bias folding and pruning.
pub fn fold_reshaped_initializers(model: &mut Model) -> Result<usize> {
    let outputs = model.graph.output_names();
    let mut edit = Edit::new();
    let mut count = 0;
    for (ix, node) in model.graph.nodes.iter().enumerate() {
        if !node.domain.is_empty()
            || !matches!(
                node.op_type.as_str(),
                "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten"
            )
            || node.outputs.len() != 1
            || outputs.contains(&node.outputs[0])
        {
            continue;
        }
        let Some(data) = node.inputs.first().and_then(|x| model.graph.initializer(x)) else {
            continue;
        };
        let Some(shape) = reshaped(model, node, data.tensor.shape()) else {
            continue;
        };
        let Ok(tensor) = data.tensor.clone().into_shape(&shape) else {
            continue;
        };
        edit.add_initializer(Initializer {
            name: node.outputs[0].clone(),
            tensor,
        });
        edit.drop(ix);
        count += 1;
    }
    edit.apply(&mut model.graph);
    model.graph.drop_unread_initializers();
    Ok(count)
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;

    use super::*;
    use crate::builder::ModelBuilder;
    use crate::model::AttributeValue;
    use crate::passes::fold_bias_adds;

    #[test]
    fn a_reshaped_bias_becomes_a_constant_then_folds_into_the_conv() {
        let mut b = ModelBuilder::new(13);
        let x = b.input("x", &[1, 4, 8, 8]);
        let y = b.conv(&x, 4, 4, 3, 1, 1);
        let bias = b.initializer("bias", tensor1(&[1.0f32, 2.0, 3.0, 4.0]));
        let shape = b.initializer("shape", tensor1(&[1i64, -1, 1, 1]));
        let reshaped = b.op("Reshape", &[&bias, &shape], vec![]);
        let axes = b.op(
            "Unsqueeze",
            &[&bias],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        );
        let z = b.op("Add", &[&y, &reshaped], vec![]);
        b.output(&z);
        b.output(&axes);
        let mut model = b.finish();
        // The Unsqueeze feeds a graph output: it stays.
        assert_eq!(fold_reshaped_initializers(&mut model).unwrap(), 1);
        let folded = model.graph.initializer(&reshaped).unwrap();
        assert_eq!(folded.tensor.shape(), &[1, 4, 1, 1]);
        assert_eq!(fold_bias_adds(&mut model).unwrap(), 1);
        let ops: Vec<&str> = model
            .graph
            .nodes
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(ops, ["Conv", "Unsqueeze"]);
    }
}
