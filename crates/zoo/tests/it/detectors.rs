//! Every backbone, neck and head combination builds, passes ONNX's own
//! checker (full check, with shape inference), is analysed by tract, and
//! runs; stage boundaries are in the metadata.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{InputShape, analysis::tract_model, analyze};
use edgewise_zoo::{BACKBONE_OUT_KEY, HEAD_IN_KEY, Init, Options, Spec, build};

/// `scripts/onnx_check.py`, kept running: one import of `onnx` for many models.
struct OnnxChecker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl OnnxChecker {
    fn start() -> OnnxChecker {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/onnx_check.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs scripts/onnx_check.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        OnnxChecker {
            child,
            stdin,
            stdout,
        }
    }

    /// `Ok` or the checker's message.
    fn check(&mut self, path: &Path) -> Result<(), String> {
        writeln!(self.stdin, "{}", path.display()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        match line.trim_end() {
            l if l.starts_with("ok ") => Ok(()),
            "" => Err("the ONNX checker stopped (is the `onnx` Python package installed?)".into()),
            l => Err(format!("ONNX checker: {l}")),
        }
    }
}

impl Drop for OnnxChecker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every backbone and neck with `head`: built, checked by ONNX's checker,
/// analysed, optimized and run by tract at 64x64 (small, so that the 144
/// combinations take a minute or two).
fn every_combination_with(head: &str) {
    let mut checker = OnnxChecker::start();
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        size: 64,
        classes: 3,
        neck_channels: 64,
        seed: 7,
        init: Init::Kaiming,
    };
    let mut failures = vec![];
    for text in crate::combinations(head) {
        let started = Instant::now();
        let spec = Spec::parse(&text).unwrap();
        let d = build(&spec, &options).unwrap();
        assert!(d.model.metadata(BACKBONE_OUT_KEY).is_some());
        assert!(d.model.metadata(HEAD_IN_KEY).is_some());
        let shape = InputShape::parse("1x3x64x64").unwrap();
        let file = dir.path().join(format!("{text}.onnx"));
        d.model.save(&file).unwrap();
        let checked = checker.check(&file);
        std::fs::remove_file(&file).unwrap();
        let result = checked
            .and_then(|_| {
                analyze(&d.model, std::slice::from_ref(&shape)).map_err(|e| e.to_string())
            })
            .and_then(|_| {
                let inputs = vec![("image".to_string(), vec![1, 3, 64, 64])];
                let plan = tract_model(&d.model, &inputs)
                    .map_err(|e| e.to_string())?
                    .into_optimized()
                    .map_err(|e| format!("{e:#}"))?
                    .into_runnable()
                    .map_err(|e| format!("{e:#}"))?;
                let x = Tensor::zero::<f32>(&[1, 3, 64, 64]).unwrap();
                let out = plan.run(tvec!(x.into())).map_err(|e| format!("{e:#}"))?;
                // Else the next model's weights are drawn ~10x slower.
                edgewise_graph::simd::clear_upper_vector_state();
                let finite = out.iter().all(|t| {
                    let t = t.clone().into_tensor();
                    edgewise_graph::tensor::values::<f32>(&t)
                        .is_some_and(|v| v.iter().all(|x| x.is_finite()))
                });
                if finite {
                    Ok(out.len())
                } else {
                    Err("non-finite output".into())
                }
            });
        eprintln!(
            "{text}: {:?} in {:.1} s",
            result,
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = result {
            failures.push(format!("{text}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_combination_with_ssdlite() {
    every_combination_with("ssdlite");
}

#[test]
fn every_combination_with_retinanet() {
    every_combination_with("retinanet");
}

#[test]
fn every_combination_with_yolo() {
    every_combination_with("yolo");
}

#[test]
fn every_combination_with_efficientdet() {
    every_combination_with("efficientdet");
}

#[test]
fn the_registry_has_the_four_heads_tested_here() {
    assert_eq!(
        edgewise_zoo::heads::NAMES,
        ["ssdlite", "retinanet", "yolo", "efficientdet"]
    );
}
