//! What the user named on the command line: an ONNX file, or a manifest that
//! points to one (and gives its input size, preprocessing and stages).

use std::path::{Path, PathBuf};

use edgewise_graph::InputShape;
use edgewise_manifest::Manifest;
use edgewise_stages::Overrides;

use crate::error::RuntimeError;

/// A model to work on, with its manifest when the user named one.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// The manifest, when the user named one.
    pub manifest: Option<Manifest>,
}

impl ModelSource {
    /// `path` is an `.onnx` file or a `.toml` manifest.
    pub fn resolve(path: &Path) -> Result<ModelSource, RuntimeError> {
        if path.extension().is_some_and(|e| e == "toml") {
            let manifest = Manifest::load(path)?;
            let onnx = manifest.existing_model_path()?;
            Ok(ModelSource {
                onnx,
                manifest: Some(manifest),
            })
        } else if path.is_file() {
            Ok(ModelSource {
                onnx: path.to_path_buf(),
                manifest: None,
            })
        } else {
            Err(RuntimeError::MissingModel(path.to_path_buf()))
        }
    }

    /// The input shapes: the user's (`--input-shape`), else the manifest's default size.
    pub fn input_shapes(&self, given: Option<&str>) -> Result<Vec<InputShape>, RuntimeError> {
        if let Some(text) = given {
            return Ok(InputShape::parse_list(text)?);
        }
        Ok(self
            .manifest
            .iter()
            .map(|m| InputShape {
                name: m.input.name.clone(),
                dims: m.input.shape(),
            })
            .collect())
    }

    /// Stage boundaries: the flags' when given, else the manifest's.
    pub fn stage_boundaries(&self, backbone_out: &[String], head_in: &[String]) -> Overrides {
        let from_manifest = self
            .manifest
            .as_ref()
            .and_then(|m| m.stages.clone())
            .unwrap_or_default();
        Overrides {
            backbone_out: if backbone_out.is_empty() {
                from_manifest.backbone_out
            } else {
                backbone_out.to_vec()
            },
            head_in: if head_in.is_empty() {
                from_manifest.head_in
            } else {
                head_in.to_vec()
            },
        }
    }
}
