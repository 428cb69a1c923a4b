//! Non-maximum suppression: per class, with a score threshold, a cap on the
//! candidates kept before suppression (top-k) and on the detections after.

use serde::{Deserialize, Serialize};

use crate::Detection;

/// NMS settings, shared by the box decoders (all optional in a manifest).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct NmsConfig {
    /// Candidates scoring below this are dropped first.
    pub score_threshold: f32,
    /// A box overlapping a better one of the same class by more than this is dropped.
    pub iou_threshold: f32,
    /// At most this many candidates (the best) go into suppression.
    pub top_k: usize,
    /// At most this many detections come out.
    pub max_detections: usize,
    /// Suppress across classes too.
    pub class_agnostic: bool,
}

impl Default for NmsConfig {
    fn default() -> Self {
        NmsConfig {
            score_threshold: 0.25,
            iou_threshold: 0.45,
            top_k: 5000,
            max_detections: 300,
            class_agnostic: false,
        }
    }
}

/// Keeps the best non-overlapping detections, best first.
///
/// Candidates are sorted once; each kept box suppresses the later ones of its
/// class that overlap it. Boxes are grouped by class first, so thousands of
/// candidates spread over many classes cost little.
pub fn nms(mut candidates: Vec<Detection>, config: &NmsConfig) -> Vec<Detection> {
    candidates.retain(|d| d.score >= config.score_threshold && d.score.is_finite());
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(config.top_k);

    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, d) in candidates.iter().enumerate() {
        let key = if config.class_agnostic { 0 } else { d.class_id };
        by_class.entry(key).or_default().push(i);
    }
    let mut kept: Vec<usize> = Vec::new();
    for indices in by_class.values() {
        let mut suppressed = vec![false; indices.len()];
        for a in 0..indices.len() {
            if suppressed[a] {
                continue;
            }
            kept.push(indices[a]);
            let box_a = candidates[indices[a]].bbox;
            for b in a + 1..indices.len() {
                if !suppressed[b] && box_a.iou(&candidates[indices[b]].bbox) > config.iou_threshold
                {
                    suppressed[b] = true;
                }
            }
        }
    }
    kept.sort_unstable();
    kept.truncate(config.max_detections);
    let mut keep_flags = vec![false; candidates.len()];
    for k in kept {
        keep_flags[k] = true;
    }
    candidates
        .into_iter()
        .zip(keep_flags)
        .filter(|(_, k)| *k)
        .map(|(d, _)| d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BBox;

    fn det(class: usize, score: f32, x: f32) -> Detection {
        Detection::new(
            class,
            score,
            BBox {
                x1: x,
                y1: 0.0,
                x2: x + 10.0,
                y2: 10.0,
            },
        )
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only() {
        let config = NmsConfig {
            score_threshold: 0.1,
            iou_threshold: 0.5,
            ..Default::default()
        };
        let out = nms(
            vec![
                det(0, 0.9, 0.0),
                det(0, 0.8, 1.0),
                det(1, 0.7, 1.0),
                det(0, 0.6, 50.0),
            ],
            &config,
        );
        let got: Vec<(usize, f32)> = out.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7), (0, 0.6)]);
        let agnostic = NmsConfig {
            class_agnostic: true,
            ..config
        };
        assert_eq!(
            nms(vec![det(0, 0.9, 0.0), det(1, 0.7, 1.0)], &agnostic).len(),
            1
        );
    }

    #[test]
    fn thresholds_and_caps() {
        let config = NmsConfig {
            score_threshold: 0.5,
            iou_threshold: 0.5,
            top_k: 3,
            max_detections: 2,
            class_agnostic: false,
        };
        let candidates: Vec<Detection> = (0..10)
            .map(|i| det(0, 0.1 * i as f32, 100.0 * i as f32))
            .collect();
        let out = nms(candidates, &config);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.1 * 9.0, 0.1 * 8.0]);
        assert!(nms(vec![], &config).is_empty());
        let nan = Detection::new(
            0,
            f32::NAN,
            BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            },
        );
        assert!(nms(vec![nan], &config).is_empty());
    }

    #[test]
    fn thousands_of_candidates_all_above_threshold() {
        // A 100x100 grid of disjoint boxes: nothing to suppress, all kept up to the cap.
        let candidates: Vec<Detection> = (0..10_000)
            .map(|i| {
                let (x, y) = ((i % 100) as f32 * 20.0, (i / 100) as f32 * 20.0);
                Detection::new(
                    i % 3,
                    0.9,
                    BBox {
                        x1: x,
                        y1: y,
                        x2: x + 10.0,
                        y2: y + 10.0,
                    },
                )
            })
            .collect();
        let config = NmsConfig {
            score_threshold: 0.5,
            top_k: 10_000,
            max_detections: 10_000,
            ..Default::default()
        };
        assert_eq!(nms(candidates, &config).len(), 10_000);
    }
}
