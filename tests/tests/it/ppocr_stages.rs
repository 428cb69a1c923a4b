//! PP-OCRv4 det: parameters, MACs and stage boundaries as the foundation issue
//! states them, on the real model and on a copy with every name replaced.

use edgewise_graph::{InputShape, Model, Topology, analyze, cost::node_costs};
use edgewise_stages::{Overrides, Partition, Stage, partition};
use edgewise_tests::model_path;

const BACKBONE_OUTPUTS: [(&str, [usize; 4], f32); 4] = [
    ("conv2d_469.tmp_0", [1, 12, 160, 160], 4.0),
    ("conv2d_470.tmp_0", [1, 18, 80, 80], 8.0),
    ("conv2d_471.tmp_0", [1, 42, 40, 40], 16.0),
    ("conv2d_472.tmp_0", [1, 360, 20, 20], 32.0),
];

fn analyse(model: &Model) -> (Partition, Vec<edgewise_graph::NodeCost>) {
    let topo = Topology::new(&model.graph).unwrap();
    let shape = InputShape::parse("1x3x640x640").unwrap();
    let facts = analyze(model, &[shape]).unwrap();
    let costs = node_costs(&model.graph, &topo, &facts);
    (
        partition(&model.graph, &topo, &facts, &Overrides::default()).unwrap(),
        costs,
    )
}

fn check(model: &Model, name: &dyn Fn(&str) -> String) {
    let (p, costs) = analyse(model);
    let params: u64 = costs.iter().map(|c| c.params).sum();
    assert_eq!(params, 1_171_745);
    let macs_of = |op: &str| -> u64 {
        model
            .graph
            .nodes
            .iter()
            .zip(&costs)
            .filter(|(n, _)| n.op_type == op)
            .map(|(_, c)| c.macs)
            .sum()
    };
    let (conv, deconv) = (
        macs_of("Conv") as f64 / 1e9,
        macs_of("ConvTranspose") as f64 / 1e9,
    );
    assert!((conv - 2.233).abs() < 0.0005, "Conv {conv} GMAC");
    assert!(
        (deconv - 0.069).abs() < 0.0005,
        "ConvTranspose {deconv} GMAC"
    );
    assert!(
        (conv + deconv - 2.30).abs() < 0.005,
        "total {} GMAC",
        conv + deconv
    );

    let outputs: Vec<(String, Vec<usize>, f32)> = p
        .backbone_outputs
        .iter()
        .map(|b| (b.value.clone(), b.shape.clone(), b.stride.unwrap()))
        .collect();
    let expected: Vec<(String, Vec<usize>, f32)> = BACKBONE_OUTPUTS
        .iter()
        .map(|(v, s, st)| (name(v), s.to_vec(), *st))
        .collect();
    assert_eq!(outputs, expected);

    assert_eq!(p.head_inputs.len(), 1);
    assert_eq!(p.head_inputs[0].value, name("p2o.Concat.1"));
    assert_eq!(p.head_inputs[0].shape, vec![1, 96, 160, 160]);

    let last = model
        .graph
        .nodes
        .iter()
        .position(|n| n.outputs[0] == name("sigmoid_0.tmp_0"))
        .unwrap();
    assert_eq!(model.graph.nodes[last].op_type, "Sigmoid");
    assert_eq!(p.stages[last], Stage::Post);
    let post: Vec<usize> = p
        .nodes_in(Stage::Post)
        .into_iter()
        .filter(|&n| model.graph.nodes[n].op_type != "Constant")
        .collect();
    assert_eq!(post, vec![last], "only the final Sigmoid is post");
    assert!(p.nodes_in(Stage::Pre).is_empty());
    // The concat itself closes the neck.
    let concat = model
        .graph
        .nodes
        .iter()
        .position(|n| n.outputs[0] == name("p2o.Concat.1"))
        .unwrap();
    assert_eq!(p.stages[concat], Stage::Neck);
}

#[test]
fn ppocr_det_stages_params_and_macs() {
    let model = Model::load(model_path("ppocr_v4_det")).unwrap();
    check(&model, &|v| v.to_string());
}

#[test]
fn ppocr_det_stages_do_not_depend_on_names() {
    let mut model = Model::load(model_path("ppocr_v4_det")).unwrap();
    let map = model.anonymize();
    assert!(model.graph.nodes.iter().all(|n| n.name.starts_with('n')));
    assert!(!map.contains_key("") && map.values().all(|v| v.starts_with('v')));
    check(&model, &|v| map[v].clone());
}
