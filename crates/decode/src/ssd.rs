//! SSD and SSDLite: box offsets against prior boxes, with variances.
//!
//! Outputs: boxes `[1, N, 4]` (`dx dy dw dh` against each prior) and scores
//! `[1, N, C]`. Priors follow torchvision's `DefaultBoxGenerator`: per level,
//! a grid of centres `((j + 0.5) / fw, (i + 0.5) / fh)`, each with the
//! shapes `(s_k, s_k)`, `(s', s')` with `s' = sqrt(s_k s_k+1)`, and
//! `(s_k sqrt(a), s_k / sqrt(a))` and its transpose for every aspect ratio
//! `a`; scales evenly spaced from `min_ratio` to `max_ratio`.
//! Decoding: `cx = pcx + dx v0 pw`, `w = pw exp(dw v1)`.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::{BBox, DecodeError, Decoder, Detection, Output, describe};

/// How scores are turned into probabilities.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Softmax over classes; class 0 is the background.
    Softmax,
    /// Independent sigmoids, no background class.
    Sigmoid,
    /// Already probabilities; class 0 is the background when `background` is set.
    Probabilities,
}

/// SSD parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SsdConfig {
    /// Stride of each level's feature map.
    pub strides: Vec<usize>,
    /// Smallest prior scale, as a fraction of the input.
    pub min_ratio: f32,
    /// Largest prior scale.
    pub max_ratio: f32,
    /// Extra aspect ratios per level (each adds two shapes).
    pub aspect_ratios: Vec<Vec<f32>>,
    /// Centre and size variances.
    pub variances: [f32; 2],
    /// How scores become probabilities.
    pub scores: ScoreKind,
    /// With `probabilities`: class 0 is the background.
    pub background: bool,
    /// Clip priors to the image.
    pub clip: bool,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for SsdConfig {
    fn default() -> Self {
        // torchvision's ssdlite320_mobilenet_v3_large.
        SsdConfig {
            strides: vec![16, 32, 64, 128, 256, 512],
            min_ratio: 0.2,
            max_ratio: 0.95,
            aspect_ratios: vec![vec![2.0, 3.0]; 6],
            variances: [0.1, 0.2],
            scores: ScoreKind::Softmax,
            background: true,
            clip: true,
            nms: NmsConfig::default(),
        }
    }
}

/// The SSD decoder.
pub struct Ssd {
    config: SsdConfig,
}

impl Ssd {
    /// A decoder with these parameters.
    pub fn new(config: SsdConfig) -> Result<Ssd, String> {
        if config.aspect_ratios.len() != config.strides.len() {
            return Err(format!(
                "aspect_ratios has {} levels but strides has {}",
                config.aspect_ratios.len(),
                config.strides.len()
            ));
        }
        Ok(Ssd { config })
    }

    /// Priors `(cx, cy, w, h)` as fractions of the input, in output order.
    pub fn priors(&self, [h, w]: [usize; 2]) -> Vec<[f32; 4]> {
        let levels = self.config.strides.len();
        let scales: Vec<f32> = (0..levels)
            .map(|k| {
                if levels == 1 {
                    self.config.min_ratio
                } else {
                    self.config.min_ratio
                        + (self.config.max_ratio - self.config.min_ratio) * k as f32
                            / (levels - 1) as f32
                }
            })
            .chain(std::iter::once(1.0))
            .collect();
        let mut priors = Vec::new();
        for (k, &stride) in self.config.strides.iter().enumerate() {
            let (fh, fw) = (h.div_ceil(stride), w.div_ceil(stride));
            let s = scales[k];
            let s_prime = (s * scales[k + 1]).sqrt();
            let mut shapes = vec![[s, s], [s_prime, s_prime]];
            for &a in &self.config.aspect_ratios[k] {
                let r = a.sqrt();
                shapes.push([s * r, s / r]);
                shapes.push([s / r, s * r]);
            }
            for i in 0..fh {
                for j in 0..fw {
                    let (cx, cy) = ((j as f32 + 0.5) / fw as f32, (i as f32 + 0.5) / fh as f32);
                    for &[pw, ph] in &shapes {
                        let mut p = [cx, cy, pw, ph];
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

/// Decodes box offsets `dx dy dw dh` against `prior` (`cx cy w h` as
/// fractions of the input), into input pixels: `cx = pcx + dx v0 pw`,
/// `w = pw exp(dw v1)`. SSD and RetinaFace share it.
pub(crate) fn box_from_prior(
    prior: &[f32; 4],
    offsets: &[f32],
    [v0, v1]: [f32; 2],
    [h, w]: [usize; 2],
) -> BBox {
    let [pcx, pcy, pw, ph] = *prior;
    let cx = (pcx + offsets[0] * v0 * pw) * w as f32;
    let cy = (pcy + offsets[1] * v0 * ph) * h as f32;
    let bw = pw * (offsets[2] * v1).exp() * w as f32;
    let bh = ph * (offsets[3] * v1).exp() * h as f32;
    BBox::from_center(cx, cy, bw, bh)
}

/// Decodes a point offset `dx dy` against `prior`, into input pixels:
/// `x = pcx + dx v0 pw` (RetinaFace's landmarks).
pub(crate) fn point_from_prior(
    prior: &[f32; 4],
    offset: &[f32],
    v0: f32,
    [h, w]: [usize; 2],
) -> [f32; 2] {
    let [pcx, pcy, pw, ph] = *prior;
    [
        (pcx + offset[0] * v0 * pw) * w as f32,
        (pcy + offset[1] * v0 * ph) * h as f32,
    ]
}

/// Finds the `[1, N, 4]` box output and the `[1, N, C]` score output.
pub(crate) fn boxes_and_scores<'a>(
    family: &'static str,
    outputs: &[Output<'a>],
) -> Result<(Output<'a>, Output<'a>), DecodeError> {
    let layout_error = || DecodeError::Layout {
        family,
        expected: "boxes [1, N, 4] and scores [1, N, classes]".into(),
        found: describe(outputs),
    };
    let [a, b] = outputs else {
        return Err(layout_error());
    };
    let ok = |o: &Output| o.shape.len() == 3 && o.shape[0] == 1;
    if !ok(a) || !ok(b) || a.shape[1] != b.shape[1] {
        return Err(layout_error());
    }
    match (a.shape[2] == 4, b.shape[2] == 4) {
        (true, _) => Ok((*a, *b)),
        (false, true) => Ok((*b, *a)),
        _ => Err(layout_error()),
    }
}

impl Decoder for Ssd {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let (boxes, scores) = boxes_and_scores("ssd", outputs)?;
        let priors = self.priors([h, w]);
        let n = boxes.shape[1];
        if priors.len() != n {
            return Err(DecodeError::Layout {
                family: "ssd",
                expected: format!(
                    "{} priors for strides {:?} at {h}x{w}",
                    priors.len(),
                    self.config.strides
                ),
                found: describe(outputs),
            });
        }
        let classes = scores.shape[2];
        let skip_background = matches!(self.config.scores, ScoreKind::Softmax)
            || (self.config.scores == ScoreKind::Probabilities && self.config.background);
        let first = usize::from(skip_background);
        let mut probs = vec![0f32; classes];
        let mut candidates = Vec::new();
        for (i, prior) in priors.iter().enumerate() {
            let row = &scores.data[i * classes..(i + 1) * classes];
            match self.config.scores {
                ScoreKind::Softmax => {
                    let max = row.iter().copied().fold(f32::MIN, f32::max);
                    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    for (p, v) in probs.iter_mut().zip(row) {
                        *p = (v - max).exp() / sum;
                    }
                }
                ScoreKind::Sigmoid => {
                    for (p, v) in probs.iter_mut().zip(row) {
                        *p = 1.0 / (1.0 + (-v).exp());
                    }
                }
                ScoreKind::Probabilities => probs.copy_from_slice(row),
            }
            let Some((c, &score)) = probs
                .iter()
                .enumerate()
                .skip(first)
                .max_by(|a, b| a.1.total_cmp(b.1))
            else {
                continue;
            };
            if score < self.config.nms.score_threshold {
                continue;
            }
            let offsets = &boxes.data[i * 4..i * 4 + 4];
            candidates.push(Detection::new(
                c - first,
                score,
                box_from_prior(prior, offsets, self.config.variances, [h, w]),
            ));
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Ssd {
        Ssd::new(SsdConfig {
            strides: vec![32, 64],
            aspect_ratios: vec![vec![2.0], vec![]],
            min_ratio: 0.2,
            max_ratio: 0.6,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn priors_follow_the_default_box_layout() {
        let priors = small().priors([128, 128]);
        // Level 0: 4x4 cells x 4 shapes; level 1: 2x2 cells x 2 shapes.
        assert_eq!(priors.len(), 16 * 4 + 4 * 2);
        assert_eq!(priors[0], [0.125, 0.125, 0.2, 0.2]);
        let s_prime = (0.2f32 * 0.6).sqrt();
        assert!((priors[1][2] - s_prime).abs() < 1e-6);
        assert!((priors[2][2] - 0.2 * 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(priors[64], [0.25, 0.25, 0.6, 0.6]);
    }

    #[test]
    fn a_confident_prior_with_zero_offsets_is_the_prior_itself() {
        let ssd = small();
        let n = 72;
        let boxes = vec![0.0f32; n * 4];
        // 3 classes with background: logits favouring class 2 at prior 64 only.
        let mut scores = vec![0.0f32; n * 3];
        for i in 0..n {
            scores[i * 3] = 5.0;
        }
        scores[64 * 3..64 * 3 + 3].copy_from_slice(&[0.0, 0.0, 8.0]);
        let outputs = [
            Output {
                name: "scores",
                shape: &[1, n, 3],
                data: &scores,
            },
            Output {
                name: "boxes",
                shape: &[1, n, 4],
                data: &boxes,
            },
        ];
        let found = ssd.decode(&outputs, [128, 128]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].class_id, 1,
            "background removed from the class ids"
        );
        let b = found[0].bbox;
        // Prior (0.25, 0.25, 0.6, 0.6) of a 128 input: centre 32, size 76.8.
        assert!(
            (b.x1 - (32.0 - 38.4)).abs() < 1e-3 && (b.x2 - (32.0 + 38.4)).abs() < 1e-3,
            "{b:?}"
        );
    }

    #[test]
    fn mismatched_priors_are_reported() {
        let boxes = vec![0.0f32; 10 * 4];
        let scores = vec![0.0f32; 10 * 2];
        let outputs = [
            Output {
                name: "b",
                shape: &[1, 10, 4],
                data: &boxes,
            },
            Output {
                name: "s",
                shape: &[1, 10, 2],
                data: &scores,
            },
        ];
        let err = small()
            .decode(&outputs, [128, 128])
            .unwrap_err()
            .to_string();
        assert!(err.contains("72 priors"), "{err}");
        assert!(
            Ssd::new(SsdConfig {
                aspect_ratios: vec![],
                ..Default::default()
            })
            .is_err()
        );
    }
}
