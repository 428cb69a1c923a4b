//! Model manifests: one TOML file per detector saying where the model comes
//! from, how to feed it, how to decode it and, optionally, where its stages are.
//! The format is documented in `models/README.md`.

use std::path::{Path, PathBuf};

use edgewise_stages::Overrides;
use serde::{Deserialize, Serialize};

/// Errors reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has wrong fields.
    #[error("manifest {path} is invalid: {message}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The model file named by the manifest is not there.
    #[error(
        "model file {path} (of manifest `{name}`) is missing; fetch it with `python3 models/fetch.py`"
    )]
    MissingModel {
        /// The manifest's name.
        name: String,
        /// Where the model was expected.
        path: PathBuf,
    },
}

/// A detector's manifest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short identifier (`ppocr_v4_det`).
    pub name: String,
    /// One line for people.
    #[serde(default)]
    pub description: String,
    /// Where the ONNX file comes from.
    pub source: Source,
    /// How to turn an image into the model's input tensor.
    pub input: Input,
    /// How to turn the outputs into detections.
    pub decoder: Decoder,
    /// Class names, in class-id order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Stage boundaries, when the structural finder should not decide.
    #[serde(default)]
    pub stages: Option<Overrides>,
    /// The folder of the manifest file (set on load).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Where the ONNX file comes from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A PyPI requirement whose wheel holds the model (`rapidocr-onnxruntime==1.4.4`).
    #[serde(default)]
    pub pip: Option<String>,
    /// Path of the model inside the wheel (or the source archive).
    #[serde(default)]
    pub member: Option<String>,
    /// The model is in the package's source archive, not its wheel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sdist: bool,
    /// The wheel for this Python version (`3.12`), for packages without a
    /// wheel for every Python.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// `member` is a Python file and the model is the bytes literal assigned
    /// to this name in it (parsed by `models/fetch.py`, never imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_literal: Option<String>,
    /// Path of the model relative to the manifest, for models kept in the repository.
    #[serde(default)]
    pub path: Option<String>,
    /// File name in the cache (`models/.cache/`).
    pub file: String,
    /// Expected SHA-256 of the model file, lowercase hex.
    pub sha256: String,
}

/// Element order of the input tensor.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Batch, channels, height, width.
    Nchw,
    /// Batch, height, width, channels.
    Nhwc,
}

/// Channel order the model expects.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// Grey in all three channels: Pillow's `convert("L")` luma
    /// (`(19595 R + 38470 G + 7471 B + 32768) >> 16`), before resizing, for
    /// pipelines that drop color first.
    Gray,
}

/// How an image is brought to the input size.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale each axis independently to the input size.
    Stretch,
    /// Keep the aspect ratio and pad to the input size (YOLO style).
    Letterbox,
    /// Keep the aspect ratio, longest side at most the input size, each side
    /// rounded to a multiple of `align` (dynamic-shape models).
    KeepRatio,
    /// No resizing: a dynamic-shape model takes each image at its own size
    /// (padded bottom-right up to a multiple of `align`). On a fixed shape it
    /// behaves as `letterbox` at the top-left.
    None,
}

/// How pixels are resampled when an image is resized.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Bilinear between the 2x2 nearest pixels, bit for bit as OpenCV's
    /// `INTER_LINEAR` (most exporters' preprocessing).
    #[default]
    Linear,
    /// The pixel whose centre is nearest: Pillow's `NEAREST`, OpenCV's
    /// `INTER_NEAREST_EXACT`.
    Nearest,
    /// Pillow's `BILINEAR`: a triangle filter widened by the scale when
    /// shrinking, so every source pixel contributes (antialiased).
    Antialiased,
}

/// How to feed the model.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The input's name in the graph (the first input when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// Tensor layout.
    pub layout: Layout,
    /// Height and width used by default (benchmarks, inspection).
    pub size: [usize; 2],
    /// Channel order.
    pub color: ColorOrder,
    /// Resize mode.
    pub resize: ResizeMode,
    /// Side multiple for `keep_ratio`.
    #[serde(default = "default_align")]
    pub align: usize,
    /// `keep_ratio` on dynamic-shape models: the side length the scale is
    /// computed from (default: the larger of `size`).
    #[serde(default)]
    pub limit_side: Option<usize>,
    /// `keep_ratio` on dynamic-shape models: `max` scales down so the longer
    /// side is at most `limit_side`; `min` scales up so the shorter side is at
    /// least `limit_side` (PaddleOCR's detection default).
    #[serde(default)]
    pub limit_type: LimitType,
    /// Padding value (0 to 255) for letterboxing.
    #[serde(default)]
    pub pad_value: u8,
    /// Where `letterbox` puts the resized image on the canvas.
    #[serde(default)]
    pub pad_position: PadPosition,
    /// How `letterbox` turns the scaled size into whole pixels.
    #[serde(default)]
    pub resize_rounding: Rounding,
    /// How pixels are resampled.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Factor applied to 0..255 pixel values before mean and std.
    pub scale: f32,
    /// Per-channel mean, in the model's channel order, subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in the model's channel order.
    pub std: [f32; 3],
}

/// Where the resized image sits on a letterbox canvas.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PadPosition {
    /// Centred, the padding split between both sides (Ultralytics' `LetterBox`;
    /// an odd padding leaves the extra pixel after the image).
    #[default]
    Center,
    /// At the top-left corner, padded at the right and bottom (YOLOX's `preproc`).
    TopLeft,
}

/// How a scaled side length becomes whole pixels.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest (Ultralytics: `round(w * r)`).
    #[default]
    Round,
    /// Down (YOLOX: `int(w * r)`).
    Floor,
}

/// Which side `limit_side` bounds.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    /// The longer side is at most the limit (images are only scaled down).
    #[default]
    Max,
    /// The shorter side is at least the limit (images are only scaled up).
    Min,
}

fn default_align() -> usize {
    1
}

impl Input {
    /// Height and width of a rank-4 input shape in this layout.
    pub fn hw_of(&self, shape: &[usize]) -> Option<[usize; 2]> {
        match (self.layout, shape) {
            (Layout::Nchw, [_, _, h, w]) | (Layout::Nhwc, [_, h, w, _]) => Some([*h, *w]),
            _ => None,
        }
    }

    /// The input shape at the default size.
    pub fn shape(&self) -> Vec<usize> {
        let [h, w] = self.size;
        match self.layout {
            Layout::Nchw => vec![1, 3, h, w],
            Layout::Nhwc => vec![1, h, w, 3],
        }
    }
}

/// The decoder family and its parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Decoder {
    /// `dbnet`, `yolox`, `yolov5`, `yolov8`, `ssd`, `retinanet`, `yunet`.
    pub family: String,
    /// Family-specific parameters (thresholds, strides, anchors...).
    #[serde(flatten)]
    pub params: toml::Table,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut manifest = Self::parse(&text).map_err(|message| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        manifest.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(manifest)
    }

    /// Parses manifest text (no file-system checks).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.source;
        if s.sha256.len() != 64
            || !s
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!(
                "source.sha256 must be 64 lowercase hex digits, got {:?}",
                s.sha256
            ));
        }
        match (&s.pip, &s.member, &s.path) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            _ => return Err("source needs either `pip` and `member` (a model in a wheel) or `path` (a model in the repository)".into()),
        }
        if self.input.size.contains(&0) {
            return Err("input.size must be positive".into());
        }
        if self.input.std.contains(&0.0) {
            return Err("input.std must not contain zero".into());
        }
        if self.input.align == 0 {
            return Err("input.align must be at least 1".into());
        }
        Ok(())
    }

    /// Where the model file lives: in the repository (`source.path`), or in the
    /// cache folder `.cache/` beside the manifest.
    pub fn model_path(&self) -> PathBuf {
        match &self.source.path {
            Some(p) => self.dir.join(p),
            None => self.dir.join(".cache").join(&self.source.file),
        }
    }

    /// The model path, failing with the command to run when it is missing.
    pub fn existing_model_path(&self) -> Result<PathBuf, ManifestError> {
        let path = self.model_path();
        if path.is_file() {
            Ok(path)
        } else {
            Err(ManifestError::MissingModel {
                name: self.name.clone(),
                path,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
[source]
pip = "pkg==1.0"
member = "pkg/model.onnx"
file = "model.onnx"
sha256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
[input]
layout = "nchw"
size = [640, 640]
color = "rgb"
resize = "keep_ratio"
align = 32
scale = 0.00392156862745098
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
[decoder]
family = "dbnet"
thresh = 0.3
"#;

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.input.shape(), vec![1, 3, 640, 640]);
        assert_eq!(m.decoder.family, "dbnet");
        assert_eq!(m.decoder.params["thresh"].as_float(), Some(0.3));
        assert_eq!(m.input.resize, ResizeMode::KeepRatio);
    }

    #[test]
    fn rejects_bad_fields_with_the_reason() {
        let typo = GOOD.replace("layout =", "layuot =");
        assert!(Manifest::parse(&typo).unwrap_err().contains("layuot"));
        let bad_hash = GOOD.replace("d2a7720d", "D2A7720D");
        assert!(Manifest::parse(&bad_hash).unwrap_err().contains("sha256"));
        let no_source = GOOD.replace("member = \"pkg/model.onnx\"\n", "");
        assert!(Manifest::parse(&no_source).unwrap_err().contains("member"));
    }
}
