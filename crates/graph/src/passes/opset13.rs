//! Raising a model's operator set to 13, rewriting the operators whose
//! signature changed there.

use tract_onnx::prelude::*;

use crate::analysis::{InputShape, analyze};
use crate::edit::Names;
use crate::error::{GraphError, Result};
use crate::model::{AttributeValue, Initializer, Model};

/// Raises the default-domain operator set of `model` to 13 (per-channel
/// quantization needs it), rewriting what changed meaning there: the `axes`
/// of `Squeeze`, `Unsqueeze` and `ReduceSum` and the `split` of `Split` move
/// from attributes to inputs; `Softmax`, `LogSoftmax` and `Hardmax` keep
/// their meaning when they work on the last axis (before 13 they flattened
/// the axes from `axis` on), and are refused otherwise. Shapes for that check
/// come from analysing the model at `given`. Returns the old opset, or `None`
/// if the model was already at 13 or above.
pub fn raise_opset_to_13(model: &mut Model, given: &[InputShape]) -> Result<Option<i64>> {
    let opset = model.opset();
    if opset >= 13 {
        return Ok(None);
    }
    let needs_ranks = model.graph.nodes.iter().any(|n| {
        n.domain.is_empty() && matches!(n.op_type.as_str(), "Softmax" | "LogSoftmax" | "Hardmax")
    });
    let facts = if needs_ranks {
        Some(analyze(model, given)?)
    } else {
        None
    };
    let mut names = Names::of(&model.graph);
    let mut constants = Vec::new();
    for node in model.graph.nodes.iter_mut().filter(|n| n.domain.is_empty()) {
        let moved = match node.op_type.as_str() {
            "Squeeze" | "Unsqueeze" | "ReduceSum" => Some("axes"),
            "Split" => Some("split"),
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let rank = facts
                    .as_ref()
                    .and_then(|f| f.shape(&node.inputs[0]))
                    .map(<[usize]>::len);
                let axis = node.int_attr("axis", 1);
                let last = rank.is_some_and(|r| axis == -1 || axis == r as i64 - 1);
                if !last {
                    return Err(GraphError::BadAttribute {
                        attribute: "axis".into(),
                        node: node.name.clone(),
                        reason: format!(
                            "{} over axis {axis} of a rank-{} input flattens the axes after it before opset 13, \
                             which per-channel quantization needs; convert the model with onnx's version_converter first",
                            node.op_type,
                            rank.map_or("unknown".to_string(), |r| r.to_string())
                        ),
                    });
                }
                node.attributes.retain(|a| a.name != "axis");
                node.attributes.push(crate::model::Attribute {
                    name: "axis".into(),
                    value: AttributeValue::Int(-1),
                });
                None
            }
            _ => None,
        };
        let Some(attribute) = moved else { continue };
        let Some(values) = node.ints_attr(attribute).map(<[i64]>::to_vec) else {
            continue;
        };
        let name = names.fresh(&format!("{}_{attribute}", node.name));
        constants.push(Initializer {
            name: name.clone(),
            tensor: tensor1(&values),
        });
        node.attributes.retain(|a| a.name != attribute);
        // The moved value is input 1; Split's optional inputs follow none.
        node.inputs.truncate(1);
        node.inputs.push(name);
    }
    model.graph.initializers.extend(constants);
    for o in model
        .opsets
        .iter_mut()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        o.version = 13;
    }
    Ok(Some(opset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ModelBuilder;

    #[test]
    fn attributes_become_inputs_and_last_axis_softmax_stays() {
        let mut b = ModelBuilder::new(11);
        let x = b.input("x", &[1, 6, 4]);
        let u = b.op(
            "Unsqueeze",
            &[&x],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        );
        let s = b.op(
            "Squeeze",
            &[&u],
            vec![("axes", AttributeValue::Ints(vec![0]))],
        );
        let p = b.node(
            "Split",
            &[&s],
            vec![
                ("axis", AttributeValue::Int(1)),
                ("split", AttributeValue::Ints(vec![2, 4])),
            ],
            2,
        );
        let y = b.op("Softmax", &[&p[1]], vec![("axis", AttributeValue::Int(2))]);
        b.output(&y);
        b.output(&p[0]);
        let mut model = b.finish();
        let given = [InputShape {
            name: None,
            dims: vec![1, 6, 4],
        }];
        let before = analyze(&model, &given).unwrap();
        assert_eq!(raise_opset_to_13(&mut model, &given).unwrap(), Some(11));
        assert_eq!(model.opset(), 13);
        for node in &model.graph.nodes[..3] {
            assert_eq!(node.inputs.len(), 2, "{}", node.op_type);
            assert!(node.ints_attr("axes").is_none() && node.ints_attr("split").is_none());
        }
        // Same shapes after (tract reads the new inputs).
        let after = analyze(&model, &given).unwrap();
        assert_eq!(after.shape(&y), before.shape(&y));
        assert_eq!(after.shape(&p[0]), Some(&[1usize, 2, 4][..]));
        assert_eq!(raise_opset_to_13(&mut model, &given).unwrap(), None);
    }

    #[test]
    fn a_flattening_softmax_is_refused() {
        let mut b = ModelBuilder::new(11);
        let x = b.input("x", &[1, 6, 4]);
        let y = b.op("Softmax", &[&x], vec![("axis", AttributeValue::Int(1))]);
        b.output(&y);
        let mut model = b.finish();
        let given = [InputShape {
            name: None,
            dims: vec![1, 6, 4],
        }];
        let err = raise_opset_to_13(&mut model, &given)
            .unwrap_err()
            .to_string();
        assert!(err.contains("flattens") && err.contains("axis 1"), "{err}");
    }
}
