//! PP-OCRv4 det through edge-run's pipeline against RapidOCR's own
//! (`tests/fixtures/ppocr_det_reference.py`): every reference box is matched
//! by one of ours at IoU >= 0.8, and we find no extra boxes.

use edgewise_decode::geometry::convex_iou;
use edgewise_graph::Model;
use edgewise_runtime::{Detector, load_image};
use edgewise_tests::{manifest, model_path, photo, root};

fn reference() -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/ppocr_det_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn as_polygon(v: &serde_json::Value) -> Vec<[f64; 2]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

#[test]
fn text_boxes_agree_with_rapidocr() {
    let reference = reference();
    assert_eq!(
        reference["model_sha256"],
        manifest("ppocr_v4_det").source.sha256
    );
    let model = Model::load(model_path("ppocr_v4_det")).unwrap();
    let mut detector = Detector::new(model, manifest("ppocr_v4_det"), None, 1).unwrap();
    for (name, expected) in reference["images"].as_object().unwrap() {
        let image = load_image(photo(name)).unwrap();
        assert_eq!(image.width() as u64, expected["width"].as_u64().unwrap());
        let (found, _) = detector.detect(&image).unwrap();
        let ours: Vec<Vec<[f64; 2]>> = found
            .iter()
            .map(|d| {
                d.polygon
                    .iter()
                    .map(|p| [p[0] as f64, p[1] as f64])
                    .collect()
            })
            .collect();
        let theirs: Vec<Vec<[f64; 2]>> = expected["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(as_polygon)
            .collect();
        assert!(!theirs.is_empty());
        let mut used = vec![false; ours.len()];
        for r in &theirs {
            let best = ours
                .iter()
                .enumerate()
                .filter(|(i, _)| !used[*i])
                .map(|(i, o)| (i, convex_iou(r, o)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let (i, iou) =
                best.unwrap_or_else(|| panic!("{name}: reference box {r:?} has no match"));
            assert!(
                iou >= 0.8,
                "{name}: reference box {r:?} best IoU {iou:.3} with {:?}",
                ours[i]
            );
            used[i] = true;
        }
        let extra: Vec<&Vec<[f64; 2]>> = ours
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(o, _)| o)
            .collect();
        assert!(
            extra.is_empty(),
            "{name}: boxes the reference does not have: {extra:?}"
        );
    }
}
