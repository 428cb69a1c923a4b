//! Every node of tract's optimized plan of PP-OCRv4 det is attributed back to
//! an ONNX node, and so to a stage, and the stages it finds are the ones
//! `inspect` reports.

use std::collections::BTreeMap;

use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_graph::{InputShape, Model, Topology, analyze};
use edgewise_measure::attribution::{Attributor, Origin};
use edgewise_runtime::Engine;
use edgewise_stages::{Overrides, Stage, partition};
use edgewise_tests::model_path;

#[test]
fn every_plan_node_of_ppocr_det_has_a_stage() {
    let model = Model::load(model_path("ppocr_v4_det")).unwrap();
    let shape = InputShape::parse("1x3x320x320").unwrap();
    let topo = Topology::new(&model.graph).unwrap();
    let facts = analyze(&model, std::slice::from_ref(&shape)).unwrap();
    let stages = partition(&model.graph, &topo, &facts, &Overrides::default()).unwrap();

    let mut engine = Engine::from_model(&model, &[shape], 1).unwrap();
    let input = Tensor::from_shape(&[1, 3, 320, 320], &vec![0.25f32; 3 * 320 * 320]).unwrap();
    let (outputs, times) = engine.run_profiled(vec![input.clone()]).unwrap();
    assert_eq!(outputs[0].shape(), &[1, 1, 320, 320]);
    let plain = engine.run(vec![input]).unwrap();
    assert_eq!(plain[0], outputs[0], "profiling does not change the result");

    let attributor = Attributor::new(&model.graph);
    let mut per_stage: BTreeMap<Stage, usize> = BTreeMap::new();
    let mut unattributed = vec![];
    for (id, _) in &times {
        let name = &engine.plan().node(*id).name;
        match attributor.origin(name) {
            Origin::Node(ix) => *per_stage.entry(stages.stages[ix]).or_default() += 1,
            Origin::Input => {}
            Origin::Unattributed => unattributed.push(name.clone()),
        }
    }
    assert!(
        unattributed.is_empty(),
        "plan nodes with no ONNX origin: {unattributed:?}"
    );
    let found: Vec<Stage> = per_stage.keys().copied().collect();
    assert_eq!(
        found,
        vec![Stage::Backbone, Stage::Neck, Stage::Head, Stage::Post],
        "{per_stage:?}"
    );
}
