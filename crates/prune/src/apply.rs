//! Writing the pruned graph: every weight sliced to the kept channels, and
//! every attribute or shape input that counts channels rewritten.

use std::collections::{HashMap, HashSet};

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ndarray::Axis;
use edgewise_graph::{AttributeValue, Dim, Initializer, Model};

use crate::error::PruneError;
use crate::groups::{ChannelGraph, Rewrite, slice_args};

/// The kept channel indices of every value that has channels.
pub struct Kept<'a> {
    channels: &'a ChannelGraph,
    removed: &'a HashSet<usize>,
}

impl<'a> Kept<'a> {
    /// Channels of components in `removed` go; the rest stay.
    pub fn new(channels: &'a ChannelGraph, removed: &'a HashSet<usize>) -> Kept<'a> {
        Kept { channels, removed }
    }

    /// The kept channels of `value` (all of them if it has no channel span).
    pub fn of(&self, value: &str) -> Option<Vec<usize>> {
        let comps = self.channels.components_of(value);
        if comps.is_empty() {
            return None;
        }
        Some(
            comps
                .iter()
                .enumerate()
                .filter(|(_, c)| !self.removed.contains(c))
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// Every value that loses channels, with the channels it keeps.
    pub fn lost(&self) -> HashMap<String, Vec<usize>> {
        self.channels
            .values()
            .filter_map(|v| {
                let keep = self.of(v)?;
                let count = self.channels.span(v)?.count;
                (keep.len() < count).then(|| (v.to_string(), keep))
            })
            .collect()
    }
}

/// `model` without the channels of the `removed` components.
pub fn apply(
    model: &Model,
    channels: &ChannelGraph,
    removed: &HashSet<usize>,
) -> Result<Model, PruneError> {
    let kept = Kept::new(channels, removed);
    let mut out = model.clone();
    let index: HashMap<String, usize> = out
        .graph
        .initializers
        .iter()
        .enumerate()
        .map(|(i, init)| (init.name.clone(), i))
        .collect();
    for s in &channels.slices {
        let Some(keep) = kept.of(&s.value) else {
            continue;
        };
        let count = channels.span(&s.value).map_or(0, |sp| sp.count);
        if keep.len() == count {
            continue;
        }
        let rows: Vec<usize> = keep
            .iter()
            .flat_map(|&c| c * s.block..(c + 1) * s.block)
            .collect();
        let &i = index
            .get(&s.param)
            .ok_or_else(|| PruneError::Internal(format!("`{}` is not an initializer", s.param)))?;
        let init = &mut out.graph.initializers[i];
        init.tensor = select(&init.tensor, s.axis, &rows).map_err(|e| {
            PruneError::Internal(format!("slicing `{}` on axis {}: {e}", s.param, s.axis))
        })?;
    }
    for r in &channels.rewrites {
        rewrite(&mut out, model, &kept, r)?;
    }
    // Declared shapes of pruned values are stale: give them the new count.
    for info in out.graph.value_info.iter_mut() {
        if let (Some(keep), Some(shape)) = (kept.of(&info.name), info.shape.as_mut())
            && shape.len() >= 2
        {
            shape[1] = Dim::Fixed(keep.len() as i64);
        }
    }
    Ok(out)
}

/// `tensor` keeping only `indices` along `axis`.
fn select(tensor: &Tensor, axis: usize, indices: &[usize]) -> TractResult<Tensor> {
    let dt = tensor.datum_type();
    let f = tensor.cast_to::<f32>()?;
    let view = f.to_plain_array_view::<f32>()?;
    let picked = view.select(Axis(axis), indices).into_tensor();
    picked.cast_to_dt(dt).map(|t| t.into_owned())
}

/// A fresh initializer holding `values`; returns its name.
fn add_ints(model: &mut Model, base: &str, values: Vec<i64>) -> String {
    let mut name = format!("{base}_pruned");
    let mut k = 1;
    while model.graph.initializers.iter().any(|i| i.name == name) {
        k += 1;
        name = format!("{base}_pruned{k}");
    }
    let len = values.len();
    model.graph.initializers.push(Initializer {
        name: name.clone(),
        tensor: Tensor::from_shape(&[len], &values).expect("1-D"),
    });
    name
}

fn rewrite(out: &mut Model, original: &Model, kept: &Kept, r: &Rewrite) -> Result<(), PruneError> {
    let count = |v: &str| kept.of(v).map(|k| k.len());
    match r {
        Rewrite::Group { node, value } => {
            let n = count(value).unwrap_or(0) as i64;
            set_int(&mut out.graph.nodes[*node].attributes, "group", n);
        }
        Rewrite::Split { node } => {
            let node_ref = &original.graph.nodes[*node];
            let sizes: Vec<i64> = node_ref
                .present_outputs()
                .map(|o| count(o).unwrap_or(0) as i64)
                .collect();
            let label = node_ref.name.clone();
            if original.opset() >= 13 {
                let name = add_ints(out, &format!("{label}_split"), sizes);
                let n = &mut out.graph.nodes[*node];
                if n.inputs.len() < 2 {
                    n.inputs.resize(2, String::new());
                }
                n.inputs[1] = name;
                n.attributes.retain(|a| a.name != "num_outputs");
            } else {
                let n = &mut out.graph.nodes[*node];
                n.attributes.retain(|a| a.name != "split");
                n.attributes.push(edgewise_graph::Attribute {
                    name: "split".into(),
                    value: AttributeValue::Ints(sizes),
                });
            }
        }
        Rewrite::Slice {
            node,
            entry,
            start,
            end,
        } => {
            let node_ref = &original.graph.nodes[*node];
            let keep = kept.of(&node_ref.inputs[0]).unwrap_or_default();
            let new_start = keep.iter().filter(|&&c| c < *start).count() as i64;
            let inside = keep
                .iter()
                .filter(|&&c| (*start..*end).contains(&c))
                .count();
            let (mut starts, mut ends, _, _) =
                slice_args(original, node_ref).map_err(PruneError::Internal)?;
            starts[*entry] = new_start;
            ends[*entry] = new_start + inside as i64;
            let label = node_ref.name.clone();
            if node_ref.inputs.len() >= 3 {
                let s = add_ints(out, &format!("{label}_starts"), starts);
                let e = add_ints(out, &format!("{label}_ends"), ends);
                let n = &mut out.graph.nodes[*node];
                n.inputs[1] = s;
                n.inputs[2] = e;
            } else {
                let n = &mut out.graph.nodes[*node];
                n.attributes
                    .retain(|a| a.name != "starts" && a.name != "ends");
                n.attributes.push(edgewise_graph::Attribute {
                    name: "starts".into(),
                    value: AttributeValue::Ints(starts),
                });
                n.attributes.push(edgewise_graph::Attribute {
                    name: "ends".into(),
                    value: AttributeValue::Ints(ends),
                });
            }
        }
        Rewrite::ShapeInput { node, input, block } => {
            let node_ref = &original.graph.nodes[*node];
            let Some(name) = node_ref.inputs.get(*input).filter(|s| !s.is_empty()) else {
                return Ok(());
            };
            let mut shape = crate::groups::ints_of(original, name).ok_or_else(|| {
                PruneError::Internal(format!("shape input `{name}` is not a constant"))
            })?;
            // 0 (copy) and -1 (infer) follow the pruned input on their own.
            if shape.len() >= 2 && shape[1] > 0 {
                // A flattening reshape counts features: kept input channels
                // times `block`; otherwise the output's kept channels.
                let c = if *block > 1 {
                    kept.of(&node_ref.inputs[0]).map(|k| k.len() * block)
                } else {
                    count(&node_ref.outputs[0])
                };
                if let Some(c) = c {
                    shape[1] = c as i64;
                    let label = node_ref.name.clone();
                    let fresh = add_ints(out, &format!("{label}_shape"), shape);
                    out.graph.nodes[*node].inputs[*input] = fresh;
                }
            }
        }
    }
    Ok(())
}

fn set_int(attributes: &mut Vec<edgewise_graph::Attribute>, name: &str, value: i64) {
    attributes.retain(|a| a.name != name);
    attributes.push(edgewise_graph::Attribute {
        name: name.into(),
        value: AttributeValue::Int(value),
    });
}
