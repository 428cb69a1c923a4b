//! What the stage finder's integration tests share: partitioning a built
//! model, the stage of a value's producer, boundary names, and checking a
//! model as built and with its names replaced.

use edgewise_graph::{Model, Topology, analyze};
use edgewise_stages::{Overrides, Partition, Stage, partition};

/// Partitions `model` at its declared input shapes.
pub fn stages_of(model: &Model) -> Partition {
    let topo = Topology::new(&model.graph).unwrap();
    let facts = analyze(model, &[]).unwrap();
    partition(&model.graph, &topo, &facts, &Overrides::default()).unwrap()
}

/// Stage of the node producing `value`.
pub fn stage_of(model: &Model, p: &Partition, value: &str) -> Stage {
    let ix = model
        .graph
        .nodes
        .iter()
        .position(|n| n.outputs.iter().any(|o| o == value))
        .unwrap();
    p.stages[ix]
}

/// The names of the values on a boundary.
pub fn boundary_names(list: &[edgewise_stages::Boundary]) -> Vec<String> {
    list.iter().map(|b| b.value.clone()).collect()
}

/// Checks `expect` on the model and on an anonymized copy.
pub fn check_both(model: Model, expect: impl Fn(&Model, &Partition, &dyn Fn(&str) -> String)) {
    let p = stages_of(&model);
    expect(&model, &p, &|v: &str| v.to_string());
    let mut anonymous = model.clone();
    let map = anonymous.anonymize();
    let p = stages_of(&anonymous);
    expect(&anonymous, &p, &|v: &str| map[v].clone());
}
