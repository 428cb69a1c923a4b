//! A model together with its shapes, costs and stage partition: what both
//! `edge-convert inspect` and `edge-bench` start from.

use edgewise_graph::cost::node_costs;
use edgewise_graph::{Facts, InputShape, Model, NodeCost, Topology, analyze};

use crate::error::StageError;
use crate::partition::{Overrides, partition};
use crate::stage::Partition;

/// A model analysed at fixed input shapes and split into stages.
pub struct StagedModel {
    /// The model.
    pub model: Model,
    /// Its wiring.
    pub topo: Topology,
    /// Shapes at the analysed input shapes.
    pub facts: Facts,
    /// Parameters, MACs and output bytes per node.
    pub costs: Vec<NodeCost>,
    /// Which stage each node is in.
    pub partition: Partition,
    /// Whether each node computes only from constants (folded away by runtimes).
    pub constant: Vec<bool>,
}

impl StagedModel {
    /// Analyses `model` at `shapes` and partitions it, honouring `overrides`.
    pub fn new(
        model: Model,
        shapes: &[InputShape],
        overrides: &Overrides,
    ) -> Result<StagedModel, StageError> {
        let topo = Topology::new(&model.graph)?;
        let facts = analyze(&model, shapes)?;
        let costs = node_costs(&model.graph, &topo, &facts);
        let partition = partition(&model.graph, &topo, &facts, overrides)?;
        let constant = topo.constant_nodes(&model.graph);
        Ok(StagedModel {
            model,
            topo,
            facts,
            costs,
            partition,
            constant,
        })
    }
}
