//! edge-convert as a user runs it: zoo, inspect, quantize, prune, compare,
//! optimize.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod cli;
mod optimize;
mod quantize;
mod real_models;

use std::path::{Path, PathBuf};

use edgewise_tests::root;

/// Runs `edge-convert` from the repository root: success, stdout, stderr.
fn edge_convert(args: &[&str]) -> (bool, String, String) {
    edgewise_tests::run(env!("CARGO_BIN_EXE_edge-convert"), args)
}

/// A folder holding copies of the named sample photos.
fn photos(dir: &Path, names: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for name in names {
        std::fs::copy(
            root().join("models/.cache/photos").join(name),
            dir.join(name),
        )
        .unwrap();
    }
    dir.to_str().unwrap().to_string()
}

/// Builds zoo detector `spec` (input size, classes) as `dir/det.onnx`, with
/// its manifest `dir/det.toml` beside it.
fn zoo_detector(dir: &Path, spec: &str, input: usize, classes: usize) -> PathBuf {
    let out = dir.join("det.onnx");
    let (ok, _, err) = edge_convert(&[
        "zoo",
        spec,
        "--input",
        &input.to_string(),
        "--classes",
        &classes.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    out
}
