//! The stage finder on small detectors built in code, whose right answer is
//! known by construction. Every model is also checked with its names replaced
//! by meaningless ones: the finder must not read names.

use crate::common::{backbone, boundary_names, check_both, stage_of};
use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::{AttributeValue, Topology, analyze};
use edgewise_stages::{Overrides, Stage, partition};

#[test]
fn fpn_detector_with_a_decoding_tail() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, true);
    let l5 = b.conv(&t.c5, 32, 16, 1, 1, 1);
    let l4 = b.conv(&t.c4, 24, 16, 1, 1, 1);
    let l3 = b.conv(&t.c3, 16, 16, 1, 1, 1);
    let up5 = b.upsample2(&l5);
    let p4 = b.op("Add", &[&l4, &up5], vec![]);
    let up4 = b.upsample2(&p4);
    let p3 = b.op("Add", &[&l3, &up4], vec![]);
    let mut outs = vec![];
    for p in [&p3, &p4, &l5] {
        let h = b.conv_relu(p, 16, 16, 3, 1);
        let cls = b.conv(&h, 16, 5, 1, 1, 1);
        let shape = b.initializer(
            "shape",
            edgewise_graph::tract_onnx::prelude::tensor1(&[1i64, 5, -1]),
        );
        let flat = b.op("Reshape", &[&cls, &shape], vec![]);
        outs.push(flat);
    }
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let all = b.op("Concat", &refs, vec![("axis", AttributeValue::Int(2))]);
    let scores = b.op("Sigmoid", &[&all], vec![]);
    b.output(&scores);
    let model = b.finish();

    check_both(model, |m, p, name| {
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c3), name(&t.c4), name(&t.c5)]
        );
        let strides: Vec<f32> = p
            .backbone_outputs
            .iter()
            .map(|b| b.stride.unwrap())
            .collect();
        assert_eq!(strides, vec![8.0, 16.0, 32.0]);
        assert_eq!(stage_of(m, p, &name(&l4)), Stage::Neck, "lateral conv");
        assert_eq!(stage_of(m, p, &name(&p3)), Stage::Neck, "last fusion");
        assert_eq!(stage_of(m, p, &name(&scores)), Stage::Post);
        assert_eq!(
            stage_of(m, p, &name(&all)),
            Stage::Post,
            "concat of reshaped maps is decoding"
        );
        assert_eq!(stage_of(m, p, &name(&t.c4)), Stage::Backbone);
        // Head inputs: the level maps after the last fusion on each level.
        let mut heads = boundary_names(&p.head_inputs);
        heads.sort();
        let mut expected = vec![name(&p3), name(&p4), name(&l5)];
        expected.sort();
        assert_eq!(heads, expected);
        assert_eq!(p.nodes_in(Stage::Pre).len(), 1, "the Sub of the mean");
    });
}

#[test]
fn ssd_style_heads_on_backbone_taps_have_no_neck() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, true);
    let mut outs = vec![];
    for (tap, c) in [(&t.c4, 24), (&t.c5, 32)] {
        let cls = b.conv(tap, c, 6, 3, 1, 1);
        let boxes = b.conv(tap, c, 4, 3, 1, 1);
        outs.push(cls);
        outs.push(boxes);
    }
    for o in &outs {
        b.output(o);
    }
    let model = b.finish();
    check_both(model, |m, p, name| {
        assert!(p.nodes_in(Stage::Neck).is_empty());
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c4), name(&t.c5)]
        );
        for o in &outs {
            assert_eq!(stage_of(m, p, &name(o)), Stage::Head);
        }
        assert!(p.reason(Stage::Neck).starts_with("empty"));
    });
}

#[test]
fn classifier_top_is_the_head_and_softmax_is_post() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, true);
    let pooled = b.op("GlobalAveragePool", &[&t.c5], vec![]);
    let flat = b.op("Flatten", &[&pooled], vec![]);
    let w = b.random(32 * 10, 0.1);
    let w = b.initializer(
        "fc",
        edgewise_graph::tract_onnx::prelude::Tensor::from_shape(&[32, 10], &w).unwrap(),
    );
    let logits = b.op("MatMul", &[&flat, &w], vec![]);
    let probs = b.op("Softmax", &[&logits], vec![]);
    b.output(&probs);
    check_both(b.finish(), |m, p, name| {
        assert_eq!(stage_of(m, p, &name(&t.c5)), Stage::Backbone);
        assert_eq!(stage_of(m, p, &name(&pooled)), Stage::Head);
        assert_eq!(stage_of(m, p, &name(&logits)), Stage::Head);
        assert_eq!(stage_of(m, p, &name(&probs)), Stage::Post);
    });
}

#[test]
fn pan_bottom_up_path_is_neck_and_residuals_inside_it_are_not_fusions() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, true);
    // Top-down.
    let l5 = b.conv(&t.c5, 32, 16, 1, 1, 1);
    let up5 = b.upsample2(&l5);
    let cat4 = b.concat(&[&t.c4, &up5]);
    let p4 = b.conv_relu(&cat4, 40, 16, 3, 1);
    let up4 = b.upsample2(&p4);
    let cat3 = b.concat(&[&t.c3, &up4]);
    let p3 = b.conv_relu(&cat3, 32, 16, 3, 1);
    // Bottom-up.
    let d3 = b.conv_relu(&p3, 16, 16, 3, 2);
    let cat4b = b.concat(&[&d3, &p4]);
    let n4 = b.conv_relu(&cat4b, 32, 16, 3, 1);
    let d4 = b.conv_relu(&n4, 16, 16, 3, 2);
    let cat5b = b.concat(&[&d4, &l5]);
    let n5 = b.conv_relu(&cat5b, 32, 16, 3, 1);
    // Heads, one with a residual block that must not count as a fusion.
    let mut outs = vec![];
    for level in [&p3, &n4, &n5] {
        let h = b.conv_relu(level, 16, 16, 3, 1);
        let h2 = b.conv(&h, 16, 16, 3, 1, 1);
        let res = b.op("Add", &[&h, &h2], vec![]);
        let out = b.conv(&res, 16, 9, 1, 1, 1);
        b.output(&out);
        outs.push((h, res, out));
    }
    check_both(b.finish(), |m, p, name| {
        // Taps read as they are (the trunk goes on deeper from c3 and c4).
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c3), name(&t.c4), name(&t.c5)]
        );
        for v in [&l5, &cat4, &p4, &cat3, &p3, &d3, &cat4b, &n4, &d4, &cat5b] {
            assert_eq!(stage_of(m, p, &name(v)), Stage::Neck, "{v}");
        }
        for (h, res, out) in &outs {
            assert_eq!(stage_of(m, p, &name(h)), Stage::Head);
            assert_eq!(stage_of(m, p, &name(res)), Stage::Head);
            assert_eq!(stage_of(m, p, &name(out)), Stage::Head);
        }
        assert_eq!(
            stage_of(m, p, &name(&n5)),
            Stage::Head,
            "after the last fusion"
        );
        assert!(
            p.reason(Stage::Neck).contains("Concat x4"),
            "{}",
            p.reason(Stage::Neck)
        );
    });
}

#[test]
fn overrides_move_the_boundaries_and_unknown_names_are_refused() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, true);
    let head = b.conv(&t.c5, 32, 4, 1, 1, 1);
    b.output(&head);
    let model = b.finish();
    let topo = Topology::new(&model.graph).unwrap();
    let facts = analyze(&model, &[]).unwrap();
    let overrides = Overrides {
        backbone_out: vec![t.c4.clone()],
        head_in: vec![t.c5.clone()],
    };
    let p = partition(&model.graph, &topo, &facts, &overrides).unwrap();
    assert_eq!(p.method, edgewise_stages::Method::Override);
    assert_eq!(stage_of(&model, &p, &t.c4), Stage::Backbone);
    assert_eq!(stage_of(&model, &p, &t.c5), Stage::Neck);
    assert_eq!(stage_of(&model, &p, &head), Stage::Head);
    assert_eq!(boundary_names(&p.head_inputs), vec![t.c5.clone()]);

    let wrong = Overrides {
        backbone_out: vec!["no_such_value".into()],
        head_in: vec![],
    };
    let err = partition(&model.graph, &topo, &facts, &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no value named `no_such_value`"), "{err}");
}
