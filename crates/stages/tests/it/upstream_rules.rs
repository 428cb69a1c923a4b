//! The rules for upstream structures that the first, simpler finder got
//! wrong, each on a small detector built in code that has that structure and
//! nothing else unusual. Every model is also checked with its names replaced
//! by meaningless ones.

use crate::common::{backbone, boundary_names, check_both, stage_of};
use edgewise_graph::AttributeValue;
use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::tract_onnx::prelude::tensor1;
use edgewise_stages::Stage;

fn ints(b: &mut ModelBuilder, values: &[i64]) -> String {
    b.initializer("ints", tensor1(values))
}

/// A class and a box convolution on each level, as graph outputs.
fn two_branch_heads(b: &mut ModelBuilder, levels: &[(&str, usize)]) {
    for &(level, channels) in levels {
        let cls = b.conv(level, channels, 3, 1, 1, 1);
        let boxes = b.conv(level, channels, 4, 1, 1, 1);
        b.output(&cls);
        b.output(&boxes);
    }
}

/// A PAN (top-down, then bottom-up) on maps at strides 8, 16 and 32, each
/// given with its channels and read as it is (lateral convs, if any, are the
/// caller's): the levels p3, n4, n5.
struct Pan {
    up5: String,
    p3: String,
    n4: String,
    n5: String,
}

fn pan(
    b: &mut ModelBuilder,
    (c3, ch3): (&str, usize),
    (c4, ch4): (&str, usize),
    (top, channels): (&str, usize),
) -> Pan {
    let up5 = b.upsample2(top);
    let cat4 = b.concat(&[&up5, c4]);
    let p4 = b.conv_relu(&cat4, channels + ch4, 16, 3, 1);
    let up4 = b.upsample2(&p4);
    let cat3 = b.concat(&[&up4, c3]);
    let p3 = b.conv_relu(&cat3, 16 + ch3, 16, 3, 1);
    let d3 = b.conv_relu(&p3, 16, 16, 3, 2);
    let cat4b = b.concat(&[&d3, &p4]);
    let n4 = b.conv_relu(&cat4b, 32, 16, 3, 1);
    let d4 = b.conv_relu(&n4, 16, 16, 3, 2);
    let cat5b = b.concat(&[&d4, top]);
    let n5 = b.conv_relu(&cat5b, 16 + channels, 16, 3, 1);
    Pan { up5, p3, n4, n5 }
}

/// Ultralytics SPPF (`ultralytics/nn/modules/block.py`): cv1, three chained
/// 5x5 max-pools, the concat of all four, cv2 (conv + SiLU).
fn sppf(b: &mut ModelBuilder, x: &str, channels: usize) -> String {
    let cv1 = b.conv(x, channels, channels / 2, 1, 1, 1);
    let cv1 = b.silu(&cv1);
    let pool = |b: &mut ModelBuilder, x: &str| {
        b.op(
            "MaxPool",
            &[x],
            vec![
                ("kernel_shape", AttributeValue::Ints(vec![5, 5])),
                ("strides", AttributeValue::Ints(vec![1, 1])),
                ("pads", AttributeValue::Ints(vec![2, 2, 2, 2])),
            ],
        )
    };
    let m1 = pool(b, &cv1);
    let m2 = pool(b, &m1);
    let m3 = pool(b, &m2);
    let cat = b.concat(&[&cv1, &m1, &m2, &m3]);
    let cv2 = b.conv(&cat, channels * 2, channels, 1, 1, 1);
    b.silu(&cv2)
}

/// F1, tokens: an attention block on the deepest map, as Ultralytics' C2PSA
/// ends the YOLO11/YOLO26 backbones. On a 2x2 map the attention matrix is
/// `[1, 1, 4, 4]`, the shape of a stride-16 map at this input: read as a map,
/// it made the attention's residual a cross-scale fusion.
#[test]
fn attention_in_a_backbone_is_not_a_fusion() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, false);
    let shape = ints(&mut b, &[1, 1, 32, 4]);
    let q = b.op("Reshape", &[&t.c5, &shape], vec![]);
    let k = b.op(
        "Transpose",
        &[&q],
        vec![("perm", AttributeValue::Ints(vec![0, 1, 3, 2]))],
    );
    let scores = b.op("MatMul", &[&k, &q], vec![]);
    let weights = b.op("Softmax", &[&scores], vec![]);
    let mixed = b.op("MatMul", &[&q, &weights], vec![]);
    let back = ints(&mut b, &[1, 32, 2, 2]);
    let back = b.op("Reshape", &[&mixed, &back], vec![]);
    let attended = b.op("Add", &[&t.c5, &back], vec![]);
    two_branch_heads(&mut b, &[(&t.c4, 24), (&attended, 32)]);
    check_both(b.finish(), |m, p, name| {
        assert!(p.nodes_in(Stage::Neck).is_empty(), "no fusion");
        assert_eq!(stage_of(m, p, &name(&weights)), Stage::Backbone);
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c4), name(&attended)]
        );
    });
}

/// F1 (integer strides) and F6 (a rejoin in decoding is not a merge): an
/// older Ultralytics YOLOv8 `Detect` (`ultralytics/nn/modules/head.py`)
/// concatenates each level's box and class branches, flattens, and decodes the
/// box distribution with the DFL convolution on `[1, 4, reg_max, anchors]`
/// values. Those are not maps, and the concat does not make the two branches
/// one: they are the head, and the neck ends at the levels.
#[test]
fn a_yolov8_detect_with_dfl_starts_the_head_at_the_levels() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, false);
    let n = pan(&mut b, (&t.c3, 16), (&t.c4, 24), (&t.c5, 32));
    let mut flat = vec![];
    for level in [&n.p3, &n.n4, &n.n5] {
        let boxes = b.conv_relu(level, 16, 16, 3, 1);
        let boxes = b.conv(&boxes, 16, 16, 1, 1, 1);
        let cls = b.conv_relu(level, 16, 16, 3, 1);
        let cls = b.conv(&cls, 16, 3, 1, 1, 1);
        let both = b.concat(&[&boxes, &cls]);
        let shape = ints(&mut b, &[1, 19, -1]);
        flat.push(b.op("Reshape", &[&both, &shape], vec![]));
    }
    let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
    let all = b.op("Concat", &refs, vec![("axis", AttributeValue::Int(2))]);
    let slice = |b: &mut ModelBuilder, from: i64, to: i64| {
        let (starts, ends, axes) = (ints(b, &[from]), ints(b, &[to]), ints(b, &[1]));
        b.op("Slice", &[&all, &starts, &ends, &axes], vec![])
    };
    let distances = slice(&mut b, 0, 16);
    let shape = ints(&mut b, &[1, 4, 4, -1]);
    let distances = b.op("Reshape", &[&distances, &shape], vec![]);
    let distances = b.op(
        "Transpose",
        &[&distances],
        vec![("perm", AttributeValue::Ints(vec![0, 2, 1, 3]))],
    );
    let distances = b.op(
        "Softmax",
        &[&distances],
        vec![("axis", AttributeValue::Int(1))],
    );
    let dfl = b.conv(&distances, 4, 1, 1, 1, 1);
    b.output(&dfl);
    let scores = slice(&mut b, 16, 19);
    let scores = b.op("Sigmoid", &[&scores], vec![]);
    b.output(&scores);
    check_both(b.finish(), |m, p, name| {
        assert_eq!(
            boundary_names(&p.head_inputs),
            vec![name(&n.p3), name(&n.n4), name(&n.n5)]
        );
        assert_eq!(stage_of(m, p, &name(&n.n5)), Stage::Neck);
        assert_eq!(stage_of(m, p, &name(&dfl)), Stage::Head);
        assert_eq!(stage_of(m, p, &name(&scores)), Stage::Post);
    });
}

/// F2: an FPN that upsamples to the size of the finer map
/// (`F.interpolate(x, size=lateral.shape[2:])`, RetinaFace's FPN): the
/// `Resize` sizes come from `Shape` of the lateral map, which reads only its
/// dimensions. Followed as a data path, it hid the fusion.
#[test]
fn an_fpn_sized_by_shape_is_found() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, false);
    let l5 = b.conv(&t.c5, 32, 16, 1, 1, 1);
    let l4 = b.conv(&t.c4, 24, 16, 1, 1, 1);
    let sizes = b.op("Shape", &[&l4], vec![]);
    let up5 = b.op(
        "Resize",
        &[&l5, "", "", &sizes],
        vec![("mode", AttributeValue::String(b"nearest".to_vec()))],
    );
    let p4 = b.op("Add", &[&l4, &up5], vec![]);
    two_branch_heads(&mut b, &[(&p4, 16), (&l5, 16)]);
    check_both(b.finish(), |m, p, name| {
        assert_eq!(stage_of(m, p, &name(&p4)), Stage::Neck, "the fusion");
        assert_eq!(stage_of(m, p, &name(&l4)), Stage::Neck, "lateral conv");
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c4), name(&t.c5)]
        );
        let mut heads = boundary_names(&p.head_inputs);
        heads.sort();
        let mut expected = vec![name(&p4), name(&l5)];
        expected.sort();
        assert_eq!(heads, expected);
    });
}

/// F3: YOLOv8 (`ultralytics/cfg/models/v8/yolov8.yaml`) ends its backbone
/// with SPPF and upsamples it as it is into the neck. Its `cv2`, which closes
/// the concat of the pools, is the backbone's last layer, not a lateral block
/// of the neck; the upsample is the neck's.
#[test]
fn a_closing_conv_of_the_deepest_tap_stays_in_the_backbone() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, false);
    let top = sppf(&mut b, &t.c5, 32);
    let n = pan(&mut b, (&t.c3, 16), (&t.c4, 24), (&top, 32));
    two_branch_heads(&mut b, &[(&n.p3, 16), (&n.n4, 16), (&n.n5, 16)]);
    check_both(b.finish(), |m, p, name| {
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c3), name(&t.c4), name(&top)]
        );
        assert_eq!(stage_of(m, p, &name(&top)), Stage::Backbone);
        assert_eq!(stage_of(m, p, &name(&n.up5)), Stage::Neck);
        assert_eq!(
            boundary_names(&p.head_inputs),
            vec![name(&n.p3), name(&n.n4), name(&n.n5)]
        );
    });
}

/// F4: PP-PicoDet's CSP-PAN (PaddleDetection
/// `ppdet/modeling/necks/csp_pan.py`) makes an extra stride-64 level from
/// its lateral `conv_t` map of C5 (a depthwise-separable strided conv) and
/// from the P5 output. That neck branch is no trunk going on deeper: the
/// lateral conv, the upsample and the extra level are neck.
#[test]
fn an_extra_level_from_a_lateral_map_is_neck() {
    let mut b = ModelBuilder::new(13);
    // Large enough for a 2x2 map at stride 64.
    let t = backbone(&mut b, 128, false);
    let t3 = b.conv(&t.c3, 16, 16, 1, 1, 1);
    let t4 = b.conv(&t.c4, 24, 16, 1, 1, 1);
    let t5 = b.conv(&t.c5, 32, 16, 1, 1, 1);
    let n = pan(&mut b, (&t3, 16), (&t4, 16), (&t5, 16));
    let separable = |b: &mut ModelBuilder, x: &str| {
        let dw = b.conv(x, 16, 16, 3, 2, 16);
        b.conv(&dw, 16, 16, 1, 1, 1)
    };
    let first = separable(&mut b, &t5);
    let second = separable(&mut b, &n.n5);
    let p6 = b.op("Add", &[&first, &second], vec![]);
    for level in [&n.p3, &n.n4, &n.n5, &p6] {
        let out = b.conv(level, 16, 7, 1, 1, 1);
        b.output(&out);
    }
    check_both(b.finish(), |m, p, name| {
        assert_eq!(
            boundary_names(&p.backbone_outputs),
            vec![name(&t.c3), name(&t.c4), name(&t.c5)]
        );
        for v in [&t5, &n.up5, &first] {
            assert_eq!(stage_of(m, p, &name(v)), Stage::Neck, "{v}");
        }
        assert_eq!(
            boundary_names(&p.head_inputs),
            vec![name(&n.p3), name(&n.n4), name(&n.n5), name(&p6)]
        );
    });
}

/// F5: YOLOX's head (`yolox/models/yolo_head.py`) starts each level with a
/// 1x1 `stem` before the class and box branches part; SCRFD's shared
/// `stacked_convs` tower sits in the same place. That per-level chain is head.
/// The block right after the neck's last concat (the C3 after YOLOX-PAFPN's
/// last fusion) stays neck.
#[test]
fn per_level_stems_before_the_fork_are_head() {
    let mut b = ModelBuilder::new(13);
    let t = backbone(&mut b, 64, false);
    let l5 = b.conv(&t.c5, 32, 16, 1, 1, 1);
    let n = pan(&mut b, (&t.c3, 16), (&t.c4, 24), (&l5, 16));
    let mut stems = vec![];
    for level in [&n.p3, &n.n4, &n.n5] {
        let stem = b.conv(level, 16, 16, 1, 1, 1);
        let stem = b.silu(&stem);
        let cls = b.conv_relu(&stem, 16, 16, 3, 1);
        let cls = b.conv(&cls, 16, 3, 1, 1, 1);
        let reg = b.conv_relu(&stem, 16, 16, 3, 1);
        let reg = b.conv(&reg, 16, 5, 1, 1, 1);
        b.output(&cls);
        b.output(&reg);
        stems.push(stem);
    }
    check_both(b.finish(), |m, p, name| {
        assert_eq!(
            boundary_names(&p.head_inputs),
            vec![name(&n.p3), name(&n.n4), name(&n.n5)]
        );
        for stem in &stems {
            assert_eq!(stage_of(m, p, &name(stem)), Stage::Head);
        }
        assert_eq!(stage_of(m, p, &name(&n.n5)), Stage::Neck);
    });
}
