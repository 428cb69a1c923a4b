//! From a detector's raw output tensors to boxes: one small module per
//! detector family, and non-maximum suppression.
//!
//! Decoders work in model-input pixels; the runtime maps the results back to
//! the original image. They read plain `f32` slices with their shapes
//! ([`Output`]), so they are independent of the inference engine.

pub mod dbnet;
pub mod geometry;
pub mod nms;
pub mod retinanet;
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

/// Builds the decoder of `family` from the manifest's `[decoder]` parameters.
pub fn from_params(family: &str, params: &toml::Table) -> Result<Box<dyn Decoder>, DecodeError> {
    fn parse<T: serde::de::DeserializeOwned>(
        family: &str,
        params: &toml::Table,
    ) -> Result<T, DecodeError> {
        toml::Value::Table(params.clone())
            .try_into()
            .map_err(|e: toml::de::Error| DecodeError::Config {
                family: family.to_string(),
                message: e.message().to_string(),
            })
    }
    Ok(match family {
        "dbnet" => Box::new(dbnet::DbNet::new(parse(family, params)?)),
        "yolox" => Box::new(yolo::YoloX::new(parse(family, params)?)),
        "yolov5" => Box::new(yolo::YoloV5::new(parse(family, params)?)),
        "yolov8" => Box::new(yolo::YoloV8::new(parse(family, params)?)),
        "ssd" => {
            Box::new(
                ssd::Ssd::new(parse(family, params)?).map_err(|m| DecodeError::Config {
                    family: family.into(),
                    message: m,
                })?,
            )
        }
        "retinanet" => Box::new(retinanet::RetinaNet::new(parse(family, params)?)),
        "yunet" => Box::new(yunet::YuNet::new(parse(family, params)?)),
        other => {
            return Err(DecodeError::Config {
                family: other.to_string(),
                message:
                    "unknown family; use dbnet, yolox, yolov5, yolov8, ssd, retinanet or yunet"
                        .into(),
            });
        }
    })
}
