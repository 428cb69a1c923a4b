//! A whole detector: preprocessing, inference, decoding and the mapping back
//! to the original image, each phase timed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use edgewise_decode::{Decoder, Detection, Output};
use edgewise_graph::tract_onnx::prelude::{DatumType, Tensor};
use edgewise_graph::{InputShape, Model};
use edgewise_manifest::{Input, Manifest};
use image::DynamicImage;
use serde::Serialize;

use crate::engine::{Engine, EngineOptions, FloatConv, FloatPrecision, NodeTimes, QdqMode};
use crate::error::RuntimeError;
use crate::preprocess::{Letterbox, Prepared, preprocess};

/// Time spent in each phase of one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Resize, normalize, layout (Rust).
    #[serde(serialize_with = "as_ms")]
    pub pre: Duration,
    /// The model in tract.
    #[serde(serialize_with = "as_ms")]
    pub infer: Duration,
    /// Decoding, NMS and the mapping back (Rust).
    #[serde(serialize_with = "as_ms")]
    pub post: Duration,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// A model, its manifest, and engines built for the input shapes met so far.
pub struct Detector {
    /// The model engines are built from; released once the only engine a
    /// fixed input shape needs is built ([`Detector::infer`]).
    model: Option<Model>,
    manifest: Manifest,
    decoder: Box<dyn Decoder>,
    /// The shape every image is brought to, for fixed-shape models (or when
    /// the user fixed one); `None` lets each image choose (dynamic models).
    fixed: Option<[usize; 2]>,
    options: EngineOptions,
    engines: HashMap<Vec<usize>, Engine>,
}

impl Detector {
    /// A detector for `model` as `manifest` describes it. `fixed_hw` forces an
    /// input size; otherwise fixed-shape models use theirs and dynamic ones
    /// follow the manifest's resize rule per image.
    pub fn new(
        model: Model,
        manifest: Manifest,
        fixed_hw: Option<[usize; 2]>,
        threads: usize,
    ) -> Result<Detector, RuntimeError> {
        let decoder = decoder_of(&manifest)?;
        let inputs = model.graph.real_inputs();
        if inputs.len() != 1 {
            return Err(RuntimeError::Preprocess {
                what: "model".into(),
                reason: format!(
                    "detectors take one image input; this model has {}",
                    inputs.len()
                ),
            });
        }
        let own_hw = inputs[0]
            .fixed_dims()
            .and_then(|d| manifest.input.hw_of(&d));
        Ok(Detector {
            model: Some(model),
            manifest,
            decoder,
            fixed: fixed_hw.or(own_hw),
            options: EngineOptions::threads(threads),
            engines: HashMap::new(),
        })
    }

    /// Runs a QDQ (INT8) model the way `mode` says (default: float).
    ///
    /// Set options before the first frame: a fixed-shape detector releases
    /// its model once its engine is built, and cannot build another.
    pub fn with_qdq_mode(mut self, mode: QdqMode) -> Detector {
        self.options.qdq = mode;
        self.engines.clear();
        self
    }

    /// Runs the float work in `precision`, the nodes named by `keep_f32`
    /// (name fragments) in f32 whatever it is (before the first frame, as
    /// [`Detector::with_qdq_mode`] says).
    pub fn with_precision(mut self, precision: FloatPrecision, keep_f32: Vec<String>) -> Detector {
        self.options.precision = precision;
        self.options.keep_f32 = keep_f32;
        self.engines.clear();
        self
    }

    /// Runs the dense float convolutions on `float_conv`'s kernels (before
    /// the first frame, as [`Detector::with_qdq_mode`] says).
    pub fn with_float_conv(mut self, float_conv: FloatConv) -> Detector {
        self.options.float_conv = float_conv;
        self.engines.clear();
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The label of class `id`: its name from the manifest, else the number.
    pub fn label(&self, id: usize) -> String {
        label_of(&self.manifest.classes, id)
    }

    /// Detects objects in `image`; coordinates are original-image pixels.
    pub fn detect(
        &mut self,
        image: &DynamicImage,
    ) -> Result<(Vec<Detection>, Timing), RuntimeError> {
        let (detections, timing, _) = self.frame(image, false)?;
        Ok((detections, timing))
    }

    /// Like [`Detector::detect`], and also times every node of tract's plan
    /// (see [`Engine::run_profiled`]); the node ids index the plan of
    /// [`Detector::engine`] for the input shape this image was brought to.
    pub fn detect_profiled(
        &mut self,
        image: &DynamicImage,
    ) -> Result<(Vec<Detection>, Timing, NodeTimes), RuntimeError> {
        let (detections, timing, nodes) = self.frame(image, true)?;
        Ok((detections, timing, nodes.unwrap_or_default()))
    }

    /// The engine built for input `shape`, once an image of that shape was seen.
    pub fn engine(&self, shape: &[usize]) -> Option<&Engine> {
        self.engines.get(shape)
    }

    /// The engines built so far, one per input shape.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.engines.values()
    }

    /// The preprocessing of this detector, to run on another thread than
    /// its inference (a stream's pipeline).
    pub fn preparer(&self) -> Preparer {
        Preparer {
            input: self.manifest.input.clone(),
            fixed: self.fixed,
        }
    }

    /// The decoding of this detector (a decoder of its own), to run on
    /// another thread than its inference.
    pub fn finisher(&self) -> Result<Finisher, RuntimeError> {
        Ok(Finisher {
            decoder: decoder_of(&self.manifest)?,
        })
    }

    /// Runs the model on a preprocessed image. The first image of a new
    /// input shape builds an engine for it (a one-off cost, not a frame's).
    pub fn infer(&mut self, prepared: Prepared) -> Result<Inferred, RuntimeError> {
        Ok(self.infer_timed(prepared, false)?.0)
    }

    /// [`Detector::infer`], the engine's run timed from after any engine
    /// build, and its nodes when `profile`.
    fn infer_timed(
        &mut self,
        prepared: Prepared,
        profile: bool,
    ) -> Result<(Inferred, Duration, Option<NodeTimes>), RuntimeError> {
        let shape = prepared.tensor.shape().to_vec();
        let input_hw =
            self.manifest
                .input
                .hw_of(&shape)
                .ok_or_else(|| RuntimeError::Preprocess {
                    what: "input".into(),
                    reason: format!("shape {shape:?} is not an image batch"),
                })?;
        if !self.engines.contains_key(&shape) {
            let model = self
                .model
                .as_ref()
                .ok_or_else(|| RuntimeError::ModelReleased {
                    shape: shape.clone(),
                })?;
            let engine = Engine::with_options(
                model,
                &[InputShape {
                    name: None,
                    dims: shape.clone(),
                }],
                &self.options,
            )?;
            self.engines.insert(shape.clone(), engine);
            // Every image of a fixed-shape detector comes to this shape:
            // the model, which holds every weight once more, is not needed
            // again, and the frames reuse its memory (YOLOX: 20 MB).
            if self.fixed.is_some() {
                self.model = None;
            }
        }
        let t = Instant::now();
        let engine = self.engines.get_mut(&shape).expect("inserted above");
        let names = engine.output_names().to_vec();
        let (outputs, node_times) = if profile {
            let (outputs, times) = engine.run_profiled(vec![prepared.tensor])?;
            (outputs, Some(times))
        } else {
            (engine.run(vec![prepared.tensor])?, None)
        };
        let took = t.elapsed();
        Ok((
            Inferred {
                outputs,
                names,
                input_hw,
                letterbox: prepared.letterbox,
            },
            took,
            node_times,
        ))
    }

    fn frame(
        &mut self,
        image: &DynamicImage,
        profile: bool,
    ) -> Result<(Vec<Detection>, Timing, Option<NodeTimes>), RuntimeError> {
        let t0 = Instant::now();
        let prepared = preprocess(image, &self.manifest.input, self.fixed)?;
        let pre = t0.elapsed();
        let (inferred, infer, node_times) = self.infer_timed(prepared, profile)?;
        let t2 = Instant::now();
        let detections = decode(self.decoder.as_ref(), inferred)?;
        Ok((
            detections,
            Timing {
                pre,
                infer,
                post: t2.elapsed(),
            },
            node_times,
        ))
    }
}

/// A detector's preprocessing, apart from the detector.
#[derive(Clone, Debug)]
pub struct Preparer {
    input: Input,
    fixed: Option<[usize; 2]>,
}

impl Preparer {
    /// Resizes, normalizes and lays out `image` as the model takes it.
    pub fn prepare(&self, image: &DynamicImage) -> Result<Prepared, RuntimeError> {
        preprocess(image, &self.input, self.fixed)
    }
}

/// A model's outputs for one image, before decoding.
pub struct Inferred {
    outputs: Vec<Tensor>,
    names: Vec<String>,
    input_hw: [usize; 2],
    letterbox: Letterbox,
}

/// A detector's decoding, apart from the detector.
pub struct Finisher {
    decoder: Box<dyn Decoder>,
}

impl Finisher {
    /// Decodes the outputs into detections in original-image pixels.
    pub fn finish(&self, inferred: Inferred) -> Result<Vec<Detection>, RuntimeError> {
        decode(self.decoder.as_ref(), inferred)
    }
}

/// The decoder `manifest` names, with its parameters.
fn decoder_of(manifest: &Manifest) -> Result<Box<dyn Decoder>, RuntimeError> {
    Ok(edgewise_decode::from_params(
        &manifest.decoder.family,
        &manifest.decoder.params,
    )?)
}

/// The label of class `id` among `classes`: its name, else the number.
pub fn label_of(classes: &[String], id: usize) -> String {
    classes.get(id).cloned().unwrap_or_else(|| id.to_string())
}

/// Decoding, NMS and the mapping back to the original image.
fn decode(decoder: &dyn Decoder, inferred: Inferred) -> Result<Vec<Detection>, RuntimeError> {
    let outputs: Vec<Tensor> = inferred
        .outputs
        .into_iter()
        .map(|t| t.cast_to_dt(DatumType::F32).map(|c| c.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| RuntimeError::Engine {
            action: "read the outputs as f32",
            message: e.to_string(),
        })?;
    let views: Vec<Output> = outputs
        .iter()
        .zip(&inferred.names)
        .map(|(t, name)| Output {
            name,
            shape: t.shape(),
            data: edgewise_graph::tensor::values::<f32>(t).unwrap_or(&[]),
        })
        .collect();
    let mut detections = decoder.decode(&views, inferred.input_hw)?;
    let letterbox = inferred.letterbox;
    for d in &mut detections {
        d.map_points(|x, y| letterbox.to_original(x, y));
    }
    Ok(decoder.refine(detections, letterbox.original))
}
