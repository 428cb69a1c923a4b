//! `edge-convert` as a user runs it: exit codes, tables, JSON, error messages.

use super::{edge_convert, photos, root, zoo_detector};

#[test]
fn inspect_reads_a_manifest_and_prints_the_stage_table() {
    let (ok, out, err) = edge_convert(&["inspect", "models/ppocr_v4_det.toml"]);
    assert!(ok, "{err}");
    assert!(out.contains("analysed at [1,3,640,640]"), "{out}");
    assert!(out.contains("1,171,745 parameters"), "{out}");
    for stage in ["pre", "backbone", "neck", "head", "post"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("  {stage} "))),
            "reason line for {stage}:\n{out}"
        );
    }
    assert!(
        out.contains("out: conv2d_472.tmp_0 [1,360,20,20] stride 32"),
        "{out}"
    );
    assert!(
        out.contains("in: p2o.Concat.1 [1,96,160,160] stride 4"),
        "{out}"
    );
}

#[test]
fn inspect_json_has_the_documented_fields() {
    let (ok, out, err) = edge_convert(&[
        "inspect",
        "models/ppocr_v4_det.toml",
        "--json",
        "--input-shape",
        "1x3x320x320",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "edgewise.inspect/1");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 320, 320]));
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    let macs: u64 = stages.iter().map(|s| s["macs"].as_u64().unwrap()).sum();
    assert_eq!(
        macs,
        v["total"]["macs"].as_u64().unwrap(),
        "stage MACs add up to the total"
    );
    let share: f64 = stages
        .iter()
        .map(|s| s["mac_share"].as_f64().unwrap())
        .sum();
    assert!((share - 1.0).abs() < 1e-9);
    assert_eq!(
        v["backbone_outputs"][3]["shape"],
        serde_json::json!([1, 360, 10, 10])
    );
    assert_eq!(v["method"], "structural");
}

#[test]
fn inspect_accepts_boundary_overrides() {
    let (ok, out, err) = edge_convert(&[
        "inspect",
        "models/ppocr_v4_det.toml",
        "--json",
        "--backbone-out",
        "p2o.Add.43,p2o.Add.71,p2o.Add.147,p2o.Add.215",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "override");
    let outs: Vec<&str> = v["backbone_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        outs,
        ["p2o.Add.43", "p2o.Add.71", "p2o.Add.147", "p2o.Add.215"]
    );
}

#[test]
fn errors_are_one_clear_line_and_a_failure_code() {
    let (ok, _, err) = edge_convert(&["inspect", "models/no_such_model.onnx"]);
    assert!(!ok);
    assert!(
        err.starts_with("edge-convert: error: model file models/no_such_model.onnx does not exist"),
        "{err}"
    );
    let (ok, _, err) = edge_convert(&[
        "inspect",
        "models/ppocr_v4_det.toml",
        "--input-shape",
        "1x3x640",
    ]);
    assert!(!ok);
    assert!(err.contains("expects rank 4"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (ok, _, err) = edge_convert(&["inspect", "models/ppocr_v4_det.toml", "--head-in", "nope"]);
    assert!(!ok);
    assert!(err.contains("no value named `nope`"), "{err}");
    let (ok, _, err) = edge_convert(&["inspect", "models/photos.toml"]);
    assert!(!ok);
    assert!(
        err.contains("manifest models/photos.toml is invalid"),
        "{err}"
    );
}

#[test]
fn inspect_takes_stage_boundaries_from_the_manifest() {
    let dir = std::env::temp_dir().join(format!("edgewise-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read_to_string(root().join("models/ppocr_v4_det.toml")).unwrap();
    let model = root()
        .join("models/.cache/ch_PP-OCRv4_det_infer.onnx")
        .canonicalize()
        .unwrap();
    let manifest = original
        .replace("pip = \"rapidocr-onnxruntime==1.4.4\"\n", "")
        .replace(
            "member = \"rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx\"",
            &format!("path = \"{}\"", model.display()),
        )
        + "\n[stages]\nhead_in = [\"p2o.Add.253\"]\n";
    let path = dir.join("with_stages.toml");
    std::fs::write(&path, manifest).unwrap();
    let (ok, out, err) = edge_convert(&["inspect", path.to_str().unwrap(), "--json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "override");
    let heads: Vec<&str> = v["head_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["value"].as_str().unwrap())
        .collect();
    // The head now starts at the stride-4 level map; the concat that joins the
    // other (upsampled) levels falls in the head and reads them too.
    assert_eq!(
        heads,
        [
            "p2o.Add.253",
            "nearest_interp_v2_3.tmp_0",
            "nearest_interp_v2_4.tmp_0",
            "nearest_interp_v2_5.tmp_0"
        ]
    );
    // The backbone stays structural.
    assert_eq!(v["backbone_outputs"][0]["value"], "conv2d_469.tmp_0");
}

#[test]
fn zoo_writes_an_anonymous_model_whose_stages_inspect_finds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("det.onnx");
    let (ok, text, err) = edge_convert(&[
        "zoo",
        "mobilenet_v3_small+bifpn+retinanet",
        "--input",
        "256",
        "--classes",
        "3",
        "--anonymous",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        text.contains("mobilenet_v3_small+bifpn+retinanet: "),
        "{text}"
    );
    assert!(text.contains("det.toml"), "{text}");

    // Every name is meaningless; the boundaries in the metadata follow them.
    let model = edgewise_graph::Model::load(&out).unwrap();
    assert!(model.graph.nodes.iter().all(|n| n.name.starts_with('n')));
    let listed = |key: &str| -> Vec<String> {
        model
            .metadata(key)
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let backbone_out = listed("edgewise.stages.backbone_out");
    let head_in = listed("edgewise.stages.head_in");
    assert_eq!((backbone_out.len(), head_in.len()), (3, 5));
    assert!(
        backbone_out
            .iter()
            .chain(&head_in)
            .all(|v| v.starts_with('v'))
    );
    assert_eq!(
        model.metadata("edgewise.zoo.spec"),
        Some("mobilenet_v3_small+bifpn+retinanet")
    );

    // The manifest beside it is complete: inspect needs no flag, and the
    // structural finder lands on the recorded boundaries.
    let manifest = edgewise_manifest::Manifest::load(dir.path().join("det.toml")).unwrap();
    assert_eq!(manifest.decoder.family, "retinanet");
    assert_eq!(manifest.input.size, [256, 256]);
    assert_eq!(manifest.classes.len(), 3);
    let (ok, json, err) = edge_convert(&[
        "inspect",
        dir.path().join("det.toml").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let values = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(v["method"], "structural");
    assert_eq!(values("backbone_outputs"), backbone_out);
    let mut found_in = values("head_inputs");
    found_in.sort();
    let mut expected_in = head_in.clone();
    expected_in.sort();
    assert_eq!(found_in, expected_in);
}

#[test]
fn zoo_lists_its_parts() {
    let (ok, out, err) = edge_convert(&["zoo", "--list"]);
    assert!(ok, "{err}");
    for part in ["mobilenet_v2", "xception", "bifpn", "efficientdet"] {
        assert!(out.contains(part), "{out}");
    }
}

#[test]
fn zoo_refuses_bad_specs_and_outputs_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("m.onnx");
    let good = good.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["zoo", "mobilenet_v2+fpn", "-o", good],
            "is not backbone+neck+head",
        ),
        (
            &["zoo", "mobilenet_v9+fpn+yolo", "-o", good],
            "unknown backbone `mobilenet_v9`; known: mobilenet_v2",
        ),
        (
            &["zoo", "resnet18:0.5+fpn+yolo", "-o", good],
            "`resnet18` has no width 0.5",
        ),
        (
            &["zoo", "resnet18+fpn+yolo", "--input", "100", "-o", good],
            "must be a multiple of 32",
        ),
        (
            &["zoo", "resnet18+fpn+yolo", "-o", "model.pt"],
            "must end in .onnx",
        ),
        (
            &["zoo", "resnet18+fpn+yolo", "-o", "/nonexistent/dir/m.onnx"],
            "does not exist",
        ),
        (
            &["zoo", "resnet18+fpn+yolo", "--init", "he", "-o", good],
            "unknown init `he`",
        ),
    ];
    for (args, message) in cases {
        let (ok, _, err) = edge_convert(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written on failure"
    );
}

#[test]
fn prune_writes_a_smaller_model_and_its_manifest_and_refuses_bad_ratios() {
    let dir = tempfile::tempdir().unwrap();
    zoo_detector(dir.path(), "mobilenet_v2+fpn+retinanet", 128, 3);
    let manifest = dir.path().join("det.toml");
    let out = dir.path().join("det_pruned.onnx");
    let (ok, text, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "backbone=0.3,neck=0.5",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], "edgewise.prune/1");
    for stage in v["report"]["stages"].as_array().unwrap() {
        let (before, after) = (
            stage["macs_before"].as_u64().unwrap(),
            stage["macs_after"].as_u64().unwrap(),
        );
        match stage["stage"].as_str().unwrap() {
            "backbone" | "neck" => assert!(after * 10 < before * 8, "{stage}"),
            _ => assert!(after <= before, "{stage}"),
        }
        // Timed by edge-bench before and after (default --bench-runs 5).
        for key in ["ms_before", "ms_after"] {
            assert!(stage[key].as_f64().is_some_and(|ms| ms > 0.0), "{stage}");
        }
    }
    // Every kept count is a multiple of 8 (the default --round) or untouched.
    for g in v["report"]["groups"].as_array().unwrap() {
        let (c, k) = (g["channels"].as_u64().unwrap(), g["kept"].as_u64().unwrap());
        assert!(k == c || k % 8 == 0, "{g}");
    }
    // A board's matrix kernels set the multiple: 16 on the AVX-512 host.
    let (ok, text, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "backbone=0.3,neck=0.5",
        "--board",
        "host",
        "--bench-runs",
        "0",
        "-o",
        dir.path().join("host.onnx").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let host: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(host["report"]["stages"][0]["ms_before"].is_null());
    let groups = host["report"]["groups"].as_array().unwrap();
    let pruned: Vec<_> = groups
        .iter()
        .filter(|g| g["kept"] != g["channels"])
        .collect();
    assert!(!pruned.is_empty());
    for g in pruned {
        assert_eq!(g["kept"].as_u64().unwrap() % 16, 0, "{g}");
    }

    let pruned_manifest = dir.path().join("det_pruned.toml");
    assert!(pruned_manifest.is_file());
    // The pruned model runs through the manifest written beside it.
    let (ok, text, err) = edge_convert(&["inspect", pruned_manifest.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(text.contains("backbone"), "{text}");

    for (ratio, message) in [
        ("trunk=0.3", "`trunk` is not a stage"),
        ("1.2", "outside [0, 1)"),
    ] {
        let (ok, _, err) = edge_convert(&[
            "prune",
            manifest.to_str().unwrap(),
            "--ratio",
            ratio,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!ok && err.contains(message), "{ratio}: {err}");
    }
    let (ok, _, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "0.3",
        "-o",
        dir.path().join("m.pt").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("must end in .onnx"), "{err}");
}

#[test]
fn prune_recovers_on_calibration_photos_and_measures_fidelity() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = zoo_detector(dir.path(), "resnet18+fpn+retinanet", 96, 3);
    let calib = photos(
        &dir.path().join("calib"),
        &["astronaut.png", "coins.png", "camera.png"],
    );
    let eval = photos(&dir.path().join("eval"), &["chelsea.png"]);
    let manifest = dir.path().join("det.toml");
    let out = dir.path().join("det_pruned.onnx");
    let (ok, text, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "backbone=0.3,neck=0.3",
        "--criterion",
        "activation",
        "--calib",
        &calib,
        "--eval",
        &eval,
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let recovery = &v["report"]["recovery"];
    assert_eq!(recovery["method"], "least-squares");
    assert_eq!(recovery["inputs"], 3);
    let layers = recovery["layers"].as_array().unwrap();
    let refit: Vec<_> = layers
        .iter()
        .filter(|l| l["method"] == "least-squares")
        .collect();
    assert!(!refit.is_empty(), "{recovery}");
    for l in refit {
        let (before, after) = (
            l["error"][0].as_f64().unwrap(),
            l["error"][1].as_f64().unwrap(),
        );
        assert!(after <= before, "{l}");
    }
    let fidelity = &v["fidelity"][0];
    assert_eq!(fidelity["photos"], 1);
    assert!(
        fidelity["tensors"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    // Boundaries that lost channels are listed, not compared channel by
    // channel; the outputs keep theirs and are compared.
    let not_compared = fidelity["not_compared"].as_array().unwrap();
    assert!(!not_compared.is_empty(), "{fidelity}");
    assert!(
        not_compared.iter().all(|p| p["role"] != "output"),
        "{fidelity}"
    );
    assert!(
        fidelity["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["role"] == "output")
    );

    // The text report says what recovery did.
    let (ok, text, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "0.3",
        "--calib",
        &calib,
        "--recover",
        "bias",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("recovery: bias on 3 photos"), "{text}");

    // The data-driven criterion needs photos; photos need a manifest.
    let (ok, _, err) = edge_convert(&[
        "prune",
        manifest.to_str().unwrap(),
        "--ratio",
        "0.3",
        "--criterion",
        "activation",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("needs calibration photos (--calib DIR)"),
        "{err}"
    );
    let bare = dir.path().join("bare.onnx");
    std::fs::copy(&zoo, &bare).unwrap();
    let (ok, _, err) = edge_convert(&[
        "prune",
        bare.to_str().unwrap(),
        "--input-shape",
        "1x3x96x96",
        "--ratio",
        "0.3",
        "--calib",
        &calib,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("has no manifest"), "{err}");
}
