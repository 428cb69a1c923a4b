//! edge-bench as a user runs it, and its HTML report in Chromium.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod cli;
mod html_in_chromium;

/// Runs `edge-bench` from the repository root: success, stdout, stderr.
fn edge_bench(args: &[&str]) -> (bool, String, String) {
    edgewise_tests::run(env!("CARGO_BIN_EXE_edge-bench"), args)
}
