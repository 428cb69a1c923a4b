//! Shape and type of every value at a fixed input shape, from tract's own
//! analysis (no per-operator shape rules of our own).

use std::collections::HashMap;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::Factoid;

use crate::error::{GraphError, Result};
use crate::model::{Dim, Model, ValueInfo};

/// A shape asked for one input: `1x3x640x640`, or `images:1x3x640x640`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// The input's name; `None` means "the inputs in order".
    pub name: Option<String>,
    /// The dimensions.
    pub dims: Vec<usize>,
}

impl InputShape {
    /// Parses a comma-separated list of shapes: `1x3x640x640` or
    /// `images:1x3x640x640,mask:1x1x640x640`.
    pub fn parse_list(text: &str) -> Result<Vec<InputShape>> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Parses one shape.
    pub fn parse(text: &str) -> Result<InputShape> {
        let err = |reason: &str| GraphError::BadShapeSpec {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let text_trim = text.trim();
        let (name, dims) = match text_trim.rsplit_once(':') {
            Some((n, d)) => (Some(n.trim().to_string()), d),
            None => (None, text_trim),
        };
        let dims = dims
            .split(['x', 'X'])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| err(&format!("`{d}` is not a size")))
            })
            .collect::<Result<Vec<_>>>()?;
        if dims.contains(&0) {
            return Err(err("a dimension is zero"));
        }
        Ok(InputShape { name, dims })
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = &self.name {
            write!(f, "{n}:")?;
        }
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", dims.join("x"))
    }
}

/// The concrete type and shape of one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueFact {
    /// Element type.
    pub datum_type: DatumType,
    /// Shape.
    pub shape: Vec<usize>,
}

impl ValueFact {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size in bytes (strings count as pointers).
    pub fn bytes(&self) -> usize {
        self.len() * self.datum_type.size_of()
    }
}

/// The facts of every value, at the input shapes in [`Facts::inputs`].
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The inputs' names and the shapes used.
    pub inputs: Vec<(String, Vec<usize>)>,
    values: HashMap<String, ValueFact>,
}

impl Facts {
    /// The fact of a value, when tract could determine it.
    pub fn get(&self, value: &str) -> Option<&ValueFact> {
        self.values.get(value)
    }

    /// The shape of a value, when known.
    pub fn shape(&self, value: &str) -> Option<&[usize]> {
        self.values.get(value).map(|f| f.shape.as_slice())
    }

    /// Number of values with a known fact.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Fails on the first node whose operator tract does not implement, naming it.
pub fn check_operators(model: &Model) -> Result<()> {
    let registry = tract_onnx::onnx().op_register;
    for (ix, node) in model.graph.nodes.iter().enumerate() {
        if !registry.0.contains_key(&node.op_type) {
            let domain = match node.domain.as_str() {
                "" | "ai.onnx" => String::new(),
                d => format!(" (domain {d})"),
            };
            return Err(GraphError::UnsupportedOperator {
                op: node.op_type.clone(),
                node: model.graph.node_label(ix),
                domain,
            });
        }
    }
    Ok(())
}

/// Decides the concrete shape of every real input: the one given (by name, or
/// in order), else the declared one when it is fully fixed.
pub fn resolve_input_shapes(
    model: &Model,
    given: &[InputShape],
) -> Result<Vec<(String, Vec<usize>)>> {
    let inputs = model.graph.real_inputs();
    for g in given {
        if let Some(name) = &g.name
            && !inputs.iter().any(|i| &i.name == name)
        {
            return Err(GraphError::UnknownInput(name.clone()));
        }
    }
    let unnamed: Vec<&InputShape> = given.iter().filter(|g| g.name.is_none()).collect();
    inputs
        .iter()
        .enumerate()
        .map(|(ix, input)| {
            let chosen = given
                .iter()
                .find(|g| g.name.as_deref() == Some(input.name.as_str()))
                .or_else(|| unnamed.get(ix).copied());
            let dims = match chosen {
                Some(shape) => {
                    check_fits(input, &shape.dims)?;
                    shape.dims.clone()
                }
                None => input.fixed_dims().ok_or_else(|| GraphError::DynamicInput {
                    input: input.name.clone(),
                    declared: input.shape_text(),
                    example: example_shape(input),
                })?,
            };
            Ok((input.name.clone(), dims))
        })
        .collect()
}

fn example_shape(input: &ValueInfo) -> String {
    let dims: Vec<String> = match &input.shape {
        Some(dims) if dims.len() == 4 => dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Fixed(v) if *v > 0 => v.to_string(),
                _ if i == 0 => "1".into(),
                _ => "640".into(),
            })
            .collect(),
        Some(dims) => dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) if *v > 0 => v.to_string(),
                _ => "1".into(),
            })
            .collect(),
        None => vec!["1".into(), "3".into(), "640".into(), "640".into()],
    };
    format!("--input-shape {}", dims.join("x"))
}

fn check_fits(input: &ValueInfo, dims: &[usize]) -> Result<()> {
    let Some(declared) = &input.shape else {
        return Ok(());
    };
    let mismatch = |reason: String| GraphError::InputShapeMismatch {
        input: input.name.clone(),
        declared: input.shape_text(),
        given: format!("{dims:?}"),
        reason,
    };
    if declared.len() != dims.len() {
        return Err(mismatch(format!(
            "the model expects rank {}, the shape given has rank {}",
            declared.len(),
            dims.len()
        )));
    }
    for (axis, (d, &g)) in declared.iter().zip(dims).enumerate() {
        if let Dim::Fixed(v) = d
            && *v > 0
            && *v as usize != g
        {
            return Err(mismatch(format!(
                "axis {axis} is fixed to {v}, the shape given has {g}"
            )));
        }
    }
    Ok(())
}

/// Builds tract's inference model for `model` with the inputs fixed to `shapes`.
pub fn tract_model(model: &Model, shapes: &[(String, Vec<usize>)]) -> Result<InferenceModel> {
    check_operators(model)?;
    let mut proto = model.to_proto()?;
    // Declared intermediate shapes may hold symbols that contradict the fixed
    // input shapes (onnxruntime's quantizer writes a `DynamicDimension` batch
    // on every value); tract infers them all anyway.
    if let Some(graph) = proto.graph.as_mut() {
        graph.value_info.clear();
    }
    let onnx = tract_onnx::onnx();
    let mut tract = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| GraphError::Analysis(format!("{e:#}")))?;
    let inputs = model.graph.real_inputs();
    for (ix, (name, dims)) in shapes.iter().enumerate() {
        let dt = inputs
            .iter()
            .find(|i| &i.name == name)
            .and_then(|i| i.datum_type())
            .unwrap_or(DatumType::F32);
        tract
            .set_input_fact(ix, InferenceFact::dt_shape(dt, dims.clone()))
            .map_err(|e| GraphError::Analysis(format!("input `{name}`: {e:#}")))?;
    }
    Ok(tract)
}

/// Computes the type and shape of every value at the given input shapes.
pub fn analyze(model: &Model, given: &[InputShape]) -> Result<Facts> {
    let inputs = resolve_input_shapes(model, given)?;
    let mut tract = tract_model(model, &inputs)?;
    let fail = |e: TractError| GraphError::Analysis(format!("{e:#}"));
    tract.analyse(false).map_err(fail)?;
    let mut values = HashMap::new();
    // The inference model names every ONNX value; the typed model may fold some
    // of them away but resolves shapes inference leaves open. Take both.
    for node in tract.nodes() {
        for (slot, output) in node.outputs.iter().enumerate() {
            let Some(label) = tract.outlet_label(OutletId::new(node.id, slot)) else {
                continue;
            };
            let dt = output.fact.datum_type.concretize();
            let shape = output.fact.shape.as_concrete_finite().ok().flatten();
            if let (Some(datum_type), Some(shape)) = (dt, shape) {
                values.insert(
                    label.to_string(),
                    ValueFact {
                        datum_type,
                        shape: shape.to_vec(),
                    },
                );
            }
        }
    }
    let typed = tract.into_typed().map_err(fail)?;
    for node in typed.nodes() {
        for (slot, output) in node.outputs.iter().enumerate() {
            let Some(label) = typed.outlet_label(OutletId::new(node.id, slot)) else {
                continue;
            };
            if let Some(shape) = output.fact.shape.as_concrete() {
                values.insert(
                    label.to_string(),
                    ValueFact {
                        datum_type: output.fact.datum_type,
                        shape: shape.to_vec(),
                    },
                );
            }
        }
    }
    // tract names its sources but does not label their outlets.
    for (name, dims) in &inputs {
        let declared = model
            .graph
            .inputs
            .iter()
            .find(|i| &i.name == name)
            .and_then(|i| i.datum_type());
        values.insert(
            name.clone(),
            ValueFact {
                datum_type: declared.unwrap_or(DatumType::F32),
                shape: dims.clone(),
            },
        );
    }
    // Constants carry their own shape, whether or not tract kept a node for them.
    for init in &model.graph.initializers {
        values.insert(
            init.name.clone(),
            ValueFact {
                datum_type: init.tensor.datum_type(),
                shape: init.tensor.shape().to_vec(),
            },
        );
    }
    Ok(Facts { inputs, values })
}
