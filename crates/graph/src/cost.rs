//! Cost model: parameters, multiply-accumulates and output bytes per node.

use tract_onnx::prelude::DatumType;

use crate::analysis::Facts;
use crate::model::Graph;
use crate::topology::Topology;

/// What one node costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeCost {
    /// Weight elements this node is the first layer to read (floating point or
    /// 8-bit; shape and index constants do not count).
    pub params: u64,
    /// Multiply-accumulates (Conv, ConvTranspose, Gemm, MatMul); 0 elsewhere.
    pub macs: u64,
    /// Bytes of all outputs.
    pub output_bytes: u64,
}

impl std::ops::AddAssign for NodeCost {
    fn add_assign(&mut self, rhs: NodeCost) {
        self.params += rhs.params;
        self.macs += rhs.macs;
        self.output_bytes += rhs.output_bytes;
    }
}

fn is_weight_type(dt: DatumType) -> bool {
    matches!(
        dt,
        DatumType::F16 | DatumType::F32 | DatumType::F64 | DatumType::I8 | DatumType::U8
    )
}

/// Costs of every node (indexed like `graph.nodes`). Constant nodes cost
/// nothing: each constant tensor's elements are counted once, on the first
/// non-constant node that reads it (directly or through constant nodes).
pub fn node_costs(graph: &Graph, topo: &Topology, facts: &Facts) -> Vec<NodeCost> {
    let constant = topo.constant_nodes(graph);
    let mut costs = vec![NodeCost::default(); graph.nodes.len()];
    let position: Vec<usize> = {
        let mut p = vec![0; graph.nodes.len()];
        for (i, &n) in topo.order().iter().enumerate() {
            p[n] = i;
        }
        p
    };

    // Parameters: every source tensor (initializer or Constant output) but
    // scalars, which are operator arguments (Clip bounds, a scale factor),
    // never learned weights.
    let mut sources: Vec<(String, u64)> = Vec::new();
    for init in &graph.initializers {
        if is_weight_type(init.tensor.datum_type()) && init.tensor.rank() > 0 {
            sources.push((init.name.clone(), init.tensor.len() as u64));
        }
    }
    for node in &graph.nodes {
        if node.op_type == "Constant"
            && let Some(out) = node.outputs.first()
            && let Some(t) = crate::model::constant_node_value(node)
            && is_weight_type(t.datum_type())
            && t.rank() > 0
        {
            sources.push((out.clone(), t.len() as u64));
        }
    }
    for (value, count) in sources {
        if let Some(reader) = first_layer_reading(&value, graph, topo, &constant, &position) {
            costs[reader].params += count;
        }
    }

    for (ix, node) in graph.nodes.iter().enumerate() {
        if constant[ix] {
            continue;
        }
        costs[ix].output_bytes = node
            .present_outputs()
            .filter_map(|o| facts.get(o))
            .map(|f| f.bytes() as u64)
            .sum();
        costs[ix].macs = macs(graph, ix, facts);
    }
    costs
}

fn first_layer_reading(
    value: &str,
    graph: &Graph,
    topo: &Topology,
    constant: &[bool],
    position: &[usize],
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut stack = vec![value.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        for &reader in topo.consumers(&v) {
            if constant[reader] {
                stack.extend(graph.nodes[reader].present_outputs().map(str::to_string));
            } else if best.is_none_or(|b| position[reader] < position[b]) {
                best = Some(reader);
            }
        }
    }
    best
}

/// Multiply-accumulates of node `ix`, from the shapes in `facts`.
pub fn macs(graph: &Graph, ix: usize, facts: &Facts) -> u64 {
    let node = &graph.nodes[ix];
    let shape = |slot: usize| {
        node.inputs
            .get(slot)
            .filter(|s| !s.is_empty())
            .and_then(|v| facts.shape(v))
    };
    let out = node.outputs.first().and_then(|o| facts.shape(o));
    let prod = |s: &[usize]| s.iter().map(|&d| d as u64).product::<u64>();
    match node.op_type.as_str() {
        // Each output element reads (C/group) x kernel weights: weight shape [M, C/g, k...].
        "Conv" => match (out, shape(1)) {
            (Some(out), Some(w)) if w.len() >= 2 => prod(out) * prod(&w[1..]),
            _ => 0,
        },
        // Each input element scatters into (M/group) x kernel outputs: weight [C, M/g, k...].
        "ConvTranspose" => match (shape(0), shape(1)) {
            (Some(x), Some(w)) if w.len() >= 2 => prod(x) * prod(&w[1..]),
            _ => 0,
        },
        "Gemm" => match (shape(0), out) {
            (Some(a), Some(out)) if a.len() == 2 => {
                let k = if node.int_attr("transA", 0) != 0 {
                    a[0]
                } else {
                    a[1]
                };
                prod(out) * k as u64
            }
            _ => 0,
        },
        "MatMul" | "MatMulInteger" => match (shape(0), out) {
            (Some(a), Some(out)) if !a.is_empty() => {
                prod(out) * *a.last().expect("non-empty") as u64
            }
            _ => 0,
        },
        _ => 0,
    }
}
