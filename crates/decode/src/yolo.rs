//! The YOLO families.
//!
//! - YOLOX: raw grid output `[1, N, 5+C]` over strides 8, 16, 32 (row-major
//!   per level): `xy = (p + grid) * stride`, `wh = exp(p) * stride`,
//!   `score = obj * cls` (the export already applies the sigmoids).
//! - YOLOv5: `[1, N, 5+C]`, either decoded by the export (`cx cy w h` in
//!   input pixels, objectness and class scores) or raw (`decoded = false`):
//!   per level and anchor, `xy = (2 s(p) - 0.5 + grid) * stride`,
//!   `wh = (2 s(p))^2 * anchor`.
//! - YOLOv8 / YOLO11 (Ultralytics): `[1, 4+C, N]`, `cx cy w h` in input
//!   pixels and class scores, no objectness. `[1, N, 4+C]` is accepted too.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::{BBox, DecodeError, Decoder, Detection, Output, best_class, describe, sigmoid};

fn rows_of<'a>(
    family: &'static str,
    outputs: &[Output<'a>],
    extra: usize,
) -> Result<(usize, usize, &'a [f32]), DecodeError> {
    match outputs {
        [o] if o.shape.len() == 3 && o.shape[0] == 1 && o.shape[2] > extra => {
            Ok((o.shape[1], o.shape[2], o.data))
        }
        _ => Err(DecodeError::Layout {
            family,
            expected: format!("one output [1, N, {extra}+classes]"),
            found: describe(outputs),
        }),
    }
}

/// YOLOX parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct YoloXConfig {
    /// Strides of the levels, in output order.
    pub strides: Vec<usize>,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for YoloXConfig {
    fn default() -> Self {
        YoloXConfig {
            strides: vec![8, 16, 32],
            nms: NmsConfig::default(),
        }
    }
}

/// The YOLOX decoder.
pub struct YoloX {
    config: YoloXConfig,
}

impl YoloX {
    /// A decoder with these parameters.
    pub fn new(config: YoloXConfig) -> YoloX {
        YoloX { config }
    }
}

impl Decoder for YoloX {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let (n, width, data) = rows_of("yolox", outputs, 5)?;
        let cells: Vec<(usize, usize, usize)> = self
            .config
            .strides
            .iter()
            .flat_map(|&s| {
                let (gh, gw) = (h / s, w / s);
                (0..gh * gw).map(move |i| (i % gw, i / gw, s))
            })
            .collect();
        if cells.len() != n {
            return Err(DecodeError::Layout {
                family: "yolox",
                expected: format!(
                    "{} rows for strides {:?} at {h}x{w}",
                    cells.len(),
                    self.config.strides
                ),
                found: describe(outputs),
            });
        }
        let mut candidates = Vec::new();
        for (row, &(gx, gy, s)) in data.chunks_exact(width).zip(&cells) {
            let (class, cls) = best_class(row[5..].iter().copied());
            let score = row[4] * cls;
            if score < self.config.nms.score_threshold {
                continue;
            }
            let s = s as f32;
            let (cx, cy) = ((row[0] + gx as f32) * s, (row[1] + gy as f32) * s);
            let (bw, bh) = (row[2].exp() * s, row[3].exp() * s);
            candidates.push(Detection::new(
                class,
                score,
                BBox::from_center(cx, cy, bw, bh),
            ));
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

/// YOLOv5 parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct YoloV5Config {
    /// The export decoded the boxes (the usual `export.py` output).
    pub decoded: bool,
    /// Raw outputs: strides of the levels.
    pub strides: Vec<usize>,
    /// Raw outputs: anchor sizes (w, h pairs) per level, in input pixels.
    pub anchors: Vec<Vec<f32>>,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for YoloV5Config {
    fn default() -> Self {
        YoloV5Config {
            decoded: true,
            strides: vec![8, 16, 32],
            anchors: vec![
                vec![10.0, 13.0, 16.0, 30.0, 33.0, 23.0],
                vec![30.0, 61.0, 62.0, 45.0, 59.0, 119.0],
                vec![116.0, 90.0, 156.0, 198.0, 373.0, 326.0],
            ],
            nms: NmsConfig::default(),
        }
    }
}

/// The YOLOv5 decoder.
pub struct YoloV5 {
    config: YoloV5Config,
}

impl YoloV5 {
    /// A decoder with these parameters.
    pub fn new(config: YoloV5Config) -> YoloV5 {
        YoloV5 { config }
    }
}

impl Decoder for YoloV5 {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let (n, width, data) = rows_of("yolov5", outputs, 5)?;
        let mut candidates = Vec::new();
        if self.config.decoded {
            for row in data.chunks_exact(width) {
                let (class, cls) = best_class(row[5..].iter().copied());
                let score = row[4] * cls;
                if score >= self.config.nms.score_threshold {
                    candidates.push(Detection::new(
                        class,
                        score,
                        BBox::from_center(row[0], row[1], row[2], row[3]),
                    ));
                }
            }
            return Ok(nms(candidates, &self.config.nms));
        }
        // Raw head: levels, then anchors, then rows and columns.
        let mut cells = Vec::new();
        for (level, &s) in self.config.strides.iter().enumerate() {
            let anchors = self
                .config
                .anchors
                .get(level)
                .ok_or_else(|| DecodeError::Config {
                    family: "yolov5".into(),
                    message: format!("no anchors for level {level} (stride {s})"),
                })?;
            let (gh, gw) = (h / s, w / s);
            for pair in anchors.chunks_exact(2) {
                for i in 0..gh * gw {
                    cells.push((i % gw, i / gw, s, pair[0], pair[1]));
                }
            }
        }
        if cells.len() != n {
            return Err(DecodeError::Layout {
                family: "yolov5",
                expected: format!(
                    "{} rows for strides {:?} and their anchors at {h}x{w}",
                    cells.len(),
                    self.config.strides
                ),
                found: describe(outputs),
            });
        }
        for (row, &(gx, gy, s, aw, ah)) in data.chunks_exact(width).zip(&cells) {
            let (class, cls) = best_class(row[5..].iter().map(|&v| sigmoid(v)));
            let score = sigmoid(row[4]) * cls;
            if score < self.config.nms.score_threshold {
                continue;
            }
            let s = s as f32;
            let cx = (sigmoid(row[0]) * 2.0 - 0.5 + gx as f32) * s;
            let cy = (sigmoid(row[1]) * 2.0 - 0.5 + gy as f32) * s;
            let bw = (sigmoid(row[2]) * 2.0).powi(2) * aw;
            let bh = (sigmoid(row[3]) * 2.0).powi(2) * ah;
            candidates.push(Detection::new(
                class,
                score,
                BBox::from_center(cx, cy, bw, bh),
            ));
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

/// YOLOv8 / YOLO11 parameters.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct YoloV8Config {
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

/// The Ultralytics YOLOv8 / YOLO11 decoder.
pub struct YoloV8 {
    config: YoloV8Config,
}

impl YoloV8 {
    /// A decoder with these parameters.
    pub fn new(config: YoloV8Config) -> YoloV8 {
        YoloV8 { config }
    }
}

impl Decoder for YoloV8 {
    fn decode(
        &self,
        outputs: &[Output],
        _input_hw: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let (o, a, b) = match outputs {
            [o] if o.shape.len() == 3 && o.shape[0] == 1 && o.shape[1].min(o.shape[2]) > 4 => {
                (o, o.shape[1], o.shape[2])
            }
            _ => {
                return Err(DecodeError::Layout {
                    family: "yolov8",
                    expected: "one output [1, 4+classes, N]".into(),
                    found: describe(outputs),
                });
            }
        };
        // Channels are the shorter axis: [1, 4+C, N] as exported, or [1, N, 4+C].
        let channels_first = a <= b;
        let (channels, n) = if channels_first { (a, b) } else { (b, a) };
        let at = |c: usize, i: usize| {
            if channels_first {
                o.data[c * n + i]
            } else {
                o.data[i * channels + c]
            }
        };
        let mut candidates = Vec::new();
        for i in 0..n {
            let (class, score) = best_class((4..channels).map(|c| at(c, i)));
            if score >= self.config.nms.score_threshold {
                candidates.push(Detection::new(
                    class,
                    score,
                    BBox::from_center(at(0, i), at(1, i), at(2, i), at(3, i)),
                ));
            }
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

/// NMS-free YOLO parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct YoloEndToEndConfig {
    /// Rows scoring below this are dropped.
    pub score_threshold: f32,
    /// At most this many detections come out (the best).
    pub max_detections: usize,
}

impl Default for YoloEndToEndConfig {
    fn default() -> Self {
        // Ultralytics' predict defaults (conf 0.25, max_det 300).
        YoloEndToEndConfig {
            score_threshold: 0.25,
            max_detections: 300,
        }
    }
}

/// The NMS-free (end-to-end) YOLO decoder: YOLOv10, YOLO26 and Ultralytics
/// `end2end` exports give `[1, K, 6]` rows `x1 y1 x2 y2 score class`, in
/// input pixels, already one per object: no suppression.
pub struct YoloEndToEnd {
    config: YoloEndToEndConfig,
}

impl YoloEndToEnd {
    /// A decoder with these parameters.
    pub fn new(config: YoloEndToEndConfig) -> YoloEndToEnd {
        YoloEndToEnd { config }
    }
}

impl Decoder for YoloEndToEnd {
    fn decode(
        &self,
        outputs: &[Output],
        _input_hw: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let rows = match outputs {
            [o] if matches!(*o.shape, [1, _, 6] | [_, 6]) => o.data.chunks_exact(6),
            _ => {
                return Err(DecodeError::Layout {
                    family: "yolo_e2e",
                    expected: "one output [1, K, 6] (x1 y1 x2 y2 score class)".into(),
                    found: describe(outputs),
                });
            }
        };
        let mut found: Vec<Detection> = rows
            .filter(|r| r[4] >= self.config.score_threshold && r[4].is_finite())
            .map(|r| {
                let bbox = BBox {
                    x1: r[0],
                    y1: r[1],
                    x2: r[2],
                    y2: r[3],
                };
                Detection::new(r[5].max(0.0).round() as usize, r[4], bbox)
            })
            .collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(self.config.max_detections);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out<'a>(shape: &'a [usize], data: &'a [f32]) -> [Output<'a>; 1] {
        [Output {
            name: "out",
            shape,
            data,
        }]
    }

    /// A YOLOX output for a 64x64 input: 8x8 + 4x4 + 2x2 cells, 2 classes, all empty.
    fn yolox_empty() -> (Vec<usize>, Vec<f32>) {
        let n = 64 + 16 + 4;
        (vec![1, n, 7], vec![0.0; n * 7])
    }

    #[test]
    fn yolox_one_confident_cell_at_a_known_grid_position() {
        let (shape, mut data) = yolox_empty();
        // Stride 16 level starts at row 64; cell (x=2, y=1) is row 64 + 1*4 + 2.
        let row = 64 + 4 + 2;
        data[row * 7..row * 7 + 7].copy_from_slice(&[0.5, 0.25, 0.0, (2.0f32).ln(), 0.9, 0.1, 0.8]);
        let found = YoloX::new(YoloXConfig::default())
            .decode(&out(&shape, &data), [64, 64])
            .unwrap();
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(d.class_id, 1);
        assert!((d.score - 0.72).abs() < 1e-6);
        // Centre ((0.5 + 2) * 16, (0.25 + 1) * 16) = (40, 20); size 16 x 32.
        assert_eq!(
            d.bbox,
            BBox {
                x1: 32.0,
                y1: 4.0,
                x2: 48.0,
                y2: 36.0
            }
        );
    }

    #[test]
    fn yolox_no_detection_and_a_wrong_row_count() {
        let (shape, data) = yolox_empty();
        assert!(
            YoloX::new(YoloXConfig::default())
                .decode(&out(&shape, &data), [64, 64])
                .unwrap()
                .is_empty()
        );
        let err = YoloX::new(YoloXConfig::default())
            .decode(&out(&shape, &data), [640, 640])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("8400 rows") && err.contains("[1,84,7]"),
            "{err}"
        );
    }

    #[test]
    fn yolov5_decoded_export() {
        let data = [
            100.0, 50.0, 20.0, 10.0, 0.9, 0.2, 0.9, /* second row, weak */ 10.0, 10.0, 5.0,
            5.0, 0.1, 0.9, 0.1,
        ];
        let found = YoloV5::new(YoloV5Config::default())
            .decode(&out(&[1, 2, 7], &data), [640, 640])
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].class_id, 1);
        assert_eq!(
            found[0].bbox,
            BBox {
                x1: 90.0,
                y1: 45.0,
                x2: 110.0,
                y2: 55.0
            }
        );
    }

    #[test]
    fn yolov5_raw_head_uses_the_anchors_of_the_level() {
        // 64x64 input: 3 anchors x (64 + 16 + 4) cells, 1 class.
        let n = 3 * (64 + 16 + 4);
        let mut data = vec![-10.0f32; n * 6];
        // Level stride 32 (offset 3*80 = 240), anchor 2 (373x326), cell (1, 0): row 240 + 2*4 + 1.
        let row = 240 + 8 + 1;
        data[row * 6..row * 6 + 6].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 10.0, 10.0]);
        let config = YoloV5Config {
            decoded: false,
            ..Default::default()
        };
        let found = YoloV5::new(config)
            .decode(&out(&[1, n, 6], &data), [64, 64])
            .unwrap();
        assert_eq!(found.len(), 1);
        let b = found[0].bbox;
        // sigmoid(0) = 0.5: xy = (1 - 0.5 + grid) * 32 = (48, 16); wh = 1 * anchor.
        assert!(
            (b.x1 - (48.0 - 186.5)).abs() < 1e-3 && (b.y2 - (16.0 + 163.0)).abs() < 1e-3,
            "{b:?}"
        );
    }

    #[test]
    fn yolov8_both_layouts_and_all_candidates_above_threshold() {
        // Eight candidates (three real, five empty), 2 classes: [1, 6, 8].
        let (n, channels) = (8, 6);
        let real = [
            [10.0, 10.0, 4.0, 4.0, 0.9, 0.1],
            [100.0, 100.0, 4.0, 4.0, 0.8, 0.2],
            [200.0, 200.0, 4.0, 4.0, 0.1, 0.7],
        ];
        let mut first = vec![0.0f32; channels * n];
        let mut last = vec![0.0f32; channels * n];
        for (i, row) in real.iter().enumerate() {
            for c in 0..channels {
                first[c * n + i] = row[c];
                last[i * channels + c] = row[c];
            }
        }
        let decoder = YoloV8::new(YoloV8Config::default());
        let found = decoder
            .decode(&out(&[1, channels, n], &first), [256, 256])
            .unwrap();
        let classes: Vec<usize> = found.iter().map(|d| d.class_id).collect();
        assert_eq!(classes, vec![0, 0, 1]);
        assert_eq!(
            found[2].bbox,
            BBox {
                x1: 198.0,
                y1: 198.0,
                x2: 202.0,
                y2: 202.0
            }
        );
        assert_eq!(
            decoder
                .decode(&out(&[1, n, channels], &last), [256, 256])
                .unwrap(),
            found
        );
    }

    #[test]
    fn end_to_end_rows_pass_through_without_suppression() {
        let data = [
            10.0, 20.0, 30.0, 40.0, 0.9, 2.0, // kept
            12.0, 22.0, 30.0, 40.0, 0.8, 2.0, // overlaps, kept: no NMS
            0.0, 0.0, 5.0, 5.0, 0.1, 0.0, // below the threshold
        ];
        let found = YoloEndToEnd::new(YoloEndToEndConfig::default())
            .decode(&out(&[1, 3, 6], &data), [64, 64])
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].class_id, 2);
        assert_eq!(found[1].bbox.x1, 12.0);
        let err = YoloEndToEnd::new(YoloEndToEndConfig::default())
            .decode(&out(&[1, 3, 7], &[0.0; 21]), [64, 64])
            .unwrap_err();
        assert!(err.to_string().contains("[1, K, 6]"), "{err}");
    }
}
