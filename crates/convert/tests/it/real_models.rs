//! quantize --eval and prune --eval on one real model of every decoder
//! family (fetched by models/fetch.py), at small input sizes: the pipeline
//! runs on detectors as their authors exported them, not only on our zoo.

use super::{edge_convert, photos};

/// One real model per family, with the input shape the test runs it at
/// (the model's own fixed size, or a small one for dynamic models).
const MODELS: &[(&str, &str)] = &[
    ("yolox_ddddocr", "1x3x416x416"),
    ("yolov8n_nudenet", "1x3x320x320"),
    ("yolo26n_isbnx", "1x3x320x320"),
    ("picodet_layout_cdla", "1x3x800x608"),
    ("scrfd", "1x3x640x640"),
    ("retinaface_mnet025", "1x3x320x320"),
    ("ppocr_v5_det", "1x3x320x320"),
];

fn run_json(args: &[&str]) -> serde_json::Value {
    let (ok, text, err) = edge_convert(args);
    assert!(ok, "edge-convert {}: {err}", args.join(" "));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_family_quantizes_with_its_fidelity_measured() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(&dir.path().join("calib"), &["astronaut.png", "text.png"]);
    let held_back = photos(&dir.path().join("eval"), &["page.png", "camera.png"]);
    for (name, shape) in MODELS {
        let manifest = format!("models/{name}.toml");
        let out = dir.path().join(format!("{name}_int8.onnx"));
        let v = run_json(&[
            "quantize",
            &manifest,
            "--calib",
            &calib,
            "--eval",
            &held_back,
            "--input-shape",
            shape,
            "-o",
            out.to_str().unwrap(),
            "--no-cache",
            "--json",
        ]);
        let report = &v["report"];
        assert!(
            report["quantized"]["convs"].as_u64().unwrap() > 0,
            "{name}: {report}"
        );
        // Measured in each way the INT8 model can run; every output compared,
        // and close enough to be the same model.
        for fidelity in v["fidelity"].as_array().unwrap() {
            assert!(
                fidelity["detections"]["f1"].as_f64().is_some(),
                "{name}: {fidelity}"
            );
            let outputs: Vec<&serde_json::Value> = fidelity["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["role"] == "output")
                .collect();
            assert!(!outputs.is_empty(), "{name}: {fidelity}");
            for t in outputs {
                assert!(t["cosine"].as_f64().unwrap() > 0.5, "{name}: {t}");
            }
        }
        assert!(
            out.with_extension("toml").is_file(),
            "{name}: a manifest beside it"
        );
    }
}

#[test]
fn every_family_prunes_backbone_and_neck() {
    let dir = tempfile::tempdir().unwrap();
    let held_back = photos(&dir.path().join("eval"), &["page.png"]);
    for (name, shape) in MODELS {
        let manifest = format!("models/{name}.toml");
        let out = dir.path().join(format!("{name}_pruned.onnx"));
        let v = run_json(&[
            "prune",
            &manifest,
            "--ratio",
            "backbone=0.3,neck=0.3",
            "--input-shape",
            shape,
            "--eval",
            &held_back,
            "--bench-runs",
            "1",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]);
        let stages = v["report"]["stages"].as_array().unwrap();
        let macs = |stage: &str, key: &str| {
            stages
                .iter()
                .find(|s| s["stage"] == stage)
                .and_then(|s| s[key].as_u64())
                .unwrap_or(0)
        };
        let (before, after) = (
            macs("backbone", "macs_before") + macs("neck", "macs_before"),
            macs("backbone", "macs_after") + macs("neck", "macs_after"),
        );
        // 30% of the channels of most layers: well over 15% of the MACs.
        assert!(
            after * 100 < before * 85,
            "{name}: {before} -> {after} MACs"
        );
        let fidelity = &v["fidelity"][0]["detections"];
        assert!(fidelity["f1"].as_f64().is_some(), "{name}: {v}");
    }
}
