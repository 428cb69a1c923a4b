//! Whole-model latency: preprocessing and inference timed separately over
//! warm-up and measured runs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgewise_graph::InputShape;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_runtime::{Engine, ModelSource, load_image, preprocess};
use image::DynamicImage;
use serde::Serialize;

use crate::machine::Machine;
use crate::stats::Summary;

/// Version of the JSON report; bumped on incompatible changes.
pub const SCHEMA: &str = "edgewise.latency/1";

/// How many runs to make.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Runs before measuring (caches, allocations, CPU frequency ramp-up).
    pub warmup: usize,
    /// Measured runs, at most.
    pub runs: usize,
    /// Stop measuring after this long (at least one run is always made).
    pub max_seconds: f64,
    /// Threads tract runs on.
    pub threads: usize,
}

/// A latency report.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    /// Schema identifier.
    pub schema: &'static str,
    /// The model file.
    pub model: String,
    /// Input names and shapes.
    pub inputs: Vec<(String, Vec<usize>)>,
    /// The image preprocessed each run, or `synthetic` / `none`.
    pub image: String,
    /// Intra-op threads (tract runs single-threaded here).
    pub threads: usize,
    /// Warm-up runs made.
    pub warmup: usize,
    /// The machine.
    pub machine: Machine,
    /// Preprocessing (resize, normalize, layout), when the model has a manifest.
    pub pre: Option<Summary>,
    /// Inference in tract.
    pub infer: Summary,
}

/// Times `source` at `shapes` (default: the manifest's size).
pub fn measure(
    source: &ModelSource,
    shapes: &[InputShape],
    image: Option<&Path>,
    budget: Budget,
) -> Result<LatencyReport> {
    if budget.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut engine = Engine::load(&source.onnx, shapes, budget.threads)?;
    let inputs = engine.input_shapes().to_vec();
    let (image_label, frame) = match (&source.manifest, image) {
        (Some(_), Some(path)) => (path.display().to_string(), Some(load_image(path)?)),
        (Some(m), None) => {
            let [h, w] = m.input.size;
            (
                "synthetic".to_string(),
                Some(synthetic_image(w as u32, h as u32)),
            )
        }
        (None, Some(_)) => {
            bail!("--image needs a manifest to know how to preprocess; give models/<name>.toml")
        }
        (None, None) => ("none".to_string(), None),
    };
    let fixed = inputs.first().context("the model has no input")?.1.clone();
    let prepare = |frame: &DynamicImage| -> Result<Tensor> {
        let m = source
            .manifest
            .as_ref()
            .expect("a frame implies a manifest");
        let size = match m.input.layout {
            edgewise_manifest::Layout::Nchw => [fixed[2], fixed[3]],
            edgewise_manifest::Layout::Nhwc => [fixed[1], fixed[2]],
        };
        Ok(preprocess(frame, &m.input, Some(size))?.tensor)
    };
    let constant_inputs: Vec<Tensor> = inputs.iter().map(|(_, dims)| ramp(dims)).collect();

    let mut pre_times = Vec::new();
    let mut infer_times = Vec::new();
    let started = Instant::now();
    for run in 0..budget.warmup + budget.runs {
        let t0 = Instant::now();
        let feed = match &frame {
            Some(f) => {
                let mut v = vec![prepare(f)?];
                v.extend(constant_inputs.iter().skip(1).cloned());
                v
            }
            None => constant_inputs.clone(),
        };
        let t1 = Instant::now();
        engine.run(feed)?;
        let t2 = Instant::now();
        if run >= budget.warmup {
            if frame.is_some() {
                pre_times.push(t1 - t0);
            }
            infer_times.push(t2 - t1);
            if started.elapsed() > Duration::from_secs_f64(budget.max_seconds) {
                break;
            }
        }
    }
    Ok(LatencyReport {
        schema: SCHEMA,
        model: source.onnx.display().to_string(),
        inputs,
        image: image_label,
        threads: engine.threads(),
        warmup: budget.warmup,
        machine: Machine::detect(),
        pre: Summary::of(&pre_times),
        infer: Summary::of(&infer_times).expect("at least one measured run"),
    })
}

/// A deterministic test card: gradients in each channel, so resizing does real work.
fn synthetic_image(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x + y) % 256) as u8,
        ])
    }))
}

/// A deterministic non-constant input in [-1, 1] for models without a manifest.
fn ramp(dims: &[usize]) -> Tensor {
    let len: usize = dims.iter().product();
    let data: Vec<f32> = (0..len).map(|i| ((i % 255) as f32 / 127.0) - 1.0).collect();
    Tensor::from_shape(dims, &data).expect("consistent shape")
}
