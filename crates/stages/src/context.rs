//! What the stage finder knows about the graph: data edges (constants left
//! out), strides of spatial values, and which nodes are layers with weights.

use std::collections::{HashMap, HashSet};

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

/// Operators whose output mixes tokens (rows against columns) rather than
/// filtering a neighbourhood: attention's query-key and weight-value products.
const TOKEN_MIXING_OPS: &[&str] = &["MatMul", "Gemm", "Einsum", "MatMulInteger", "QLinearMatMul"];

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
        let tokens = token_values(graph, topo, &constant, &data_inputs);
        let stride = spatial_strides(graph, facts, &tokens);
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

/// Values that are token products, never feature maps: the outputs of
/// [`TOKEN_MIXING_OPS`] and, transitively, of any node other than a `Reshape`
/// whose data inputs are all token products (Softmax, Transpose, scaling).
///
/// Why: attention blocks inside a backbone or neck (Ultralytics' C2PSA and
/// C3k2 with PSA in YOLO11/YOLO26, `ultralytics/nn/modules/block.py`
/// `Attention`) reshape a map into `[1, heads, dim, HW]` and multiply query by
/// key into `[1, heads, HW, HW]`. Those are rank 4 and, at some input sizes,
/// exactly the shape of a map (`[1, 2, 256, 256]` at 512), so their strides
/// made every attention residual look like a cross-scale fusion. A `Reshape`
/// may turn tokens back into a map (PSA's `view(B, C, H, W)`), so it ends the
/// token region.
fn token_values<'a>(
    graph: &'a Graph,
    topo: &Topology,
    constant: &[bool],
    data_inputs: &[Vec<&'a str>],
) -> HashSet<&'a str> {
    let mut tokens = HashSet::new();
    for &ix in topo.order() {
        if constant[ix] {
            continue;
        }
        let node = &graph.nodes[ix];
        let inputs = &data_inputs[ix];
        let mixes = TOKEN_MIXING_OPS.contains(&node.op_type.as_str());
        let carries = node.op_type != "Reshape"
            && !inputs.is_empty()
            && inputs.iter().all(|v| tokens.contains(v));
        if mixes || carries {
            tokens.extend(node.present_outputs());
        }
    }
    tokens
}

/// The stride of every feature map relative to the image input: a rank-4
/// value with H·W > 1 whose height and width both come from the input's by
/// one integer stride k (each rounded down or up, as strided convolutions
/// and pooling round), and which is not a token product ([`token_values`]).
/// The stride is the height ratio, in_H / H.
///
/// Why the integer-stride test: decoding in the body of Ultralytics YOLOv8
/// exports (`ultralytics/nn/modules/head.py` `Detect` with `DFL`) reshapes the
/// box branch into rank-4 values that are not maps, `[1, 4, 16, A]`,
/// `[1, A, 4, 16]` and `[1, 1, 4, A]` (A anchors). Read as maps, they had
/// strides of 20 or 80 at a 320 input, so the box branch seemed to make a
/// coarser map and was not taken for a prediction branch. Odd sizes still
/// pass: PicoDet's 13×10 level at 800×608 (k = 64, both rounded up), and
/// YOLOX's Focus slices (k = 2).
fn spatial_strides<'a>(
    graph: &'a Graph,
    facts: &Facts,
    tokens: &HashSet<&str>,
) -> HashMap<&'a str, f32> {
    let mut strides = HashMap::new();
    let Some((input_height, input_width)) =
        facts.inputs.iter().find_map(|(_, dims)| input_size(dims))
    else {
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
            && !tokens.contains(value)
            && one_integer_stride(input_height, input_width, shape[2], shape[3])
        {
            strides.insert(value, input_height as f32 / shape[2] as f32);
        }
    }
    strides
}

/// Whether some integer k ≥ 1 gives `h` from `input_height` and `w` from
/// `input_width`, each divided by k and rounded down or up.
fn one_integer_stride(input_height: usize, input_width: usize, h: usize, w: usize) -> bool {
    let ratio = input_height as f64 / h as f64;
    let candidates = [ratio.floor(), ratio.ceil()].map(|k| (k as usize).max(1));
    let by = |side: usize, k: usize| [side / k, side.div_ceil(k)];
    candidates
        .iter()
        .any(|&k| by(input_height, k).contains(&h) && by(input_width, k).contains(&w))
}

/// Height and width of an image input, NCHW (or NHWC when the last axis looks like channels).
fn input_size(dims: &[usize]) -> Option<(usize, usize)> {
    if dims.len() != 4 {
        return None;
    }
    if dims[1] <= 4 && dims[3] > 4 {
        Some((dims[2], dims[3]))
    } else if dims[3] <= 4 {
        Some((dims[1], dims[2]))
    } else {
        Some((dims[2], dims[3]))
    }
}

/// Whether the value comes from a graph input (not from a node).
pub fn is_graph_input(topo: &Topology, value: &str) -> bool {
    topo.producer(value) == Some(Producer::Input)
}
