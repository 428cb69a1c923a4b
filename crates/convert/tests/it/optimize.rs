//! `edge-convert optimize`: the search's path, the budget, the frontier and
//! the model it writes.

use crate::{edge_convert, photos, zoo_detector};

fn run(args: &[&str]) -> serde_json::Value {
    let (ok, text, err) = edge_convert(args);
    assert!(ok, "{err}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn optimize_walks_pruning_steps_tries_int8_and_keeps_the_fastest_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    zoo_detector(dir.path(), "resnet18+fpn+retinanet", 96, 3);
    let calib = photos(
        &dir.path().join("calib"),
        &["astronaut.png", "coins.png", "camera.png"],
    );
    let eval = photos(&dir.path().join("eval"), &["chelsea.png", "coffee.png"]);
    let manifest = dir.path().join("det.toml");
    let out = dir.path().join("fast.onnx");
    let args = |max_drop: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "optimize",
            manifest.to_str().unwrap(),
            "--board",
            "rpi4",
            "--calib",
            &calib,
            "--eval",
            &eval,
            "--stages",
            "backbone,neck",
            "--step",
            "0.25",
            "--max-ratio",
            "0.5",
            "--runs",
            "2",
            "--max-drop",
            max_drop,
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Any drop allowed: the search walks to the largest ratios.
    let a = args("1", &[]);
    let v = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["board"], "rpi4");
    let report = &v["report"];
    let candidates = report["candidates"].as_array().unwrap();
    let original = &candidates[0];
    assert_eq!(original["precision"], "fp32");
    assert_eq!(original["f1"], 1.0);
    assert_eq!(original["speedup"], 1.0);
    let ratio = |c: &serde_json::Value, stage: &str| c["ratios"][stage].as_f64().unwrap_or(0.0);
    let fp32: Vec<_> = candidates
        .iter()
        .filter(|c| c["precision"] == "fp32")
        .collect();
    for c in &fp32 {
        for stage in ["backbone", "neck"] {
            let r = ratio(c, stage);
            assert!([0.0, 0.25, 0.5].contains(&r), "{c}");
        }
        assert_eq!(ratio(c, "head"), 0.0, "{c}");
    }
    // Every budget is met, so the walk ends with both stages at --max-ratio.
    assert!(
        fp32.iter()
            .any(|c| ratio(c, "backbone") == 0.5 && ratio(c, "neck") == 0.5),
        "{report}"
    );
    // INT8 on every point of the path, the original included.
    let int8: Vec<_> = candidates
        .iter()
        .filter(|c| c["precision"] == "int8")
        .collect();
    assert!(
        int8.iter()
            .any(|c| c["ratios"].as_object().unwrap().is_empty())
    );
    assert!(int8.len() >= 3, "{report}");
    // The chosen is the fastest within the budget, and on the frontier.
    let chosen = report["chosen"].as_u64().unwrap() as usize;
    let best = candidates
        .iter()
        .map(|c| c["speedup"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(candidates[chosen]["speedup"].as_f64().unwrap(), best);
    assert_eq!(candidates[chosen]["on_frontier"], true);
    // It is written, with a manifest that loads and names the file.
    let written = std::fs::read(&out).unwrap();
    let chosen_file = std::fs::read(candidates[chosen]["model"].as_str().unwrap()).unwrap();
    assert_eq!(written, chosen_file);
    let (ok, _, err) = edge_convert(&["inspect", dir.path().join("fast.toml").to_str().unwrap()]);
    assert!(ok, "{err}");

    // No drop allowed: a variant that lost a box is over budget and is not chosen.
    let a = args("0", &["--no-int8"]);
    let v = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let report = &v["report"];
    let candidates = report["candidates"].as_array().unwrap();
    assert!(candidates.iter().all(|c| c["precision"] == "fp32"));
    for c in candidates {
        let within = c["f1"].as_f64().unwrap() >= 1.0;
        assert_eq!(c["within_budget"], within, "{c}");
    }
    let chosen = report["chosen"].as_u64().unwrap() as usize;
    assert_eq!(candidates[chosen]["within_budget"], true);
}

#[test]
fn optimize_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = zoo_detector(dir.path(), "resnet18+fpn+retinanet", 64, 3);
    let calib = photos(&dir.path().join("calib"), &["coins.png"]);
    let eval = photos(&dir.path().join("eval"), &["chelsea.png"]);
    let manifest = dir.path().join("det.toml");
    let out = dir.path().join("o.onnx");
    let base = |model: &str, board: &str, stages: &str| {
        let (ok, _, err) = edge_convert(&[
            "optimize",
            model,
            "--board",
            board,
            "--calib",
            &calib,
            "--eval",
            &eval,
            "--stages",
            stages,
            "--max-drop",
            "0.05",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!ok);
        err
    };
    let m = manifest.to_str().unwrap();
    assert!(base(m, "rpi9", "backbone").contains("known boards"));
    assert!(base(m, "rpi4", "pre").contains("`pre` is not a stage that can be pruned"));
    assert!(base(onnx.to_str().unwrap(), "rpi4", "backbone").contains("has no manifest"));
    assert!(!out.exists());
}
