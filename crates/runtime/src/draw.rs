//! Drawing detections on an image: boxes or polygons, keypoints, and a label
//! with the class and score (an 8x8 bitmap font, so no font file is needed).

use edgewise_decode::Detection;
use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut,
};
use imageproc::rect::Rect;

/// A distinct colour per class.
pub fn class_color(class_id: usize) -> Rgb<u8> {
    const PALETTE: [[u8; 3]; 8] = [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ];
    Rgb(PALETTE[class_id % PALETTE.len()])
}

/// Draws `text` with its top-left corner at (x, y), on a filled background.
pub fn draw_label(image: &mut RgbImage, x: i32, y: i32, text: &str, background: Rgb<u8>) {
    use font8x8::UnicodeFonts;
    let width = 8 * text.chars().count() as u32 + 4;
    draw_filled_rect_mut(image, Rect::at(x, y).of_size(width.max(1), 12), background);
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(c).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + 2 + 8 * i as i32 + col, y + 2 + row as i32);
                    if px >= 0
                        && py >= 0
                        && (px as u32) < image.width()
                        && (py as u32) < image.height()
                    {
                        image.put_pixel(px as u32, py as u32, Rgb([255, 255, 255]));
                    }
                }
            }
        }
    }
}

/// Draws every detection; `label` names a class id.
pub fn draw_detections(
    image: &mut RgbImage,
    detections: &[Detection],
    label: impl Fn(usize) -> String,
) {
    for d in detections {
        let color = class_color(d.class_id);
        if d.polygon.len() >= 2 {
            for i in 0..d.polygon.len() {
                let (a, b) = (d.polygon[i], d.polygon[(i + 1) % d.polygon.len()]);
                draw_line_segment_mut(image, (a[0], a[1]), (b[0], b[1]), color);
            }
        } else {
            let b = d.bbox;
            let (w, h) = (
                (b.x2 - b.x1).round().max(1.0) as u32,
                (b.y2 - b.y1).round().max(1.0) as u32,
            );
            draw_hollow_rect_mut(
                image,
                Rect::at(b.x1.round() as i32, b.y1.round() as i32).of_size(w, h),
                color,
            );
        }
        for k in &d.keypoints {
            draw_filled_circle_mut(image, (k[0].round() as i32, k[1].round() as i32), 2, color);
        }
        let text = format!("{} {:.2}", label(d.class_id), d.score);
        draw_label(
            image,
            d.bbox.x1.round() as i32,
            (d.bbox.y1.round() as i32 - 12).max(0),
            &text,
            color,
        );
    }
}

/// Writes `image` to `path` (format from the extension) through a temporary
/// file and a rename, so a crash never leaves half an image.
pub fn save_atomically(
    image: &RgbImage,
    path: &std::path::Path,
) -> Result<(), crate::RuntimeError> {
    let err = |reason: String| crate::RuntimeError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let format =
        image::ImageFormat::from_path(path).map_err(|e| err(format!("{e} (use .png or .jpg)")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(e.to_string()))?;
    image
        .write_to(&mut std::io::BufWriter::new(tmp.as_file_mut()), format)
        .map_err(|e| err(e.to_string()))?;
    tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_decode::BBox;

    #[test]
    fn boxes_and_labels_change_the_pixels_they_should() {
        let mut img = RgbImage::new(64, 64);
        let d = Detection::new(
            1,
            0.9,
            BBox {
                x1: 10.0,
                y1: 20.0,
                x2: 40.0,
                y2: 50.0,
            },
        );
        draw_detections(&mut img, &[d], |_| "car".into());
        assert_eq!(
            *img.get_pixel(10, 35),
            class_color(1),
            "left edge of the box"
        );
        assert_eq!(*img.get_pixel(25, 35), Rgb([0, 0, 0]), "inside untouched");
        let label_pixels = (10..50)
            .flat_map(|x| (8..20).map(move |y| (x, y)))
            .filter(|&(x, y)| *img.get_pixel(x, y) == Rgb([255, 255, 255]))
            .count();
        assert!(label_pixels > 20, "label text drawn");
        // Off-image detections do not panic.
        let far = Detection::new(
            0,
            0.5,
            BBox {
                x1: -100.0,
                y1: -100.0,
                x2: 500.0,
                y2: 500.0,
            },
        );
        draw_detections(&mut img, &[far], |_| "x".into());
    }
}
