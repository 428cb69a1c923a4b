//! Which ONNX node (and so which stage) each node of tract's optimized plan
//! comes from.
//!
//! tract names an optimized node after the first ONNX node it came from and
//! adds suffixes for the pieces it splits it into (`.im2col`, `.matmatmul`,
//! `.pack_a`, `.0` for folded constants, `-dispose-dims-2` for a reduction
//! that drops its axis...). ONNX names may contain dots and dashes
//! themselves (`p2o.Conv.12`), so the longest prefix, cut at a dot or a
//! dash, that is an ONNX node's name wins. Graph inputs are attributed as such; anything else
//! is reported unattributed, never dropped.

use std::collections::{HashMap, HashSet};

use edgewise_graph::Graph;

/// Where a plan node comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The ONNX node with this index.
    Node(usize),
    /// A graph input (tract's source nodes).
    Input,
    /// Nothing matched the name.
    Unattributed,
}

/// Maps tract plan-node names back to ONNX nodes.
pub struct Attributor {
    by_name: HashMap<String, usize>,
    inputs: HashSet<String>,
}

impl Attributor {
    /// Indexes the names of `graph` as tract sees them (a node's name, or its
    /// first output when it has none).
    pub fn new(graph: &Graph) -> Attributor {
        let by_name = (0..graph.nodes.len())
            .map(|i| (graph.node_label(i), i))
            .collect();
        let inputs = graph.inputs.iter().map(|i| i.name.clone()).collect();
        Attributor { by_name, inputs }
    }

    /// The origin of the plan node named `name`.
    pub fn origin(&self, name: &str) -> Origin {
        if self.inputs.contains(name) {
            return Origin::Input;
        }
        let mut candidate = name;
        loop {
            if let Some(&ix) = self.by_name.get(candidate) {
                return Origin::Node(ix);
            }
            match candidate.rfind(['.', '-']) {
                Some(dot) => candidate = &candidate[..dot],
                None => return Origin::Unattributed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_graph::builder::ModelBuilder;

    #[test]
    fn longest_prefix_wins_and_inputs_are_known() {
        let mut b = ModelBuilder::new(13);
        let x = b.input("x", &[1, 3, 8, 8]);
        let c = b.conv(&x, 3, 4, 3, 1, 1);
        let y = b.op("Relu", &[&c], vec![]);
        b.output(&y);
        let mut model = b.finish();
        model.graph.nodes[0].name = "p2o.Conv.1".into();
        model.graph.nodes[1].name = "p2o.Conv.12".into();
        let a = Attributor::new(&model.graph);
        assert_eq!(a.origin("p2o.Conv.12.matmatmul"), Origin::Node(1));
        assert_eq!(a.origin("p2o.Conv.1.im2col"), Origin::Node(0));
        assert_eq!(a.origin("p2o.Conv.1"), Origin::Node(0));
        assert_eq!(a.origin("p2o.Conv.1-dispose-dims-2.1"), Origin::Node(0));
        assert_eq!(a.origin("x"), Origin::Input);
        assert_eq!(a.origin("p2o.Conv"), Origin::Unattributed);
        assert_eq!(a.origin("mystery"), Origin::Unattributed);
    }
}
