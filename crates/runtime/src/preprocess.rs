//! Image to input tensor, as the model's manifest says: resize (stretch,
//! letterbox, or keep-ratio to a side multiple), color order, scale, mean and
//! std, and layout. The returned [`Letterbox`] maps model coordinates back to
//! the original image.

use std::path::Path;

use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_manifest::{
    ColorOrder, Input, Interpolation, Layout, LimitType, PadPosition, ResizeMode, Rounding,
};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};

use crate::error::RuntimeError;

/// How model-input pixels relate to original-image pixels:
/// `original = (model - pad) / scale` on each axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// Horizontal scale from original to model pixels.
    pub scale_x: f32,
    /// Vertical scale.
    pub scale_y: f32,
    /// Left padding in model pixels.
    pub pad_x: f32,
    /// Top padding in model pixels.
    pub pad_y: f32,
    /// Original width and height.
    pub original: (u32, u32),
}

impl Letterbox {
    /// Maps a point of the model input back to the original image.
    pub fn to_original(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x) / self.scale_x,
            (y - self.pad_y) / self.scale_y,
        )
    }
}

/// A preprocessed image.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The input tensor (`[1,3,H,W]` or `[1,H,W,3]`, f32).
    pub tensor: Tensor,
    /// The geometric mapping back to the original image.
    pub letterbox: Letterbox,
}

/// Reads and decodes an image file (PNG or JPEG; gray, alpha and 16-bit are fine).
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage, RuntimeError> {
    let path = path.as_ref();
    let err = |reason: String| RuntimeError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    reader
        .decode()
        .map_err(|e| err(format!("{e} (is the file complete and a PNG or JPEG?)")))
}

/// The size an image is resized to, and the canvas it is placed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    resized: (usize, usize),
    canvas: (usize, usize),
    pad: (usize, usize),
}

/// Rounds `v` to a multiple of `align` (half to even, as Python's `round`), at least `align`.
fn snap(v: usize, align: usize) -> usize {
    ((v as f64 / align as f64).round_ties_even() as usize).max(1) * align
}

fn plan(input: &Input, (w0, h0): (usize, usize), fixed: Option<[usize; 2]>) -> Plan {
    let [th, tw] = fixed.unwrap_or(input.size);
    let align = input.align.max(1);
    match (input.resize, fixed) {
        (ResizeMode::Stretch, _) => Plan {
            resized: (tw, th),
            canvas: (tw, th),
            pad: (0, 0),
        },
        (ResizeMode::None, None) => {
            let (nw, nh) = (w0.next_multiple_of(align), h0.next_multiple_of(align));
            Plan {
                resized: (w0, h0),
                canvas: (nw, nh),
                pad: (0, 0),
            }
        }
        (ResizeMode::Letterbox | ResizeMode::None, _) => {
            let scale = (tw as f64 / w0 as f64).min(th as f64 / h0 as f64);
            let whole = |v: f64| match input.resize_rounding {
                Rounding::Round => v.round(),
                Rounding::Floor => v.floor(),
            };
            let nw = (whole(w0 as f64 * scale) as usize).clamp(1, tw);
            let nh = (whole(h0 as f64 * scale) as usize).clamp(1, th);
            let pad = match (input.resize, input.pad_position) {
                (ResizeMode::Letterbox, PadPosition::Center) => ((tw - nw) / 2, (th - nh) / 2),
                _ => (0, 0),
            };
            Plan {
                resized: (nw, nh),
                canvas: (tw, th),
                pad,
            }
        }
        (ResizeMode::KeepRatio, Some(_)) => {
            // Fit inside the fixed shape, sides on the alignment, padded bottom-right.
            let scale = (tw as f64 / w0 as f64).min(th as f64 / h0 as f64);
            let fit = |v: usize, limit: usize| {
                let s = snap(v, align);
                if s > limit {
                    (limit / align).max(1) * align
                } else {
                    s
                }
            };
            let nw = fit((w0 as f64 * scale) as usize, tw).min(tw);
            let nh = fit((h0 as f64 * scale) as usize, th).min(th);
            Plan {
                resized: (nw, nh),
                canvas: (tw, th),
                pad: (0, 0),
            }
        }
        (ResizeMode::KeepRatio, None) => {
            // PaddleOCR's rule: scale by the limit, truncate, round each side to the alignment.
            let limit = input.limit_side.unwrap_or(tw.max(th)) as f64;
            let ratio = match input.limit_type {
                LimitType::Max if w0.max(h0) as f64 > limit => limit / w0.max(h0) as f64,
                LimitType::Min if (w0.min(h0) as f64) < limit => limit / w0.min(h0) as f64,
                _ => 1.0,
            };
            let nw = snap((w0 as f64 * ratio) as usize, align);
            let nh = snap((h0 as f64 * ratio) as usize, align);
            Plan {
                resized: (nw, nh),
                canvas: (nw, nh),
                pad: (0, 0),
            }
        }
    }
}

/// Resizes an RGB buffer as `interpolation` says, using SIMD where the CPU
/// has it.
fn resize_rgb(
    rgb: RgbImage,
    (nw, nh): (usize, usize),
    interpolation: Interpolation,
) -> Result<Vec<u8>, RuntimeError> {
    let (w, h) = rgb.dimensions();
    if (w as usize, h as usize) == (nw, nh) {
        return Ok(rgb.into_raw());
    }
    if interpolation == Interpolation::Linear {
        return Ok(crate::resize::resize_linear(
            rgb.as_raw(),
            (w as usize, h as usize),
            (nw, nh),
            3,
        ));
    }
    let err = |e: String| RuntimeError::Preprocess {
        what: "resize".into(),
        reason: e,
    };
    let src = Image::from_vec_u8(w, h, rgb.into_raw(), PixelType::U8x3)
        .map_err(|e| err(e.to_string()))?;
    let mut dst = Image::new(nw as u32, nh as u32, PixelType::U8x3);
    let algorithm = match interpolation {
        Interpolation::Linear => unreachable!("resized above"),
        Interpolation::Nearest => ResizeAlg::Nearest,
        Interpolation::Antialiased => ResizeAlg::Convolution(FilterType::Bilinear),
    };
    let options = ResizeOptions::new().resize_alg(algorithm);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| err(e.to_string()))?;
    Ok(dst.into_vec())
}

/// Turns `image` into the model's input tensor.
///
/// With `fixed` (an engine built for one shape, `[height, width]`):
/// `stretch` and `letterbox` fill it, `keep_ratio` fits inside it and pads
/// bottom and right. Without (a dynamic-shape model): `keep_ratio` follows
/// `limit_side` and `limit_type`, and the tensor takes the resulting size;
/// the other modes use the manifest's `size`.
pub fn preprocess(
    image: &DynamicImage,
    input: &Input,
    fixed: Option<[usize; 2]>,
) -> Result<Prepared, RuntimeError> {
    let (w0, h0) = (image.width() as usize, image.height() as usize);
    if w0 == 0 || h0 == 0 {
        return Err(RuntimeError::Preprocess {
            what: "input".into(),
            reason: "the image is empty".into(),
        });
    }
    let Plan {
        resized: (nw, nh),
        canvas: (cw, ch),
        pad: (px, py),
    } = plan(input, (w0, h0), fixed);
    let mut rgb = image.to_rgb8();
    if input.color == ColorOrder::Gray {
        for p in rgb.pixels_mut() {
            let [r, g, b] = p.0.map(u32::from);
            let luma = ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) as u8;
            p.0 = [luma; 3];
        }
    }
    let pixels = resize_rgb(rgb, (nw, nh), input.interpolation)?;
    let letterbox = Letterbox {
        scale_x: nw as f32 / w0 as f32,
        scale_y: nh as f32 / h0 as f32,
        pad_x: px as f32,
        pad_y: py as f32,
        original: (w0 as u32, h0 as u32),
    };

    // value = pixel * a[c] + b[c], with a = scale / std and b = -mean / std,
    // c in the model's channel order.
    let a: [f32; 3] = std::array::from_fn(|c| input.scale / input.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -input.mean[c] / input.std[c]);
    let source: [usize; 3] = match input.color {
        ColorOrder::Rgb | ColorOrder::Gray => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let pad = input.pad_value as f32;
    let plane = cw * ch;
    let mut data = vec![0f32; plane * 3];
    match input.layout {
        Layout::Nchw => {
            for c in 0..3 {
                let out = &mut data[c * plane..(c + 1) * plane];
                out.fill(pad * a[c] + b[c]);
                for y in 0..nh {
                    let row = &pixels[y * nw * 3..(y + 1) * nw * 3];
                    let dst = &mut out[(y + py) * cw + px..(y + py) * cw + px + nw];
                    for (d, px) in dst.iter_mut().zip(row.chunks_exact(3)) {
                        *d = px[source[c]] as f32 * a[c] + b[c];
                    }
                }
            }
        }
        Layout::Nhwc => {
            for (i, d) in data.iter_mut().enumerate() {
                *d = pad * a[i % 3] + b[i % 3];
            }
            for y in 0..nh {
                let row = &pixels[y * nw * 3..(y + 1) * nw * 3];
                let dst = &mut data[((y + py) * cw + px) * 3..((y + py) * cw + px + nw) * 3];
                for (d, px) in dst.chunks_exact_mut(3).zip(row.chunks_exact(3)) {
                    for c in 0..3 {
                        d[c] = px[source[c]] as f32 * a[c] + b[c];
                    }
                }
            }
        }
    }
    let shape = match input.layout {
        Layout::Nchw => [1, 3, ch, cw],
        Layout::Nhwc => [1, ch, cw, 3],
    };
    let tensor = Tensor::from_shape(&shape, &data).map_err(|e| RuntimeError::Preprocess {
        what: "input".into(),
        reason: e.to_string(),
    })?;
    Ok(Prepared { tensor, letterbox })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(resize: ResizeMode, color: ColorOrder) -> Input {
        Input {
            name: None,
            layout: Layout::Nchw,
            size: [32, 32],
            color,
            resize,
            align: 32,
            limit_side: None,
            limit_type: LimitType::Max,
            pad_value: 114,
            pad_position: PadPosition::Center,
            resize_rounding: Rounding::Round,
            interpolation: Interpolation::Linear,
            scale: 1.0 / 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
        }
    }

    fn values(t: &Tensor) -> &[f32] {
        t.as_plain_ram().unwrap().as_slice::<f32>().unwrap()
    }

    #[test]
    fn letterbox_pads_both_sides_and_maps_back() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 32, image::Rgb([255, 0, 0])));
        let p = preprocess(
            &img,
            &input(ResizeMode::Letterbox, ColorOrder::Rgb),
            Some([32, 32]),
        )
        .unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 32, 32]);
        assert_eq!(p.letterbox.pad_y, 8.0);
        assert_eq!(p.letterbox.to_original(16.0, 16.0), (32.0, 16.0));
        let v = values(&p.tensor);
        // Red channel: 1.0 inside the image, the pad value outside.
        assert!((v[16 * 32 + 16] - 1.0).abs() < 1e-6);
        assert!((v[0] - (114.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn yolox_letterbox_truncates_and_pads_bottom_right() {
        // 100x30 into 32x32: r = 0.32, int(9.6) = 9 rows (round would give 10).
        let mut spec = input(ResizeMode::Letterbox, ColorOrder::Rgb);
        spec.pad_position = PadPosition::TopLeft;
        spec.resize_rounding = Rounding::Floor;
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 30, image::Rgb([255, 0, 0])));
        let p = preprocess(&img, &spec, Some([32, 32])).unwrap();
        assert_eq!((p.letterbox.pad_x, p.letterbox.pad_y), (0.0, 0.0));
        assert_eq!(p.letterbox.scale_y, 9.0 / 30.0);
        let v = values(&p.tensor);
        let pad = (114.0 / 255.0 - 0.5) / 0.5;
        assert!((v[8 * 32] - 1.0).abs() < 1e-6, "row 8 is image");
        assert!((v[9 * 32] - pad).abs() < 1e-6, "row 9 is padding");
        spec.resize_rounding = Rounding::Round;
        let p = preprocess(&img, &spec, Some([32, 32])).unwrap();
        assert_eq!(p.letterbox.scale_y, 10.0 / 30.0);
    }

    #[test]
    fn none_keeps_the_size_and_pads_to_the_alignment() {
        let mut spec = input(ResizeMode::None, ColorOrder::Rgb);
        let img = DynamicImage::ImageRgb8(RgbImage::new(100, 30));
        let p = preprocess(&img, &spec, None).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 32, 128]);
        assert_eq!((p.letterbox.scale_x, p.letterbox.pad_x), (1.0, 0.0));
        spec.align = 1;
        let p = preprocess(&img, &spec, None).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 30, 100]);
        // A fixed shape: fitted at the top-left.
        let p = preprocess(&img, &spec, Some([32, 32])).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 32, 32]);
        assert_eq!((p.letterbox.pad_x, p.letterbox.pad_y), (0.0, 0.0));
    }

    #[test]
    fn resampling_follows_opencv_and_pillow() {
        // Columns 0 and 4 white, quartered: OpenCV's INTER_LINEAR and
        // Pillow's NEAREST sample black pixels only (0, 0); Pillow's BILINEAR
        // averages every column under its widened triangle (73, 46).
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 8, |x, _| {
            image::Rgb([if x % 4 == 0 { 255 } else { 0 }; 3])
        }));
        let mut spec = input(ResizeMode::Stretch, ColorOrder::Rgb);
        spec.scale = 1.0;
        spec.mean = [0.0; 3];
        spec.std = [1.0; 3];
        let mut first_row = |interpolation| {
            spec.interpolation = interpolation;
            values(&preprocess(&img, &spec, Some([2, 2])).unwrap().tensor)[..2].to_vec()
        };
        assert_eq!(first_row(Interpolation::Linear), [0.0, 0.0]);
        assert_eq!(first_row(Interpolation::Nearest), [0.0, 0.0]);
        let pillow = first_row(Interpolation::Antialiased);
        assert!(
            (pillow[0] - 73.0).abs() <= 1.0 && (pillow[1] - 46.0).abs() <= 1.0,
            "{pillow:?}"
        );
    }

    #[test]
    fn gray_is_pillows_luma_in_every_channel() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, image::Rgb([200, 100, 50])));
        let mut spec = input(ResizeMode::Stretch, ColorOrder::Gray);
        spec.scale = 1.0;
        spec.mean = [0.0; 3];
        spec.std = [1.0; 3];
        let p = preprocess(&img, &spec, Some([2, 2])).unwrap();
        // Pillow: Image.new("RGB", (1, 1), (200, 100, 50)).convert("L") == 124.
        assert_eq!(values(&p.tensor)[..12], [124.0; 12]);
    }

    #[test]
    fn bgr_swaps_channels() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, image::Rgb([255, 0, 0])));
        let p = preprocess(
            &img,
            &input(ResizeMode::Stretch, ColorOrder::Bgr),
            Some([32, 32]),
        )
        .unwrap();
        let v = values(&p.tensor);
        assert!((v[0] - -1.0).abs() < 1e-6, "blue plane first");
        assert!((v[2 * 32 * 32] - 1.0).abs() < 1e-6, "red plane last");
    }

    #[test]
    fn keep_ratio_snaps_sides_to_the_alignment() {
        let mut spec = input(ResizeMode::KeepRatio, ColorOrder::Rgb);
        spec.size = [640, 640];
        let img = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            100,
            50,
            image::Luma([40000u16]),
        ));
        // Dynamic, `max` limit: never scaled up, sides rounded to 32.
        let p = preprocess(&img, &spec, None).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 64, 96]);
        // Fixed: fitted to 640x320 and padded to 640x640.
        let p = preprocess(&img, &spec, Some([640, 640])).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 640, 640]);
        assert_eq!((p.letterbox.scale_x, p.letterbox.scale_y), (6.4, 6.4));
        let one_pixel = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        let p = preprocess(&one_pixel, &spec, Some([640, 640])).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 640, 640]);
    }

    #[test]
    fn paddle_min_side_rule() {
        // RapidOCR: 384x191 with limit 736 (min): ratio 736/191, sides
        // int(191 r) = 735 -> 736 and int(384 r) = 1479 -> 1472.
        let mut spec = input(ResizeMode::KeepRatio, ColorOrder::Bgr);
        spec.limit_side = Some(736);
        spec.limit_type = LimitType::Min;
        let img = DynamicImage::ImageRgb8(RgbImage::new(384, 191));
        let p = preprocess(&img, &spec, None).unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 736, 1472]);
        // Images already large enough keep their size, rounded.
        let big = DynamicImage::ImageRgb8(RgbImage::new(1000, 800));
        assert_eq!(
            preprocess(&big, &spec, None).unwrap().tensor.shape(),
            &[1, 3, 800, 992]
        );
    }
}
