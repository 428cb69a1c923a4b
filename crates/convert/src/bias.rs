//! Bias correction: each convolution's bias moved by the mean error int8
//! leaves in its output, measured on the calibration photos.
//!
//! Rounding and clipping are not unbiased after a non-linearity: on YOLOX
//! the int8 model's score logits came out 0.3 lower than the float model's
//! on average, so a fifth of the detections near the threshold vanished
//! while the boxes kept agreeing. The error's mean per output channel is a
//! constant a bias absorbs. Both models run on the calibration photos (the
//! int8 one on integer kernels, as a board runs it); each convolution's own
//! output (before its output is quantized) is compared per channel, and the
//! float model's bias (of convolutions kept in float too) moves by the
//! difference before the model is quantized again.
//!
//! A correction upstream changes the error downstream: correcting every
//! convolution from one measurement over-corrects the deep ones (on YOLOX
//! the mean shift grew sevenfold). So the convolutions go a level of depth
//! at a time, each level measured with all corrections upstream in place:
//! one int8 run of the calibration photos per level.

use std::collections::HashMap;

use anyhow::{Context, Result};
use edgewise_graph::model::Initializer;
use edgewise_graph::tensor::f32s;
use edgewise_graph::tract_onnx::prelude::{Tensor, tensor1};
use edgewise_graph::{InputShape, Model, Names};
use edgewise_quant::ptq::{self, Plan};
use edgewise_runtime::{Engine, QdqMode};

use crate::mixed::{OutputSnr, progress};
use serde::Serialize;

/// What bias correction did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasCorrection {
    /// Convolutions corrected.
    pub convs: usize,
    /// Levels corrected one after the other (one int8 run each).
    pub levels: usize,
    /// The mean channel shift before and after: the mean over convolutions
    /// of `mean |int8 mean - float mean| / float std`.
    pub shift: (f64, f64),
    /// The int8 model's output SNR against float (dB, mean over outputs) on
    /// the calibration photos, before and after.
    pub snr_db: (f64, f64),
    /// Whether the correction was kept: only when it raised the SNR.
    pub applied: bool,
}

/// Corrects the biases of `model` (prepared, float) so that its int8
/// version (`plan`, `ranges`) matches the original's per-channel output
/// means on `inputs`. Returns the model to quantize and what was done.
pub fn correct(
    model: &Model,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    shape: &InputShape,
    inputs: &[Tensor],
    threads: usize,
) -> Result<(Model, BiasCorrection)> {
    let convs: Vec<usize> = (0..model.graph.nodes.len())
        .filter(|&ix| {
            let node = &model.graph.nodes[ix];
            node.op_type == "Conv"
                && node.domain.is_empty()
                && node
                    .inputs
                    .get(1)
                    .is_some_and(|w| model.graph.initializer(w).is_some())
        })
        .collect();
    // Each convolution's own output, before its output is quantized (or
    // its ReLU absorbed): what the bias moves. Probing it keeps that one
    // convolution off the integer kernels, which computes the same sums.
    let labels: Vec<String> = convs.iter().map(|&ix| model.graph.node_label(ix)).collect();
    let outputs_of = |m: &Model| -> Vec<String> {
        let by_label = m.graph.nodes_by_label();
        labels
            .iter()
            .map(|l| m.graph.nodes[by_label[l]].outputs[0].clone())
            .collect()
    };
    let probes = outputs_of(model);
    let shapes = std::slice::from_ref(shape);
    let reference = channel_stats(
        &mut Engine::from_model(&model.with_outputs(&probes), shapes, threads)?,
        inputs,
    )?;

    let shift_of = |measured: &[ChannelStats], which: &[usize]| {
        let deltas: Vec<Vec<f64>> = measured
            .iter()
            .zip(which)
            .map(|(q, &i)| {
                q.mean
                    .iter()
                    .zip(&reference[i].mean)
                    .map(|(a, b)| a - b)
                    .collect()
            })
            .collect();
        let refs: Vec<&ChannelStats> = which.iter().map(|&i| &reference[i]).collect();
        (mean_shift(&deltas, &refs), deltas)
    };
    // Measures the int8 version of `m` at the convolutions `which`.
    let measure = |m: &Model, which: &[usize]| -> Result<Vec<ChannelStats>> {
        let mut quantized = m.clone();
        ptq::quantize(&mut quantized, plan, ranges)?;
        let outputs = outputs_of(&quantized);
        let probed: Vec<String> = which.iter().map(|&i| outputs[i].clone()).collect();
        let mut engine = Engine::with_qdq_mode(
            &quantized.with_outputs(&probed),
            shapes,
            threads,
            QdqMode::Integer,
        )?;
        channel_stats(&mut engine, inputs)
    };
    let all: Vec<usize> = (0..convs.len()).collect();
    let before = shift_of(&measure(model, &all)?, &all).0;

    let levels = levels(model, &convs);
    let bar = progress(levels.len() as u64, "bias correction", "levels");
    let mut corrected = model.clone();
    for level in &levels {
        let (_, deltas) = shift_of(&measure(&corrected, level)?, level);
        for (&i, delta) in level.iter().zip(&deltas) {
            shift_bias(&mut corrected, convs[i], delta)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let after = shift_of(&measure(&corrected, &all)?, &all).0;

    // The error a bias absorbs must be a constant: where it comes from
    // clipping, it sits on the strongest responses (PP-OCRv4's text
    // strokes), and moving the whole map lifts the background instead.
    // Kept only if the outputs come closer to float on these photos.
    let against = OutputSnr::new(model, shape, inputs, threads)?;
    let snr = |m: &Model| -> Result<f64> {
        let mut quantized = m.clone();
        ptq::quantize(&mut quantized, plan, ranges)?;
        against.of(&quantized)
    };
    let snr_db = (snr(model)?, snr(&corrected)?);
    let applied = snr_db.1 > snr_db.0;
    Ok((
        if applied { corrected } else { model.clone() },
        BiasCorrection {
            convs: convs.len(),
            levels: levels.len(),
            shift: (before, after),
            snr_db,
            applied,
        },
    ))
}

/// The convolutions (indices into `convs`) grouped by depth: a level's
/// convolutions read no other convolution of theirs or of a later level, so
/// correcting a level at a time measures each with every correction
/// upstream in place.
pub(crate) fn levels(model: &Model, convs: &[usize]) -> Vec<Vec<usize>> {
    let position: HashMap<usize, usize> =
        convs.iter().enumerate().map(|(i, &ix)| (ix, i)).collect();
    let mut depth_of_value: HashMap<&str, usize> = HashMap::new();
    let mut levels: Vec<Vec<usize>> = vec![];
    let order = edgewise_graph::Topology::new(&model.graph)
        .map(|t| t.order().to_vec())
        .unwrap_or_else(|_| (0..model.graph.nodes.len()).collect());
    for ix in order {
        let node = &model.graph.nodes[ix];
        let depth = node
            .inputs
            .iter()
            .filter_map(|i| depth_of_value.get(i.as_str()))
            .max()
            .copied()
            .unwrap_or(0);
        let out = match position.get(&ix) {
            Some(&i) => {
                if levels.len() <= depth {
                    levels.resize(depth + 1, vec![]);
                }
                levels[depth].push(i);
                depth + 1
            }
            None => depth,
        };
        for o in &node.outputs {
            depth_of_value.insert(o.as_str(), out);
        }
    }
    levels.retain(|l| !l.is_empty());
    levels
}

/// Per-channel mean and standard deviation of every output, over all inputs.
#[derive(Clone, Debug, Default)]
struct ChannelStats {
    mean: Vec<f64>,
    std: Vec<f64>,
}

fn channel_stats(engine: &mut Engine, inputs: &[Tensor]) -> Result<Vec<ChannelStats>> {
    let mut sums: Vec<(Vec<f64>, Vec<f64>, u64)> = vec![];
    for input in inputs {
        let outputs = engine.run(vec![input.clone()])?;
        if sums.is_empty() {
            sums = vec![(vec![], vec![], 0); outputs.len()];
        }
        for (t, (sum, squares, n)) in outputs.iter().zip(&mut sums) {
            let shape = t.shape().to_vec();
            let t = t.cast_to::<f32>()?;
            let values = edgewise_graph::tensor::values::<f32>(&t)
                .context("a convolution's output is not readable as f32")?;
            // [N, C, ...]: the channel axis is 1.
            let channels = shape.get(1).copied().unwrap_or(1).max(1);
            let inner: usize = shape.iter().skip(2).product::<usize>().max(1);
            if sum.is_empty() {
                *sum = vec![0.0; channels];
                *squares = vec![0.0; channels];
            }
            for (i, chunk) in values.chunks(inner).enumerate() {
                let c = i % channels;
                for &v in chunk {
                    sum[c] += v as f64;
                    squares[c] += (v as f64).powi(2);
                }
            }
            *n += (values.len() / channels) as u64;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(sum, squares, n)| {
            let n = n.max(1) as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let std = squares
                .iter()
                .zip(&mean)
                .map(|(q, m)| (q / n - m * m).max(0.0).sqrt())
                .collect();
            ChannelStats { mean, std }
        })
        .collect())
}

/// The mean over outputs of the channels' mean |shift| in units of their
/// spread in the float model.
fn mean_shift(deltas: &[Vec<f64>], reference: &[&ChannelStats]) -> f64 {
    let per_output: Vec<f64> = deltas
        .iter()
        .zip(reference)
        .map(|(d, r)| {
            let spread = r.std.iter().sum::<f64>() / r.std.len().max(1) as f64;
            d.iter().map(|x| x.abs()).sum::<f64>() / d.len().max(1) as f64 / spread.max(1e-12)
        })
        .collect();
    per_output.iter().sum::<f64>() / per_output.len().max(1) as f64
}

/// Subtracts `delta` from the bias of convolution `ix` (adding a bias when
/// it has none).
fn shift_bias(model: &mut Model, ix: usize, delta: &[f64]) -> Result<()> {
    let node = &model.graph.nodes[ix];
    let label = model.graph.node_label(ix);
    let bias_name = node.inputs.get(2).filter(|b| !b.is_empty()).cloned();
    let current: Vec<f32> = match &bias_name {
        Some(b) => model
            .graph
            .initializer(b)
            .and_then(|i| f32s(&i.tensor))
            .with_context(|| format!("the bias of {label} is not a float constant"))?
            .to_vec(),
        None => vec![0.0; delta.len()],
    };
    if current.len() != delta.len() {
        // An output that is not the conv's own channels (a reshape between).
        return Ok(());
    }
    let updated: Vec<f32> = current
        .iter()
        .zip(delta)
        .map(|(b, d)| (*b as f64 - d) as f32)
        .collect();
    let tensor = tensor1(&updated);
    // A bias read by this node alone changes in place; one shared with
    // another node is copied, not changed under it; a missing one is added.
    let own = bias_name.as_ref().filter(|name| {
        model
            .graph
            .nodes
            .iter()
            .filter(|n| n.inputs.contains(name))
            .count()
            == 1
    });
    if let Some(name) = own {
        let init = model
            .graph
            .initializers
            .iter_mut()
            .find(|i| &i.name == name)
            .expect("read above");
        init.tensor = tensor;
        return Ok(());
    }
    let fresh = Names::of(&model.graph).fresh(&match &bias_name {
        Some(name) => format!("{name}_corrected"),
        None => format!("{label}_bias"),
    });
    model.graph.initializers.push(Initializer {
        name: fresh.clone(),
        tensor,
    });
    let inputs = &mut model.graph.nodes[ix].inputs;
    inputs.resize(3, String::new());
    inputs[2] = fresh;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_quant::calib::{Extremes, Histogram, Method};

    /// `x -> conv -> SiLU -> conv -> SiLU -> conv`, with a side branch
    /// from the first SiLU into the last convolution's input.
    pub(crate) fn model() -> Model {
        let mut b = ModelBuilder::new(13);
        let x = b.input("x", &[1, 4, 10, 10]);
        let a = b.conv(&x, 4, 8, 3, 1, 1);
        let a = b.silu(&a);
        let c = b.conv(&a, 8, 8, 3, 1, 1);
        let c = b.silu(&c);
        let side = b.conv(&a, 8, 8, 1, 1, 1);
        let sum = b.op("Add", &[&c, &side], vec![]);
        let y = b.conv(&sum, 8, 4, 1, 1, 1);
        b.output(&y);
        b.finish()
    }

    fn inputs(n: usize) -> Vec<Tensor> {
        let mut b = ModelBuilder::new(13);
        (0..n)
            .map(|_| {
                // Inputs away from zero's mean: rounding is then biased.
                let v: Vec<f32> = b.random(400, 1.5).iter().map(|v| v + 0.7).collect();
                Tensor::from_shape(&[1, 4, 10, 10], &v).unwrap()
            })
            .collect()
    }

    pub(crate) fn ranges(
        model: &Model,
        plan: &Plan,
        inputs: &[Tensor],
    ) -> HashMap<String, (f32, f32)> {
        let observed = plan.observed_values();
        let shape = InputShape {
            name: None,
            dims: vec![1, 4, 10, 10],
        };
        let mut engine = Engine::from_model(&model.with_outputs(&observed), &[shape], 1).unwrap();
        let outputs: Vec<_> = inputs
            .iter()
            .map(|i| engine.run(vec![i.clone()]).unwrap())
            .collect();
        observed
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let values: Vec<f32> = outputs
                    .iter()
                    .flat_map(|o| {
                        edgewise_graph::tensor::values::<f32>(&o[k])
                            .unwrap()
                            .to_vec()
                    })
                    .collect();
                let mut e = Extremes::default();
                e.observe(&values);
                let mut h = Histogram::new(e);
                h.add(&values);
                // Narrow ranges: coarse steps, so a visible bias.
                let (lo, hi) = h.range(Method::MinMax);
                (name.clone(), (lo / 3.0, hi / 3.0))
            })
            .collect()
    }

    #[test]
    fn levels_put_each_convolution_after_those_it_reads() {
        let m = model();
        let convs: Vec<usize> = (0..m.graph.nodes.len())
            .filter(|&ix| m.graph.nodes[ix].op_type == "Conv")
            .collect();
        // conv 0 first; the two reading its SiLU next; the last one last.
        assert_eq!(levels(&m, &convs), vec![vec![0], vec![1, 2], vec![3]]);
    }

    #[test]
    fn correction_cancels_most_of_the_mean_error() {
        let m = model();
        let plan = ptq::plan(&m, |_, _| None);
        assert_eq!(plan.convs.len(), 4);
        let inputs = inputs(6);
        let ranges = ranges(&m, &plan, &inputs);
        let shape = InputShape {
            name: None,
            dims: vec![1, 4, 10, 10],
        };
        let (corrected, done) = correct(&m, &plan, &ranges, &shape, &inputs, 1).unwrap();
        assert_eq!((done.convs, done.levels), (4, 3));
        let (before, after) = done.shift;
        assert!(before > 0.01, "{before}");
        assert!(after < 0.3 * before, "{before} -> {after}");
        assert!(done.applied && done.snr_db.1 > done.snr_db.0, "{done:?}");
        // Only biases changed, and the last convolution's (which had one) did.
        assert_eq!(corrected.graph.nodes.len(), m.graph.nodes.len());
        let bias = |model: &Model| {
            let b = &model.graph.nodes.last().unwrap().inputs[2];
            f32s(&model.graph.initializer(b).unwrap().tensor)
                .unwrap()
                .to_vec()
        };
        assert_ne!(bias(&corrected), bias(&m));
    }
}
