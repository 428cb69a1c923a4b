//! GFL heads (PP-PicoDet, NanoDet): per level, class scores `[1, N, C]` and
//! box side distributions `[1, N, 4 (R + 1)]` (Generalized Focal Loss's
//! distribution regression, `R` = `reg_max`).
//!
//! Each side's distance, in strides, is the expectation of a softmax over its
//! `R + 1` bins; the box spans from the cell centre `((col + o) s, (row + o) s)`
//! by `left, top, right, bottom` times the stride `s` (`o` = `cell_offset`:
//! PicoDet 0.5, NanoDet 0). A level's grid is `ceil(H / s) x ceil(W / s)`,
//! row-major. Scores are taken as given (the exports apply the sigmoid).

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::{
    BBox, DecodeError, Decoder, Detection, Output, best_class, describe, outputs_with_rows, rows_of,
};

/// GFL parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GflConfig {
    /// Strides of the levels.
    pub strides: Vec<usize>,
    /// The largest bin of each side's distribution (bins `0..=reg_max`).
    pub reg_max: usize,
    /// Where in its cell a prediction is anchored, in strides (0.5: the centre).
    pub cell_offset: f32,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for GflConfig {
    fn default() -> Self {
        // PP-PicoDet's PicoHeadV2 as exported without post-processing.
        GflConfig {
            strides: vec![8, 16, 32, 64],
            reg_max: 7,
            cell_offset: 0.5,
            nms: NmsConfig {
                score_threshold: 0.4,
                iou_threshold: 0.5,
                top_k: 1000,
                max_detections: 100,
                class_agnostic: false,
            },
        }
    }
}

/// The GFL decoder.
pub struct Gfl {
    config: GflConfig,
}

impl Gfl {
    /// A decoder with these parameters.
    pub fn new(config: GflConfig) -> Gfl {
        Gfl { config }
    }

    /// The expected distance of one side: softmax over `bins`, times bin index.
    fn expected_distance(bins: &[f32]) -> f32 {
        let max = bins.iter().copied().fold(f32::MIN, f32::max);
        let (mut sum, mut weighted) = (0.0f32, 0.0f32);
        for (i, &b) in bins.iter().enumerate() {
            let e = (b - max).exp();
            sum += e;
            weighted += e * i as f32;
        }
        weighted / sum
    }
}

impl Decoder for Gfl {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let bins = self.config.reg_max + 1;
        let box_width = 4 * bins;
        let layout_error = |what: String| DecodeError::Layout {
            family: "gfl",
            expected: what,
            found: describe(outputs),
        };
        if outputs.len() != 2 * self.config.strides.len() {
            return Err(layout_error(format!(
                "{} outputs: scores [1, N, classes] and distributions [1, N, {box_width}] for each of strides {:?}",
                2 * self.config.strides.len(),
                self.config.strides
            )));
        }
        let mut candidates = Vec::new();
        for &s in &self.config.strides {
            let (rows, cols) = (h.div_ceil(s), w.div_ceil(s));
            let n = rows * cols;
            let level = outputs_with_rows(outputs, n);
            // Scores first when both widths match (the exporters' order).
            let pair = match level.as_slice() {
                [a, b] if rows_of(b) == Some((n, box_width)) => Some((*a, *b)),
                [a, b] if rows_of(a) == Some((n, box_width)) => Some((*b, *a)),
                _ => None,
            };
            let Some((scores, dist)) = pair else {
                return Err(layout_error(format!(
                    "at stride {s} ({rows}x{cols} cells at {h}x{w}): scores [1, {n}, classes] and distributions [1, {n}, {box_width}] (reg_max {})",
                    self.config.reg_max
                )));
            };
            let (_, classes) = rows_of(&scores).expect("matched above");
            let (sf, offset) = (s as f32, self.config.cell_offset);
            for i in 0..n {
                let row = &scores.data[i * classes..(i + 1) * classes];
                let (class, score) = best_class(row.iter().copied());
                if score < self.config.nms.score_threshold {
                    continue;
                }
                let sides: Vec<f32> = dist.data[i * box_width..(i + 1) * box_width]
                    .chunks_exact(bins)
                    .map(|b| Self::expected_distance(b) * sf)
                    .collect();
                let cx = ((i % cols) as f32 + offset) * sf;
                let cy = ((i / cols) as f32 + offset) * sf;
                let bbox = BBox {
                    x1: cx - sides[0],
                    y1: cy - sides[1],
                    x2: cx + sides[2],
                    y2: cy + sides[3],
                };
                candidates.push(Detection::new(class, score, bbox));
            }
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One box at stride 16, cell (col 1, row 0) of a 32x48 input, whatever
    /// the output order.
    #[test]
    fn decodes_a_distribution_box_from_its_cell_centre() {
        let config = GflConfig {
            strides: vec![8, 16],
            reg_max: 3,
            ..GflConfig::default()
        };
        // 32x48: 4x6 = 24 cells at stride 8, 2x3 = 6 at stride 16; 2 classes.
        let mut scores8 = vec![0.0; 24 * 2];
        let mut scores16 = vec![0.0; 6 * 2];
        let dist8 = vec![0.0; 24 * 16];
        let mut dist16 = vec![-50.0; 6 * 16];
        scores16[2 + 1] = 0.8; // cell 1, class 1
        scores8[0] = 0.1; // below the threshold
        // Sides: all mass on bin 1 (left), 2 (top), 0 (right), 3 (bottom).
        for (side, bin) in [1usize, 2, 0, 3].into_iter().enumerate() {
            dist16[16 + side * 4 + bin] = 50.0;
        }
        let shapes = [[1, 24, 2], [1, 6, 2], [1, 24, 16], [1, 6, 16]];
        let data: [&[f32]; 4] = [&scores8, &scores16, &dist8, &dist16];
        let outputs = crate::test_outputs(&shapes, &data);
        let decoder = Gfl::new(config);
        let found = decoder.decode(&outputs, [32, 48]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].class_id, 1);
        assert!((found[0].score - 0.8).abs() < 1e-6);
        // Centre (1.5 * 16, 0.5 * 16) = (24, 8); sides 16, 32, 0, 48.
        let b = found[0].bbox;
        for (got, want) in [(b.x1, 8.0), (b.y1, -24.0), (b.x2, 24.0), (b.y2, 56.0)] {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
        // Boxes first, scores after: the same result.
        let reordered = [outputs[2], outputs[3], outputs[0], outputs[1]];
        assert_eq!(decoder.decode(&reordered, [32, 48]).unwrap(), found);
        let err = decoder.decode(&outputs[..2], [32, 48]).unwrap_err();
        assert!(err.to_string().contains("4 outputs"), "{err}");
        let err = decoder.decode(&outputs, [64, 48]).unwrap_err();
        assert!(err.to_string().contains("at stride 8"), "{err}");
    }
}
