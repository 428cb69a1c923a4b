//! Who produces and who reads each value, and an execution order.

use std::collections::HashMap;

use crate::error::{GraphError, Result};
use crate::model::Graph;

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// A graph input that is not an initializer.
    Input,
    /// An initializer.
    Initializer,
    /// Output `1` of node `0`.
    Node(usize, usize),
}

/// The wiring of a graph: producers, consumers and a topological order.
#[derive(Clone, Debug)]
pub struct Topology {
    producers: HashMap<String, Producer>,
    consumers: HashMap<String, Vec<usize>>,
    order: Vec<usize>,
}

impl Topology {
    /// Indexes `graph`, failing with a clear error on a value read but never
    /// produced, a value produced twice, or a cycle.
    pub fn new(graph: &Graph) -> Result<Topology> {
        let mut producers = HashMap::new();
        let label = |p: &Producer| match p {
            Producer::Input => "a graph input".to_string(),
            Producer::Initializer => "an initializer".to_string(),
            Producer::Node(n, _) => format!("node `{}`", graph.node_label(*n)),
        };
        let mut define = |name: &str, p: Producer| -> Result<()> {
            if let Some(prev) = producers.insert(name.to_string(), p) {
                // IR < 4 lists initializers among inputs too: that is not a clash.
                let benign = matches!(
                    (prev, p),
                    (Producer::Input, Producer::Initializer)
                        | (Producer::Initializer, Producer::Input)
                );
                if benign {
                    producers.insert(name.to_string(), Producer::Initializer);
                } else {
                    return Err(GraphError::DuplicateValue {
                        value: name.to_string(),
                        first: label(&prev),
                        second: label(&p),
                    });
                }
            }
            Ok(())
        };
        for input in &graph.inputs {
            define(&input.name, Producer::Input)?;
        }
        for init in &graph.initializers {
            define(&init.name, Producer::Initializer)?;
        }
        for (ix, node) in graph.nodes.iter().enumerate() {
            for (slot, out) in node.outputs.iter().enumerate() {
                if !out.is_empty() {
                    define(out, Producer::Node(ix, slot))?;
                }
            }
        }
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (ix, node) in graph.nodes.iter().enumerate() {
            for input in node.present_inputs() {
                if !producers.contains_key(input) {
                    return Err(GraphError::DanglingInput {
                        node: graph.node_label(ix),
                        op: node.op_type.clone(),
                        value: input.to_string(),
                    });
                }
                let readers = consumers.entry(input.to_string()).or_default();
                if readers.last() != Some(&ix) {
                    readers.push(ix);
                }
            }
        }
        for output in &graph.outputs {
            if !producers.contains_key(&output.name) {
                return Err(GraphError::DanglingOutput(output.name.clone()));
            }
        }
        let order = topological_order(graph, &producers, &consumers)?;
        Ok(Topology {
            producers,
            consumers,
            order,
        })
    }

    /// Who produces `value`.
    pub fn producer(&self, value: &str) -> Option<Producer> {
        self.producers.get(value).copied()
    }

    /// The node producing `value`, if a node does.
    pub fn producer_node(&self, value: &str) -> Option<usize> {
        match self.producers.get(value) {
            Some(Producer::Node(n, _)) => Some(*n),
            _ => None,
        }
    }

    /// The nodes reading `value` (each once, in file order).
    pub fn consumers(&self, value: &str) -> &[usize] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Node indices in an execution order (file order whenever it is valid).
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

/// Kahn's algorithm, preferring file order, so a valid file keeps its order.
fn topological_order(
    graph: &Graph,
    producers: &HashMap<String, Producer>,
    consumers: &HashMap<String, Vec<usize>>,
) -> Result<Vec<usize>> {
    let n = graph.nodes.len();
    let mut pending = vec![0usize; n];
    for (ix, node) in graph.nodes.iter().enumerate() {
        let mut preds: Vec<usize> = node
            .present_inputs()
            .filter_map(|v| match producers.get(v) {
                Some(Producer::Node(p, _)) => Some(*p),
                _ => None,
            })
            .collect();
        preds.sort_unstable();
        preds.dedup();
        pending[ix] = preds.len();
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| pending[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(ix)) = ready.pop() {
        order.push(ix);
        let mut next: Vec<usize> = graph.nodes[ix]
            .present_outputs()
            .flat_map(|o| consumers.get(o).into_iter().flatten().copied())
            .collect();
        next.sort_unstable();
        next.dedup();
        for c in next {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(std::cmp::Reverse(c));
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n).find(|&i| pending[i] > 0).expect("some node is left");
        // Report a node that is really on a cycle, not merely downstream of one.
        let on_cycle = find_cycle_node(graph, producers, &pending).unwrap_or(stuck);
        return Err(GraphError::Cycle {
            node: graph.node_label(on_cycle),
            op: graph.nodes[on_cycle].op_type.clone(),
        });
    }
    Ok(order)
}

/// Walks predecessors among the unscheduled nodes until one repeats.
fn find_cycle_node(
    graph: &Graph,
    producers: &HashMap<String, Producer>,
    pending: &[usize],
) -> Option<usize> {
    let mut current = (0..graph.nodes.len()).find(|&i| pending[i] > 0)?;
    let mut seen = vec![false; graph.nodes.len()];
    loop {
        if seen[current] {
            return Some(current);
        }
        seen[current] = true;
        current = graph.nodes[current]
            .present_inputs()
            .find_map(|v| match producers.get(v) {
                Some(Producer::Node(p, _)) if pending[*p] > 0 => Some(*p),
                _ => None,
            })?;
    }
}

impl Topology {
    /// For each node, whether it computes only from constants (initializers,
    /// `Constant` nodes, and nodes that are themselves constant): such nodes are
    /// weights in disguise (a transposed weight, a shape computation), not layers.
    pub fn constant_nodes(&self, graph: &Graph) -> Vec<bool> {
        let mut constant = vec![false; graph.nodes.len()];
        for &ix in &self.order {
            let node = &graph.nodes[ix];
            constant[ix] = node.present_inputs().all(|v| match self.producer(v) {
                Some(Producer::Initializer) => true,
                Some(Producer::Node(p, _)) => constant[p],
                Some(Producer::Input) | None => false,
            });
        }
        constant
    }

    /// Whether `value` is constant under the given [`Topology::constant_nodes`].
    pub fn is_constant(&self, value: &str, constant_nodes: &[bool]) -> bool {
        match self.producer(value) {
            Some(Producer::Initializer) => true,
            Some(Producer::Node(p, _)) => constant_nodes[p],
            _ => false,
        }
    }
}
