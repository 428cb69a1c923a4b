//! OpenCV's bilinear resize (`cv2.resize(..., interpolation=INTER_LINEAR)`
//! on 8-bit images), reproduced bit for bit.
//!
//! Most detectors' Python pipelines resize with OpenCV, and a detector's
//! borderline scores move with every grey level: matching OpenCV exactly
//! makes edge-run's detections those of the user's Python code. OpenCV works
//! in fixed point: 11-bit weights (`INTER_RESIZE_COEF_BITS`), a horizontal
//! pass into `i32` rows, and a vertical pass with its SIMD kernel's rounding,
//! `((((S0 >> 4) b0) >> 16) + (((S1 >> 4) b1) >> 16) + 2) >> 2`. The
//! equality is tested against OpenCV's output in this module's tests.

/// Fixed-point one for the weights.
const ONE: i32 = 2048;

/// For each destination column: the first source column and the two
/// weights, as OpenCV computes them (in `f32`, rounded half to even);
/// columns outside the source are pinned to its border with weight one.
fn column_taps(src: usize, dst: usize) -> Vec<(usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if s < 0 {
                (s, f) = (0, 0.0);
            }
            if s >= src as i64 - 1 {
                (s, f) = (src as i64 - 1, 0.0);
            }
            let (w0, w1) = weights(f);
            (s as usize, w0, w1)
        })
        .collect()
}

/// The fixed-point weights of the two taps at fraction `f`.
fn weights(f: f32) -> (i32, i32) {
    (
        ((1.0 - f) * ONE as f32).round_ties_even() as i32,
        (f * ONE as f32).round_ties_even() as i32,
    )
}

/// Resizes `src` (`width x height` pixels of `channels` interleaved bytes)
/// to `dst_w x dst_h`, as OpenCV's `INTER_LINEAR` does.
pub fn resize_linear(
    src: &[u8],
    (width, height): (usize, usize),
    (dst_w, dst_h): (usize, usize),
    channels: usize,
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * channels, "source size");
    let columns = column_taps(width, dst_w);
    let rows = row_taps(height, dst_h);
    let row_len = dst_w * channels;
    // The horizontal pass of a source row, computed when a row first needs it.
    let mut horizontal: Vec<Option<Vec<i32>>> = vec![None; height];
    let pass = |y: usize| -> Vec<i32> {
        let line = &src[y * width * channels..(y + 1) * width * channels];
        let mut out = Vec::with_capacity(row_len);
        for &(x, w0, w1) in &columns {
            let next = (x + 1).min(width - 1);
            for c in 0..channels {
                let a = i32::from(line[x * channels + c]);
                let b = i32::from(line[next * channels + c]);
                out.push(a * w0 + b * w1);
            }
        }
        out
    };
    let mut dst = vec![0u8; row_len * dst_h];
    for (out, &(y0, y1, b0, b1)) in dst.chunks_exact_mut(row_len).zip(&rows) {
        for y in [y0, y1] {
            if horizontal[y].is_none() {
                horizontal[y] = Some(pass(y));
            }
        }
        let (s0, s1) = (
            horizontal[y0].as_deref().expect("computed above"),
            horizontal[y1].as_deref().expect("computed above"),
        );
        for ((d, &a), &b) in out.iter_mut().zip(s0).zip(s1) {
            let v = ((((a >> 4) * b0) >> 16) + (((b >> 4) * b1) >> 16) + 2) >> 2;
            *d = v.clamp(0, 255) as u8;
        }
    }
    dst
}

/// For each destination row: the two source rows (clamped to the image)
/// and their weights.
fn row_taps(src: usize, dst: usize) -> Vec<(usize, usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor() as i64;
            let f = f - s as f32;
            let row = |r: i64| r.clamp(0, src as i64 - 1) as usize;
            let (w0, w1) = weights(f);
            (row(s), row(s + 1), w0, w1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image `tests/fixtures/opencv_resize.py` resizes.
    fn pattern(w: usize, h: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let checker = ((x / 3 + y / 2) % 2) * 100;
                    v.push(((x * 37 + y * 91 + c * 53 + (x * y) % 17 + checker) % 256) as u8);
                }
            }
        }
        v
    }

    #[test]
    fn matches_opencv_bit_for_bit() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/opencv_resize.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 8);
        for case in cases {
            let dim = |k: &str, i: usize| case[k][i].as_u64().unwrap() as usize;
            let (src, dst) = (
                (dim("src", 0), dim("src", 1)),
                (dim("dst", 0), dim("dst", 1)),
            );
            let hex = case["pixels"].as_str().unwrap();
            let expected: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let ours = resize_linear(&pattern(src.0, src.1), src, dst, 3);
            let differing = ours.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "{src:?} -> {dst:?}: {differing} bytes differ from OpenCV"
            );
        }
    }
}
