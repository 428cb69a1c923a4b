//! Plane geometry for text boxes: convex hull, minimum-area rectangle,
//! point-in-polygon.

/// A rotated rectangle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotatedRect {
    /// Centre.
    pub center: [f64; 2],
    /// Unit vector along the first side.
    pub axis: [f64; 2],
    /// Length along `axis`.
    pub width: f64,
    /// Length across `axis`.
    pub height: f64,
}

impl RotatedRect {
    /// The four corners (in the order of traversal around the rectangle).
    pub fn corners(&self) -> [[f64; 2]; 4] {
        let [ux, uy] = self.axis;
        let (vx, vy) = (-uy, ux);
        let (hw, hh) = (self.width / 2.0, self.height / 2.0);
        let [cx, cy] = self.center;
        [
            [cx - ux * hw - vx * hh, cy - uy * hw - vy * hh],
            [cx + ux * hw - vx * hh, cy + uy * hw - vy * hh],
            [cx + ux * hw + vx * hh, cy + uy * hw + vy * hh],
            [cx - ux * hw + vx * hh, cy - uy * hw + vy * hh],
        ]
    }

    /// The same rectangle grown by `d` on every side.
    pub fn grown(&self, d: f64) -> RotatedRect {
        RotatedRect {
            width: self.width + 2.0 * d,
            height: self.height + 2.0 * d,
            ..*self
        }
    }

    /// The shorter side.
    pub fn short_side(&self) -> f64 {
        self.width.min(self.height)
    }
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in y-up terms.
pub fn convex_hull(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut pts: Vec<[f64; 2]> = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: [f64; 2], a: [f64; 2], b: [f64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f64; 2]>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The rectangle of least area containing `points` (rotating calipers over the hull).
pub fn min_area_rect(points: &[[f64; 2]]) -> RotatedRect {
    let hull = convex_hull(points);
    match hull.len() {
        0 => {
            return RotatedRect {
                center: [0.0, 0.0],
                axis: [1.0, 0.0],
                width: 0.0,
                height: 0.0,
            };
        }
        1 => {
            return RotatedRect {
                center: hull[0],
                axis: [1.0, 0.0],
                width: 0.0,
                height: 0.0,
            };
        }
        _ => {}
    }
    let mut best: Option<(f64, RotatedRect)> = None;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
        let v = [-u[1], u[0]];
        let (mut min_u, mut max_u, mut min_v, mut max_v) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &hull {
            let pu = p[0] * u[0] + p[1] * u[1];
            let pv = p[0] * v[0] + p[1] * v[1];
            min_u = min_u.min(pu);
            max_u = max_u.max(pu);
            min_v = min_v.min(pv);
            max_v = max_v.max(pv);
        }
        let area = (max_u - min_u) * (max_v - min_v);
        if best.as_ref().is_none_or(|(b, _)| area < *b) {
            let (cu, cv) = ((min_u + max_u) / 2.0, (min_v + max_v) / 2.0);
            let center = [cu * u[0] + cv * v[0], cu * u[1] + cv * v[1]];
            best = Some((
                area,
                RotatedRect {
                    center,
                    axis: u,
                    width: max_u - min_u,
                    height: max_v - min_v,
                },
            ));
        }
    }
    best.expect("a hull of two or more points has an edge").1
}

/// Whether `p` lies inside or on the boundary of the convex polygon `poly`.
pub fn in_convex_polygon(p: [f64; 2], poly: &[[f64; 2]]) -> bool {
    let mut sign = 0.0f64;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        let cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        if cross.abs() < 1e-9 {
            continue;
        }
        if sign == 0.0 {
            sign = cross.signum();
        } else if cross.signum() != sign {
            return false;
        }
    }
    true
}

/// Orders four corners clockwise on screen (y down) from the top-left:
/// top-left, top-right, bottom-right, bottom-left.
pub fn order_clockwise(points: [[f64; 2]; 4]) -> [[f64; 2]; 4] {
    let mut by_x = points;
    by_x.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

/// Signed area of a polygon (positive when counter-clockwise in y-up terms).
fn signed_area(poly: &[[f64; 2]]) -> f64 {
    (0..poly.len())
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        / 2.0
}

/// Area of a simple polygon.
pub fn polygon_area(poly: &[[f64; 2]]) -> f64 {
    signed_area(poly).abs()
}

/// Intersection over union of two convex polygons (Sutherland-Hodgman clipping).
pub fn convex_iou(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    if a.len() < 3 || b.len() < 3 {
        return 0.0;
    }
    // Clip `a` by each edge of `b`, with both oriented the same way.
    let orient = |p: &[[f64; 2]]| -> Vec<[f64; 2]> {
        let mut v = p.to_vec();
        if signed_area(&v) < 0.0 {
            v.reverse();
        }
        v
    };
    let (a, b) = (orient(a), orient(b));
    let side = |p: [f64; 2], e0: [f64; 2], e1: [f64; 2]| {
        (e1[0] - e0[0]) * (p[1] - e0[1]) - (e1[1] - e0[1]) * (p[0] - e0[0])
    };
    let mut clipped = a.clone();
    for i in 0..b.len() {
        let (e0, e1) = (b[i], b[(i + 1) % b.len()]);
        let input = std::mem::take(&mut clipped);
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p, e0, e1), side(q, e0, e1));
            if sp >= 0.0 {
                clipped.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                clipped.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
        if clipped.is_empty() {
            return 0.0;
        }
    }
    let inter = polygon_area(&clipped);
    let union = polygon_area(&a) + polygon_area(&b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Clipper's rounding: half away from zero.
fn clipper_round(v: f64) -> i64 {
    if v < 0.0 {
        (v - 0.5) as i64
    } else {
        (v + 0.5) as i64
    }
}

/// The polygon grown by `delta` with round joins, as Clipper's
/// `ClipperOffset` (`JT_ROUND`, `ET_CLOSEDPOLYGON`, arc tolerance 0.25)
/// computes it for a convex polygon: vertices truncated to integers first
/// (as pyclipper does), output vertices rounded to integers. PaddleOCR's
/// "unclip" of text boxes; following it vertex for vertex keeps boxes within
/// a pixel of PaddleOCR's.
pub fn offset_round(polygon: &[[f64; 2]], delta: f64) -> Vec<[f64; 2]> {
    let mut src: Vec<[i64; 2]> = Vec::with_capacity(polygon.len());
    for p in polygon {
        let q = [p[0] as i64, p[1] as i64];
        if src.last() != Some(&q) {
            src.push(q);
        }
    }
    while src.len() > 1 && src.first() == src.last() {
        src.pop();
    }
    if src.len() < 3 || delta == 0.0 {
        return src.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    }
    // Clipper orients outer paths counter-clockwise in its y-up sense.
    let area: f64 = (0..src.len())
        .map(|i| {
            let (a, b) = (src[(i + src.len() - 1) % src.len()], src[i]);
            (a[0] as f64 + b[0] as f64) * (a[1] as f64 - b[1] as f64)
        })
        .sum();
    if -area * 0.5 < 0.0 {
        src.reverse();
    }
    let tolerance = if 0.25 > delta.abs() * 0.25 {
        delta.abs() * 0.25
    } else {
        0.25
    };
    let steps = (std::f64::consts::PI / (1.0 - tolerance / delta.abs()).acos())
        .min(delta.abs() * std::f64::consts::PI);
    let (mut sin, cos) = (
        (2.0 * std::f64::consts::PI / steps).sin(),
        (2.0 * std::f64::consts::PI / steps).cos(),
    );
    let steps_per_rad = steps / (2.0 * std::f64::consts::PI);
    if delta < 0.0 {
        sin = -sin;
    }
    let n = src.len();
    let normals: Vec<[f64; 2]> = (0..n)
        .map(|j| {
            let (a, b) = (src[j], src[(j + 1) % n]);
            let (dx, dy) = ((b[0] - a[0]) as f64, (b[1] - a[1]) as f64);
            if dx == 0.0 && dy == 0.0 {
                [0.0, 0.0]
            } else {
                let f = 1.0 / dx.hypot(dy);
                [dy * f, -dx * f]
            }
        })
        .collect();
    let at = |j: usize, normal: [f64; 2]| {
        [
            clipper_round(src[j][0] as f64 + normal[0] * delta) as f64,
            clipper_round(src[j][1] as f64 + normal[1] * delta) as f64,
        ]
    };
    let mut out = Vec::new();
    let mut k = n - 1;
    for j in 0..n {
        let (nk, nj) = (normals[k], normals[j]);
        let mut sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        let cos_a = nk[0] * nj[0] + nk[1] * nj[1];
        if (sin_a * delta).abs() < 1.0 {
            if cos_a > 0.0 {
                // Nearly collinear: one vertex (Clipper keeps k unchanged here).
                out.push(at(j, nk));
                continue;
            }
        } else {
            sin_a = sin_a.clamp(-1.0, 1.0);
        }
        if sin_a * delta < 0.0 {
            out.push(at(j, nk));
            out.push([src[j][0] as f64, src[j][1] as f64]);
            out.push(at(j, nj));
        } else {
            let angle = sin_a.atan2(cos_a);
            let count = clipper_round(steps_per_rad * angle.abs()).max(1);
            let [mut x, mut y] = nk;
            for _ in 0..count {
                out.push(at(j, [x, y]));
                (x, y) = (x * cos - sin * y, x * sin + y * cos);
            }
            out.push(at(j, nj));
        }
        k = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_a_rotated_square() {
        // A square of side sqrt(2) turned 45 degrees.
        let pts = [[1.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 1.0], [1.0, 1.0]];
        let r = min_area_rect(&pts);
        assert!((r.width * r.height - 2.0).abs() < 1e-9);
        assert!((r.center[0] - 1.0).abs() < 1e-9 && (r.center[1] - 1.0).abs() < 1e-9);
        let grown = r.grown(0.5);
        assert!((grown.short_side() - (2f64.sqrt() + 1.0)).abs() < 1e-9);
    }

    #[test]
    fn min_area_rect_of_an_axis_aligned_bar() {
        let pts: Vec<[f64; 2]> = (0..=10)
            .flat_map(|x| [[x as f64, 0.0], [x as f64, 3.0]])
            .collect();
        let r = min_area_rect(&pts);
        let (w, h) = (r.width.max(r.height), r.width.min(r.height));
        assert!((w - 10.0).abs() < 1e-9 && (h - 3.0).abs() < 1e-9);
        let corners = order_clockwise(r.corners());
        let rounded: Vec<[f64; 2]> = corners
            .iter()
            .map(|p| [p[0].round(), p[1].round()])
            .collect();
        assert_eq!(
            rounded,
            vec![[0.0, 0.0], [10.0, 0.0], [10.0, 3.0], [0.0, 3.0]]
        );
    }

    #[test]
    fn iou_of_overlapping_squares_and_a_diamond() {
        let a = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        let b = [[1.0, 0.0], [3.0, 0.0], [3.0, 2.0], [1.0, 2.0]];
        assert!((convex_iou(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        let reversed: Vec<[f64; 2]> = b.iter().rev().copied().collect();
        assert!(
            (convex_iou(&a, &reversed) - 1.0 / 3.0).abs() < 1e-12,
            "orientation does not matter"
        );
        let diamond = [[1.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 1.0]];
        assert!((convex_iou(&a, &diamond) - 0.5).abs() < 1e-12);
        assert_eq!(convex_iou(&a, &[[5.0, 5.0], [6.0, 5.0], [6.0, 6.0]]), 0.0);
    }

    #[test]
    fn point_in_polygon_counts_the_boundary() {
        let square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        assert!(in_convex_polygon([1.0, 1.0], &square));
        assert!(in_convex_polygon([2.0, 1.0], &square));
        assert!(!in_convex_polygon([2.5, 1.0], &square));
    }

    #[test]
    fn round_offset_of_a_square_is_its_grown_box_with_rounded_corners() {
        // A 10x10 square grown by 2: sides at -2 and 12, corners on arcs.
        let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        let grown = offset_round(&square, 2.0);
        let xs = grown.iter().map(|p| p[0]);
        let (lo, hi) = (
            xs.clone().fold(f64::MAX, f64::min),
            xs.fold(f64::MIN, f64::max),
        );
        assert_eq!((lo, hi), (-2.0, 12.0));
        assert!(grown.len() > 8, "round joins add vertices: {grown:?}");
        assert!(
            grown
                .iter()
                .all(|p| p[0].fract() == 0.0 && p[1].fract() == 0.0)
        );
        // Vertices are truncated first: 0.9 counts as 0.
        let nudged = [[0.9, 0.9], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert_eq!(offset_round(&nudged, 2.0), grown);
    }
}
