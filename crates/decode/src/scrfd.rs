//! SCRFD (InsightFace): anchor-free face boxes and five landmarks as
//! distances from anchor points.
//!
//! Per stride `s`: scores `[1, N, 1]` (sigmoid applied by the export),
//! distances `[1, N, 4]` and landmark offsets `[1, N, 10]`, with
//! `N = ceil(H / s) ceil(W / s) A` (`A` anchors per cell, all at the cell's
//! corner `(col s, row s)`, row-major). `box = (x - l s, y - t s, x + r s,
//! y + b s)`, landmark `k = (x + dx_k s, y + dy_k s)` (`distance2bbox` and
//! `distance2kps`). Outputs are found by their shapes, so any export order
//! works; models exported without landmarks decode too.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::{BBox, DecodeError, Decoder, Detection, Output, describe, outputs_with_rows, rows_of};

/// SCRFD parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ScrfdConfig {
    /// Strides of the levels.
    pub strides: Vec<usize>,
    /// Anchor points per cell (they share the cell's position).
    pub anchors_per_cell: usize,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for ScrfdConfig {
    fn default() -> Self {
        // InsightFace's SCRFD.detect: thresh 0.5, nms_thresh 0.4.
        ScrfdConfig {
            strides: vec![8, 16, 32],
            anchors_per_cell: 2,
            nms: NmsConfig {
                score_threshold: 0.5,
                iou_threshold: 0.4,
                top_k: 5000,
                max_detections: 750,
                class_agnostic: true,
            },
        }
    }
}

/// The SCRFD decoder.
pub struct Scrfd {
    config: ScrfdConfig,
}

impl Scrfd {
    /// A decoder with these parameters.
    pub fn new(config: ScrfdConfig) -> Scrfd {
        Scrfd { config }
    }
}

impl Decoder for Scrfd {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let anchors = self.config.anchors_per_cell.max(1);
        let mut candidates = Vec::new();
        let mut used = 0;
        for &s in &self.config.strides {
            let (rows, cols) = (h.div_ceil(s), w.div_ceil(s));
            let n = rows * cols * anchors;
            let level = outputs_with_rows(outputs, n);
            let width = |k: usize| level.iter().find(|o| rows_of(o) == Some((n, k))).copied();
            let (Some(scores), Some(dist)) = (width(1), width(4)) else {
                return Err(DecodeError::Layout {
                    family: "scrfd",
                    expected: format!(
                        "at stride {s} ({rows}x{cols} cells x {anchors} anchors at {h}x{w}): scores [1, {n}, 1], boxes [1, {n}, 4] and optionally landmarks [1, {n}, 10]"
                    ),
                    found: describe(outputs),
                });
            };
            let landmarks = width(10);
            used += 2 + usize::from(landmarks.is_some());
            let sf = s as f32;
            for i in 0..n {
                let score = scores.data[i];
                if score < self.config.nms.score_threshold {
                    continue;
                }
                let cell = i / anchors;
                let (x, y) = (((cell % cols) * s) as f32, ((cell / cols) * s) as f32);
                let d = &dist.data[i * 4..i * 4 + 4];
                let bbox = BBox {
                    x1: x - d[0] * sf,
                    y1: y - d[1] * sf,
                    x2: x + d[2] * sf,
                    y2: y + d[3] * sf,
                };
                let mut detection = Detection::new(0, score, bbox);
                if let Some(k) = landmarks {
                    detection.keypoints = k.data[i * 10..i * 10 + 10]
                        .chunks_exact(2)
                        .map(|p| [x + p[0] * sf, y + p[1] * sf])
                        .collect();
                }
                candidates.push(detection);
            }
        }
        if used != outputs.len() {
            return Err(DecodeError::Layout {
                family: "scrfd",
                expected: format!(
                    "scores, boxes and landmarks for strides {:?} only",
                    self.config.strides
                ),
                found: describe(outputs),
            });
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_distances_and_landmarks_from_the_anchor_point() {
        // 32x32, strides 16 and 32: 2x2x2 = 8 and 1x1x2 = 2 anchors.
        let config = ScrfdConfig {
            strides: vec![16, 32],
            ..ScrfdConfig::default()
        };
        let mut s16 = vec![0.0; 8];
        let s32 = vec![0.0; 2];
        let mut b16 = vec![0.0; 32];
        let b32 = vec![0.0; 8];
        let mut k16 = vec![0.0; 80];
        let k32 = vec![0.0; 20];
        // Cell (col 1, row 1) = cell 3, its second anchor = row 7.
        s16[7] = 0.9;
        b16[28..32].copy_from_slice(&[0.5, 1.0, 0.25, 0.5]);
        k16[70..80].copy_from_slice(&[0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0]);
        let shapes = [
            [1, 8, 1],
            [1, 2, 1],
            [1, 8, 4],
            [1, 2, 4],
            [1, 8, 10],
            [1, 2, 10],
        ];
        let data: [&[f32]; 6] = [&s16, &s32, &b16, &b32, &k16, &k32];
        let outputs = crate::test_outputs(&shapes, &data);
        let decoder = Scrfd::new(config);
        let found = decoder.decode(&outputs, [32, 32]).unwrap();
        assert_eq!(found.len(), 1);
        // Anchor at (16, 16); sides 8, 16, 4, 8.
        assert_eq!(
            found[0].bbox,
            BBox {
                x1: 8.0,
                y1: 0.0,
                x2: 20.0,
                y2: 24.0
            }
        );
        assert_eq!(found[0].keypoints[1], [32.0, 16.0]);
        assert_eq!(found[0].keypoints[2], [24.0, 24.0]);
        // Interleaved export order, and no landmarks: still found.
        let interleaved = [outputs[0], outputs[2], outputs[1], outputs[3]];
        let plain = decoder.decode(&interleaved, [32, 32]).unwrap();
        assert_eq!(plain[0].bbox, found[0].bbox);
        assert!(plain[0].keypoints.is_empty());
        let err = decoder.decode(&outputs, [64, 64]).unwrap_err();
        assert!(err.to_string().contains("at stride 16"), "{err}");
    }
}
