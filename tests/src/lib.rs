//! Helpers for the workspace's integration tests, those in `tests/tests/` and
//! the command-line tests of the crates' binaries: where the repository, the
//! fetched models and photos are (failing with the command that fetches them
//! when they are missing; CI fetches them first), and running a binary as a
//! user does, from the repository root.

use std::path::PathBuf;
use std::process::Command;

use edgewise_manifest::Manifest;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Runs `binary` with `args` from the repository root, as a user runs it:
/// whether it succeeded, its standard output, its standard error.
///
/// `binary` is a binary crate's `env!("CARGO_BIN_EXE_<name>")`, which only
/// that crate's own tests see, so each of them keeps a one-line wrapper:
///
/// ```text
/// fn edge_run(args: &[&str]) -> (bool, String, String) {
///     edgewise_tests::run(env!("CARGO_BIN_EXE_edge-run"), args)
/// }
/// ```
pub fn run(binary: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("standard output is UTF-8"),
        String::from_utf8(out.stderr).expect("standard error is UTF-8"),
    )
}

/// A model manifest from `models/`.
pub fn manifest(name: &str) -> Manifest {
    Manifest::load(root().join("models").join(format!("{name}.toml"))).expect("manifest loads")
}

/// The fetched ONNX file of manifest `name`.
pub fn model_path(name: &str) -> PathBuf {
    manifest(name)
        .existing_model_path()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A fetched photo (`coffee.png`).
pub fn photo(name: &str) -> PathBuf {
    let path = root().join("models/.cache/photos").join(name);
    assert!(
        path.is_file(),
        "photo {} is missing; fetch it with `python3 models/fetch.py`",
        path.display()
    );
    path
}
