//! Helpers for the workspace-level integration tests in `tests/tests/`: where
//! the fetched models and photos are, failing with the command that fetches
//! them when they are missing (CI fetches them first).

use std::path::PathBuf;

use edgewise_manifest::Manifest;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
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
