//! Every real model through edge-run's pipeline against its Python reference
//! (`tests/fixtures/reference/<model>.py`: the upstream project's
//! preprocessing and decoding re-implemented with numpy, run in
//! onnxruntime). Each reference detection must be matched by one of ours of
//! the same class at IoU >= 0.9 (boxes; around the polygons of text) with a score
//! within 0.01, and we may find no extra detection above the threshold.
//! Detections within 0.01 of the threshold may be on either side.

use edgewise_decode::Detection;
use edgewise_decode::geometry::convex_iou;
use edgewise_graph::Model;
use edgewise_runtime::{Detector, load_image};
use edgewise_tests::{manifest, model_path, photo, root};
use serde_json::Value;

const MIN_IOU: f64 = 0.9;
const SCORE_TOLERANCE: f32 = 0.01;

/// The detections of one photo in a reference file.
struct Expected {
    class_id: usize,
    score: f32,
    bbox: [f64; 4],
    keypoints: Vec<[f64; 2]>,
}

fn points(v: &Value) -> Vec<[f64; 2]> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                .collect()
        })
        .unwrap_or_default()
}

fn expected(v: &Value) -> Expected {
    let b: Vec<f64> = v["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    Expected {
        class_id: v["class_id"].as_u64().unwrap() as usize,
        score: v["score"].as_f64().unwrap() as f32,
        bbox: [b[0], b[1], b[2], b[3]],
        keypoints: points(&v["keypoints"]),
    }
}

fn corners(b: [f64; 4]) -> Vec<[f64; 2]> {
    vec![[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]
}

/// IoU of the axis-aligned boxes (for text detectors, the boxes around the
/// polygons: corner order differs between implementations, the box does not).
fn iou(theirs: &Expected, ours: &Detection) -> f64 {
    let b = ours.bbox;
    convex_iou(
        &corners(theirs.bbox),
        &corners([b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64]),
    )
}

/// Checks one model's reference file; returns how many detections it matched.
fn check(model: &str) -> usize {
    let path = root().join(format!("tests/fixtures/reference/{model}.json"));
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut manifest = manifest(model);
    assert_eq!(
        reference["model_sha256"], manifest.source.sha256,
        "{model}: the reference was made on another model file"
    );
    // The reference's decoder settings (thresholds lowered to have boxes to
    // compare) override the manifest's; the rest is the manifest, as users run it.
    let settings = &reference["settings"];
    if let Some(decoder) = settings["decoder"].as_object() {
        for (key, value) in decoder {
            if key != "family" {
                let value: toml::Value = serde_json::from_value(value.clone()).unwrap();
                manifest.decoder.params.insert(key.clone(), value);
            }
        }
    }
    let params = &manifest.decoder.params;
    let threshold = ["score_threshold", "box_thresh"]
        .iter()
        .find_map(|k| params.get(*k).and_then(|v| v.as_float()))
        .unwrap_or(0.0) as f32;
    let fixed = settings["input"]["size"].as_array().map(|s| {
        [
            s[0].as_u64().unwrap() as usize,
            s[1].as_u64().unwrap() as usize,
        ]
    });
    let mut detector =
        Detector::new(Model::load(model_path(model)).unwrap(), manifest, fixed, 1).unwrap();
    let borderline = |score: f32| (score - threshold).abs() <= SCORE_TOLERANCE;
    let mut matched = 0;
    for (name, image_ref) in reference["images"].as_object().unwrap() {
        let image = load_image(photo(name)).unwrap();
        assert_eq!(image.width() as u64, image_ref["width"].as_u64().unwrap());
        let (ours, _) = detector.detect(&image).unwrap();
        let theirs: Vec<Expected> = image_ref["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(expected)
            .collect();
        let mut used = vec![false; ours.len()];
        for t in &theirs {
            let best = ours
                .iter()
                .enumerate()
                .filter(|(i, o)| !used[*i] && o.class_id == t.class_id)
                .map(|(i, o)| (i, iou(t, o)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, overlap)) if overlap >= MIN_IOU => {
                    used[i] = true;
                    matched += 1;
                    let o = &ours[i];
                    assert!(
                        (o.score - t.score).abs() <= SCORE_TOLERANCE,
                        "{model} on {name}: score {} against the reference's {} for box {:?}",
                        o.score,
                        t.score,
                        t.bbox
                    );
                    let size = (t.bbox[2] - t.bbox[0]).max(t.bbox[3] - t.bbox[1]);
                    assert_eq!(o.keypoints.len(), t.keypoints.len(), "{model} on {name}");
                    for (k, (a, b)) in o.keypoints.iter().zip(&t.keypoints).enumerate() {
                        let d = (a[0] as f64 - b[0]).hypot(a[1] as f64 - b[1]);
                        assert!(
                            d <= 1.0 + 0.03 * size,
                            "{model} on {name}: keypoint {k} at {a:?}, reference {b:?}"
                        );
                    }
                }
                _ if borderline(t.score) => {}
                _ => panic!(
                    "{model} on {name}: reference detection class {} score {} box {:?} has no match at IoU >= {MIN_IOU} (best: {best:?}); ours: {ours:?}",
                    t.class_id, t.score, t.bbox
                ),
            }
        }
        for (o, _) in ours.iter().zip(&used).filter(|(_, u)| !**u) {
            assert!(
                borderline(o.score),
                "{model} on {name}: extra detection {o:?} not in the reference"
            );
        }
    }
    matched
}

macro_rules! reference_tests {
    ($($test:ident: $model:literal,)*) => {
        $(
            #[test]
            fn $test() {
                let matched = check($model);
                assert!(matched > 0, "{}: the reference has no detections to compare", $model);
            }
        )*
    };
}

reference_tests! {
    yolox_ddddocr_matches_its_reference: "yolox_ddddocr",
    yolov8n_nudenet_matches_its_reference: "yolov8n_nudenet",
    yolov8n_doclaynet_matches_its_reference: "yolov8n_doclaynet",
    yolo26n_isbnx_matches_its_reference: "yolo26n_isbnx",
    picodet_layout_cdla_matches_its_reference: "picodet_layout_cdla",
    scrfd_matches_its_reference: "scrfd",
    retinaface_mnet025_matches_its_reference: "retinaface_mnet025",
    ppocr_v5_det_matches_its_reference: "ppocr_v5_det",
    ppocr_v6_det_tiny_matches_its_reference: "ppocr_v6_det_tiny",
}
