//! Mean average precision computed the way pycocotools' `COCOeval` computes
//! it for boxes (area range "all", at most 100 detections per image, no crowd
//! annotations), so that numbers compare with published ones.
//! `tests/fixtures/coco_map.py` made the expected values of the test fixture
//! with pycocotools itself.

use edgewise_decode::Detection;
use serde::Serialize;

/// COCO's IoU thresholds: 0.50, 0.55, ..., 0.95.
pub const COCO_IOUS: [f32; 10] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Detections kept per image, highest scores first (COCO's `maxDets`).
pub const MAX_DETECTIONS: usize = 100;

/// One image: its true objects and what a model found.
#[derive(Clone, Debug, Default)]
pub struct Image {
    /// Ground truth (or the reference model's detections; scores ignored).
    pub truth: Vec<Detection>,
    /// Detections to score.
    pub found: Vec<Detection>,
}

/// mAP at IoU 0.5 and averaged over 0.5:0.95.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeanAp {
    /// mAP@0.5.
    pub map50: f64,
    /// mAP@0.5:0.95.
    pub map50_95: f64,
}

/// mAP over `images`, or `None` when no image has a true object.
pub fn mean_ap(images: &[Image]) -> Option<MeanAp> {
    let aps: Vec<Option<f64>> = COCO_IOUS.iter().map(|&t| map_at(images, t)).collect();
    let map50 = aps[0]?;
    let all: Vec<f64> = aps.into_iter().flatten().collect();
    Some(MeanAp {
        map50,
        map50_95: all.iter().sum::<f64>() / all.len() as f64,
    })
}

/// mAP at one IoU threshold: the mean AP of the classes with true objects.
pub fn map_at(images: &[Image], iou: f32) -> Option<f64> {
    let classes: std::collections::BTreeSet<usize> = images
        .iter()
        .flat_map(|i| i.truth.iter().chain(&i.found).map(|d| d.class_id))
        .collect();
    let aps: Vec<f64> = classes
        .into_iter()
        .filter_map(|c| average_precision(images, c, iou))
        .collect();
    (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64)
}

/// COCO's AP of `class` at `iou`: detections of all images ranked by score,
/// each matched (in its image, highest score first) to the unmatched true
/// object of highest IoU at least `iou`; precision made non-increasing, read
/// at 101 recall points. `None` when the class has no true object.
fn average_precision(images: &[Image], class: usize, iou: f32) -> Option<f64> {
    let mut ranked: Vec<(f32, bool)> = vec![];
    let mut positives = 0usize;
    for image in images {
        let truth: Vec<&Detection> = image.truth.iter().filter(|d| d.class_id == class).collect();
        positives += truth.len();
        let mut found: Vec<&Detection> =
            image.found.iter().filter(|d| d.class_id == class).collect();
        // Stable, as COCO's mergesort: equal scores keep their order.
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(MAX_DETECTIONS);
        let mut taken = vec![false; truth.len()];
        for d in found {
            // COCO starts from min(t, 1 - 1e-10) and keeps the last best.
            let mut best = (iou.min(1.0 - 1e-10) as f64, None);
            for (g, t) in truth.iter().enumerate() {
                if taken[g] {
                    continue;
                }
                let v = d.bbox.iou(&t.bbox) as f64;
                if v >= best.0 {
                    best = (v, Some(g));
                }
            }
            if let (_, Some(g)) = best {
                taken[g] = true;
            }
            ranked.push((d.score, best.1.is_some()));
        }
    }
    if positives == 0 {
        return None;
    }
    // COCO concatenates the images' detections and sorts them stably by score.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut precision = Vec::with_capacity(ranked.len());
    let mut recall = Vec::with_capacity(ranked.len());
    let (mut tp, mut fp) = (0f64, 0f64);
    for (_, hit) in &ranked {
        if *hit {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        recall.push(tp / positives as f64);
        precision.push(tp / (tp + fp + f64::EPSILON));
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let points = 101;
    let sum: f64 = (0..points)
        .map(|k| {
            let r = k as f64 / 100.0;
            // np.searchsorted(recall, r, side="left").
            let i = recall.partition_point(|&x| x < r);
            precision.get(i).copied().unwrap_or(0.0)
        })
        .sum();
    Some(sum / points as f64)
}

#[cfg(test)]
mod tests {
    use edgewise_decode::BBox;

    use super::*;

    fn det(class: usize, score: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
        Detection::new(
            class,
            score,
            BBox {
                x1: x,
                y1: y,
                x2: x + w,
                y2: y + h,
            },
        )
    }

    #[test]
    fn a_perfect_model_scores_one_and_a_blind_one_zero() {
        let truth = vec![
            det(0, 1.0, 0.0, 0.0, 10.0, 10.0),
            det(1, 1.0, 20.0, 0.0, 5.0, 5.0),
        ];
        let perfect = [Image {
            truth: truth.clone(),
            found: truth.clone(),
        }];
        let m = mean_ap(&perfect).unwrap();
        assert!((m.map50 - 1.0).abs() < 1e-12 && (m.map50_95 - 1.0).abs() < 1e-12);
        let blind = [Image {
            truth,
            found: vec![],
        }];
        assert_eq!(mean_ap(&blind).unwrap().map50, 0.0);
        assert_eq!(mean_ap(&[Image::default()]), None);
    }

    /// Ground truth, detections and pycocotools' results, from
    /// `tests/fixtures/coco_map.py`.
    #[test]
    fn matches_pycocotools_on_the_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/coco_map.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let boxes = |list: &serde_json::Value| -> Vec<(usize, Detection)> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let b: Vec<f32> = a["bbox"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                        .collect();
                    let score = a.get("score").map_or(1.0, |s| s.as_f64().unwrap() as f32);
                    (
                        a["image_id"].as_u64().unwrap() as usize,
                        det(
                            a["category_id"].as_u64().unwrap() as usize,
                            score,
                            b[0],
                            b[1],
                            b[2],
                            b[3],
                        ),
                    )
                })
                .collect()
        };
        let images_count = fixture["images"].as_u64().unwrap() as usize;
        let mut images = vec![Image::default(); images_count];
        for (i, d) in boxes(&fixture["truth"]) {
            images[i].truth.push(d);
        }
        for (i, d) in boxes(&fixture["detections"]) {
            images[i].found.push(d);
        }
        let m = mean_ap(&images).unwrap();
        let expected = &fixture["expected"];
        let (e50, e5095) = (
            expected["map50"].as_f64().unwrap(),
            expected["map50_95"].as_f64().unwrap(),
        );
        assert!(
            (m.map50 - e50).abs() < 1e-6,
            "mAP@0.5 {} vs pycocotools {e50}",
            m.map50
        );
        assert!(
            (m.map50_95 - e5095).abs() < 1e-6,
            "mAP@0.5:0.95 {} vs pycocotools {e5095}",
            m.map50_95
        );
    }
}
