//! RetinaNet: box deltas against anchors on several levels.
//!
//! Outputs, concatenated over levels: deltas `[1, N, 4]` and class logits
//! `[1, N, C]` (sigmoid). Anchors follow torchvision's `AnchorGenerator`:
//! on level `l` (stride `s`), at every location `(x s, y s)`, one anchor per
//! aspect ratio and scale (ratio-major), of area `(size_l * scale)^2`.
//! Decoding: `cx = acx + dx aw`, `w = aw exp(min(dw, ln(1000/16)))`.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::ssd::boxes_and_scores;
use crate::{BBox, DecodeError, Decoder, Detection, Output, describe};

/// RetinaNet parameters (torchvision's defaults).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RetinaNetConfig {
    /// Stride of each level.
    pub strides: Vec<usize>,
    /// Anchor base size of each level, in input pixels.
    pub sizes: Vec<f32>,
    /// Scales applied to the base size.
    pub scales: Vec<f32>,
    /// Aspect ratios (height / width).
    pub ratios: Vec<f32>,
    /// The scores are logits (apply a sigmoid).
    pub logits: bool,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for RetinaNetConfig {
    fn default() -> Self {
        RetinaNetConfig {
            strides: vec![8, 16, 32, 64, 128],
            sizes: vec![32.0, 64.0, 128.0, 256.0, 512.0],
            scales: vec![1.0, 2f32.powf(1.0 / 3.0), 2f32.powf(2.0 / 3.0)],
            ratios: vec![0.5, 1.0, 2.0],
            logits: true,
            nms: NmsConfig {
                score_threshold: 0.05,
                iou_threshold: 0.5,
                top_k: 1000,
                max_detections: 300,
                class_agnostic: false,
            },
        }
    }
}

/// The RetinaNet decoder.
pub struct RetinaNet {
    config: RetinaNetConfig,
}

impl RetinaNet {
    /// A decoder with these parameters.
    pub fn new(config: RetinaNetConfig) -> RetinaNet {
        RetinaNet { config }
    }

    /// Anchors as boxes in input pixels, in output order.
    pub fn anchors(&self, [h, w]: [usize; 2]) -> Result<Vec<BBox>, DecodeError> {
        if self.config.sizes.len() != self.config.strides.len() {
            return Err(DecodeError::Config {
                family: "retinanet".into(),
                message: format!(
                    "{} sizes for {} strides",
                    self.config.sizes.len(),
                    self.config.strides.len()
                ),
            });
        }
        let mut anchors = Vec::new();
        for (&stride, &size) in self.config.strides.iter().zip(&self.config.sizes) {
            // Base anchors centred on 0, rounded as torchvision rounds them.
            let mut base = Vec::new();
            for &ratio in &self.config.ratios {
                let hr = ratio.sqrt();
                for &scale in &self.config.scales {
                    let (aw, ah) = (size * scale / hr, size * scale * hr);
                    base.push([
                        (-aw / 2.0).round(),
                        (-ah / 2.0).round(),
                        (aw / 2.0).round(),
                        (ah / 2.0).round(),
                    ]);
                }
            }
            let (fh, fw) = (h.div_ceil(stride), w.div_ceil(stride));
            for y in 0..fh {
                for x in 0..fw {
                    let (sx, sy) = ((x * stride) as f32, (y * stride) as f32);
                    for b in &base {
                        anchors.push(BBox {
                            x1: b[0] + sx,
                            y1: b[1] + sy,
                            x2: b[2] + sx,
                            y2: b[3] + sy,
                        });
                    }
                }
            }
        }
        Ok(anchors)
    }
}

impl Decoder for RetinaNet {
    fn decode(
        &self,
        outputs: &[Output],
        input_hw: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let (deltas, scores) = boxes_and_scores("retinanet", outputs)?;
        let anchors = self.anchors(input_hw)?;
        if anchors.len() != deltas.shape[1] {
            return Err(DecodeError::Layout {
                family: "retinanet",
                expected: format!(
                    "{} anchors for strides {:?} at {}x{}",
                    anchors.len(),
                    self.config.strides,
                    input_hw[0],
                    input_hw[1]
                ),
                found: describe(outputs),
            });
        }
        let classes = scores.shape[2];
        let clamp = (1000.0f32 / 16.0).ln();
        let mut candidates = Vec::new();
        for (i, a) in anchors.iter().enumerate() {
            let row = &scores.data[i * classes..(i + 1) * classes];
            for (c, &s) in row.iter().enumerate() {
                let score = if self.config.logits {
                    crate::sigmoid(s)
                } else {
                    s
                };
                if score < self.config.nms.score_threshold {
                    continue;
                }
                let d = &deltas.data[i * 4..i * 4 + 4];
                let (aw, ah) = (a.x2 - a.x1, a.y2 - a.y1);
                let (acx, acy) = (a.x1 + 0.5 * aw, a.y1 + 0.5 * ah);
                let cx = d[0] * aw + acx;
                let cy = d[1] * ah + acy;
                let bw = d[2].min(clamp).exp() * aw;
                let bh = d[3].min(clamp).exp() * ah;
                candidates.push(Detection::new(c, score, BBox::from_center(cx, cy, bw, bh)));
            }
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_levels() -> RetinaNet {
        RetinaNet::new(RetinaNetConfig {
            strides: vec![8, 16],
            sizes: vec![32.0, 64.0],
            scales: vec![1.0],
            ratios: vec![0.5, 1.0, 2.0],
            ..Default::default()
        })
    }

    #[test]
    fn anchors_at_a_known_level() {
        let anchors = two_levels().anchors([32, 32]).unwrap();
        // Level 0: 4x4 locations x 3 ratios; level 1: 2x2 x 3.
        assert_eq!(anchors.len(), 48 + 12);
        // Level 1, location (x=1, y=0), ratio 1: centred on (16, 0), 64x64.
        assert_eq!(
            anchors[48 + 3 + 1],
            BBox {
                x1: -16.0,
                y1: -32.0,
                x2: 48.0,
                y2: 32.0
            }
        );
    }

    #[test]
    fn one_confident_anchor_with_deltas() {
        let r = two_levels();
        let n = 60;
        let mut deltas = vec![0.0f32; n * 4];
        let mut logits = vec![-10.0f32; n * 2];
        let i = 48 + 3 + 1;
        deltas[i * 4..i * 4 + 4].copy_from_slice(&[0.25, 0.0, (0.5f32).ln(), 0.0]);
        logits[i * 2 + 1] = 10.0;
        let outputs = [
            Output {
                name: "deltas",
                shape: &[1, n, 4],
                data: &deltas,
            },
            Output {
                name: "logits",
                shape: &[1, n, 2],
                data: &logits,
            },
        ];
        let found = r.decode(&outputs, [32, 32]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].class_id, 1);
        // Centre x 16 + 0.25*64 = 32, width 32; y unchanged.
        assert_eq!(
            found[0].bbox,
            BBox {
                x1: 16.0,
                y1: -32.0,
                x2: 48.0,
                y2: 32.0
            }
        );
        let none = [
            Output {
                name: "deltas",
                shape: &[1, n, 4],
                data: &deltas,
            },
            Output {
                name: "logits",
                shape: &[1, n, 2],
                data: &vec![-10.0; n * 2],
            },
        ];
        assert!(r.decode(&none, [32, 32]).unwrap().is_empty());
    }
}
