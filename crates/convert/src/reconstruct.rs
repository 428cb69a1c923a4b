//! `quantize --reconstruct-seconds`: learned rounding of every int8
//! convolution, with the float model as teacher, on the calibration photos.
//!
//! The float model runs once, and every planned convolution's output is
//! sampled at a few thousand pixels: what the int8 convolution should give.
//! Then the convolutions go a level of depth at a time (as bias correction
//! does): the int8 model, with the roundings learned upstream in place, runs
//! on the photos, and each convolution of the level reads its patches at
//! the same pixels from that model's input, so that its rounding also makes
//! up for the error upstream. [`edgewise_reconstruct::learn_rounding`] fits
//! it; the roundings go into the plan, which [`ptq::quantize`] writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use edgewise_graph::rng::Rng;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_graph::{InputShape, Model};
use edgewise_quant::follow;
use edgewise_quant::ptq::{self, FixedWeights, Plan};
use edgewise_reconstruct::{ConvGeometry, Layer, Map, Samples, Settings, draw_pixels};
use edgewise_runtime::{Engine, QdqMode};
use serde::Serialize;

use crate::mixed::progress;

/// Pixels sampled per convolution over all photos.
const SAMPLES: usize = 4096;
/// Every this many photos, one is held out to judge the learned rounding
/// against nearest (of a single photo, every this many pixels).
const HOLD_OUT_EVERY: usize = 4;

/// What reconstruction did to one convolution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refit {
    /// The node's label.
    pub node: String,
    /// Adam steps taken.
    pub iterations: usize,
    /// Mean squared error after the activation on held-out photos: nearest
    /// rounding, learned rounding.
    pub error: (f64, f64),
    /// Share of the weights rounded the other way.
    pub flipped: f64,
    /// Whether the learned rounding is written.
    pub kept: bool,
}

/// What reconstruction did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reconstruction {
    /// Levels of depth, one int8 run of the photos each.
    pub levels: usize,
    /// Seconds taken, runs included.
    pub seconds: f64,
    /// Every convolution refitted.
    pub convs: Vec<Refit>,
}

impl Reconstruction {
    /// Convolutions whose learned rounding is written.
    pub fn kept(&self) -> usize {
        self.convs.iter().filter(|c| c.kept).count()
    }

    /// The median of the Adam steps each convolution took.
    pub fn median_steps(&self) -> usize {
        let mut steps: Vec<usize> = self.convs.iter().map(|c| c.iterations).collect();
        steps.sort_unstable();
        steps.get(steps.len() / 2).copied().unwrap_or(0)
    }

    /// The mean over kept convolutions of learned error / nearest error.
    pub fn mean_ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .convs
            .iter()
            .filter(|c| c.kept)
            .map(|c| c.error.1 / c.error.0.max(f64::MIN_POSITIVE))
            .collect();
        ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
    }
}

/// One planned convolution, as reconstruction sees it.
struct Conv {
    label: String,
    weights: Vec<f32>,
    shape: Vec<usize>,
    bias: Option<Vec<f32>>,
    activation: Option<edgewise_reconstruct::elementwise::Scalar>,
    /// The float model's output value (before any activation).
    output: String,
    /// Sampled pixels per photo, and the float outputs there.
    pixels: Vec<Vec<(usize, usize)>>,
    targets: Samples,
    output_hw: [usize; 2],
}

impl Conv {
    /// The relative cost of one Adam step: the batch's products with every
    /// weight and the element-wise passes over the weights and outputs.
    fn step_cost(&self) -> f64 {
        let batch = Settings::default().batch as f64;
        let outputs = self.shape[0] as f64;
        self.weights.len() as f64 * (batch + 64.0) + batch * outputs * 64.0
    }
}

/// Learns the rounding of every convolution of `plan` in `model` (float,
/// prepared), given activation `ranges`, on `inputs`, in about `seconds`.
pub fn reconstruct(
    model: &Model,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    shape: &InputShape,
    inputs: &[Tensor],
    threads: usize,
    seconds: f64,
) -> Result<(HashMap<String, FixedWeights>, Reconstruction)> {
    let started = Instant::now();
    let labels = model.graph.nodes_by_label();
    let mut convs = vec![];
    let mut indices = vec![];
    for planned in &plan.convs {
        let ix = labels[&planned.node];
        let node = &model.graph.nodes[ix];
        let constant = |name: &str| -> Result<(Vec<f32>, Vec<usize>)> {
            let t = &model
                .graph
                .initializer(name)
                .with_context(|| format!("`{name}` of {} is not a constant", planned.node))?
                .tensor;
            let values = edgewise_graph::tensor::f32s(t)
                .with_context(|| format!("`{name}` of {} is not float", planned.node))?;
            Ok((values.to_vec(), t.shape().to_vec()))
        };
        let (weights, shape) = constant(&node.inputs[1])?;
        let bias = match node.inputs.get(2).filter(|b| !b.is_empty()) {
            Some(b) => Some(constant(b)?.0),
            None => None,
        };
        let activation = follow::following(model, &node.outputs[0]).map(|f| {
            Arc::new(move |x: f64| f.apply(x)) as edgewise_reconstruct::elementwise::Scalar
        });
        convs.push(Conv {
            label: planned.node.clone(),
            weights,
            shape,
            bias,
            activation,
            output: node.outputs[0].clone(),
            pixels: vec![],
            targets: Samples::default(),
            output_hw: [0, 0],
        });
        indices.push(ix);
    }

    // The float model's outputs at sampled pixels, one run per photo.
    let shapes = std::slice::from_ref(shape);
    let outputs: Vec<String> = convs.iter().map(|c| c.output.clone()).collect();
    let mut float = Engine::from_model(&model.with_outputs(&outputs), shapes, threads)?;
    let per_photo = SAMPLES.div_ceil(inputs.len().max(1));
    let mut rng = Rng::new(0x5eed);
    for input in inputs {
        let maps = float.run(vec![input.clone()])?;
        for (conv, t) in convs.iter_mut().zip(&maps) {
            let t = t.cast_to::<f32>()?;
            let values = edgewise_graph::tensor::values::<f32>(&t)
                .context("a convolution's output is not readable as f32")?;
            let map = Map::new(t.shape(), values)?;
            if conv.targets.outputs == 0 {
                conv.targets = Samples::new(0, map.channels);
                conv.output_hw = map.hw;
            }
            let pixels = draw_pixels(map.hw, per_photo, &mut rng);
            conv.targets.push_targets(&map, &pixels)?;
            conv.pixels.push(pixels);
        }
    }
    drop(float);

    // The plan the int8 runs quantize with: every convolution's weights
    // rounded to nearest, each scale searched once (unless the plan has
    // them), then each learned rounding in place as it is kept.
    let mut current = plan.clone();
    ptq::fill_nearest_weights(model, &mut current)?;
    // One int8 run of the photos per level, so that every convolution
    // reads inputs with all the rounding learned upstream in place. Levels
    // run together in 8 groups cost less but scored worse (YOLOX on the
    // calibration photos: output SNR 25.9 against 31.2 dB): a rounding
    // fitted to inputs that then change downstream of it compounds.
    let levels = crate::bias::levels(model, &indices);
    let bar = progress(convs.len() as u64, "reconstruction", "convolutions");
    let mut refits = vec![];
    let mut done = 0;
    // What the convolutions not yet refitted cost per step, together.
    let mut still: f64 = convs.iter().map(Conv::step_cost).sum();
    for level in &levels {
        let mut quantized = model.clone();
        ptq::quantize(&mut quantized, &current, ranges)?;
        let by_label = quantized.graph.nodes_by_label();
        let read: Vec<String> = level
            .iter()
            .map(|&i| quantized.graph.nodes[by_label[&convs[i].label]].inputs[0].clone())
            .collect();
        let mut engine = Engine::with_qdq_mode(
            &quantized.with_outputs(&read),
            shapes,
            threads,
            QdqMode::Integer,
        )?;
        // Per convolution: its patches and geometry (`None` inside: a
        // convolution reconstruction does not handle, left to nearest).
        let mut samples: Vec<Option<Option<(Samples, ConvGeometry)>>> = vec![None; level.len()];
        for (j, input) in inputs.iter().enumerate() {
            let maps = engine.run(vec![input.clone()])?;
            for ((&i, t), slot) in level.iter().zip(&maps).zip(&mut samples) {
                let conv = &convs[i];
                let t = t.cast_to::<f32>()?;
                let values = edgewise_graph::tensor::values::<f32>(&t)
                    .context("a convolution's input is not readable as f32")?;
                let map = Map::new(t.shape(), values)?;
                let entry = slot.get_or_insert_with(|| {
                    let node = &model.graph.nodes[indices[i]];
                    ConvGeometry::of(node, &conv.shape, map.hw, conv.output_hw).map(|g| {
                        let set = Samples::new(g.patch_len(map.channels), conv.targets.outputs);
                        (set, g)
                    })
                });
                if let Some((set, geometry)) = entry {
                    set.push_patches(geometry, &map, &conv.pixels[j])?;
                }
            }
        }
        drop(engine);
        for (&i, slot) in level.iter().zip(samples) {
            let conv = &convs[i];
            let cost = conv.step_cost();
            let share = cost / still.max(f64::MIN_POSITIVE);
            still -= cost;
            let Some(Some((mut set, geometry))) = slot else {
                done += 1;
                bar.inc(1);
                continue;
            };
            set.targets = conv.targets.targets.clone();
            // Whole photos held out: a rounding fitted to some photos must
            // do better on others, not only on other pixels of the same.
            let (fit, held) = if conv.pixels.len() >= 2 {
                let photo_of: Vec<usize> = conv
                    .pixels
                    .iter()
                    .enumerate()
                    .flat_map(|(j, p)| std::iter::repeat_n(j, p.len()))
                    .collect();
                let step = HOLD_OUT_EVERY.min(conv.pixels.len());
                set.split(|r| photo_of[r] % step == step - 1)
            } else {
                set.split_every(HOLD_OUT_EVERY)
            };
            let scales = current.weights[&conv.label].scales.clone();
            // The time left, shared in proportion to what a step costs, so
            // that large convolutions get as many steps as small ones.
            let left = (seconds - started.elapsed().as_secs_f64()).max(0.0);
            let settings = Settings {
                seconds: left * share,
                seed: done as u64,
                ..Settings::default()
            };
            let layer = Layer {
                weights: &conv.weights,
                scales: &scales,
                bias: conv.bias.as_deref(),
                groups: geometry.groups,
            };
            let learned = edgewise_reconstruct::learn_rounding(
                &layer,
                &fit,
                &held,
                conv.activation.as_ref(),
                &settings,
            )
            .with_context(|| format!("reconstructing {}", conv.label))?;
            refits.push(Refit {
                node: conv.label.clone(),
                iterations: learned.iterations,
                error: (learned.nearest_error, learned.learned_error),
                flipped: learned.flipped,
                kept: learned.kept,
            });
            if learned.kept {
                current.weights.insert(
                    conv.label.clone(),
                    FixedWeights {
                        scales,
                        values: learned.values,
                    },
                );
            }
            done += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok((
        current.weights,
        Reconstruction {
            levels: levels.len(),
            seconds: started.elapsed().as_secs_f64(),
            convs: refits,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bias::tests::{model, ranges};
    use crate::mixed::OutputSnr;

    /// Smooth inputs, as photos are: neighbouring pixels correlate, which
    /// is what rounding to nearest ignores.
    fn smooth_inputs(n: usize) -> Vec<Tensor> {
        let mut rng = Rng::new(11);
        (0..n)
            .map(|_| {
                let mut v = vec![0f32; 400];
                for c in 0..4 {
                    let (a, b, d) = (
                        rng.uniform(-1.0, 1.0),
                        rng.uniform(-2.0, 2.0),
                        rng.uniform(-2.0, 2.0),
                    );
                    for p in 0..100 {
                        let (y, x) = ((p / 10) as f32 / 10.0, (p % 10) as f32 / 10.0);
                        v[c * 100 + p] = 0.7 + a + b * y + d * x + rng.uniform(-0.05, 0.05);
                    }
                }
                Tensor::from_shape(&[1, 4, 10, 10], &v).unwrap()
            })
            .collect()
    }

    #[test]
    fn learned_rounding_brings_the_int8_model_closer_to_float() {
        let m = model();
        let plan = ptq::plan(&m, |_, _| None);
        let inputs = smooth_inputs(8);
        let ranges = ranges(&m, &plan, &inputs);
        let shape = InputShape {
            name: None,
            dims: vec![1, 4, 10, 10],
        };
        let (weights, done) = reconstruct(&m, &plan, &ranges, &shape, &inputs, 1, 8.0).unwrap();
        assert_eq!((done.convs.len(), done.levels), (4, 3));
        assert!(done.convs.iter().all(|c| c.iterations > 100), "{done:?}");
        // Every weight one of the two levels around its float value.
        for conv in &plan.convs {
            let node = &m.graph.nodes[(0..m.graph.nodes.len())
                .find(|&ix| m.graph.node_label(ix) == conv.node)
                .unwrap()];
            let w =
                edgewise_graph::tensor::f32s(&m.graph.initializer(&node.inputs[1]).unwrap().tensor)
                    .unwrap();
            let Some(fixed) = weights.get(&conv.node) else {
                continue;
            };
            let per_out = w.len() / fixed.scales.len();
            for (i, (&q, &v)) in fixed.values.iter().zip(w.iter()).enumerate() {
                let d = v / fixed.scales[i / per_out];
                assert!((q as f32 - d).abs() < 1.0 + 1e-4, "{q} for {d}");
            }
        }
        assert!(done.kept() > 0, "{done:?}");
        let against = OutputSnr::new(&m, &shape, &inputs, 1).unwrap();
        let snr = |plan: &Plan| {
            let mut q = m.clone();
            ptq::quantize(&mut q, plan, &ranges).unwrap();
            against.of(&q).unwrap()
        };
        let mut learned = plan.clone();
        learned.weights = weights;
        let (nearest, learned) = (snr(&plan), snr(&learned));
        // The ranges are a third of what calibration saw: the activations'
        // rounding dominates, and the weights' share of the error is small.
        assert!(learned > nearest + 0.1, "{nearest:.2} -> {learned:.2} dB");
    }
}
