//! True boxes for the photos of an evaluation folder: `labels.json` beside
//! them (`models/fetch.py` writes one per family of the evaluation set:
//! pedestrians, text lines, faces), so that a conversion is scored against
//! what is in the photos, not only against the original model's
//! detections.
//!
//! ```json
//! {"family": "text", "decoders": ["dbnet"], "images": [
//!   {"file": "page.png", "boxes": [{"class": "text", "box": [x1, y1, x2, y2]}]}]}
//! ```
//!
//! A box counts for a model whose manifest names its class; `decoders`,
//! when given, limits the labels to detectors of those families (text
//! *lines* mean nothing to a layout model whose class `text` is a
//! paragraph). An image's `ignore` boxes (COCO's crowd regions: people
//! too occluded to count, reflections, objects a crop cut) are neither
//! found nor missed: a detection of their class mostly inside one, and
//! on no true box, is left out of the score.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgewise_decode::{BBox, Detection};
use edgewise_manifest::Manifest;
use serde::Deserialize;

/// The file an evaluation folder's labels are in.
pub const LABELS_FILE: &str = "labels.json";

/// The labels of an evaluation folder.
#[derive(Clone, Debug, Deserialize)]
pub struct Labels {
    /// What the boxes are of: `person`, `text`, `face`...
    pub family: String,
    /// Decoder families the labels fit; any when empty.
    #[serde(default)]
    pub decoders: Vec<String>,
    /// Each photo's boxes.
    pub images: Vec<LabeledImage>,
}

/// One photo's true boxes.
#[derive(Clone, Debug, Deserialize)]
pub struct LabeledImage {
    /// The photo's file name in the folder.
    pub file: String,
    /// Its objects.
    pub boxes: Vec<LabeledBox>,
    /// Regions where a detection of their class neither counts nor costs.
    #[serde(default)]
    pub ignore: Vec<LabeledBox>,
}

/// One object.
#[derive(Clone, Debug, Deserialize)]
pub struct LabeledBox {
    /// Its class name.
    pub class: String,
    /// `[x1, y1, x2, y2]`, in the photo's pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// Each photo's true boxes as detections of a model's classes.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Per photo, in the order asked for.
    pub per_photo: Vec<Vec<Detection>>,
    /// Per photo, its ignore regions, as detections of their class.
    pub ignore: Vec<Vec<Detection>>,
    /// The model's classes that have labels.
    pub classes: Vec<String>,
    /// True boxes in all.
    pub boxes: usize,
}

impl Labels {
    /// `dir`'s labels, if it has a [`LABELS_FILE`].
    pub fn read(dir: &Path) -> Result<Option<Labels>> {
        let path = dir.join(LABELS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let labels: Labels = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an evaluation set's labels (`{{\"family\", \"images\": [{{\"file\", \"boxes\": [{{\"class\", \"box\"}}]}}]}}`)",
                path.display()
            )
        })?;
        for image in &labels.images {
            for b in &image.boxes {
                let [x1, y1, x2, y2] = b.bbox;
                if !(x1 < x2 && y1 < y2) {
                    bail!(
                        "{}: a box of {} is {:?}, not [x1, y1, x2, y2] with x1 < x2 and y1 < y2",
                        path.display(),
                        image.file,
                        b.bbox
                    );
                }
            }
        }
        Ok(Some(labels))
    }

    /// The true boxes of `photos` (each named in the labels) for a model
    /// that `manifest` describes: the boxes of the classes it names, as
    /// detections of its class ids. `None` when the labels fit none of
    /// its classes or not its decoder.
    pub fn truth_for(&self, photos: &[PathBuf], manifest: &Manifest) -> Result<Option<Truth>> {
        if !self.decoders.is_empty() && !self.decoders.contains(&manifest.decoder.family) {
            return Ok(None);
        }
        let class_of = |name: &str| {
            manifest
                .classes
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
        };
        let by_file: HashMap<&str, &LabeledImage> =
            self.images.iter().map(|i| (i.file.as_str(), i)).collect();
        let mut classes = std::collections::BTreeSet::new();
        let mut per_photo = Vec::with_capacity(photos.len());
        let mut ignore = Vec::with_capacity(photos.len());
        let detections = |boxes: &[LabeledBox]| -> Vec<Detection> {
            boxes
                .iter()
                .filter_map(|b| {
                    let [x1, y1, x2, y2] = b.bbox;
                    Some(Detection::new(
                        class_of(&b.class)?,
                        1.0,
                        BBox { x1, y1, x2, y2 },
                    ))
                })
                .collect()
        };
        for photo in photos {
            let name = photo.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let image = by_file.get(name).with_context(|| {
                format!(
                    "{} has no entry in the folder's {LABELS_FILE}: label it there, or move it out of the folder",
                    photo.display()
                )
            })?;
            let boxes = detections(&image.boxes);
            classes.extend(boxes.iter().map(|d| d.class_id));
            per_photo.push(boxes);
            ignore.push(detections(&image.ignore));
        }
        if classes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Truth {
            boxes: per_photo.iter().map(Vec::len).sum(),
            classes: classes
                .into_iter()
                .map(|c| manifest.classes[c].clone())
                .collect(),
            per_photo,
            ignore,
        }))
    }
}

impl Truth {
    /// `found` on photo `photo` less what falls in its ignore regions: a
    /// detection with half its area or more inside one of its class, and
    /// overlapping no true box of its class by IoU 0.5.
    pub fn scored(&self, photo: usize, found: &[Detection]) -> Vec<Detection> {
        let inside = |d: &Detection, region: &Detection| {
            let (a, b) = (&d.bbox, &region.bbox);
            let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
            let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
            w * h >= 0.5 * a.area()
        };
        let same = |a: &Detection, b: &Detection| a.class_id == b.class_id;
        found
            .iter()
            .filter(|d| {
                let ignored = self.ignore[photo]
                    .iter()
                    .any(|r| same(d, r) && inside(d, r));
                let on_truth = self.per_photo[photo]
                    .iter()
                    .any(|t| same(d, t) && d.bbox.iou(&t.bbox) >= 0.5);
                !ignored || on_truth
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real manifest with `classes` and a `decoder` family.
    fn manifest(classes: &[&str], decoder: &str) -> Manifest {
        let mut m: Manifest =
            toml::from_str(include_str!("../../../models/yolox_ddddocr.toml")).unwrap();
        m.classes = classes.iter().map(|c| c.to_string()).collect();
        m.decoder.family = decoder.into();
        m
    }

    fn labels(json: &str) -> Result<Option<Labels>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LABELS_FILE), json).unwrap();
        Labels::read(dir.path())
    }

    const PEOPLE: &str = r#"{"family": "person", "images": [
        {"file": "a.jpg", "boxes": [{"class": "person", "box": [1, 2, 30, 40]},
                                    {"class": "bus", "box": [5, 5, 50, 50]}]},
        {"file": "b.jpg", "boxes": []}]}"#;

    #[test]
    fn boxes_of_the_models_classes_become_its_detections() {
        let l = labels(PEOPLE).unwrap().unwrap();
        let photos = [PathBuf::from("/x/b.jpg"), PathBuf::from("/x/a.jpg")];
        let t = l
            .truth_for(&photos, &manifest(&["bicycle", "Person"], "yolox"))
            .unwrap()
            .unwrap();
        assert_eq!(t.classes, ["Person"]);
        assert_eq!(t.boxes, 1);
        assert!(t.per_photo[0].is_empty());
        assert_eq!(t.per_photo[1][0].class_id, 1);
        assert_eq!(t.per_photo[1][0].bbox.x2, 30.0);
    }

    #[test]
    fn detections_in_ignore_regions_are_left_out_unless_on_a_true_box() {
        let json = r#"{"family": "person", "images": [{"file": "a.jpg",
            "boxes": [{"class": "person", "box": [0, 0, 10, 20]}],
            "ignore": [{"class": "person", "box": [0, 0, 100, 100]},
                       {"class": "car", "box": [200, 0, 300, 100]}]}]}"#;
        let l = labels(json).unwrap().unwrap();
        let t = l
            .truth_for(
                &[PathBuf::from("a.jpg")],
                &manifest(&["person", "car"], "yolox"),
            )
            .unwrap()
            .unwrap();
        let d = |class, x1, x2| {
            Detection::new(
                class,
                0.9,
                BBox {
                    x1,
                    y1: 0.0,
                    x2,
                    y2: 20.0,
                },
            )
        };
        let found = [
            d(0, 0.0, 10.0),    // on the true box: kept
            d(0, 50.0, 60.0),   // inside the crowd region: left out
            d(0, 95.0, 115.0),  // a quarter inside: kept
            d(1, 50.0, 60.0),   // a car in the people's region: kept
            d(1, 210.0, 220.0), // a car in the cars' region: left out
        ];
        let kept: Vec<f32> = t.scored(0, &found).iter().map(|d| d.bbox.x1).collect();
        assert_eq!(kept, [0.0, 95.0, 50.0]);
    }

    #[test]
    fn labels_that_fit_no_class_or_decoder_give_no_truth() {
        let l = labels(PEOPLE).unwrap().unwrap();
        let photos = [PathBuf::from("a.jpg")];
        assert!(
            l.truth_for(&photos, &manifest(&["face"], "yolox"))
                .unwrap()
                .is_none()
        );
        let lines = r#"{"family": "text", "decoders": ["dbnet"], "images": [
            {"file": "a.jpg", "boxes": [{"class": "text", "box": [0, 0, 9, 9]}]}]}"#;
        let l = labels(lines).unwrap().unwrap();
        assert!(
            l.truth_for(&photos, &manifest(&["text"], "yolov8"))
                .unwrap()
                .is_none()
        );
        assert!(
            l.truth_for(&photos, &manifest(&["text"], "dbnet"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_photo_without_labels_and_a_bad_box_are_refused_by_name() {
        let l = labels(PEOPLE).unwrap().unwrap();
        let e = l
            .truth_for(&[PathBuf::from("c.jpg")], &manifest(&["person"], "yolox"))
            .unwrap_err();
        assert!(e.to_string().contains("c.jpg has no entry"), "{e}");
        let e = labels(r#"{"family": "p", "images": [{"file": "a.jpg", "boxes": [{"class": "person", "box": [9, 0, 1, 5]}]}]}"#)
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("a.jpg is [9.0, 0.0, 1.0, 5.0]"),
            "{e:#}"
        );
        assert!(labels("{").is_err());
        assert!(Labels::read(Path::new("/nonexistent")).unwrap().is_none());
    }
}
