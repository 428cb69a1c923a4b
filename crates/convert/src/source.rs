//! Resolving what the user named on the command line: an ONNX file, or a
//! manifest that points to one (and says its input size and stages).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgewise_graph::InputShape;
use edgewise_manifest::Manifest;
use edgewise_stages::Overrides;

/// A model to work on, with what its manifest says, if it has one.
#[derive(Debug)]
pub struct ModelSource {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// The manifest, when the user named one.
    pub manifest: Option<Manifest>,
}

impl ModelSource {
    /// `path` is an `.onnx` file or a `.toml` manifest.
    pub fn resolve(path: &Path) -> Result<ModelSource> {
        let is_manifest = path.extension().is_some_and(|e| e == "toml");
        if is_manifest {
            let manifest = Manifest::load(path)?;
            let onnx = manifest.existing_model_path()?;
            Ok(ModelSource {
                onnx,
                manifest: Some(manifest),
            })
        } else {
            if !path.exists() {
                bail!("model file {} does not exist", path.display());
            }
            Ok(ModelSource {
                onnx: path.to_path_buf(),
                manifest: None,
            })
        }
    }

    /// The input shapes: the user's, else the manifest's default size.
    pub fn input_shapes(&self, given: Option<&str>) -> Result<Vec<InputShape>> {
        if let Some(text) = given {
            return InputShape::parse_list(text).context("reading --input-shape");
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
    pub fn overrides(&self, backbone_out: &[String], head_in: &[String]) -> Overrides {
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
