//! The stage finder on the fetched detectors other than PP-OCRv4 (which
//! `ppocr_stages` covers): the backbone outputs and the head inputs it finds,
//! on each real model and on a copy with every name replaced, are the tensors
//! where the upstream code puts its module boundaries. Each expectation names
//! the upstream file that defines the boundary; the tensors were matched to
//! the upstream modules by the module paths the exporter kept or, in
//! anonymous exports, by channels, strides and where the fusions and the
//! per-level forks sit.

use edgewise_graph::{InputShape, Model, Topology, analyze};
use edgewise_stages::{Boundary, Overrides, Partition, partition};
use edgewise_tests::{manifest, model_path};

/// A boundary tensor: its name in the export, its channels and its nominal
/// stride (the map is `ceil(H / stride)` × `ceil(W / stride)`).
type Expected = (&'static str, usize, usize);

/// Partitions `model` at `[height, width]`.
fn partition_at(model: &Model, [height, width]: [usize; 2]) -> Partition {
    let topo = Topology::new(&model.graph).unwrap();
    let shape = InputShape {
        name: None,
        dims: vec![1, 3, height, width],
    };
    let facts = analyze(model, &[shape]).unwrap();
    partition(&model.graph, &topo, &facts, &Overrides::default()).unwrap()
}

/// Checks the boundaries of manifest `name`'s model at the manifest's input
/// size, as exported and anonymized.
fn check(name: &str, backbone: &[Expected], head: &[Expected]) {
    let size = manifest(name).input.size;
    let expected =
        |list: &[Expected], rename: &dyn Fn(&str) -> String| -> Vec<(String, Vec<usize>)> {
            list.iter()
                .map(|&(value, channels, stride)| {
                    let shape = vec![
                        1,
                        channels,
                        size[0].div_ceil(stride),
                        size[1].div_ceil(stride),
                    ];
                    (rename(value), shape)
                })
                .collect()
        };
    let found = |list: &[Boundary]| -> Vec<(String, Vec<usize>)> {
        for b in list {
            assert!(b.stride.is_some(), "{name}: {} is not a map", b.value);
        }
        list.iter()
            .map(|b| (b.value.clone(), b.shape.clone()))
            .collect()
    };
    let mut model = Model::load(model_path(name)).unwrap();
    let p = partition_at(&model, size);
    let same = |v: &str| v.to_string();
    assert_eq!(
        found(&p.backbone_outputs),
        expected(backbone, &same),
        "{name}: backbone outputs"
    );
    assert_eq!(
        found(&p.head_inputs),
        expected(head, &same),
        "{name}: head inputs"
    );

    let map = model.anonymize();
    let p = partition_at(&model, size);
    let renamed = |v: &str| map[v].clone();
    assert_eq!(
        found(&p.backbone_outputs),
        expected(backbone, &renamed),
        "{name}, anonymized: backbone outputs"
    );
    assert_eq!(
        found(&p.head_inputs),
        expected(head, &renamed),
        "{name}, anonymized: head inputs"
    );
}

/// YOLOX-tiny (width 0.375), anonymous names.
#[test]
fn yolox_ddddocr_stages() {
    check(
        "yolox_ddddocr",
        // yolox/models/darknet.py, CSPDarknet: out_features dark3, dark4,
        // dark5 (dark5 = SPPBottleneck + CSPLayer), read by
        // yolox/models/yolo_pafpn.py (lateral_conv0 on dark5, the concats with
        // dark4 and dark3).
        &[("577", 96, 8), ("621", 192, 16), ("658", 384, 32)],
        // yolo_pafpn.py, YOLOPAFPN.forward: outputs (pan_out2, pan_out1,
        // pan_out0), the C3_p3, C3_n3 and C3_n4 CSPLayers; the head starts
        // at yolox/models/yolo_head.py's `stems` (1x1 BaseConv per level).
        &[("720", 96, 8), ("746", 192, 16), ("772", 384, 32)],
    );
}

/// YOLOv8n, older Ultralytics export (Detect concatenates box and class per
/// level in the graph).
#[test]
fn yolov8n_nudenet_stages() {
    check(
        "yolov8n_nudenet",
        // ultralytics/cfg/models/v8/yolov8.yaml: backbone layers 0-9, read by
        // the head section at layers 4 and 6 (C2f) and 9 (SPPF).
        &[
            ("/model.4/cv2/act/Mul_output_0", 64, 8),
            ("/model.6/cv2/act/Mul_output_0", 128, 16),
            ("/model.9/cv2/act/Mul_output_0", 256, 32),
        ],
        // yolov8.yaml: Detect (layer 22, ultralytics/nn/modules/head.py)
        // reads layers 15, 18 and 21, the C2f outputs of the FPN/PAN neck.
        &[
            ("/model.15/cv2/act/Mul_output_0", 64, 8),
            ("/model.18/cv2/act/Mul_output_0", 128, 16),
            ("/model.21/cv2/act/Mul_output_0", 256, 32),
        ],
    );
}

/// YOLOv8n trained on DocLayNet, newer Ultralytics export.
#[test]
fn yolov8n_doclaynet_stages() {
    check(
        "yolov8n_doclaynet",
        // ultralytics/cfg/models/v8/yolov8.yaml: backbone layers 0-9; the
        // head section reads layers 4, 6 and 9 (SPPF).
        &[
            ("/model.4/cv2/act/Mul_output_0", 64, 8),
            ("/model.6/cv2/act/Mul_output_0", 128, 16),
            ("/model.9/cv2/act/Mul_output_0", 256, 32),
        ],
        // yolov8.yaml: Detect (layer 22) reads layers 15, 18 and 21.
        &[
            ("/model.15/cv2/act/Mul_output_0", 64, 8),
            ("/model.18/cv2/act/Mul_output_0", 128, 16),
            ("/model.21/cv2/act/Mul_output_0", 256, 32),
        ],
    );
}

/// YOLO26n end-to-end (attention blocks C2PSA and C3k2-PSA).
#[test]
fn yolo26n_isbnx_stages() {
    check(
        "yolo26n_isbnx",
        // ultralytics/cfg/models/26/yolo26.yaml: backbone layers 0-10, ending
        // with SPPF (9) and C2PSA (10, attention); the head section reads
        // layers 4, 6 and 10.
        &[
            ("/model.4/cv2/act/Mul_output_0", 128, 8),
            ("/model.6/cv2/act/Mul_output_0", 128, 16),
            ("/model.10/cv2/act/Mul_output_0", 256, 32),
        ],
        // yolo26.yaml: Detect (layer 23, one2one branches) reads layers 16,
        // 19 and 22 (a C3k2 with attention).
        &[
            ("/model.16/cv2/act/Mul_output_0", 64, 8),
            ("/model.19/cv2/act/Mul_output_0", 128, 16),
            ("/model.22/cv2/act/Mul_output_0", 256, 32),
        ],
    );
}

/// PP-PicoDet layout (LCNet x1.0, CSP-PAN, PicoHeadV2), Paddle names.
#[test]
fn picodet_layout_cdla_stages() {
    check(
        "picodet_layout_cdla",
        // PaddleDetection ppdet/modeling/backbones/lcnet.py, LCNet: the three
        // out stages (128, 256, 512 channels), read by the `conv_t` 1x1
        // convs of ppdet/modeling/necks/csp_pan.py.
        &[
            ("hardswish_37.tmp_0", 128, 8),
            ("hardswish_49.tmp_0", 256, 16),
            ("hardswish_53.tmp_0", 512, 32),
        ],
        // csp_pan.py, CSPPAN.forward: the bottom-up outputs at P3, P4, P5
        // and the extra level `first_top_conv(inputs[-1]) +
        // second_top_conv(outs[-1])` at stride 64; read by
        // ppdet/modeling/heads/pico_head.py (PicoFeat).
        &[
            ("hardswish_68.tmp_0", 128, 8),
            ("hardswish_76.tmp_0", 128, 16),
            ("hardswish_84.tmp_0", 128, 32),
            ("p2o.Add.133", 128, 64),
        ],
    );
}

/// SCRFD-2.5G with keypoints, anonymous names.
#[test]
fn scrfd_stages() {
    check(
        "scrfd",
        // insightface detection/scrfd, ResNetV1e (mmdet/models/backbones),
        // out_indices (1, 2, 3): stages of 48, 48 and 80 channels.
        &[("339", 48, 8), ("363", 48, 16), ("380", 80, 32)],
        // mmdet/models/necks/pafpn.py, PAFPN.forward: inter_outs[0] (the P3
        // fpn_conv) and the two pafpn_convs; the head
        // (mmdet/models/dense_heads/scrfd_head.py) starts at its
        // stacked_convs tower.
        &[("424", 24, 8), ("431", 24, 16), ("432", 24, 32)],
    );
}

/// RetinaFace MobileNet-0.25 (biubug6 Pytorch_Retinaface), module paths kept.
#[test]
fn retinaface_mnet025_stages() {
    check(
        "retinaface_mnet025",
        // models/retinaface.py: IntermediateLayerGetter(MobileNetV1,
        // {'stage1', 'stage2', 'stage3'}), the outputs of stage1..3 of
        // models/net.py's MobileNetV1.
        &[
            (
                "/fx/stage1/stage1.5/stage1.5.1/stage1.5.1.2/LeakyRelu_output_0",
                64,
                8,
            ),
            (
                "/fx/stage2/stage2.5/stage2.5.1/stage2.5.1.2/LeakyRelu_output_0",
                128,
                16,
            ),
            (
                "/fx/stage3/stage3.1/stage3.1.1/stage3.1.1.2/LeakyRelu_output_0",
                256,
                32,
            ),
        ],
        // models/retinaface.py: ssh1..3 (models/net.py's SSH, a context
        // module counted as neck, as mmdet registers it in
        // mmdet/models/necks/ssh.py), read by ClassHead, BboxHead and
        // LandmarkHead.
        &[
            ("/ssh1/Relu_output_0", 64, 8),
            ("/ssh2/Relu_output_0", 64, 16),
            ("/ssh3/Relu_output_0", 64, 32),
        ],
    );
}

/// PP-OCRv5 mobile det (PPLCNetV3, RSEFPN, DBHead), Paddle names.
#[test]
fn ppocr_v5_det_stages() {
    check(
        "ppocr_v5_det",
        // PaddleOCR ppocr/modeling/backbones/rec_lcnetv3.py, PPLCNetV3 with
        // det=True: the `layer_list` 1x1 convs (bias split off as Add).
        &[
            ("Add.169", 12, 4),
            ("Add.171", 18, 8),
            ("Add.173", 42, 16),
            ("Add.175", 360, 32),
        ],
        // ppocr/modeling/necks/db_fpn.py, RSEFPN: its final concat, read by
        // ppocr/modeling/heads/det_db_head.py's DBHead.
        &[("Concat.1", 96, 4)],
    );
}

/// PP-OCRv6 tiny det (PPLCNetV4, UniRepLKFPN, DBHead), Paddle names.
#[test]
fn ppocr_v6_det_tiny_stages() {
    check(
        "ppocr_v6_det_tiny",
        // PaddleOCR configs/det/PP-OCRv6/PP-OCRv6_tiny_det.yml, PPLCNetV4
        // (det): the stage outputs f1..f4, read by the neck's ins_convs.
        &[
            ("p2o.pd_op.add.14.0", 32, 4),
            ("p2o.pd_op.add.27.0", 48, 8),
            ("p2o.pd_op.add.50.0", 64, 16),
            ("p2o.pd_op.add.63.0", 160, 32),
        ],
        // UniRepLKFPN (RSEFPN with a reparameterized large-kernel inp_conv):
        // its final concat, read by DBHead (det_db_head.py).
        &[("Concat.3", 64, 4)],
    );
}
