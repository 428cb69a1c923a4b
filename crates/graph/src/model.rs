//! The editable model: graph, nodes, values, initializers, attributes, opsets
//! and metadata, decoded from ONNX and encoded back.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::{DatumType, Tensor};

use crate::error::{GraphError, Result};
use crate::tensor;

/// One entry of the model's operator-set imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opset {
    /// Empty (or `ai.onnx`) for the standard operators.
    pub domain: String,
    /// The operator set version.
    pub version: i64,
}

/// One dimension of a declared value shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (`batch`, `height`, ...).
    Param(String),
    /// Unknown.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Param(p) => write!(f, "{p}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// The declared element type and shape of a graph input, output or value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// ONNX element type code (`1` is float32); `0` when undeclared.
    pub elem_type: i32,
    /// Declared shape, when there is one.
    pub shape: Option<Vec<Dim>>,
    /// Free-form documentation from the file.
    pub doc_string: String,
}

impl ValueInfo {
    /// The declared element type as tract's datum type.
    pub fn datum_type(&self) -> Option<DatumType> {
        tensor::datum_type_of(self.elem_type)
    }

    /// The declared shape, when every dimension of it is a fixed positive size.
    pub fn fixed_dims(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) if *v > 0 => Some(*v as usize),
                _ => None,
            })
            .collect()
    }

    /// The declared shape written like `[batch,3,?,?]`.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            None => "[unknown rank]".into(),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                format!("[{}]", dims.join(","))
            }
        }
    }
}

/// A node attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// A byte string (usually UTF-8 text).
    String(Vec<u8>),
    /// A tensor (the `value` of a `Constant` node, for instance).
    Tensor(Tensor),
    /// Floats.
    Floats(Vec<f32>),
    /// Integers.
    Ints(Vec<i64>),
    /// Byte strings.
    Strings(Vec<Vec<u8>>),
    /// Tensors.
    Tensors(Vec<Tensor>),
    /// Anything else (subgraphs, sparse tensors, type protos), kept verbatim so
    /// that saving loses nothing.
    Opaque(Box<pb::AttributeProto>),
}

/// A named attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (may be empty in the file; see [`Graph::node_label`]).
    pub name: String,
    /// Operator type (`Conv`, `Add`, ...).
    pub op_type: String,
    /// Operator domain; empty for the standard operators.
    pub domain: String,
    /// Input value names; an empty string is an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names; an empty string is an omitted optional output.
    pub outputs: Vec<String>,
    /// Attributes, in file order.
    pub attributes: Vec<Attribute>,
    /// Free-form documentation from the file.
    pub doc_string: String,
}

impl Node {
    /// The attribute named `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// An integer attribute, or `default`.
    pub fn int_attr(&self, name: &str, default: i64) -> i64 {
        match self.attribute(name) {
            Some(AttributeValue::Int(i)) => *i,
            _ => default,
        }
    }

    /// An integer-list attribute, if present.
    pub fn ints_attr(&self, name: &str) -> Option<&[i64]> {
        match self.attribute(name) {
            Some(AttributeValue::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// The inputs that are actually wired (non-empty names).
    pub fn present_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The outputs that are actually produced (non-empty names).
    pub fn present_outputs(&self) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A named constant tensor stored in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Initializer {
    /// The value name it defines.
    pub name: String,
    /// Its content.
    pub tensor: Tensor,
}

/// The main graph of a model.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    /// Free-form documentation.
    pub doc_string: String,
    /// Graph inputs (in IR < 4 files, initializers may be listed here too).
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    /// Declared types of intermediate values.
    pub value_info: Vec<ValueInfo>,
    /// Initializers, in file order.
    pub initializers: Vec<Initializer>,
    /// Nodes, in file order (ONNX requires a topological order; see [`crate::Topology`]).
    pub nodes: Vec<Node>,
    /// Sparse initializers and quantization annotations, kept verbatim.
    pub sparse_initializers: Vec<pb::SparseTensorProto>,
    /// Quantization annotations, kept verbatim.
    pub quantization_annotation: Vec<pb::TensorAnnotation>,
}

impl Graph {
    /// Every node's index by its [`Graph::node_label`]: how a node is found
    /// again in a rewritten copy of the graph, whose indices moved.
    pub fn nodes_by_label(&self) -> HashMap<String, usize> {
        (0..self.nodes.len())
            .map(|ix| (self.node_label(ix), ix))
            .collect()
    }

    /// The name to show for node `ix`: its own name, or its first output, or `#ix op`.
    pub fn node_label(&self, ix: usize) -> String {
        let node = &self.nodes[ix];
        if !node.name.is_empty() {
            node.name.clone()
        } else if let Some(out) = node.present_outputs().next() {
            out.to_string()
        } else {
            format!("#{ix} {}", node.op_type)
        }
    }

    /// The graph inputs that are real inputs (not also initializers).
    pub fn real_inputs(&self) -> Vec<&ValueInfo> {
        let inits: HashSet<&str> = self.initializers.iter().map(|i| i.name.as_str()).collect();
        self.inputs
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .collect()
    }

    /// The constant tensor behind value `name`: an initializer, or the output of a
    /// `Constant` node.
    pub fn constant(&self, name: &str) -> Option<std::borrow::Cow<'_, Tensor>> {
        if let Some(init) = self.initializers.iter().find(|i| i.name == name) {
            return Some(std::borrow::Cow::Borrowed(&init.tensor));
        }
        let node = self
            .nodes
            .iter()
            .find(|n| n.op_type == "Constant" && n.outputs.first().is_some_and(|o| o == name))?;
        constant_node_value(node)
    }
}

/// The tensor a `Constant` node produces, from whichever attribute holds it.
pub fn constant_node_value(node: &Node) -> Option<std::borrow::Cow<'_, Tensor>> {
    use std::borrow::Cow;
    let attr = node.attributes.first()?;
    Some(match &attr.value {
        AttributeValue::Tensor(t) => Cow::Borrowed(t),
        AttributeValue::Float(f) => Cow::Owned(tract_onnx::prelude::tensor0(*f)),
        AttributeValue::Int(i) => Cow::Owned(tract_onnx::prelude::tensor0(*i)),
        AttributeValue::Floats(v) => Cow::Owned(tract_onnx::prelude::tensor1(v)),
        AttributeValue::Ints(v) => Cow::Owned(tract_onnx::prelude::tensor1(v)),
        _ => return None,
    })
}

/// An editable ONNX model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Operator set imports.
    pub opsets: Vec<Opset>,
    /// Producer (exporter) name.
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// Model domain.
    pub domain: String,
    /// Model version.
    pub model_version: i64,
    /// Free-form documentation.
    pub doc_string: String,
    /// `metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
    /// The main graph.
    pub graph: Graph,
    /// Model-local functions, kept verbatim.
    pub functions: Vec<pb::FunctionProto>,
    /// Training information, kept verbatim.
    pub training_info: Vec<pb::TrainingInfoProto>,
    /// The folder the model was loaded from (for external data), if any.
    pub source_dir: Option<PathBuf>,
}

impl Model {
    /// Loads and checks an ONNX file.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GraphError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        let origin = path.display().to_string();
        let proto = Self::decode(&bytes, &origin)?;
        // The file's bytes, the decoded proto and the decoded tensors each
        // hold every weight: one copy at a time keeps peak memory at twice
        // the weights, not four times (a 20 MB YOLOX peaked at 83 MB here,
        // above everything its frames use).
        drop(bytes);
        let model = Self::from_proto_owned(proto, dir)?;
        model.check()?;
        Ok(model)
    }

    /// Decodes and checks ONNX bytes. `origin` names them in errors; `dir` is
    /// where external data lives (none: external data is refused).
    pub fn from_bytes(bytes: &[u8], origin: &str, dir: Option<&Path>) -> Result<Model> {
        let model = Self::from_proto_owned(Self::decode(bytes, origin)?, dir)?;
        model.check()?;
        Ok(model)
    }

    /// Decodes ONNX bytes into a proto that holds a graph with nodes.
    fn decode(bytes: &[u8], origin: &str) -> Result<pb::ModelProto> {
        let not_onnx = |reason: String| GraphError::NotOnnx {
            origin: origin.to_string(),
            reason,
        };
        if bytes.is_empty() {
            return Err(not_onnx("the file is empty".into()));
        }
        let proto = pb::ModelProto::decode(bytes).map_err(|e| not_onnx(e.to_string()))?;
        if proto.ir_version <= 0 {
            return Err(not_onnx("no ONNX IR version".into()));
        }
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| not_onnx("it holds no graph".into()))?;
        if graph.node.is_empty() {
            return Err(not_onnx("its graph has no nodes".into()));
        }
        Ok(proto)
    }

    /// Builds the editable model from a decoded `ModelProto` (no checks).
    pub fn from_proto(proto: &pb::ModelProto, dir: Option<&Path>) -> Result<Model> {
        Self::from_proto_owned(proto.clone(), dir)
    }

    /// [`Model::from_proto`], taking the proto apart: each initializer's
    /// proto is freed once its tensor is decoded.
    fn from_proto_owned(mut proto: pb::ModelProto, dir: Option<&Path>) -> Result<Model> {
        let g = proto.graph.take().unwrap_or_default();
        let graph = Graph {
            name: g.name,
            doc_string: g.doc_string,
            inputs: g.input.iter().map(value_info_from_proto).collect(),
            outputs: g.output.iter().map(value_info_from_proto).collect(),
            value_info: g.value_info.iter().map(value_info_from_proto).collect(),
            initializers: g
                .initializer
                .into_iter()
                .map(|t| {
                    Ok(Initializer {
                        tensor: tensor::decode(&t, dir)?,
                        name: t.name,
                    })
                })
                .collect::<Result<_>>()?,
            nodes: g
                .node
                .iter()
                .map(|n| node_from_proto(n, dir))
                .collect::<Result<_>>()?,
            sparse_initializers: g.sparse_initializer,
            quantization_annotation: g.quantization_annotation,
        };
        Ok(Model {
            ir_version: proto.ir_version,
            opsets: proto
                .opset_import
                .iter()
                .map(|o| Opset {
                    domain: o.domain.clone(),
                    version: o.version,
                })
                .collect(),
            producer_name: proto.producer_name.clone(),
            producer_version: proto.producer_version.clone(),
            domain: proto.domain.clone(),
            model_version: proto.model_version,
            doc_string: proto.doc_string.clone(),
            metadata: proto
                .metadata_props
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
            graph,
            functions: proto.functions.clone(),
            training_info: proto.training_info.clone(),
            source_dir: dir.map(Path::to_path_buf),
        })
    }

    /// Checks the graph's wiring: every value read is produced once, every
    /// output exists, and there is no cycle.
    pub fn check(&self) -> Result<()> {
        crate::Topology::new(&self.graph).map(|_| ())
    }

    /// The standard-domain opset version (0 when not declared).
    pub fn opset(&self) -> i64 {
        self.opsets
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0)
    }

    /// A metadata value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) a metadata value.
    pub fn set_metadata(&mut self, key: &str, value: impl Into<String>) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.into(),
            None => self.metadata.push((key.to_string(), value.into())),
        }
    }

    /// Encodes the model as a `ModelProto` (all data inline).
    pub fn to_proto(&self) -> Result<pb::ModelProto> {
        let g = &self.graph;
        let graph = pb::GraphProto {
            node: g.nodes.iter().map(node_to_proto).collect::<Result<_>>()?,
            name: g.name.clone(),
            initializer: g
                .initializers
                .iter()
                .map(|i| tensor::encode(&i.name, &i.tensor))
                .collect::<Result<_>>()?,
            sparse_initializer: g.sparse_initializers.clone(),
            doc_string: g.doc_string.clone(),
            input: g.inputs.iter().map(value_info_to_proto).collect(),
            output: g.outputs.iter().map(value_info_to_proto).collect(),
            value_info: g.value_info.iter().map(value_info_to_proto).collect(),
            quantization_annotation: g.quantization_annotation.clone(),
        };
        Ok(pb::ModelProto {
            ir_version: self.ir_version,
            opset_import: self
                .opsets
                .iter()
                .map(|o| pb::OperatorSetIdProto {
                    domain: o.domain.clone(),
                    version: o.version,
                })
                .collect(),
            producer_name: self.producer_name.clone(),
            producer_version: self.producer_version.clone(),
            domain: self.domain.clone(),
            model_version: self.model_version,
            doc_string: self.doc_string.clone(),
            graph: Some(graph),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            training_info: self.training_info.clone(),
            functions: self.functions.clone(),
        })
    }

    /// Encodes the model as ONNX bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.to_proto()?.encode_to_vec())
    }

    /// Writes the model atomically: to a temporary file beside `path`, then
    /// renamed over it, so a crash never leaves a half-written model.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomically(path.as_ref(), &bytes)
    }

    /// A copy whose outputs are `values`, in that order, and nothing else:
    /// to read intermediate activations (calibration, recovery).
    pub fn with_outputs(&self, values: &[String]) -> Model {
        let mut m = self.clone();
        m.graph.outputs = values
            .iter()
            .map(|v| ValueInfo {
                name: v.clone(),
                elem_type: 1,
                shape: None,
                doc_string: String::new(),
            })
            .collect();
        m
    }

    /// Turns every `Constant` node (but those writing a graph output) into an
    /// initializer of the same name, so that passes which edit weights find
    /// them in one place. Returns how many moved.
    pub fn constants_to_initializers(&mut self) -> usize {
        let g = &mut self.graph;
        let outputs: HashSet<String> = g.outputs.iter().map(|o| o.name.clone()).collect();
        let mut moved = vec![];
        g.nodes.retain(|n| {
            if n.op_type != "Constant" || !n.domain.is_empty() || outputs.contains(&n.outputs[0]) {
                return true;
            }
            match constant_node_value(n) {
                Some(t) => {
                    moved.push(Initializer {
                        name: n.outputs[0].clone(),
                        tensor: t.into_owned(),
                    });
                    false
                }
                None => true,
            }
        });
        let count = moved.len();
        g.initializers.extend(moved);
        count
    }

    /// Replaces every node name and value name with a meaningless one (`n17`,
    /// `v42`), keeping the structure. Returns the old-to-new value name map.
    pub fn anonymize(&mut self) -> HashMap<String, String> {
        let mut values: HashMap<String, String> = HashMap::new();
        let mut rename = |name: &mut String| {
            if name.is_empty() {
                return;
            }
            let next = values.len();
            let new = values
                .entry(name.clone())
                .or_insert_with(|| format!("v{next}"))
                .clone();
            *name = new;
        };
        let g = &mut self.graph;
        for vi in g
            .inputs
            .iter_mut()
            .chain(g.outputs.iter_mut())
            .chain(g.value_info.iter_mut())
        {
            rename(&mut vi.name);
        }
        for init in &mut g.initializers {
            rename(&mut init.name);
        }
        for (ix, node) in g.nodes.iter_mut().enumerate() {
            node.name = format!("n{ix}");
            node.doc_string.clear();
            node.inputs
                .iter_mut()
                .chain(node.outputs.iter_mut())
                .for_each(&mut rename);
        }
        g.name = "graph".into();
        values
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| GraphError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

fn value_info_from_proto(vi: &pb::ValueInfoProto) -> ValueInfo {
    let tensor_type = vi
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|v| match v {
            pb::type_proto::Value::TensorType(t) => t,
        });
    let shape = tensor_type.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                    Dim::Param(p.clone())
                }
                None => Dim::Unknown,
            })
            .collect()
    });
    ValueInfo {
        name: vi.name.clone(),
        elem_type: tensor_type.map(|t| t.elem_type).unwrap_or(0),
        shape,
        doc_string: vi.doc_string.clone(),
    }
}

fn value_info_to_proto(vi: &ValueInfo) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let shape = vi.shape.as_ref().map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                denotation: String::new(),
                value: match d {
                    Dim::Fixed(v) => Some(Value::DimValue(*v)),
                    Dim::Param(p) => Some(Value::DimParam(p.clone())),
                    Dim::Unknown => None,
                },
            })
            .collect(),
    });
    let declared = vi.elem_type != 0 || shape.is_some();
    pb::ValueInfoProto {
        name: vi.name.clone(),
        r#type: declared.then(|| pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: vi.elem_type,
                shape,
            })),
        }),
        doc_string: vi.doc_string.clone(),
    }
}

fn node_from_proto(n: &pb::NodeProto, dir: Option<&Path>) -> Result<Node> {
    use pb::attribute_proto::AttributeType as T;
    let label = if n.name.is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name.clone()
    };
    let attributes = n
        .attribute
        .iter()
        .map(|a| {
            let ty = T::try_from(a.r#type).unwrap_or(T::Undefined);
            let tensor_err = |e: GraphError| GraphError::BadAttribute {
                node: label.clone(),
                attribute: a.name.clone(),
                reason: e.to_string(),
            };
            let value = match ty {
                T::Float => AttributeValue::Float(a.f),
                T::Int => AttributeValue::Int(a.i),
                T::String => AttributeValue::String(a.s.clone()),
                T::Floats => AttributeValue::Floats(a.floats.clone()),
                T::Ints => AttributeValue::Ints(a.ints.clone()),
                T::Strings => AttributeValue::Strings(a.strings.clone()),
                T::Tensor if a.t.is_some() && a.ref_attr_name.is_empty() => AttributeValue::Tensor(
                    tensor::decode(a.t.as_ref().expect("checked above"), dir)
                        .map_err(tensor_err)?,
                ),
                T::Tensors if a.ref_attr_name.is_empty() => AttributeValue::Tensors(
                    a.tensors
                        .iter()
                        .map(|t| tensor::decode(t, dir))
                        .collect::<Result<_>>()
                        .map_err(tensor_err)?,
                ),
                _ => AttributeValue::Opaque(Box::new(a.clone())),
            };
            Ok(Attribute {
                name: a.name.clone(),
                value,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Node {
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attributes,
        doc_string: n.doc_string.clone(),
    })
}

fn node_to_proto(n: &Node) -> Result<pb::NodeProto> {
    use pb::attribute_proto::AttributeType as T;
    let attribute = n
        .attributes
        .iter()
        .map(|a| {
            let mut p = pb::AttributeProto {
                name: a.name.clone(),
                ..Default::default()
            };
            let ty = match &a.value {
                AttributeValue::Float(f) => {
                    p.f = *f;
                    T::Float
                }
                AttributeValue::Int(i) => {
                    p.i = *i;
                    T::Int
                }
                AttributeValue::String(s) => {
                    p.s = s.clone();
                    T::String
                }
                AttributeValue::Floats(v) => {
                    p.floats = v.clone();
                    T::Floats
                }
                AttributeValue::Ints(v) => {
                    p.ints = v.clone();
                    T::Ints
                }
                AttributeValue::Strings(v) => {
                    p.strings = v.clone();
                    T::Strings
                }
                AttributeValue::Tensor(t) => {
                    p.t = Some(tensor::encode("", t)?);
                    T::Tensor
                }
                AttributeValue::Tensors(ts) => {
                    p.tensors = ts
                        .iter()
                        .map(|t| tensor::encode("", t))
                        .collect::<Result<_>>()?;
                    T::Tensors
                }
                AttributeValue::Opaque(proto) => return Ok((**proto).clone()),
            };
            p.r#type = ty as i32;
            Ok(p)
        })
        .collect::<Result<_>>()?;
    Ok(pb::NodeProto {
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        attribute,
        doc_string: n.doc_string.clone(),
    })
}
