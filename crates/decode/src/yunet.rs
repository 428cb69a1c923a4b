//! YuNet-style face detection with five landmarks (OpenCV's
//! `FaceDetectorYN`): per stride (8, 16, 32), outputs `cls [1,N,1]`,
//! `obj [1,N,1]`, `bbox [1,N,4]` and `kps [1,N,10]`, in that order (all cls,
//! then all obj, bbox, kps). `score = sqrt(cls * obj)`;
//! `cx = (col + b0) s`, `w = exp(b2) s`; landmark `k = ((col + kx) s, (row + ky) s)`.

use serde::{Deserialize, Serialize};

use crate::nms::{NmsConfig, nms};
use crate::{BBox, DecodeError, Decoder, Detection, Output, describe};

/// YuNet parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct YuNetConfig {
    /// Strides, in output order.
    pub strides: Vec<usize>,
    /// Suppression.
    #[serde(flatten)]
    pub nms: NmsConfig,
}

impl Default for YuNetConfig {
    fn default() -> Self {
        YuNetConfig {
            strides: vec![8, 16, 32],
            nms: NmsConfig {
                score_threshold: 0.9,
                iou_threshold: 0.3,
                top_k: 5000,
                max_detections: 750,
                class_agnostic: true,
            },
        }
    }
}

/// The YuNet decoder.
pub struct YuNet {
    config: YuNetConfig,
}

impl YuNet {
    /// A decoder with these parameters.
    pub fn new(config: YuNetConfig) -> YuNet {
        YuNet { config }
    }
}

impl Decoder for YuNet {
    fn decode(
        &self,
        outputs: &[Output],
        [h, w]: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let levels = self.config.strides.len();
        let layout_error = || DecodeError::Layout {
            family: "yunet",
            expected: format!(
                "{} outputs: cls, obj, bbox, kps for each of strides {:?}",
                4 * levels,
                self.config.strides
            ),
            found: describe(outputs),
        };
        if outputs.len() != 4 * levels {
            return Err(layout_error());
        }
        let mut candidates = Vec::new();
        for (l, &s) in self.config.strides.iter().enumerate() {
            let (cols, rows) = (w / s, h / s);
            let n = cols * rows;
            let [cls, obj, bbox, kps] = [0, 1, 2, 3].map(|k| &outputs[k * levels + l]);
            let fits = |o: &Output, last: usize| {
                o.shape.len() == 3 && o.shape[1] == n && o.shape[2] == last
            };
            if !(fits(cls, 1) && fits(obj, 1) && fits(bbox, 4) && fits(kps, 10)) {
                return Err(layout_error());
            }
            for i in 0..n {
                let score = (cls.data[i].clamp(0.0, 1.0) * obj.data[i].clamp(0.0, 1.0)).sqrt();
                if score < self.config.nms.score_threshold {
                    continue;
                }
                let (col, row, s) = ((i % cols) as f32, (i / cols) as f32, s as f32);
                let b = &bbox.data[i * 4..i * 4 + 4];
                let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
                let mut d = Detection::new(
                    0,
                    score,
                    BBox::from_center(cx, cy, b[2].exp() * s, b[3].exp() * s),
                );
                d.keypoints = kps.data[i * 10..i * 10 + 10]
                    .chunks_exact(2)
                    .map(|k| [(col + k[0]) * s, (row + k[1]) * s])
                    .collect();
                candidates.push(d);
            }
        }
        Ok(nms(candidates, &self.config.nms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_face_with_landmarks_at_a_known_cell() {
        // 32x32 input: 16, 4 and 1 cells at strides 8, 16, 32.
        let counts = [16usize, 4, 1];
        let mut data: Vec<Vec<f32>> = Vec::new();
        for width in [1usize, 1, 4, 10] {
            for &n in &counts {
                data.push(vec![0.0; n * width]);
            }
        }
        // Stride 16 (level 1), cell (col 1, row 1) = index 3.
        data[1][3] = 0.9; // cls
        data[4][3] = 1.0; // obj
        data[7][12..16].copy_from_slice(&[0.5, 0.5, 0.0, 0.0]); // bbox
        data[10][30..40].copy_from_slice(&[0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0]); // kps
        let shapes: Vec<[usize; 3]> = [1usize, 1, 4, 10]
            .iter()
            .flat_map(|&width| counts.iter().map(move |&n| [1, n, width]))
            .collect();
        let outputs: Vec<Output> = data
            .iter()
            .zip(&shapes)
            .map(|(d, s)| Output {
                name: "o",
                shape: s.as_slice(),
                data: d,
            })
            .collect();
        let found = YuNet::new(YuNetConfig::default())
            .decode(&outputs, [32, 32])
            .unwrap();
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert!((d.score - 0.9f32.sqrt()).abs() < 1e-6);
        // Centre ((1 + 0.5) * 16, (1 + 0.5) * 16) = (24, 24), size 16.
        assert_eq!(
            d.bbox,
            BBox {
                x1: 16.0,
                y1: 16.0,
                x2: 32.0,
                y2: 32.0
            }
        );
        assert_eq!(
            d.keypoints,
            vec![
                [16.0, 16.0],
                [32.0, 16.0],
                [24.0, 24.0],
                [16.0, 32.0],
                [32.0, 32.0]
            ]
        );
        let err = YuNet::new(YuNetConfig::default())
            .decode(&outputs[..4], [32, 32])
            .unwrap_err()
            .to_string();
        assert!(err.contains("12 outputs"), "{err}");
    }
}
