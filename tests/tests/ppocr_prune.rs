//! PP-OCRv4 det pruned at 30% in backbone and neck: the MACs of both stages
//! fall by at least 35% (exact counts), and the pruned file passes ONNX's full
//! checker and runs in onnxruntime as well as in tract.

use std::process::Command;

use edgewise_convert::prune::{Options, prune};
use edgewise_graph::InputShape;
use edgewise_prune::{Criterion, Ratios};
use edgewise_runtime::ModelSource;
use edgewise_stages::Stage;
use edgewise_tests::root;

#[test]
fn ppocr_pruned_at_30_percent_in_backbone_and_neck() {
    let source = ModelSource::resolve(&root().join("models/ppocr_v4_det.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ppocr_pruned.onnx");
    let report = prune(
        &source,
        &out,
        &Options {
            ratios: Ratios::parse("backbone=0.3,neck=0.3").unwrap(),
            criterion: Criterion::L1,
            round: 8,
            shape: InputShape::parse("1x3x320x320").unwrap(),
        },
    )
    .unwrap();
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
