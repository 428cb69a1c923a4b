//! RetinaFace: SSD-style offsets against prior boxes, with variances, plus
//! five landmarks decoded the same way (the box decoding is SSD's, shared).
//!
//! Outputs: `loc [1, N, 4]`, `conf [1, N, 2]` (background, face; the usual
//! exports end in a softmax) and `landmarks [1, N, 10]`, found by width.
//! Priors follow Pytorch_Retinaface's `PriorBox`: per level (stride `s`),
//! per cell of the `ceil(H / s) x ceil(W / s)` grid (row-major), one square
//! prior per `min_size`, centred in the cell.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::ssd::{ScoreKind, box_from_prior, point_from_prior};
use crate::{DecodeError, Decoder, Detection, Output, best_class, describe, rows_of, sigmoid};

/// RetinaFace parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RetinaFaceConfig {
    /// Stride of each level.
    pub strides: Vec<usize>,
    /// Prior sizes per level, in input pixels.
    pub min_sizes: Vec<Vec<f32>>,
    /// Centre and size variances.
    pub variances: [f32; 2],
    /// Clip priors to the image.
    pub clip: bool,
    /// What `conf` holds: `probabilities` (softmax in the graph, class 0
    /// the background), `softmax` (logits) or `sigmoid`.
    pub scores: ScoreKind,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for RetinaFaceConfig {
    fn default() -> Self {
        // Pytorch_Retinaface's cfg_mnet, with its demo's visualisation threshold.
        RetinaFaceConfig {
            strides: vec![8, 16, 32],
            min_sizes: vec![vec![16.0, 32.0], vec![64.0, 128.0], vec![256.0, 512.0]],
            variances: [0.1, 0.2],
            clip: false,
            scores: ScoreKind::Probabilities,
            nms: NmsConfig {
                score_threshold: 0.6,
                iou_threshold: 0.4,
                top_k: 5000,
                max_detections: 750,
                class_agnostic: true,
            },
        }
    }
}

/// The RetinaFace decoder.
pub struct RetinaFace {
    config: RetinaFaceConfig,
}

impl RetinaFace {
    /// A decoder with these parameters.
    pub fn new(config: RetinaFaceConfig) -> Result<RetinaFace, String> {
        if config.min_sizes.len() != config.strides.len() {
            return Err(format!(
                "min_sizes has {} levels but strides has {}",
                config.min_sizes.len(),
                config.strides.len()
            ));
        }
        Ok(RetinaFace { config })
    }

    /// Priors `(cx, cy, w, h)` as fractions of the input, in output order.
    pub fn priors(&self, [h, w]: [usize; 2]) -> Vec<[f32; 4]> {
        let (hf, wf) = (h as f32, w as f32);
        let mut priors = Vec::new();
        for (&s, sizes) in self.config.strides.iter().zip(&self.config.min_sizes) {
            for i in 0..h.div_ceil(s) {
                for j in 0..w.div_ceil(s) {
                    for &m in sizes {
                        let cx = (j as f32 + 0.5) * s as f32 / wf;
                        let cy = (i as f32 + 0.5) * s as f32 / hf;
                        let mut p = [cx, cy, m / wf, m / hf];
                        if self.config.clip {
                            p = p.map(|v| v.clamp(0.0, 1.0));
                        }
                        priors.push(p);
                    }
                }
            }
        }
        priors
    }
}

impl Decoder for RetinaFace {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let priors = self.priors([h, w]);
        let n = priors.len();
        let find = |width: Option<usize>| {
            outputs.iter().find(|o| {
                rows_of(o).is_some_and(|(rows, k)| {
                    rows == n && width.map_or(k != 4 && k != 10, |want| k == want)
                })
            })
        };
        let (Some(loc), Some(conf)) = (find(Some(4)), find(None)) else {
            return Err(DecodeError::Layout {
                family: "retinaface",
                expected: format!(
                    "loc [1, {n}, 4], conf [1, {n}, classes] and optionally landmarks [1, {n}, 10] ({n} priors for strides {:?} at {h}x{w})",
                    self.config.strides
                ),
                found: describe(outputs),
            });
        };
        let landmarks = find(Some(10));
        let (_, classes) = rows_of(conf).expect("found by rows");
        let [v0, _] = self.config.variances;
        let mut candidates = Vec::new();
        for (i, prior) in priors.iter().enumerate() {
            let row = &conf.data[i * classes..(i + 1) * classes];
            let (class, score) = match self.config.scores {
                ScoreKind::Sigmoid => best_class(row.iter().map(|&v| sigmoid(v))),
                ScoreKind::Probabilities => best_class(row.iter().copied().skip(1)),
                ScoreKind::Softmax => {
                    let max = row.iter().copied().fold(f32::MIN, f32::max);
                    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    best_class(row.iter().map(|v| (v - max).exp() / sum).skip(1))
                }
            };
            if score < self.config.nms.score_threshold {
                continue;
            }
            let offsets = &loc.data[i * 4..i * 4 + 4];
            let bbox = box_from_prior(prior, offsets, self.config.variances, [h, w]);
            let mut detection = Detection::new(class, score, bbox);
            if let Some(l) = landmarks {
                detection.keypoints = l.data[i * 10..i * 10 + 10]
                    .chunks_exact(2)
                    .map(|p| point_from_prior(prior, p, v0, [h, w]))
                    .collect();
            }
            candidates.push(detection);
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BBox;

    #[test]
    fn decodes_a_face_against_its_prior() {
        let decoder = RetinaFace::new(RetinaFaceConfig {
            strides: vec![16, 32],
            min_sizes: vec![vec![8.0, 16.0], vec![32.0]],
            ..RetinaFaceConfig::default()
        })
        .unwrap();
        // 32x64: 2x4 cells x 2 sizes = 16 priors, then 1x2 x 1 = 2.
        let priors = decoder.priors([32, 64]);
        assert_eq!(priors.len(), 18);
        // Prior 3: cell (col 1, row 0), size 16: centre (24, 8).
        assert_eq!(
            priors[3],
            [24.0 / 64.0, 8.0 / 32.0, 16.0 / 64.0, 16.0 / 32.0]
        );
        let mut loc = vec![0.0; 18 * 4];
        let mut conf = [1.0, 0.0].repeat(18);
        let mut marks = vec![0.0; 18 * 10];
        conf[6..8].copy_from_slice(&[0.1, 0.9]);
        // dx = 1 moves the centre by v0 * 16 = 1.6 px; dw = ln(2) / 0.2 doubles the width.
        loc[12..16].copy_from_slice(&[1.0, 0.0, std::f32::consts::LN_2 / 0.2, 0.0]);
        marks[30..32].copy_from_slice(&[-10.0, 10.0]);
        let shapes = [[1, 18, 4], [1, 18, 2], [1, 18, 10]];
        let data: [&[f32]; 3] = [&loc, &conf, &marks];
        let outputs = crate::test_outputs(&shapes, &data);
        let found = decoder.decode(&outputs, [32, 64]).unwrap();
        assert_eq!(found.len(), 1);
        let (d, want) = (
            found[0].bbox,
            BBox {
                x1: 25.6 - 16.0,
                y1: 0.0,
                x2: 25.6 + 16.0,
                y2: 16.0,
            },
        );
        for (a, b) in [
            (d.x1, want.x1),
            (d.y1, want.y1),
            (d.x2, want.x2),
            (d.y2, want.y2),
        ] {
            assert!((a - b).abs() < 1e-4, "{d:?}");
        }
        assert!((found[0].score - 0.9).abs() < 1e-6);
        // Landmark 0: (24 - 10 * 0.1 * 16, 8 + 10 * 0.1 * 16).
        let k = found[0].keypoints[0];
        assert!(
            (k[0] - 8.0).abs() < 1e-4 && (k[1] - 24.0).abs() < 1e-4,
            "{k:?}"
        );
        let err = decoder.decode(&outputs, [64, 64]).unwrap_err();
        assert!(err.to_string().contains("priors"), "{err}");
    }
}
