//! `edge-convert quantize` as a user runs it: a zoo detector and PP-OCRv4
//! det calibrated on real photos, checked for what tract runs in integer, for
//! fidelity on held-back photos, for the statistics cache, and for its errors.

use std::path::Path;
use std::process::Command;

use super::{edge_convert, photos, root, zoo_detector};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_zoo_detector_quantizes_to_qdq_that_runs_integer_and_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    zoo_detector(dir.path(), "mobilenet_v2+fpn+retinanet", 96, 4);
    let calib = photos(
        &dir.path().join("calib"),
        &["astronaut.png", "coffee.png", "horse.png"],
    );
    let held_back = photos(&dir.path().join("eval"), &["chelsea.png", "rocket.jpg"]);
    let out = dir.path().join("det_int8.onnx");
    let cache = dir.path().join("cache");
    let manifest = dir.path().join("det.toml");
    let args = |method: &'static str| {
        vec![
            "quantize".to_string(),
            path(&manifest).into(),
            "--calib".into(),
            calib.clone(),
            "--eval".into(),
            held_back.clone(),
            "-o".into(),
            path(&out).into(),
            "--cache-dir".into(),
            path(&cache).into(),
            "--method".into(),
            method.into(),
            "--json".into(),
        ]
    };
    let run = |method| {
        let args = args(method);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = edge_convert(&refs);
        assert!(ok, "{err}");
        json(&out)
    };
    let v = run("minmax");
    assert_eq!(v["schema"], "edgewise.quantize/1");
    let r = &v["report"];
    let planned = r["plan"]["convs"].as_array().unwrap().len() as u64;
    assert!(planned > 50, "{planned} convolutions planned");
    assert_eq!(r["quantized"]["convs"], planned);
    assert!(r["prepared"]["folded_batch_norms"].as_u64().unwrap() > 0);
    assert!(
        r["quantized"]["absorbed"].as_u64().unwrap() > 0,
        "ReLU6 absorbed"
    );
    assert_eq!(r["cached_statistics"], false);
    // Every convolution quantized runs on tract's integer kernels.
    assert_eq!(r["integer_convs"], planned);
    // Weights are int8: the file shrinks to well under half.
    let (before, after) = (
        r["bytes"][0].as_u64().unwrap(),
        r["bytes"][1].as_u64().unwrap(),
    );
    assert!(after * 2 < before, "{before} -> {after} bytes");

    // Fidelity in both ways the runtime runs it, on every stage boundary.
    let fidelity = v["fidelity"].as_array().unwrap();
    assert_eq!(fidelity.len(), 2);
    for f in fidelity {
        assert_eq!(f["photos"], 2);
        let tensors = f["tensors"].as_array().unwrap();
        for role in ["backbone out", "head in", "output"] {
            assert!(tensors.iter().any(|t| t["role"] == role), "{role}: {f}");
        }
        for t in tensors {
            let cosine = t["cosine"].as_f64().unwrap();
            assert!(
                cosine > 0.99,
                "{} cosine {cosine} ({})",
                t["value"],
                f["qdq"]
            );
        }
    }

    // The manifest written beside it names the model and runs it.
    let written = edgewise_manifest::Manifest::load(dir.path().join("det_int8.toml")).unwrap();
    assert_eq!(written.name, "det_int8");
    let model = edgewise_graph::Model::load(written.existing_model_path().unwrap()).unwrap();
    let mut detector = edgewise_runtime::Detector::new(model, written, None, 1).unwrap();
    let photo =
        edgewise_runtime::load_image(root().join("models/.cache/photos/chelsea.png")).unwrap();
    detector.detect(&photo).unwrap();

    // Portable: ONNX's full checker accepts it and onnxruntime runs it.
    let check = Command::new("python3")
        .arg(root().join("tests/fixtures/check_qdq.py"))
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "check_qdq.py: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Another method reuses the statistics.
    let v = run("percentile");
    assert_eq!(v["report"]["cached_statistics"], true);
    assert_eq!(v["report"]["method"]["method"], "percentile");
}

#[test]
fn reconstruction_keeps_learned_roundings_only_where_they_beat_nearest() {
    let dir = tempfile::tempdir().unwrap();
    zoo_detector(dir.path(), "resnet18+pan+yolo", 64, 3);
    let calib = photos(
        &dir.path().join("calib"),
        &["astronaut.png", "coffee.png", "horse.png"],
    );
    let out = dir.path().join("det_int8.onnx");
    let manifest = dir.path().join("det.toml");
    let quantize = |extra: &[&str]| {
        let mut args = vec![
            "quantize",
            path(&manifest),
            "--calib",
            &calib,
            "-o",
            path(&out),
            "--no-cache",
            "--json",
        ];
        args.extend(extra);
        let (ok, text, err) = edge_convert(&args);
        assert!(ok, "{err}");
        json(&text)
    };
    let v = quantize(&["--reconstruct-seconds", "30"]);
    let r = &v["report"];
    let rec = &r["reconstruction"];
    let convs = rec["convs"].as_array().unwrap();
    assert_eq!(convs.len(), r["plan"]["convs"].as_array().unwrap().len());
    // The budget covers the int8 runs too; each level costs one.
    let seconds = rec["seconds"].as_f64().unwrap();
    assert!(seconds < 45.0, "{seconds} s for a budget of 30");
    // A learned rounding is written only where it beat nearest on the
    // held-out photos; a convolution given too little time for 100 steps
    // keeps nearest (its time goes to the others).
    let kept: Vec<_> = convs.iter().filter(|c| c["kept"] == true).collect();
    assert!(!kept.is_empty(), "{rec}");
    for c in convs {
        let (nearest, learned) = (
            c["error"][0].as_f64().unwrap(),
            c["error"][1].as_f64().unwrap(),
        );
        assert_eq!(c["kept"] == true, learned < nearest, "{c}");
        if c["iterations"].as_u64().unwrap() < 100 {
            assert_eq!(
                (c["kept"].as_bool(), c["flipped"].as_f64()),
                (Some(false), Some(0.0)),
                "{c}"
            );
        }
    }
    assert!(kept.iter().all(|c| c["flipped"].as_f64().unwrap() > 0.0));
    assert_eq!(r["integer_convs"], r["quantized"]["convs"]);
    // Without it, no reconstruction in the report.
    assert!(quantize(&[])["report"]["reconstruction"].is_null());
}

#[test]
fn keep_float_leaves_the_head_in_float() {
    let dir = tempfile::tempdir().unwrap();
    zoo_detector(dir.path(), "resnet18+pan+yolo", 64, 3);
    let calib = photos(&dir.path().join("calib"), &["astronaut.png"]);
    let out = dir.path().join("q.onnx");
    let (ok, text, err) = edge_convert(&[
        "quantize",
        path(&dir.path().join("det.toml")),
        "--calib",
        &calib,
        "-o",
        path(&out),
        "--no-cache",
        "--keep-float",
        "head",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v = json(&text);
    let float = v["report"]["plan"]["float"].as_array().unwrap();
    assert!(!float.is_empty());
    assert!(
        float.iter().all(|f| f[1] == "--keep-float head"),
        "{float:?}"
    );
    let planned = v["report"]["plan"]["convs"].as_array().unwrap().len() as u64;
    assert_eq!(v["report"]["integer_convs"], planned);
    assert!(v["report"]["float_convs"].as_u64().unwrap() >= float.len() as u64);
}

#[test]
fn ppocr_int8_finds_the_same_text_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(
        &dir.path().join("calib"),
        &["text.png", "astronaut.png", "coffee.png"],
    );
    let held_back = photos(&dir.path().join("eval"), &["page.png"]);
    let out = dir.path().join("ppocr_int8.onnx");
    let (ok, text, err) = edge_convert(&[
        "quantize",
        "models/ppocr_v4_det.toml",
        "--calib",
        &calib,
        "--eval",
        &held_back,
        "-o",
        path(&out),
        "--input-shape",
        "1x3x320x320",
        "--no-cache",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v = json(&text);
    let r = &v["report"];
    assert_eq!(r["prepared"]["opset_raised"], serde_json::json!([12, 13]));
    // 62 convolutions, and the head's two ConvTranspose as pointwise ones;
    // the last computes the text logits and stays float: these photos at
    // 320 show no text the model finds, so a calibrated range would cap
    // every score below the box threshold.
    assert_eq!(r["prepared"]["deconvs_as_convs"], 2);
    assert_eq!(r["quantized"]["convs"], 63);
    assert_eq!(r["integer_convs"], 63);
    let float = r["plan"]["float"].as_array().unwrap();
    assert_eq!(float.len(), 1, "{float:?}");
    assert!(
        float[0][1].as_str().unwrap().contains("logits"),
        "{float:?}"
    );
    // Bias correction is measured on these photos and kept.
    assert_eq!(r["bias_correction"]["applied"], true, "{r}");
    for f in v["fidelity"].as_array().unwrap() {
        let d = &f["detections"];
        assert!(
            d["reference"].as_u64().unwrap() > 0,
            "page.png has text: {d}"
        );
        // Integer is what runs (one box of page.png's 6 may go). Float
        // keeps the biases corrected for integer's rounding without the
        // rounding, so it may lose one more.
        let least = if f["qdq"] == "integer" { 0.9 } else { 0.75 };
        assert!(d["f1"].as_f64().unwrap() >= least, "{} {d}", f["qdq"]);
    }
}

#[test]
fn max_drop_keeps_the_most_sensitive_convolutions_in_float_and_biases_are_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(&dir.path().join("calib"), &["text.png", "page.png"]);
    let out = dir.path().join("mixed.onnx");
    let (ok, text, err) = edge_convert(&[
        "quantize",
        "models/ppocr_v4_det.toml",
        "--calib",
        &calib,
        "-o",
        path(&out),
        "--input-shape",
        "1x3x320x320",
        "--no-cache",
        "--max-drop",
        "0.05",
        "--json",
    ]);
    assert!(ok, "{err}");
    let r = &json(&text)["report"];
    // Bias correction ran and cut the mean error it measures.
    let b = &r["bias_correction"];
    assert_eq!(b["convs"], 64, "{b}");
    let (before, after) = (
        b["shift"][0].as_f64().unwrap(),
        b["shift"][1].as_f64().unwrap(),
    );
    assert!(after < 0.5 * before, "{b}");
    let m = &r["mixed"];
    let ranking = m["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 63, "every quantized convolution is ranked");
    assert!(m["reference_detections"].as_u64().unwrap() > 0, "{m}");
    let steps = m["steps"].as_array().unwrap();
    assert_eq!(steps[0]["float"], 0, "the all-int8 model is tried first");
    let kept: Vec<&str> = m["float"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The kept ones are the head of the ranking, and the step that chose
    // them meets the drop.
    for (k, name) in kept.iter().enumerate() {
        assert_eq!(ranking[k]["node"], *name);
        assert!(ranking[k]["gain_db"].as_f64().unwrap() > 0.0);
    }
    if m["met"] == true {
        let chosen = steps
            .iter()
            .find(|s| s["float"] == kept.len() as u64)
            .unwrap();
        assert!(chosen["f1"].as_f64().unwrap() >= 0.95, "{m}");
    }
    // They are in float in the written model, with the reason; the rest
    // runs on integer kernels.
    let float = r["plan"]["float"].as_array().unwrap();
    for name in &kept {
        let why = float.iter().find(|f| f[0] == *name).unwrap()[1]
            .as_str()
            .unwrap();
        assert!(why.contains("--max-drop 0.05"), "{why}");
    }
    assert_eq!(r["quantized"]["convs"], 63 - kept.len() as u64);
    assert_eq!(r["integer_convs"], r["quantized"]["convs"]);
}

#[test]
fn held_back_photos_must_not_be_calibration_photos() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(&dir.path().join("calib"), &["text.png", "coffee.png"]);
    let held_back = photos(&dir.path().join("eval"), &["coffee.png"]);
    let (ok, _, err) = edge_convert(&[
        "quantize",
        "models/ppocr_v4_det.toml",
        "--calib",
        &calib,
        "--eval",
        &held_back,
        "-o",
        path(&dir.path().join("q.onnx")),
    ]);
    assert!(!ok);
    assert!(
        err.contains("coffee.png is also a calibration photo"),
        "{err}"
    );
    assert!(!dir.path().join("q.onnx").exists());
    // Nor may they be the photos mixed precision is tuned on.
    let calib = photos(&dir.path().join("calib2"), &["text.png"]);
    let tune = photos(&dir.path().join("tune"), &["coffee.png"]);
    let (ok, _, err) = edge_convert(&[
        "quantize",
        "models/ppocr_v4_det.toml",
        "--calib",
        &calib,
        "--max-drop",
        "0.05",
        "--tune",
        &tune,
        "--eval",
        &held_back,
        "-o",
        path(&dir.path().join("q.onnx")),
    ]);
    assert!(!ok);
    assert!(err.contains("coffee.png is also a --tune photo"), "{err}");
    assert!(!dir.path().join("q.onnx").exists());
}

#[test]
fn quantize_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(&dir.path().join("calib"), &["text.png"]);
    // A bare ONNX file: no manifest to preprocess the photos with.
    let (ok, _, err) = edge_convert(&[
        "quantize",
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "--calib",
        &calib,
        "-o",
        path(&dir.path().join("q.onnx")),
    ]);
    assert!(!ok);
    assert!(err.contains("has no manifest"), "{err}");
    // An empty photo folder.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, _, err) = edge_convert(&[
        "quantize",
        "models/ppocr_v4_det.toml",
        "--calib",
        path(&empty),
        "-o",
        path(&dir.path().join("q.onnx")),
    ]);
    assert!(!ok);
    assert!(err.contains("no photos") && err.contains("empty"), "{err}");
}

#[test]
fn compare_finds_a_model_identical_to_itself_and_preprocess_writes_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let held_back = photos(&dir.path().join("eval"), &["page.png"]);
    let (ok, text, err) = edge_convert(&[
        "compare",
        "models/ppocr_v4_det.toml",
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "--eval",
        &held_back,
        "--input-shape",
        "1x3x320x320",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v = json(&text);
    let fidelity = v["fidelity"].as_array().unwrap();
    assert_eq!(fidelity.len(), 1, "a float model runs one way");
    let f = &fidelity[0];
    assert_eq!(f["detections"]["f1"], 1.0);
    assert!(f["detections"]["reference"].as_u64().unwrap() > 0);
    assert_eq!(f["detections"]["map"]["map50"], 1.0);
    for t in f["tensors"].as_array().unwrap() {
        assert!(t["cosine"].as_f64().unwrap() > 0.999_999, "{t}");
    }
    // The noise floor: the same original on inputs moved by one gray
    // level, which moves every tensor a little.
    let floor = &v["noise_floor"];
    assert_eq!(floor["gray_level_noise"], true, "{floor}");
    assert_eq!(
        floor["detections"]["reference"],
        f["detections"]["reference"]
    );
    assert!(floor["detections"]["f1"].as_f64().unwrap() > 0.0, "{floor}");
    for t in floor["tensors"].as_array().unwrap() {
        let cosine = t["cosine"].as_f64().unwrap();
        assert!(cosine < 1.0 && cosine > 0.9, "{t}");
    }

    let out = dir.path().join("inputs.bin");
    let (ok, _, err) = edge_convert(&[
        "preprocess",
        "models/ppocr_v4_det.toml",
        &held_back,
        "-o",
        path(&out),
        "--input-shape",
        "1x3x64x96",
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&out).unwrap();
    let header: Vec<u32> = bytes[..20]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(header, [4, 1, 3, 64, 96]);
    assert_eq!(bytes.len(), 20 + 4 * 3 * 64 * 96);
}

#[test]
fn quantize_steps_script_reports_each_step_next_to_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let calib = photos(&dir.path().join("calib"), &["text.png", "astronaut.png"]);
    let held_back = photos(&dir.path().join("eval"), &["page.png"]);
    let report = dir.path().join("steps.json");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_edge-convert"))
        .parent()
        .unwrap();
    let out = std::process::Command::new("python3")
        .current_dir(edgewise_tests::root())
        .args(["scripts/quantize_steps.py", "models/ppocr_v4_det.toml"])
        .args(["--eval", &held_back, "--calib", &calib])
        .args(["--input-shape", "1x3x128x128", "--threads", "1", "--ort"])
        .arg("--out-dir")
        .arg(dir.path().join("models"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--json")
        .arg(&report)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&std::fs::read_to_string(&report).unwrap());
    let rows = v["rows"].as_array().unwrap();
    let steps: Vec<&str> = rows.iter().map(|r| r["step"].as_str().unwrap()).collect();
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert!(steps[0].starts_with("minmax") && steps[3].contains("default"));
    assert!(steps[4].contains("onnxruntime"));
    for r in rows {
        let f1 = r["f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "{r}");
        assert!(r["snr_db"].as_f64().is_some(), "{r}");
    }
    // The steps differ: minmax without bias correction is not the default.
    assert_ne!(rows[0]["snr_db"], rows[3]["snr_db"]);
    assert!(text.contains("| + bias correction (default) |"), "{text}");
}
