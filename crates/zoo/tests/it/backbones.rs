//! Every backbone, with its classification top at its native size, has the
//! published parameter count (within 0.5%) and MACs (within 2%), builds the
//! taps the necks expect, and the graph crate's independent cost model
//! agrees with the zoo's own counts.

use edgewise_graph::{InputShape, Topology, analyze, cost::node_costs};
use edgewise_zoo::{Init, backbones, by_name, classifier};

/// `(name, parameters, MACs, source)`. Parameters are what the source's
/// framework counts: torchvision excludes BN running statistics, Keras
/// includes them. torchvision's "GFLOPS" (`_ops` in its weights metadata)
/// count multiply-accumulates, as do timm's GMACs.
///
/// MACs must agree within 2%, or within the rounding of the published
/// figure when that is coarser (timm gives EfficientNet-Lite0 as "0.4").
const PUBLISHED: [(&str, u64, f64, &str); 9] = [
    (
        "mobilenet_v2",
        3_504_872,
        0.301e9,
        "torchvision MobileNet_V2_Weights",
    ),
    (
        "mobilenet_v3_small",
        2_542_856,
        0.057e9,
        "torchvision MobileNet_V3_Small_Weights",
    ),
    (
        "mobilenet_v3_large",
        5_483_032,
        0.217e9,
        "torchvision MobileNet_V3_Large_Weights",
    ),
    // timm's tf_efficientnet_lite0 model card: 4.65 M parameters, 0.4 GMACs
    // (EfficientNet-B0, the same network with squeeze-excitation, is
    // published at 0.39 G; tensorflow/tpu's lite README says 407 M).
    (
        "efficientnet_lite0",
        4_650_000,
        0.40e9,
        "timm tf_efficientnet_lite0",
    ),
    (
        "shufflenet_v2",
        2_278_604,
        0.145e9,
        "torchvision ShuffleNet_V2_X1_0_Weights",
    ),
    (
        "resnet18",
        11_689_512,
        1.814e9,
        "torchvision ResNet18_Weights",
    ),
    (
        "resnet50",
        25_557_032,
        4.089e9,
        "torchvision ResNet50_Weights",
    ),
    ("vgg16", 138_357_544, 15.47e9, "torchvision VGG16_Weights"),
    // Keras counts BN moving statistics; timm's legacy_xception: 8.4 GMACs at 299.
    (
        "xception",
        22_910_480,
        8.4e9,
        "Keras Applications Xception; MACs: timm legacy_xception",
    ),
];

#[test]
fn backbones_match_their_published_sizes() {
    let mut report = vec![];
    let mut failures = vec![];
    for (name, params, macs, source) in PUBLISHED {
        let backbone = by_name(name, 1.0).unwrap();
        let (_, counts) = classifier(backbone.as_ref(), 1000, 1, Init::Kaiming);
        let ours = if source.starts_with("Keras") {
            counts.trainable + counts.buffers
        } else {
            counts.trainable
        };
        let param_err = ours as f64 / params as f64 - 1.0;
        let mac_err = counts.macs as f64 / macs - 1.0;
        // Half a unit of the published figure's last digit ("0.4" -> 0.05).
        let digits = format!("{}", macs / 1e9);
        let decimals = digits.split_once('.').map_or(0, |(_, d)| d.len());
        let rounding = 0.5 * 10f64.powi(-(decimals as i32)) * 1e9 / macs;
        let line = format!(
            "{name}: {ours} params ({:+.3}%), {:.3} G MACs ({:+.2}%, allowed {:.1}%) vs {source}",
            100.0 * param_err,
            counts.macs as f64 / 1e9,
            100.0 * mac_err,
            100.0 * rounding.max(0.02)
        );
        if param_err.abs() > 0.005 || mac_err.abs() > rounding.max(0.02) {
            failures.push(line.clone());
        }
        report.push(line);
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn taps_are_at_strides_4_to_32_and_the_cost_model_agrees() {
    for name in backbones::NAMES {
        if name == "vgg16" {
            continue; // 138 M random weights: counted above, too slow to analyse here.
        }
        let backbone = by_name(name, 1.0).unwrap();
        let mut net = edgewise_zoo::Net::new(3, Init::Kaiming);
        let image = net.input("image", 3, 224, 224);
        let taps = backbone.build(&mut net, &image);
        let strides: Vec<usize> = taps.iter().map(|t| t.stride).collect();
        assert_eq!(strides, [4, 8, 16, 32], "{name}");
        for t in &taps {
            net.output(t);
        }
        let counts = net.counts();
        let model = net.finish();
        let shape = InputShape::parse("1x3x224x224").unwrap();
        let facts = analyze(&model, &[shape]).unwrap();
        for t in &taps {
            assert_eq!(
                facts.shape(&t.name).unwrap(),
                [1, t.channels, t.height, t.width],
                "{name}: tracked shape of {}",
                t.name
            );
        }
        let topo = Topology::new(&model.graph).unwrap();
        let costs = node_costs(&model.graph, &topo, &facts);
        let macs: u64 = costs.iter().map(|c| c.macs).sum();
        let params: u64 = costs.iter().map(|c| c.params).sum();
        assert_eq!(macs, counts.macs, "{name}");
        assert_eq!(params, counts.trainable + counts.buffers, "{name}");
    }
}

#[test]
fn widths_and_unknown_names() {
    assert!(by_name("mobilenet_v2", 0.5).is_some());
    assert!(by_name("shufflenet_v2", 0.5).is_some());
    assert!(
        by_name("shufflenet_v2", 0.75).is_none(),
        "not a published width"
    );
    assert!(
        by_name("resnet50", 0.5).is_none(),
        "ResNet has no width multiplier"
    );
    assert!(by_name("resnet101", 1.0).is_none());
    let half = by_name("mobilenet_v2", 0.5).unwrap();
    let (_, small) = classifier(half.as_ref(), 1000, 1, Init::Kaiming);
    let full = by_name("mobilenet_v2", 1.0).unwrap();
    let (_, big) = classifier(full.as_ref(), 1000, 1, Init::Kaiming);
    assert!(small.trainable < big.trainable * 6 / 10);
    assert!(small.macs < big.macs / 2);
}
