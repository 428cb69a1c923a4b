//! What the stage finder's integration tests share: partitioning a built
//! model, the stage of a value's producer, boundary names, and checking a
//! model as built and with its names replaced; a small backbone.

use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::tract_onnx::prelude::tensor1;
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

/// The taps of [`backbone`] at strides 8, 16 and 32 (16, 24, 32 channels).
pub struct Taps {
    pub c3: String,
    pub c4: String,
    pub c5: String,
}

/// A small backbone on a `size`x`size` input: stem to stride 4, then per
/// stage a strided conv and a residual block (two convs and an add). With
/// `normalize`, the input is normalized in-graph first (a `pre` stage).
pub fn backbone(b: &mut ModelBuilder, size: i64, normalize: bool) -> Taps {
    let input = b.input("image", &[1, 3, size, size]);
    let x = if normalize {
        let mean = b.initializer("mean", tensor1(&[0.5f32]));
        b.op("Sub", &[&input, &mean], vec![])
    } else {
        input
    };
    let stem = b.conv_relu(&x, 3, 8, 3, 2);
    let mut x = b.conv_relu(&stem, 8, 8, 3, 2);
    let mut taps = vec![];
    for (cin, cout) in [(8, 16), (16, 24), (24, 32)] {
        let down = b.conv_relu(&x, cin, cout, 3, 2);
        let r1 = b.conv_relu(&down, cout, cout, 3, 1);
        let r2 = b.conv(&r1, cout, cout, 3, 1, 1);
        let sum = b.op("Add", &[&down, &r2], vec![]);
        x = b.op("Relu", &[&sum], vec![]);
        taps.push(x.clone());
    }
    Taps {
        c3: taps[0].clone(),
        c4: taps[1].clone(),
        c5: taps[2].clone(),
    }
}
