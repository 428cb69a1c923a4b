//! `edge-bench` as a user runs it: variants side by side, every output
//! format, the JSON schema, `merge`, and clear errors.

use std::path::Path;
use std::process::Command;

use edgewise_tests::root;

use super::edge_bench;

fn validate(report: &serde_json::Value) {
    let schema_text =
        std::fs::read_to_string(root().join("docs/schemas/edgewise.bench-1.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema_text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
    let mut broken = report.clone();
    broken["variants"][0]
        .as_object_mut()
        .unwrap()
        .remove("stages");
    assert!(!validator.is_valid(&broken), "the schema requires stages");
}

fn stage_names(variant: &serde_json::Value) -> Vec<&str> {
    variant["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect()
}

fn path_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_variants_side_by_side_in_every_format_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let saved = |ext: &str| dir.path().join(format!("report.{ext}"));
    let (json, html, csv, md) = (saved("json"), saved("html"), saved("csv"), saved("md"));
    let (ok, out, err) = edge_bench(&[
        "models/ppocr_v4_det.toml",
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "--input-shape",
        "1x3x320x320",
        "--image",
        "models/.cache/photos/page.png",
        "--warmup",
        "1",
        "--runs",
        "3",
        "--threads",
        "1",
        "--board",
        "host",
        "--format",
        "json",
        "--save",
        path_arg(&json),
        "--save",
        path_arg(&html),
        "--save",
        path_arg(&csv),
        "--save",
        path_arg(&md),
    ]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    validate(&report);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(on_disk, report, "--save writes what --format prints");

    let variants = report["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    let (manifest, bare) = (&variants[0], &variants[1]);
    assert_eq!(manifest["label"], "ppocr_v4_det");
    assert_eq!(bare["label"], "ch_PP-OCRv4_det_infer");
    assert_eq!(
        stage_names(manifest),
        ["pre", "backbone", "neck", "head", "post", "decode+nms"]
    );
    // Without a manifest there is no Rust pre/post; `pre` is the input node alone.
    assert_eq!(
        stage_names(bare),
        ["pre", "backbone", "neck", "head", "post"]
    );
    assert_eq!(bare["image"], "none");
    assert!(
        manifest["detections"].as_u64().unwrap() >= 4,
        "page.png has text lines"
    );
    for v in variants {
        assert_eq!(v["unattributed"], serde_json::json!([]));
        assert_eq!(v["settings"]["runs"], 3);
        assert_eq!(v["board"]["name"], "host");
        let stages = v["stages"].as_array().unwrap();
        for s in stages {
            let t = &s["time"];
            let (min, med, p90, max) = (
                t["min_ms"].as_f64().unwrap(),
                t["median_ms"].as_f64().unwrap(),
                t["p90_ms"].as_f64().unwrap(),
                t["max_ms"].as_f64().unwrap(),
            );
            assert!(min <= med && med <= p90 && p90 <= max, "{s}");
        }
        let backbone = &stages[1];
        assert!(backbone["macs"].as_u64().unwrap() > 100_000_000);
        assert!(backbone["peak_pct"].as_f64().unwrap() > 0.0);
        let sum: f64 = stages
            .iter()
            .map(|s| s["time"]["median_ms"].as_f64().unwrap())
            .sum();
        assert!((sum - v["stage_sum_ms"].as_f64().unwrap()).abs() < 1e-9);
        let nodes = v["nodes"].as_array().unwrap();
        // PP-OCRv4 runs about a hundred of its ONNX nodes as plan nodes of
        // their own (batch norms, activations and hard-swish chains fold into
        // the convolutions, constants into constants): all are listed, not
        // only the terminal's slowest few.
        assert!(
            nodes.len() > 90,
            "every ONNX node tract ran is listed: {}",
            nodes.len()
        );
        let medians: Vec<f64> = nodes
            .iter()
            .map(|n| n["median_ms"].as_f64().unwrap())
            .collect();
        assert!(medians.windows(2).all(|w| w[0] >= w[1]), "slowest first");
    }

    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("variant,model,host,board,precision,threads,stage,runs"));
    assert_eq!(lines.len(), 1 + (6 + 2) + (5 + 2), "{csv}");
    assert!(lines[1].starts_with("ppocr_v4_det,"));

    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("### Side by side"), "{md}");
    assert!(
        md.contains("| ppocr_v4_det | ch_PP-OCRv4_det_infer | vs first |"),
        "{md}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<svg").count(),
        3,
        "stage chart and one node chart per variant"
    );
    assert!(!page.contains("<script"), "self-contained and static");

    // Merging the report with itself: one page, four columns, distinct labels.
    let merged_html = dir.path().join("merged.html");
    let (ok, out, err) = edge_bench(&[
        "merge",
        path_arg(&json),
        path_arg(&json),
        "--format",
        "json",
        "--save",
        path_arg(&merged_html),
    ]);
    assert!(ok, "{err}");
    let merged: serde_json::Value = serde_json::from_str(&out).unwrap();
    validate(&merged);
    let labels: Vec<&str> = merged["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "ppocr_v4_det @ host #1",
            "ch_PP-OCRv4_det_infer @ host #1",
            "ppocr_v4_det @ host #2",
            "ch_PP-OCRv4_det_infer @ host #2"
        ]
    );
    let page = std::fs::read_to_string(&merged_html).unwrap();
    for label in labels {
        assert!(page.contains(&format!("<h2>{label}</h2>")), "{label}");
    }
}

#[test]
fn bad_input_gets_a_clear_error_before_any_measuring() {
    let cases: [(&[&str], &str); 13] = [
        (
            &[
                "models/.cache/ch_PP-OCRv4_det_infer.onnx",
                "--source",
                "README.md",
            ],
            "--source needs a manifest",
        ),
        (
            &["models/ppocr_v4_det.toml", "--source", "ftp://camera/1"],
            "the URL schemes read are rtsp://",
        ),
        (
            &["models/ppocr_v4_det.toml", "--source", "absent.mp4"],
            "no video file absent.mp4",
        ),
        (
            &["models/absent.onnx"],
            "edge-bench: error: model file models/absent.onnx does not exist",
        ),
        (
            &[
                "models/.cache/ch_PP-OCRv4_det_infer.onnx",
                "--input-shape",
                "1x3x64x64",
                "--image",
                "models/.cache/photos/page.png",
            ],
            "--image needs a manifest",
        ),
        (
            &["models/ppocr_v4_det.toml", "--save", "report.pdf"],
            "cannot tell the format of report.pdf from its extension `pdf`",
        ),
        (
            &["models/ppocr_v4_det.toml", "--board", "rpi9"],
            "no board named `rpi9`; known boards: host, jetson-nano",
        ),
        (
            &["models/ppocr_v4_det.toml", "--label", "a", "--label", "b"],
            "2 --label given for 1 model(s)",
        ),
        (
            &[
                "models/ppocr_v4_det.toml",
                "--label",
                "a",
                "--label",
                "a",
                "models/ppocr_v4_det.toml",
            ],
            "--label `a` is given twice",
        ),
        (
            &["models/ppocr_v4_det.toml", "--max-seconds", "inf"],
            "--max-seconds must be a positive number of seconds, not inf",
        ),
        (
            &["models/ppocr_v4_det.toml", "--input-shape", "2x3x320x320"],
            "the batch must be 1, not input shape [2, 3, 320, 320]",
        ),
        (
            &["merge", "models/ppocr_v4_det.toml"],
            "models/ppocr_v4_det.toml is not JSON",
        ),
        (
            &["merge", "docs/schemas/edgewise.bench-1.schema.json"],
            "has no `schema` field; it is not an edge-bench report",
        ),
    ];
    for (args, expected) in cases {
        let (ok, _, err) = edge_bench(args);
        assert!(!ok, "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
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

#[test]
fn a_backbone_swap_study_builds_measures_and_tabulates_each_choice() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("study.json");
    let md = dir.path().join("study.md");
    let (ok, out, err) = edge_bench(&[
        "study",
        "mobilenet_v3_small,shufflenet_v2+fpn+yolo",
        "--input",
        "128",
        "--classes",
        "3",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--runs",
        "3",
        "--save",
        path_arg(&json),
        "--save",
        path_arg(&md),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("backbone swap at [1, 3, 128, 128], 1 thread(s)"),
        "{out}"
    );
    for title in [
        "backbone ms",
        "neck ms",
        "head ms",
        "decode ms",
        "backbone params",
        "head MACs",
    ] {
        assert!(out.contains(title), "{title}:\n{out}");
    }
    // One row per backbone, the first at 1.00x; the head is the same part in
    // both, so its parameters are equal.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("│ mobilenet_v3_small") || l.starts_with("│ shufflenet_v2"))
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[0].contains("1.00×"), "{out}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    validate(&report);
    let variants = report["variants"].as_array().unwrap();
    let labels: Vec<&str> = variants
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["mobilenet_v3_small", "shufflenet_v2"]);
    let head_params: Vec<u64> = variants
        .iter()
        .map(|v| {
            v["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["stage"] == "head")
                .unwrap()["params"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(head_params[0], head_params[1]);
    for v in variants {
        assert_eq!(stage_names(v)[1..4], ["backbone", "neck", "head"]);
        assert!(v["unattributed"].as_array().unwrap().is_empty());
    }
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(
        markdown.contains("| backbone | pre ms | backbone ms |"),
        "{markdown}"
    );
}

#[test]
fn a_study_without_exactly_one_swapped_part_says_how_to_write_one() {
    for (pattern, expected) in [
        ("mobilenet_v2+fpn+yolo", "must swap exactly one part"),
        ("*+fpn+transformer", "unknown head `transformer`"),
    ] {
        let (ok, _, err) = edge_bench(&["study", pattern]);
        assert!(!ok, "{pattern}");
        assert!(err.contains(expected), "{pattern}: {err}");
    }
}

/// onnxruntime's QDQ model of a zoo detector, measured both ways: the audit
/// in the report says which kernels ran integer, and it must agree with the
/// mode asked for.
#[test]
fn a_qdq_model_reports_the_kernel_of_every_convolution() {
    use edgewise_zoo::{Init, Options, Spec, build};
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        size: 64,
        classes: 3,
        neck_channels: 16,
        seed: 5,
        init: Init::Kaiming,
    };
    let spec = Spec::parse("mobilenet_v3_small+fpn+retinanet").unwrap();
    let float = dir.path().join("float.onnx");
    build(&spec, &options).unwrap().model.save(&float).unwrap();
    let qdq = dir.path().join("qdq.onnx");
    let out = Command::new("python3")
        .arg(root().join("tests/fixtures/ort_quantize.py"))
        .args([&float, &qdq, &dir.path().join("reference.bin")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (mode, precision) in [("integer", "integer"), ("float", "float")] {
        let json = dir.path().join(format!("{mode}.json"));
        let (ok, out, err) = edge_bench(&[
            path_arg(&qdq),
            "--qdq",
            mode,
            "--threads",
            "1",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--top",
            "3",
            "--save",
            path_arg(&json),
        ]);
        assert!(ok, "{err}");
        assert!(
            out.contains("convolutions and matrix products, by kernel"),
            "{out}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        validate(&report);
        let v = &report["variants"][0];
        assert_eq!(v["settings"]["qdq"], mode);
        let kernels = v["kernels"].as_array().unwrap();
        assert!(kernels.len() >= 50, "{} kernels", kernels.len());
        for k in kernels {
            assert_eq!(k["precision"], precision, "{k}");
            assert!(k["onnx_node"].is_string(), "{k}");
        }
    }
}

/// One real model of every decoder family (fetched by models/fetch.py), each
/// benched stage by stage on a photo: every stage timed, every node
/// attributed to one, and the decoder run on the real outputs.
#[test]
fn a_real_model_of_every_family_benches_stage_by_stage() {
    for (model, shape, photo) in [
        ("yolox_ddddocr", "1x3x416x416", "text.png"),
        ("yolov8n_nudenet", "1x3x320x320", "astronaut.png"),
        ("yolo26n_isbnx", "1x3x320x320", "page.png"),
        ("picodet_layout_cdla", "1x3x800x608", "page.png"),
        ("scrfd", "1x3x640x640", "astronaut.png"),
        ("retinaface_mnet025", "1x3x320x320", "astronaut.png"),
        ("ppocr_v5_det", "1x3x320x320", "page.png"),
    ] {
        let manifest = format!("models/{model}.toml");
        let image = format!("models/.cache/photos/{photo}");
        let (ok, out, err) = edge_bench(&[
            &manifest,
            "--input-shape",
            shape,
            "--image",
            &image,
            "--warmup",
            "1",
            "--runs",
            "1",
            "--threads",
            "1",
            "--format",
            "json",
        ]);
        assert!(ok, "{model}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let variant = &report["variants"][0];
        assert_eq!(variant["unattributed"], serde_json::json!([]), "{model}");
        assert_eq!(
            stage_names(variant),
            ["pre", "backbone", "neck", "head", "post", "decode+nms"],
            "{model}"
        );
        for stage in variant["stages"].as_array().unwrap() {
            let name = stage["stage"].as_str().unwrap();
            let ms = stage["time"]["median_ms"].as_f64().unwrap();
            // The stages with layers take real time; post may be nothing.
            if ["backbone", "neck", "head"].contains(&name) {
                assert!(ms > 0.0, "{model}: {stage}");
            }
        }
    }
}

/// `--source`: each model also runs through `edge-run --source`'s
/// pipeline, and its figures join the report in every format.
#[test]
fn a_stream_run_joins_the_report_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    // 12 frames, not live: every one is processed, none dropped.
    let source =
        "videotestsrc num-buffers=12 ! video/x-raw,width=320,height=240 ! videoconvert ! appsink";
    let (ok, out, err) = edge_bench(&[
        "models/ppocr_v4_det.toml",
        "--input-shape",
        "1x3x320x320",
        "--warmup",
        "1",
        "--runs",
        "2",
        "--threads",
        "1",
        "--top",
        "0",
        "--source",
        source,
        "--seconds",
        "60",
        "--format",
        "markdown",
        "--save",
        path_arg(&json),
        "--save",
        path_arg(&html),
    ]);
    if !edgewise_stream::AVAILABLE {
        assert!(!ok);
        assert!(err.contains("needs GStreamer"), "{err}");
        return;
    }
    assert!(ok, "{err}");
    assert!(out.contains("### On a stream"), "{out}");
    assert!(out.contains("| processed fps |"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    validate(&report);
    let stream = &report["variants"][0]["stream"];
    assert_eq!(stream["source"], source);
    assert_eq!(stream["live"], false);
    assert_eq!(stream["policy"], "every frame");
    let figures = &stream["report"];
    for (key, expected) in [("captured", 12), ("processed", 12), ("dropped", 0)] {
        assert_eq!(figures[key], expected, "{key}: {figures}");
    }
    assert!(figures["latency"]["median_ms"].as_f64().unwrap() > 0.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>On a stream</h2>"));
    // A report with a stream reads back (merge).
    let (ok, out, err) = edge_bench(&["merge", path_arg(&json), "--top", "0"]);
    assert!(ok, "{err}");
    assert!(out.contains("on a stream: videotestsrc"), "{out}");
}
