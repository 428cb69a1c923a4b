//! From a detector's raw output tensors to boxes: one small module per
//! detector family, and non-maximum suppression.
//!
//! Decoders work in model-input pixels; the runtime maps the results back to
//! the original image. They read plain `f32` slices with their shapes
//! ([`Output`]), so they are independent of the inference engine.

pub mod dbnet;
pub mod geometry;
pub mod gfl;
pub mod nms;
pub mod retinaface;
pub mod retinanet;
pub mod scrfd;
pub mod ssd;
pub mod yolo;
pub mod yunet;

use serde::{Deserialize, Serialize};

/// An axis-aligned box, corners in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

impl BBox {
    /// From centre and size.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> BBox {
        BBox {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
        }
    }

    /// Area (0 for an inverted box).
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &BBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The smallest box around `points`.
    pub fn around(points: &[[f32; 2]]) -> BBox {
        let mut b = BBox {
            x1: f32::MAX,
            y1: f32::MAX,
            x2: f32::MIN,
            y2: f32::MIN,
        };
        for p in points {
            b.x1 = b.x1.min(p[0]);
            b.y1 = b.y1.min(p[1]);
            b.x2 = b.x2.max(p[0]);
            b.y2 = b.y2.max(p[1]);
        }
        b
    }
}

/// One detected object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Class index.
    pub class_id: usize,
    /// Confidence, 0 to 1.
    pub score: f32,
    /// Bounding box.
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// Landmarks (face detectors), in the family's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keypoints: Vec<[f32; 2]>,
    /// Outline (text detectors: the rotated box, clockwise from top-left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygon: Vec<[f32; 2]>,
}

impl Detection {
    /// A plain box detection.
    pub fn new(class_id: usize, score: f32, bbox: BBox) -> Detection {
        Detection {
            class_id,
            score,
            bbox,
            keypoints: vec![],
            polygon: vec![],
        }
    }

    /// Applies `f` to every coordinate (box corners, keypoints, polygon).
    pub fn map_points(&mut self, f: impl Fn(f32, f32) -> (f32, f32)) {
        let (x1, y1) = f(self.bbox.x1, self.bbox.y1);
        let (x2, y2) = f(self.bbox.x2, self.bbox.y2);
        self.bbox = BBox { x1, y1, x2, y2 };
        for p in self.keypoints.iter_mut().chain(self.polygon.iter_mut()) {
            let (x, y) = f(p[0], p[1]);
            *p = [x, y];
        }
    }
}

/// A model output: its shape and its values in row-major order.
#[derive(Clone, Copy, Debug)]
pub struct Output<'a> {
    /// Output name, for messages.
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// Values.
    pub data: &'a [f32],
}

/// Why outputs could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The outputs do not have the layout the family expects.
    #[error(
        "the {family} decoder expects {expected}, but the model gives {found}; check [decoder] family in the manifest"
    )]
    Layout {
        /// Decoder family.
        family: &'static str,
        /// What it expects.
        expected: String,
        /// What it got.
        found: String,
    },
    /// A decoder parameter is missing or wrong.
    #[error("[decoder] of family `{family}`: {message}")]
    Config {
        /// Decoder family.
        family: String,
        /// What is wrong.
        message: String,
    },
}

/// Shapes of `outputs`, for messages: `out0 [1,8400,85], out1 [1,2]`.
pub fn describe(outputs: &[Output]) -> String {
    outputs
        .iter()
        .map(|o| {
            let dims: Vec<String> = o.shape.iter().map(|d| d.to_string()).collect();
            format!("{} [{}]", o.name, dims.join(","))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows and row width of a `[1, N, W]` or `[N, W]` output.
pub(crate) fn rows_of(o: &Output) -> Option<(usize, usize)> {
    match *o.shape {
        [1, n, w] | [n, w] => Some((n, w)),
        _ => None,
    }
}

/// The outputs with `n` rows (any width), in output order: how the decoders
/// of per-level outputs find a level's tensors whatever order the exporter
/// wrote them in.
pub(crate) fn outputs_with_rows<'a>(outputs: &[Output<'a>], n: usize) -> Vec<Output<'a>> {
    outputs
        .iter()
        .filter(|o| rows_of(o).is_some_and(|(rows, _)| rows == n))
        .copied()
        .collect()
}

/// The best class of a row of class scores, and its score.
pub(crate) fn best_class(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    scores.enumerate().fold(
        (0, f32::MIN),
        |best, (i, s)| if s > best.1 { (i, s) } else { best },
    )
}

/// Test outputs named `o` from shapes and values, in order.
#[cfg(test)]
pub(crate) fn test_outputs<'a, S: AsRef<[usize]>>(
    shapes: &'a [S],
    data: &[&'a [f32]],
) -> Vec<Output<'a>> {
    shapes
        .iter()
        .zip(data)
        .map(|(s, d)| Output {
            name: "o",
            shape: s.as_ref(),
            data: d,
        })
        .collect()
}

/// The logistic function.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A detector family's decoding.
pub trait Decoder: Send {
    /// Decodes `outputs` of a model fed an input of `input_hw` (height,
    /// width), into boxes in input pixels.
    fn decode(
        &self,
        outputs: &[Output],
        input_hw: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError>;

    /// Final touches once coordinates are in original-image pixels
    /// (`original` is width, height): by default boxes are clipped to the
    /// image and empty ones dropped.
    fn refine(&self, detections: Vec<Detection>, original: (u32, u32)) -> Vec<Detection> {
        let (w, h) = (original.0 as f32, original.1 as f32);
        detections
            .into_iter()
            .filter_map(|mut d| {
                d.bbox = BBox {
                    x1: d.bbox.x1.clamp(0.0, w),
                    y1: d.bbox.y1.clamp(0.0, h),
                    x2: d.bbox.x2.clamp(0.0, w),
                    y2: d.bbox.y2.clamp(0.0, h),
                };
                (d.bbox.area() > 0.0).then_some(d)
            })
            .collect()
    }
}

/// The decoder families [`from_params`] knows, in the order messages list them.
pub const FAMILIES: [&str; 11] = [
    "dbnet",
    "yolox",
    "yolov5",
    "yolov8",
    "yolo_e2e",
    "ssd",
    "retinanet",
    "retinaface",
    "yunet",
    "scrfd",
    "gfl",
];

/// Reads a family's parameters: the family's own defaults, overlaid with the
/// keys the manifest gives. (Merging before deserializing keeps the
/// defaults of flattened settings too: a YuNet table naming only `family`
/// keeps YuNet's own score threshold, not the generic NMS one.)
fn parse<T>(family: &str, params: &toml::Table) -> Result<T, DecodeError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Default,
{
    let config_error = |message: String| DecodeError::Config {
        family: family.to_string(),
        message,
    };
    let defaults = toml::Table::try_from(T::default())
        .map_err(|e| config_error(format!("internal: defaults do not serialize: {e}")))?;
    if let Some(unknown) = params.keys().find(|k| !defaults.contains_key(*k)) {
        let mut known: Vec<&str> = defaults.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(config_error(format!(
            "unknown key `{unknown}`; the {family} decoder takes {}",
            known.join(", ")
        )));
    }
    let with = |keys: &mut dyn Iterator<Item = (&String, &toml::Value)>| {
        let mut merged = defaults.clone();
        merged.extend(keys.map(|(k, v)| (k.clone(), v.clone())));
        toml::Value::Table(merged).try_into::<T>()
    };
    with(&mut params.iter()).map_err(|e| {
        // Values lose their key in the message; find the key that fails alone.
        let culprit = params
            .iter()
            .find(|entry| with(&mut std::iter::once(*entry)).is_err());
        match culprit {
            Some((key, _)) => config_error(format!("`{key}`: {}", e.message())),
            None => config_error(e.message().to_string()),
        }
    })
}

/// Builds the decoder of `family` from the manifest's `[decoder]` parameters;
/// parameters not given take the family's defaults.
pub fn from_params(family: &str, params: &toml::Table) -> Result<Box<dyn Decoder>, DecodeError> {
    let config_error = |message: String| DecodeError::Config {
        family: family.to_string(),
        message,
    };
    Ok(match family {
        "dbnet" => Box::new(dbnet::DbNet::new(parse(family, params)?)),
        "yolox" => Box::new(yolo::YoloX::new(parse(family, params)?)),
        "yolov5" => Box::new(yolo::YoloV5::new(parse(family, params)?)),
        "yolov8" => Box::new(yolo::YoloV8::new(parse(family, params)?)),
        "yolo_e2e" => Box::new(yolo::YoloEndToEnd::new(parse(family, params)?)),
        "ssd" => Box::new(ssd::Ssd::new(parse(family, params)?).map_err(config_error)?),
        "retinanet" => Box::new(retinanet::RetinaNet::new(parse(family, params)?)),
        "retinaface" => {
            Box::new(retinaface::RetinaFace::new(parse(family, params)?).map_err(config_error)?)
        }
        "yunet" => Box::new(yunet::YuNet::new(parse(family, params)?)),
        "scrfd" => Box::new(scrfd::Scrfd::new(parse(family, params)?)),
        "gfl" => Box::new(gfl::Gfl::new(parse(family, params)?)),
        other => {
            return Err(DecodeError::Config {
                family: other.to_string(),
                message: format!("unknown family; use one of {}", FAMILIES.join(", ")),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[decoder]` table of a manifest, without its `family` key.
    fn table(text: &str) -> toml::Table {
        let mut t: toml::Table = toml::from_str(text).unwrap();
        t.remove("family");
        t
    }

    fn defaults_hold<T>(family: &str)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + Default + PartialEq + std::fmt::Debug,
    {
        let only_family = table(&format!("family = \"{family}\""));
        assert_eq!(
            parse::<T>(family, &only_family).unwrap(),
            T::default(),
            "{family}"
        );
        assert!(from_params(family, &only_family).is_ok(), "{family}");
    }

    #[test]
    fn a_table_naming_only_the_family_gives_the_family_defaults() {
        defaults_hold::<dbnet::DbNetConfig>("dbnet");
        defaults_hold::<yolo::YoloXConfig>("yolox");
        defaults_hold::<yolo::YoloV5Config>("yolov5");
        defaults_hold::<yolo::YoloV8Config>("yolov8");
        defaults_hold::<yolo::YoloEndToEndConfig>("yolo_e2e");
        defaults_hold::<ssd::SsdConfig>("ssd");
        defaults_hold::<retinanet::RetinaNetConfig>("retinanet");
        defaults_hold::<retinaface::RetinaFaceConfig>("retinaface");
        defaults_hold::<yunet::YuNetConfig>("yunet");
        defaults_hold::<scrfd::ScrfdConfig>("scrfd");
        defaults_hold::<gfl::GflConfig>("gfl");
        assert_eq!(FAMILIES.len(), 11);
    }

    #[test]
    fn given_keys_override_only_themselves() {
        let t = table("family = \"yunet\"\nscore_threshold = 0.5");
        let config: yunet::YuNetConfig = parse("yunet", &t).unwrap();
        assert_eq!(config.nms.score_threshold, 0.5);
        // YuNet's own suppression settings stay.
        assert_eq!(config.nms.iou_threshold, 0.3);
        assert!(config.nms.class_agnostic);
        let err = parse::<yunet::YuNetConfig>("yunet", &table("strides = \"eight\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("yunet") && err.contains("strides"), "{err}");
        let err = parse::<yunet::YuNetConfig>("yunet", &table("score_thresh = 0.5"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `score_thresh`") && err.contains("score_threshold"),
            "{err}"
        );
        let err = from_params("yolo9000", &toml::Table::new()).err().unwrap();
        assert!(err.to_string().contains("gfl"), "{err}");
    }

    /// The bug this guards against: a YuNet manifest naming only the family
    /// returned faces scoring 0.25 (the generic NMS default) instead of 0.9.
    #[test]
    fn a_yunet_manifest_keeps_its_score_threshold() {
        // One level (stride 8) on an 8x8 input: one cell.
        let decoder = from_params("yunet", &table("family = \"yunet\"\nstrides = [8]")).unwrap();
        let faces = |cls: f32| {
            let shapes = [[1, 1, 1], [1, 1, 1], [1, 1, 4], [1, 1, 10]];
            let data = [
                vec![cls],
                vec![1.0],
                vec![0.5, 0.5, 0.0, 0.0],
                vec![0.0; 10],
            ];
            let data: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            let outputs = test_outputs(&shapes, &data);
            decoder.decode(&outputs, [8, 8]).unwrap().len()
        };
        // sqrt(0.5 * 1) = 0.71: above the generic 0.25, below YuNet's 0.9.
        assert_eq!(faces(0.5), 0);
        assert_eq!(faces(0.9), 1);
    }
}
