//! Whole-frame latency: preprocessing, inference and decoding timed
//! separately over warm-up and measured runs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgewise_graph::analysis::resolve_input_shapes;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_graph::{InputShape, Model};
use edgewise_runtime::{Detector, Engine, ModelSource, load_image};
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
    /// Threads tract runs on.
    pub threads: usize,
    /// Warm-up runs made.
    pub warmup: usize,
    /// The machine.
    pub machine: Machine,
    /// Preprocessing (resize, normalize, layout), when the model has a manifest.
    pub pre: Option<Summary>,
    /// Inference in tract.
    pub infer: Summary,
    /// Decoding, NMS and mapping back to the image, when the model has a manifest.
    pub post: Option<Summary>,
    /// Detections found on the image (last run).
    pub detections: Option<usize>,
}

/// Times `source` at `shapes` (default: the manifest's size). With a
/// manifest, the whole frame is timed: preprocessing, inference, and
/// decoding with NMS; without, inference alone on a fixed input.
pub fn measure(
    source: &ModelSource,
    shapes: &[InputShape],
    image: Option<&Path>,
    budget: Budget,
) -> Result<LatencyReport> {
    if budget.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let model = Model::load(&source.onnx)?;
    let inputs = resolve_input_shapes(&model, shapes)?;
    let dims = inputs.first().context("the model has no input")?.1.clone();
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut detections = None;
    let image_label;
    let threads;
    let started = Instant::now();
    let mut keep = |run: usize, sample: [Option<Duration>; 3]| -> bool {
        if run < budget.warmup {
            return true;
        }
        for (list, t) in times.iter_mut().zip(sample) {
            list.extend(t);
        }
        started.elapsed() < Duration::from_secs_f64(budget.max_seconds)
    };
    match &source.manifest {
        Some(manifest) => {
            let frame = match image {
                Some(path) => {
                    image_label = path.display().to_string();
                    load_image(path)?
                }
                None => {
                    image_label = "synthetic".to_string();
                    let [h, w] = manifest.input.size;
                    synthetic_image(w as u32, h as u32)
                }
            };
            let hw = manifest
                .input
                .hw_of(&dims)
                .with_context(|| format!("the input shape {dims:?} is not an image batch"))?;
            let mut detector = Detector::new(model, manifest.clone(), Some(hw), budget.threads)?;
            threads = budget.threads;
            for run in 0..budget.warmup + budget.runs {
                let (found, t) = detector.detect(&frame)?;
                detections = Some(found.len());
                if !keep(run, [Some(t.pre), Some(t.infer), Some(t.post)]) {
                    break;
                }
            }
        }
        None => {
            if image.is_some() {
                bail!(
                    "--image needs a manifest to know how to preprocess; give models/<name>.toml"
                );
            }
            image_label = "none".to_string();
            let mut engine = Engine::from_model(&model, shapes, budget.threads)?;
            threads = engine.threads();
            let feed: Vec<Tensor> = inputs.iter().map(|(_, d)| ramp(d)).collect();
            for run in 0..budget.warmup + budget.runs {
                let t0 = Instant::now();
                engine.run(feed.clone())?;
                if !keep(run, [None, Some(t0.elapsed()), None]) {
                    break;
                }
            }
        }
    }
    let [pre, infer, post] = times;
    Ok(LatencyReport {
        schema: SCHEMA,
        model: source.onnx.display().to_string(),
        inputs,
        image: image_label,
        threads,
        warmup: budget.warmup,
        machine: Machine::detect(),
        pre: Summary::of(&pre),
        infer: Summary::of(&infer).expect("at least one measured run"),
        post: Summary::of(&post),
        detections,
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
