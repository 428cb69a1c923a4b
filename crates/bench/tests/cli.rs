//! `edge-bench` as a user runs it.

use std::path::PathBuf;
use std::process::Command;

fn edge_bench(args: &[&str]) -> (bool, String, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-bench"))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn times_preprocessing_and_inference_of_a_manifest_model_on_a_photo() {
    let (ok, out, err) = edge_bench(&[
        "models/ppocr_v4_det.toml",
        "--image",
        "models/.cache/photos/page.png",
        "--input-shape",
        "1x3x320x320",
        "--warmup",
        "1",
        "--runs",
        "3",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "edgewise.latency/1");
    assert_eq!(v["inputs"][0][1], serde_json::json!([1, 3, 320, 320]));
    assert!(
        v["detections"].as_u64().unwrap() >= 4,
        "page.png has text lines"
    );
    for phase in ["pre", "infer", "post"] {
        let s = &v[phase];
        assert_eq!(s["runs"], 3, "{phase}");
        let (min, med, p90, max) = (
            s["min_ms"].as_f64().unwrap(),
            s["median_ms"].as_f64().unwrap(),
            s["p90_ms"].as_f64().unwrap(),
            s["max_ms"].as_f64().unwrap(),
        );
        assert!(
            0.0 < min && min <= med && med <= p90 && p90 <= max,
            "{phase}: {s}"
        );
    }
    assert!(!v["machine"]["cpu"].as_str().unwrap().is_empty());
}

#[test]
fn a_missing_model_or_a_photo_without_manifest_is_a_clear_error() {
    let (ok, _, err) = edge_bench(&["models/absent.onnx"]);
    assert!(!ok);
    assert!(
        err.starts_with("edge-bench: error: model file models/absent.onnx does not exist"),
        "{err}"
    );
    let (ok, _, err) = edge_bench(&[
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "--input-shape",
        "1x3x64x64",
        "--image",
        "models/.cache/photos/page.png",
    ]);
    assert!(!ok);
    assert!(err.contains("--image needs a manifest"), "{err}");
    let (ok, _, err) = edge_bench(&[
        "models/ppocr_v4_det.toml",
        "--image",
        "models/ppocr_v4_det.toml",
        "--runs",
        "1",
    ]);
    assert!(!ok);
    assert!(
        err.contains("cannot read image models/ppocr_v4_det.toml"),
        "{err}"
    );
}
