//! Image to input tensor, as the model's manifest says: resize (stretch,
//! letterbox, or keep-ratio to a side multiple), color order, scale, mean and
//! std, and layout. The returned [`Letterbox`] maps model coordinates back to
//! the original image.

use std::path::Path;

use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_manifest::{ColorOrder, Input, Layout, ResizeMode};
use image::{DynamicImage, RgbImage, imageops::FilterType};

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
#[derive(Debug)]
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

/// Turns `image` into the model's input tensor. `size` is `[height, width]`:
/// the exact size for `stretch` and `letterbox`; the longest-side limit for
/// `keep_ratio`, whose result is also padded (bottom and right) to `size` when
/// `pad_to_size` is set, for engines built with a fixed shape.
pub fn preprocess(
    image: &DynamicImage,
    input: &Input,
    size: [usize; 2],
    pad_to_size: bool,
) -> Result<Prepared, RuntimeError> {
    let (w0, h0) = (image.width(), image.height());
    if w0 == 0 || h0 == 0 {
        return Err(RuntimeError::Preprocess {
            what: "input".into(),
            reason: "the image is empty".into(),
        });
    }
    let [th, tw] = size;
    let rgb = image.to_rgb8();
    let (canvas_w, canvas_h, new_w, new_h, pad_x, pad_y) = match input.resize {
        ResizeMode::Stretch => (tw, th, tw, th, 0, 0),
        ResizeMode::Letterbox => {
            let scale = (tw as f32 / w0 as f32).min(th as f32 / h0 as f32);
            let nw = ((w0 as f32 * scale).round() as usize).clamp(1, tw);
            let nh = ((h0 as f32 * scale).round() as usize).clamp(1, th);
            (tw, th, nw, nh, (tw - nw) / 2, (th - nh) / 2)
        }
        ResizeMode::KeepRatio => {
            let scale = (tw as f32 / w0 as f32).min(th as f32 / h0 as f32);
            let align = input.align.max(1);
            let snap = |v: f32, limit: usize| {
                (((v / align as f32).round() as usize).max(1) * align).min(limit.max(align))
            };
            let nw = snap(w0 as f32 * scale, tw);
            let nh = snap(h0 as f32 * scale, th);
            if pad_to_size {
                (tw, th, nw, nh, 0, 0)
            } else {
                (nw, nh, nw, nh, 0, 0)
            }
        }
    };
    let resized: RgbImage = if (new_w, new_h) == (w0 as usize, h0 as usize) {
        rgb
    } else {
        image::imageops::resize(&rgb, new_w as u32, new_h as u32, FilterType::Triangle)
    };
    let letterbox = Letterbox {
        scale_x: new_w as f32 / w0 as f32,
        scale_y: new_h as f32 / h0 as f32,
        pad_x: pad_x as f32,
        pad_y: pad_y as f32,
        original: (w0, h0),
    };

    // value = pixel * a[c] + b[c], with a = scale / std and b = -mean / std.
    let a: Vec<f32> = (0..3).map(|c| input.scale / input.std[c]).collect();
    let b: Vec<f32> = (0..3).map(|c| -input.mean[c] / input.std[c]).collect();
    let source_channel = |c: usize| match input.color {
        ColorOrder::Rgb => c,
        ColorOrder::Bgr => 2 - c,
    };
    let pad = input.pad_value as f32;
    let plane = canvas_w * canvas_h;
    let mut data = vec![0f32; plane * 3];
    let put = |data: &mut [f32], x: usize, y: usize, c: usize, v: f32| match input.layout {
        Layout::Nchw => data[c * plane + y * canvas_w + x] = v,
        Layout::Nhwc => data[(y * canvas_w + x) * 3 + c] = v,
    };
    for y in 0..canvas_h {
        for x in 0..canvas_w {
            let inside = x >= pad_x && x < pad_x + new_w && y >= pad_y && y < pad_y + new_h;
            for c in 0..3 {
                let raw = if inside {
                    resized.get_pixel((x - pad_x) as u32, (y - pad_y) as u32)[source_channel(c)]
                        as f32
                } else {
                    pad
                };
                put(&mut data, x, y, c, raw * a[c] + b[c]);
            }
        }
    }
    let shape = match input.layout {
        Layout::Nchw => [1, 3, canvas_h, canvas_w],
        Layout::Nhwc => [1, canvas_h, canvas_w, 3],
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
            pad_value: 114,
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
            [32, 32],
            false,
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
    fn bgr_swaps_channels() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, image::Rgb([255, 0, 0])));
        let p = preprocess(
            &img,
            &input(ResizeMode::Stretch, ColorOrder::Bgr),
            [32, 32],
            false,
        )
        .unwrap();
        let v = values(&p.tensor);
        assert!((v[0] - -1.0).abs() < 1e-6, "blue plane first");
        assert!((v[2 * 32 * 32] - 1.0).abs() < 1e-6, "red plane last");
    }

    #[test]
    fn keep_ratio_snaps_sides_to_the_alignment() {
        let img = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            100,
            50,
            image::Luma([40000u16]),
        ));
        let p = preprocess(
            &img,
            &input(ResizeMode::KeepRatio, ColorOrder::Rgb),
            [640, 640],
            false,
        )
        .unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 320, 640]);
        let one_pixel = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        let p = preprocess(
            &one_pixel,
            &input(ResizeMode::KeepRatio, ColorOrder::Rgb),
            [640, 640],
            true,
        )
        .unwrap();
        assert_eq!(p.tensor.shape(), &[1, 3, 640, 640]);
    }
}
