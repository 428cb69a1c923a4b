//! Writing a built detector: the ONNX file and, beside it, the manifest that
//! lets `edge-run`, `edge-bench` and `edge-convert` use it without flags.

use std::path::{Path, PathBuf};

use edgewise_graph::model::write_atomically;
use edgewise_manifest::{
    ColorOrder, Decoder, Input, Interpolation, Layout, LimitType, Manifest, PadPosition,
    ResizeMode, Rounding, Source,
};
use sha2::{Digest, Sha256};

use crate::{Detector, ZooError};

/// ImageNet statistics (RGB), as every torchvision and timm backbone expects.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The files a detector was saved to.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The ONNX model.
    pub onnx: PathBuf,
    /// The manifest beside it (same stem, `.toml`).
    pub manifest: PathBuf,
    /// Size of the ONNX file in bytes.
    pub bytes: u64,
}

impl Detector {
    /// The manifest of this detector saved as `onnx_file` (a name relative to
    /// the manifest's folder) whose bytes hash to `sha256`.
    pub fn manifest(
        &self,
        name: &str,
        onnx_file: &str,
        sha256: &str,
    ) -> Result<Manifest, ZooError> {
        let o = &self.options;
        let (family, lines) = &self.decoder;
        let params: toml::Table = toml::from_str(&lines.join("\n")).map_err(|e| {
            ZooError::Output(format!(
                "decoder parameters of the {} head: {e}",
                self.spec.head
            ))
        })?;
        Ok(Manifest {
            name: name.to_string(),
            description: format!(
                "zoo {} at {}x{}, {} classes, {} weights from seed {} (untrained: for latency and structure, not accuracy)",
                self.spec,
                o.size,
                o.size,
                o.classes,
                o.init.name(),
                o.seed
            ),
            source: Source {
                pip: None,
                member: None,
                sdist: false,
                python_version: None,
                python_literal: None,
                path: Some(onnx_file.to_string()),
                file: onnx_file.to_string(),
                sha256: sha256.to_string(),
            },
            input: Input {
                name: Some(self.input.clone()),
                layout: Layout::Nchw,
                size: [o.size, o.size],
                color: ColorOrder::Rgb,
                resize: ResizeMode::Letterbox,
                align: 1,
                limit_side: None,
                limit_type: LimitType::Max,
                pad_value: 114,
                pad_position: PadPosition::Center,
                resize_rounding: Rounding::Round,
                interpolation: Interpolation::Linear,
                scale: 1.0 / 255.0,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
            },
            decoder: Decoder {
                family: family.to_string(),
                params,
            },
            classes: (0..o.classes).map(|c| format!("class{c}")).collect(),
            stages: None,
            dir: PathBuf::new(),
        })
    }

    /// Writes the model to `onnx` and its manifest beside it (`x.onnx` and
    /// `x.toml`), each atomically: the model first, so that a manifest never
    /// names a file that is not there.
    pub fn save(&self, onnx: &Path) -> Result<Saved, ZooError> {
        if onnx.extension().is_none_or(|e| e != "onnx") {
            return Err(ZooError::Output(format!(
                "output {} must end in .onnx (the manifest is written beside it as .toml)",
                onnx.display()
            )));
        }
        let (Some(stem), Some(file)) = (
            onnx.file_stem().and_then(|s| s.to_str()),
            onnx.file_name().and_then(|s| s.to_str()),
        ) else {
            return Err(ZooError::Output(format!(
                "output {} needs a UTF-8 file name",
                onnx.display()
            )));
        };
        if let Some(dir) = onnx.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(ZooError::Output(format!(
                "folder {} does not exist; create it first",
                dir.display()
            )));
        }
        let bytes = self.model.to_bytes()?;
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let manifest = self.manifest(stem, file, &sha256)?;
        let text = format!(
            "# Written by `edge-convert zoo {}`.\n{}",
            self.spec,
            toml::to_string(&manifest)
                .map_err(|e| ZooError::Output(format!("manifest of {file}: {e}")))?
        );
        let manifest_path = onnx.with_extension("toml");
        write_atomically(onnx, &bytes)?;
        write_atomically(&manifest_path, text.as_bytes())?;
        Ok(Saved {
            onnx: onnx.to_path_buf(),
            manifest: manifest_path,
            bytes: bytes.len() as u64,
        })
    }
}
