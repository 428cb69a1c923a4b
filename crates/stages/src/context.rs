//! What the stage finder knows about the graph: data edges (constants left
//! out), strides of spatial values, and which nodes are layers with weights.

use std::collections::HashMap;

use edgewise_graph::{Facts, Graph, Producer, Topology};

/// Operators that carry learned weights.
const WEIGHTED_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "Gemm",
    "MatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "PRelu",
];

/// Operators that resample space (their output stride differs from their input's).
pub const RESAMPLING_OPS: &[&str] = &[
    "Resize",
    "Upsample",
    "ConvTranspose",
    "DepthToSpace",
    "SpaceToDepth",
];

/// Graph facts in the form the stage finder needs.
pub struct Context<'a> {
    /// The graph.
    pub graph: &'a Graph,
    /// Its wiring.
    pub topo: &'a Topology,
    /// Node is computed from constants only.
    pub constant: Vec<bool>,
    /// Position of each node in the execution order.
    pub position: Vec<usize>,
    /// Non-constant inputs of each node, deduplicated.
    pub data_inputs: Vec<Vec<&'a str>>,
    /// Non-constant readers of each value.
    pub readers: HashMap<&'a str, Vec<usize>>,
    /// Stride of every spatial value (None for global or non-spatial ones).
    pub stride: HashMap<&'a str, f32>,
    /// Node is a layer with weights, or a per-channel affine step right after one
    /// (an exporter's split-off bias).
    pub layer: Vec<bool>,
    /// Shapes of all values.
    pub facts: &'a Facts,
}

impl<'a> Context<'a> {
    /// Indexes `graph` at the shapes in `facts`.
    pub fn new(graph: &'a Graph, topo: &'a Topology, facts: &'a Facts) -> Context<'a> {
        let constant = topo.constant_nodes(graph);
        let mut position = vec![0; graph.nodes.len()];
        for (i, &n) in topo.order().iter().enumerate() {
            position[n] = i;
        }
        let mut data_inputs = Vec::with_capacity(graph.nodes.len());
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (ix, node) in graph.nodes.iter().enumerate() {
            let mut inputs: Vec<&str> = Vec::new();
            if !constant[ix] {
                for v in node.present_inputs() {
                    if !topo.is_constant(v, &constant) && !inputs.contains(&v) {
                        inputs.push(v);
                        readers.entry(v).or_default().push(ix);
                    }
                }
            }
            data_inputs.push(inputs);
        }
        let stride = spatial_strides(graph, facts);
        let mut ctx = Context {
            graph,
            topo,
            constant,
            position,
            data_inputs,
            readers,
            stride,
            layer: vec![],
            facts,
        };
        ctx.layer = ctx.find_layers();
        ctx
    }

    /// Non-constant readers of `value`.
    pub fn readers(&self, value: &str) -> &[usize] {
        self.readers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The node producing `value`, if a (non-constant) node does.
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.topo
            .producer_node(value)
            .filter(|&p| !self.constant[p])
    }

    /// The data outputs of node `ix`.
    pub fn outputs(&self, ix: usize) -> impl Iterator<Item = &'a str> + use<'a> {
        self.graph.nodes[ix].present_outputs()
    }

    /// The stride of a value, if it is a spatial map.
    pub fn stride_of(&self, value: &str) -> Option<f32> {
        self.stride.get(value).copied()
    }

    /// The stride of a node's first output.
    pub fn node_stride(&self, ix: usize) -> Option<f32> {
        self.outputs(ix).next().and_then(|o| self.stride_of(o))
    }

    /// Operator type of node `ix`.
    pub fn op(&self, ix: usize) -> &'a str {
        &self.graph.nodes[ix].op_type
    }

    /// Non-constant nodes in execution order.
    pub fn data_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.topo
            .order()
            .iter()
            .copied()
            .filter(|&n| !self.constant[n])
    }

    fn find_layers(&self) -> Vec<bool> {
        let mut layer = vec![false; self.graph.nodes.len()];
        for &ix in self.topo.order() {
            if self.constant[ix] {
                continue;
            }
            let node = &self.graph.nodes[ix];
            let has_constant_input = node
                .present_inputs()
                .any(|v| self.topo.is_constant(v, &self.constant));
            let weighted = WEIGHTED_OPS.contains(&node.op_type.as_str())
                && (has_constant_input || node.op_type.starts_with("Conv"));
            let tail = matches!(node.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div")
                && self.data_inputs[ix].len() == 1
                && self
                    .producer(self.data_inputs[ix][0])
                    .is_some_and(|p| layer[p])
                && node
                    .present_inputs()
                    .filter(|v| self.topo.is_constant(v, &self.constant))
                    .all(|v| self.facts.shape(v).is_some_and(is_per_channel));
            layer[ix] = weighted || tail;
        }
        layer
    }
}

/// A constant shape that broadcasts along one axis at most (a bias or a scale).
fn is_per_channel(shape: &[usize]) -> bool {
    shape.iter().filter(|&&d| d > 1).count() <= 1
}

/// The input's spatial height, and the stride of every rank-4 value relative to it.
fn spatial_strides<'a>(graph: &'a Graph, facts: &Facts) -> HashMap<&'a str, f32> {
    let mut strides = HashMap::new();
    let Some(input_height) = facts.inputs.iter().find_map(|(_, dims)| input_height(dims)) else {
        return strides;
    };
    let values = graph
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.nodes.iter().flat_map(|n| n.present_outputs()));
    for value in values {
        if let Some(shape) = facts.shape(value)
            && shape.len() == 4
            && shape[2] * shape[3] > 1
        {
            strides.insert(value, input_height as f32 / shape[2] as f32);
        }
    }
    strides
}

/// Height of an image input, NCHW (or NHWC when the last axis looks like channels).
fn input_height(dims: &[usize]) -> Option<usize> {
    if dims.len() != 4 {
        return None;
    }
    if dims[1] <= 4 && dims[3] > 4 {
        Some(dims[2])
    } else if dims[3] <= 4 {
        Some(dims[1])
    } else {
        Some(dims[2])
    }
}

/// Whether the value comes from a graph input (not from a node).
pub fn is_graph_input(topo: &Topology, value: &str) -> bool {
    topo.producer(value) == Some(Producer::Input)
}
