//! `edge-run --self-test DIR`: the detections of a deployed build on a few
//! images, checked against the ones the build machine recorded
//! (`DIR/expected.jsonl`, written by `edge-deploy bundle`). It shows that the
//! binary runs on the board's CPU and computes what it computed at home:
//! the health check of a deployment.

use std::path::Path;

use edgewise_decode::Detection;
use serde::{Deserialize, Serialize};

/// The file of recorded detections inside a self-test folder.
pub const EXPECTED: &str = "expected.jsonl";

/// One line of `edge-run`'s output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The image, as named on the command line.
    pub image: String,
    /// The class name.
    pub label: String,
    /// What was found.
    #[serde(flatten)]
    pub detection: Detection,
}

impl Recorded {
    /// The image's file name: recordings made elsewhere name it by another path.
    fn file_name(&self) -> &str {
        Path::new(&self.image)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.image)
    }

    /// Every point of the detection's geometry: box corners, then outline and landmarks.
    fn points(&self) -> Vec<[f32; 2]> {
        let b = &self.detection.bbox;
        let mut points = vec![[b.x1, b.y1], [b.x2, b.y2]];
        points.extend(&self.detection.polygon);
        points.extend(&self.detection.keypoints);
        points
    }
}

/// How far a deployed build may drift from the recording: float kernels
/// differ in the last bits between CPUs.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Largest difference of any coordinate, pixels.
    pub box_px: f32,
    /// Largest difference of a score.
    pub score: f32,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            box_px: 1.0,
            score: 1e-3,
        }
    }
}

/// How closely two runs agree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Detections compared.
    pub detections: usize,
    /// Largest coordinate difference, pixels.
    pub worst_box_px: f32,
    /// Largest score difference.
    pub worst_score: f32,
}

/// Reads `edge-run` output (JSON lines) from `path`.
pub fn read(path: &Path) -> Result<Vec<Recorded>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{} line {}: not a detection: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Checks that `got` holds the same detections as `expected`, in the same
/// order, within `tolerance`; the first difference otherwise.
pub fn compare(
    expected: &[Recorded],
    got: &[Recorded],
    tolerance: Tolerance,
) -> Result<Agreement, String> {
    if expected.is_empty() {
        return Err("the recording holds no detection: nothing to check against".into());
    }
    if expected.len() != got.len() {
        return Err(format!(
            "{} detection(s) recorded, {} found",
            expected.len(),
            got.len()
        ));
    }
    let mut agreement = Agreement {
        detections: expected.len(),
        worst_box_px: 0.0,
        worst_score: 0.0,
    };
    for (i, (want, have)) in expected.iter().zip(got).enumerate() {
        let (pw, ph) = (want.points(), have.points());
        if (want.file_name(), &want.label, want.detection.class_id)
            != (have.file_name(), &have.label, have.detection.class_id)
            || pw.len() != ph.len()
        {
            return Err(format!(
                "detection {i} differs: recorded {} `{}` with {} points, found {} `{}` with {} points",
                want.file_name(),
                want.label,
                pw.len(),
                have.file_name(),
                have.label,
                ph.len()
            ));
        }
        for (p, q) in pw.iter().zip(&ph) {
            let d = (p[0] - q[0]).abs().max((p[1] - q[1]).abs());
            agreement.worst_box_px = agreement.worst_box_px.max(d);
        }
        let ds = (want.detection.score - have.detection.score).abs();
        agreement.worst_score = agreement.worst_score.max(ds);
    }
    if agreement.worst_box_px > tolerance.box_px || agreement.worst_score > tolerance.score {
        return Err(format!(
            "detections differ beyond tolerance: box by {:.3} px (tolerance {}), score by {:.2e} (tolerance {})",
            agreement.worst_box_px, tolerance.box_px, agreement.worst_score, tolerance.score
        ));
    }
    Ok(agreement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_decode::BBox;

    fn line(image: &str, score: f32, x1: f32) -> Recorded {
        Recorded {
            image: image.into(),
            label: "text".into(),
            detection: Detection::new(
                0,
                score,
                BBox {
                    x1,
                    y1: 2.0,
                    x2: 30.0,
                    y2: 40.0,
                },
            ),
        }
    }

    #[test]
    fn runs_that_agree_within_tolerance_pass_whatever_folder_the_image_was_in() {
        let home = [line("/build/selftest/page.png", 0.9, 1.0)];
        let board = [line("/opt/edgewise/current/selftest/page.png", 0.9004, 1.5)];
        let agreement = compare(&home, &board, Tolerance::default()).unwrap();
        assert_eq!(agreement.detections, 1);
        assert!((agreement.worst_box_px - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_moved_box_a_changed_score_or_a_lost_detection_fails() {
        let home = [line("page.png", 0.9, 1.0)];
        let tol = Tolerance::default();
        let moved = compare(&home, &[line("page.png", 0.9, 3.0)], tol).unwrap_err();
        assert!(moved.contains("box by 2.000 px"), "{moved}");
        let rescored = compare(&home, &[line("page.png", 0.8, 1.0)], tol).unwrap_err();
        assert!(rescored.contains("score by"), "{rescored}");
        let lost = compare(&home, &[], tol).unwrap_err();
        assert!(lost.contains("1 detection(s) recorded, 0 found"), "{lost}");
        let other = compare(&home, &[line("coffee.png", 0.9, 1.0)], tol).unwrap_err();
        assert!(other.contains("detection 0 differs"), "{other}");
        assert!(
            compare(&[], &[], tol).is_err(),
            "an empty recording checks nothing"
        );
    }

    #[test]
    fn recordings_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXPECTED);
        let lines = [line("a.png", 0.5, 1.0), line("b.png", 0.25, 4.0)];
        let text: Vec<String> = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        assert_eq!(read(&path).unwrap(), lines);
        std::fs::write(&path, "{\"image\": 3}\n").unwrap();
        assert!(read(&path).unwrap_err().contains("line 1"));
    }
}
