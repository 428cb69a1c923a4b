//! PP-OCRv4 det pruned at 30% in backbone and neck: the MACs of both stages
//! fall by at least 35% (exact counts), the pruned file passes ONNX's full
//! checker and runs in onnxruntime as well as in tract, and least-squares
//! recovery on calibration photos brings its text map on held-back photos
//! markedly closer to the unpruned model's.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_convert::prune::{Options, prune};
use edgewise_graph::{InputShape, Model};
use edgewise_prune::recover::{self, Method};
use edgewise_prune::{Criterion, Ratios};
use edgewise_runtime::{Engine, ModelSource, load_image, preprocess};
use edgewise_stages::Stage;
use edgewise_tests::{photo, root};

const SHAPE: &str = "1x3x320x320";

fn prune_ppocr(
    out: &Path,
    ratios: &str,
    criterion: Criterion,
    calibration: Vec<PathBuf>,
    method: Method,
) -> edgewise_convert::prune::Report {
    let source = ModelSource::resolve(&root().join("models/ppocr_v4_det.toml")).unwrap();
    prune(
        &source,
        out,
        &Options {
            ratios: Ratios::parse(ratios).unwrap(),
            criterion,
            round: 8,
            shape: InputShape::parse(SHAPE).unwrap(),
            calibration,
            recovery: recover::Options {
                method,
                ..Default::default()
            },
            threads: 2,
            bench_runs: 0,
        },
    )
    .unwrap()
}

/// The relative squared error of `candidate`'s text map against
/// `reference`'s, over held-back photos.
fn map_error(reference: &Model, candidate: &Model) -> f64 {
    let shape = [InputShape::parse(SHAPE).unwrap()];
    let manifest = edgewise_tests::manifest("ppocr_v4_det");
    let mut a = Engine::from_model(reference, &shape, 2).unwrap();
    let mut b = Engine::from_model(candidate, &shape, 2).unwrap();
    let (mut error, mut energy) = (0.0, 0.0);
    for name in ["page.png", "logo.png", "coffee.png"] {
        let image = load_image(photo(name)).unwrap();
        let x = preprocess(&image, &manifest.input, Some([320, 320]))
            .unwrap()
            .tensor;
        let (ya, yb) = (a.run(vec![x.clone()]).unwrap(), b.run(vec![x]).unwrap());
        let (ya, yb) = (
            edgewise_graph::tensor::values::<f32>(&ya[0]).unwrap(),
            edgewise_graph::tensor::values::<f32>(&yb[0]).unwrap(),
        );
        for (p, q) in ya.iter().zip(yb) {
            error += ((p - q) as f64).powi(2);
            energy += (*p as f64).powi(2);
        }
    }
    error / energy
}

#[test]
fn ppocr_pruned_at_30_percent_in_backbone_and_neck() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ppocr_pruned.onnx");
    let report = prune_ppocr(
        &out,
        "backbone=0.3,neck=0.3",
        Criterion::L1,
        vec![],
        Method::None,
    );
    assert!(report.recovery.is_none());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    for cost in &report.stages {
        let ratio = cost.macs_after as f64 / cost.macs_before as f64;
        match cost.stage {
            Stage::Backbone | Stage::Neck => {
                assert!(ratio <= 0.65, "{}: MACs only x{ratio:.2}", cost.stage)
            }
            _ => assert!(ratio <= 1.0, "{}: MACs grew", cost.stage),
        }
    }
    assert!(report.manifest.as_ref().is_some_and(|m| m.is_file()));

    let script = root().join("scripts/onnx_check.py");
    let mut child = Command::new("python3")
        .args([script.to_str().unwrap(), "--run", "--size", "320"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs scripts/onnx_check.py");
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}", out.display()).unwrap();
    let result = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&result.stdout);
    assert!(
        line.starts_with("ok ") && line.contains("1x1x320x320"),
        "{line}"
    );
}

#[test]
fn least_squares_recovery_brings_the_pruned_text_map_back() {
    let dir = tempfile::tempdir().unwrap();
    // Calibration photos: none of them among the held-back ones `map_error` uses.
    let calibration: Vec<PathBuf> = [
        "text.png",
        "astronaut.png",
        "coins.png",
        "camera.png",
        "brick.png",
        "horse.png",
    ]
    .into_iter()
    .map(photo)
    .collect();
    let plain = dir.path().join("plain.onnx");
    let refit = dir.path().join("refit.onnx");
    // Half of the neck's channels, chosen by their contribution on the photos.
    let ratios = "neck=0.5";
    let criterion = Criterion::Activation;
    prune_ppocr(&plain, ratios, criterion, calibration.clone(), Method::None);
    let report = prune_ppocr(&refit, ratios, criterion, calibration, Method::LeastSquares);
    let recovery = report.recovery.expect("recovery ran");
    assert_eq!(recovery.inputs, 6);
    let refit_layers: Vec<_> = recovery
        .layers
        .iter()
        .filter(|l| l.error.is_some())
        .collect();
    assert!(
        refit_layers.len() >= 5,
        "{} layers refit",
        refit_layers.len()
    );
    for l in &refit_layers {
        let (before, after) = l.error.unwrap();
        assert!(after <= before, "{}: {before} -> {after}", l.node);
    }
    let original = Model::load(edgewise_tests::model_path("ppocr_v4_det")).unwrap();
    let plain_error = map_error(&original, &Model::load(&plain).unwrap());
    let refit_error = map_error(&original, &Model::load(&refit).unwrap());
    eprintln!("text map error on held-back photos: plain {plain_error:.4}, refit {refit_error:.4}");
    assert!(
        refit_error < 0.6 * plain_error,
        "least squares: {refit_error:.4}, plain pruning: {plain_error:.4}"
    );
}
