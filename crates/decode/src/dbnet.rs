//! DBNet text detection (PP-OCR and others): a probability map `[1,1,H,W]`
//! becomes rotated text boxes.
//!
//! As in PaddleOCR's `DBPostProcess`: threshold the map, dilate by 2x2,
//! trace the regions' contours, fit each a minimum-area rectangle, score it
//! by the mean probability inside, drop weak or thin ones, grow ("unclip")
//! the rectangle by `area * unclip_ratio / perimeter` on each side, and keep
//! its four corners.

use image::{GrayImage, Luma};
use serde::{Deserialize, Serialize};

use crate::geometry::{
    RotatedRect, in_convex_polygon, min_area_rect, offset_round, order_clockwise,
};
use crate::{BBox, DecodeError, Decoder, Detection, Output, describe};

/// DBNet parameters (PaddleOCR's names and defaults).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DbNetConfig {
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability a box needs to be kept.
    pub box_thresh: f32,
    /// How much a box grows back: distance = area * ratio / perimeter.
    pub unclip_ratio: f32,
    /// Regions traced at most.
    pub max_candidates: usize,
    /// Dilate the text mask by 2x2 before tracing.
    pub use_dilation: bool,
    /// `rotated` keeps the fitted rectangle's corners as the polygon; the box
    /// is always the axis-aligned box around them.
    pub boxes: BoxKind,
}

/// Shape of the text boxes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BoxKind {
    /// Rotated rectangles (the polygon), with their axis-aligned box.
    Rotated,
    /// Axis-aligned boxes only.
    AxisAligned,
}

impl Default for DbNetConfig {
    fn default() -> Self {
        DbNetConfig {
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            max_candidates: 1000,
            use_dilation: true,
            boxes: BoxKind::Rotated,
        }
    }
}

/// The DBNet decoder.
pub struct DbNet {
    config: DbNetConfig,
}

const MIN_SIZE: f64 = 3.0;

impl DbNet {
    /// A decoder with these parameters.
    pub fn new(config: DbNetConfig) -> DbNet {
        DbNet { config }
    }

    fn mask(&self, prob: &[f32], w: usize, h: usize) -> GrayImage {
        let on = |x: usize, y: usize| prob[y * w + x] > self.config.thresh;
        GrayImage::from_fn(w as u32, h as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            // cv2.dilate with a 2x2 kernel anchored at (1,1): a pixel is set
            // when it or its left, upper or upper-left neighbour is.
            let set = on(x, y)
                || (self.config.use_dilation
                    && ((x > 0 && on(x - 1, y))
                        || (y > 0 && on(x, y - 1))
                        || (x > 0 && y > 0 && on(x - 1, y - 1))));
            Luma([if set { 255 } else { 0 }])
        })
    }
}

/// The pixels of the 8-connected line from `a` to `b` (Bresenham), ends included.
fn line_pixels(a: [i64; 2], b: [i64; 2]) -> Vec<[i64; 2]> {
    let (dx, dy) = ((b[0] - a[0]).abs(), -(b[1] - a[1]).abs());
    let (sx, sy) = ((b[0] - a[0]).signum(), (b[1] - a[1]).signum());
    let (mut p, mut err) = (a, dx + dy);
    let mut pixels = vec![p];
    while p != b {
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            p[0] += sx;
        }
        if e2 <= dx {
            err += dx;
            p[1] += sy;
        }
        pixels.push(p);
    }
    pixels
}

/// Mean of `prob` over the pixels inside the rectangle (PaddleOCR's "fast" score).
fn box_score(prob: &[f32], w: usize, h: usize, corners: &[[f64; 2]; 4]) -> f32 {
    let clamp = |v: f64, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clamp(
        corners
            .iter()
            .map(|p| p[0])
            .fold(f64::MAX, f64::min)
            .floor(),
        w,
    );
    let xmax = clamp(
        corners.iter().map(|p| p[0]).fold(f64::MIN, f64::max).ceil(),
        w,
    );
    let ymin = clamp(
        corners
            .iter()
            .map(|p| p[1])
            .fold(f64::MAX, f64::min)
            .floor(),
        h,
    );
    let ymax = clamp(
        corners.iter().map(|p| p[1]).fold(f64::MIN, f64::max).ceil(),
        h,
    );
    // Vertices truncated to whole pixels, as PaddleOCR does before filling.
    let poly: Vec<[f64; 2]> = corners
        .iter()
        .map(|p| [(p[0] - xmin as f64).trunc(), (p[1] - ymin as f64).trunc()])
        .collect();
    // OpenCV's fillPoly sets the pixels inside and those of the edges drawn
    // as 8-connected lines, which for a thin rotated box is a large share.
    let (bw, bh) = (xmax - xmin + 1, ymax - ymin + 1);
    let mut filled = vec![false; bw * bh];
    for (i, f) in filled.iter_mut().enumerate() {
        *f = in_convex_polygon([(i % bw) as f64, (i / bw) as f64], &poly);
    }
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        for [x, y] in line_pixels([a[0] as i64, a[1] as i64], [b[0] as i64, b[1] as i64]) {
            if (0..bw as i64).contains(&x) && (0..bh as i64).contains(&y) {
                filled[y as usize * bw + x as usize] = true;
            }
        }
    }
    let (mut sum, mut count) = (0f64, 0usize);
    for (i, _) in filled.iter().enumerate().filter(|(_, f)| **f) {
        sum += prob[(ymin + i / bw) * w + xmin + i % bw] as f64;
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
    }
}

impl Decoder for DbNet {
    fn decode(
        &self,
        outputs: &[Output],
        _input_hw: [usize; 2],
    ) -> Result<Vec<Detection>, DecodeError> {
        let map = match outputs {
            [o] if o.shape.len() == 4 && o.shape[0] == 1 && o.shape[1] == 1 => o,
            _ => {
                return Err(DecodeError::Layout {
                    family: "dbnet",
                    expected: "one probability map [1,1,H,W]".into(),
                    found: describe(outputs),
                });
            }
        };
        let (h, w) = (map.shape[2], map.shape[3]);
        if w == 0 || h == 0 {
            return Ok(vec![]);
        }
        let mask = self.mask(map.data, w, h);
        let contours = imageproc::contours::find_contours::<u32>(&mask);
        let mut found = Vec::new();
        for contour in contours.iter().take(self.config.max_candidates) {
            let points: Vec<[f64; 2]> = contour
                .points
                .iter()
                .map(|p| [p.x as f64, p.y as f64])
                .collect();
            let rect = min_area_rect(&points);
            if rect.short_side() < MIN_SIZE {
                continue;
            }
            let corners = order_clockwise(rect.corners());
            let score = box_score(map.data, w, h, &corners);
            if score < self.config.box_thresh {
                continue;
            }
            let perimeter = 2.0 * (rect.width + rect.height);
            let distance = rect.width * rect.height * self.config.unclip_ratio as f64 / perimeter;
            // PaddleOCR's unclip: Clipper's round offset, then the
            // minimum-area rectangle around it.
            let grown: RotatedRect = min_area_rect(&offset_round(&corners, distance));
            if grown.short_side() < MIN_SIZE + 2.0 {
                continue;
            }
            let polygon: Vec<[f32; 2]> = order_clockwise(grown.corners())
                .iter()
                .map(|p| [p[0] as f32, p[1] as f32])
                .collect();
            let mut d = Detection::new(0, score, BBox::around(&polygon));
            if self.config.boxes == BoxKind::Rotated {
                d.polygon = polygon;
            }
            found.push(d);
        }
        Ok(found)
    }

    fn refine(&self, detections: Vec<Detection>, original: (u32, u32)) -> Vec<Detection> {
        let (w, h) = (original.0 as f32, original.1 as f32);
        detections
            .into_iter()
            .filter_map(|mut d| {
                // PaddleOCR rounds to whole pixels inside the image, then drops
                // boxes with a side of 3 pixels or less.
                let mut corners: Vec<[f32; 2]> = if d.polygon.is_empty() {
                    let b = d.bbox;
                    vec![[b.x1, b.y1], [b.x2, b.y1], [b.x2, b.y2], [b.x1, b.y2]]
                } else {
                    d.polygon.clone()
                };
                for p in &mut corners {
                    p[0] = p[0].round().clamp(0.0, w - 1.0);
                    p[1] = p[1].round().clamp(0.0, h - 1.0);
                }
                let side = |a: [f32; 2], b: [f32; 2]| {
                    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() as i64
                };
                if side(corners[0], corners[1]) <= 3 || side(corners[0], corners[3]) <= 3 {
                    return None;
                }
                d.bbox = BBox::around(&corners);
                if !d.polygon.is_empty() {
                    d.polygon = corners;
                }
                Some(d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(w: usize, h: usize, rects: &[(usize, usize, usize, usize, f32)]) -> Vec<f32> {
        let mut m = vec![0.01f32; w * h];
        for &(x0, y0, x1, y1, v) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    m[y * w + x] = v;
                }
            }
        }
        m
    }

    fn run(data: &[f32], w: usize, h: usize, config: DbNetConfig) -> Vec<Detection> {
        let shape = [1, 1, h, w];
        DbNet::new(config)
            .decode(
                &[Output {
                    name: "prob",
                    shape: &shape,
                    data,
                }],
                [h, w],
            )
            .unwrap()
    }

    #[test]
    fn one_text_line_is_one_grown_box() {
        // A 40x8 region of confident text at (10, 20).
        let data = map_with(64, 48, &[(10, 20, 50, 28, 0.9)]);
        let found = run(&data, 64, 48, DbNetConfig::default());
        assert_eq!(found.len(), 1);
        let d = &found[0];
        // Mean over the dilated 41x9 rectangle: 320 pixels at 0.9, 49 at 0.01.
        assert!(
            (d.score - (320.0 * 0.9 + 49.0 * 0.01) / 369.0).abs() < 1e-4,
            "{}",
            d.score
        );
        // The dilated region spans x 10..=50, y 20..=28: a 40x8 rectangle grown by
        // 40*8*1.6/96 = 5.33 on each side, on whole pixels as Clipper does
        // (its vertices rounded: 10 - 5.33 -> 5, 50 + 5.33 -> 55).
        let b = d.bbox;
        assert_eq!((b.x1, b.x2, b.y1, b.y2), (5.0, 55.0, 15.0, 33.0), "{b:?}");
        assert_eq!(d.polygon.len(), 4);
    }

    #[test]
    fn weak_thin_and_empty_maps() {
        let weak = map_with(64, 48, &[(10, 20, 50, 28, 0.35)]);
        assert!(
            run(&weak, 64, 48, DbNetConfig::default()).is_empty(),
            "mean below box_thresh"
        );
        let thin = map_with(64, 48, &[(10, 20, 50, 21, 0.9)]);
        assert!(
            run(
                &thin,
                64,
                48,
                DbNetConfig {
                    use_dilation: false,
                    ..Default::default()
                }
            )
            .is_empty(),
            "1 px tall"
        );
        assert!(run(&vec![0.0; 64 * 48], 64, 48, DbNetConfig::default()).is_empty());
    }

    #[test]
    fn boxes_touching_the_border_are_clipped_to_the_image() {
        let data = map_with(64, 48, &[(0, 0, 30, 10, 0.95)]);
        let decoder = DbNet::new(DbNetConfig::default());
        let shape = [1, 1, 48, 64];
        let found = decoder
            .decode(
                &[Output {
                    name: "prob",
                    shape: &shape,
                    data: &data,
                }],
                [48, 64],
            )
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].bbox.x1 < 0.0, "the grown box leaves the map");
        let refined = decoder.refine(found, (64, 48));
        let b = refined[0].bbox;
        assert_eq!((b.x1, b.y1), (0.0, 0.0));
        assert!(b.x2 <= 63.0 && b.y2 <= 47.0);
    }

    #[test]
    fn a_wrong_layout_is_named() {
        let data = [0.0f32; 10];
        let shape = [1, 10];
        let err = DbNet::new(DbNetConfig::default())
            .decode(
                &[Output {
                    name: "logits",
                    shape: &shape,
                    data: &data,
                }],
                [10, 10],
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one probability map [1,1,H,W]") && err.contains("logits [1,10]"),
            "{err}"
        );
    }
}
