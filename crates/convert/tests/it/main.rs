//! edge-convert as a user runs it: zoo, inspect, quantize, prune, compare.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod cli;
mod quantize;

use std::path::PathBuf;
use std::process::Command;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `edge-convert` from the repository root: success, stdout, stderr.
fn edge_convert(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-convert"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
