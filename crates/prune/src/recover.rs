//! Training-free recovery of a pruned model, on calibration photos.
//!
//! Removing channels changes what every layer reading them computes. Each
//! dense convolution that lost input channels is refit so that its output
//! matches the unpruned model's on real inputs: a ridge least-squares fit of
//! its kept filters and bias to the original outputs, as in channel pruning
//! by reconstruction (He, Zhang and Sun, "Channel Pruning for Accelerating
//! Very Deep Neural Networks", ICCV 2017). The fit reads the inputs the
//! *pruned* model produces, and layers are refit in waves, upstream first,
//! so that each fit also absorbs what the layers before it could not
//! restore.
//!
//! The cheaper alternative, bias compensation, adds to each output the mean
//! contribution the removed input channels made on the calibration photos.
//! It is also the starting point the least-squares fit is pulled towards.

use std::collections::HashMap;

use edgewise_graph::conv::ConvGeometry as Geometry;
use edgewise_graph::rng::Rng;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{Facts, Initializer, Model, Topology};
use nalgebra::DMatrix;
use serde::Serialize;

use crate::calibration::{Calibration, f32s};
use crate::error::PruneError;

/// How a pruned model is recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Refit each layer that lost input channels by least squares (with
    /// bias compensation as its prior).
    LeastSquares,
    /// Bias compensation only.
    Bias,
    /// Nothing: the weights of the kept channels as they were.
    None,
}

impl Method {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::LeastSquares => "least-squares",
            Method::Bias => "bias",
            Method::None => "none",
        }
    }
}

/// Recovery settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// What to do.
    pub method: Method,
    /// Ridge strength, relative to the mean diagonal of the normal
    /// equations: it pulls the fit towards the compensated weights where
    /// the photos say little.
    pub ridge: f64,
    /// Samples (output positions) per unknown of a filter, over all photos.
    pub samples_per_unknown: f64,
    /// Seed of the sampled positions.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            method: Method::LeastSquares,
            // Measured on PP-OCRv4 det (docs/benchmarks.md): 0.1 generalises
            // to held-back photos better than 1e-3 or 1 on 13 photos.
            ridge: 0.1,
            samples_per_unknown: 4.0,
            seed: 0x5eed,
        }
    }
}

/// What recovery did to one layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// The layer's node.
    pub node: String,
    /// What was done.
    pub method: Method,
    /// Why it was not refit, when it was not.
    pub note: Option<String>,
    /// Input channels before pruning and after.
    pub inputs: (usize, usize),
    /// Wave of the fit (1 = first), for least squares.
    pub wave: Option<usize>,
    /// Output positions fitted on.
    pub samples: usize,
    /// Relative squared error of the layer's output against the unpruned
    /// model's, on the sampled positions: with the pruned weights as they
    /// were, and after recovery.
    pub error: Option<(f64, f64)>,
}

/// What recovery did.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    /// The method.
    pub method: Method,
    /// Calibration inputs used.
    pub inputs: usize,
    /// Model runs over the calibration inputs (one for the unpruned model,
    /// then one per wave).
    pub passes: usize,
    /// Every layer that lost input channels.
    pub layers: Vec<LayerReport>,
}

/// One convolution to recover.
struct Layer {
    node: usize,
    label: String,
    input: String,
    output: String,
    weight: String,
    geometry: Geometry,
    inputs_before: usize,
    kept_in: Vec<usize>,
    removed_in: Vec<usize>,
    kept_out: Vec<usize>,
    wave: usize,
    /// Sampled output positions `(batch, y, x)` per calibration input.
    positions: Vec<Vec<(usize, usize, usize)>>,
    /// Original outputs at those positions, `kept_out` channels, row per sample.
    targets: Vec<f64>,
    /// Sum over the photos of each removed input channel's mean.
    removed_means: Vec<f64>,
    /// Rows of the fit's design matrix (patch, then 1), row per sample.
    patches: Vec<f64>,
}

impl Layer {
    fn unknowns(&self) -> usize {
        self.kept_in.len() * self.geometry.kernel[0] * self.geometry.kernel[1] + 1
    }
}

/// Recovers `pruned` (made from `original`, whose shapes `facts` holds)
/// in place. `kept` maps every value that lost channels to the original
/// indices of the channels it kept.
pub fn recover(
    original: &Model,
    facts: &Facts,
    pruned: &mut Model,
    kept: &HashMap<String, Vec<usize>>,
    calibration: &mut dyn Calibration,
    options: &Options,
) -> Result<Recovery, PruneError> {
    let (mut layers, mut reports) = find_layers(original, facts, pruned, kept)?;
    if options.method == Method::None || layers.is_empty() {
        for r in &mut reports {
            r.method = Method::None;
        }
        return Ok(Recovery {
            method: options.method,
            inputs: 0,
            passes: 0,
            layers: reports,
        });
    }
    if calibration.is_empty() {
        return Err(PruneError::Calibration(
            "no calibration inputs: recovery needs photos (--calib DIR), or pass --no-reconstruct"
                .into(),
        ));
    }
    let n = calibration.len();
    let waves = layers.iter().map(|l| l.wave).max().unwrap_or(0);
    calibration.expect_passes(match options.method {
        Method::LeastSquares => 1 + waves,
        _ => 1,
    });
    let mut rng = Rng::new(options.seed);
    for layer in &mut layers {
        let shape = facts
            .shape(&layer.output)
            .ok_or_else(|| PruneError::Internal(format!("no shape for `{}`", layer.output)))?;
        let (batch, h, w) = (shape[0], shape[2], shape[3]);
        let wanted = (options.samples_per_unknown * layer.unknowns() as f64 / n as f64).ceil();
        let per_input = (wanted as usize).max(16).min(batch * h * w);
        layer.positions = (0..n)
            .map(|_| {
                sample(&mut rng, batch * h * w, per_input)
                    .into_iter()
                    .map(|p| (p / (h * w), p % (h * w) / w, p % w))
                    .collect()
            })
            .collect();
    }

    // The unpruned model: targets at the sampled positions, and the means of
    // the removed input channels.
    let mut wanted: Vec<String> = vec![];
    for l in &layers {
        for v in [&l.input, &l.output] {
            if !wanted.contains(v) {
                wanted.push(v.clone());
            }
        }
    }
    let index_of = |values: &[String], v: &str| values.iter().position(|x| x == v).unwrap();
    let at: Vec<(usize, usize)> = layers
        .iter()
        .map(|l| (index_of(&wanted, &l.input), index_of(&wanted, &l.output)))
        .collect();
    calibration.run(original, &wanted, &mut |j, tensors| {
        for (layer, &(i, o)) in layers.iter_mut().zip(&at) {
            let (input, output) = (f32s(&tensors[i])?, f32s(&tensors[o])?);
            let (in_shape, out_shape) = (tensors[i].shape(), tensors[o].shape());
            let plane = in_shape[2] * in_shape[3];
            for (k, &c) in layer.removed_in.iter().enumerate() {
                let mut sum = 0.0f64;
                for b in 0..in_shape[0] {
                    let start = (b * in_shape[1] + c) * plane;
                    sum += input[start..start + plane]
                        .iter()
                        .map(|&x| x as f64)
                        .sum::<f64>();
                }
                layer.removed_means[k] += sum / (in_shape[0] * plane) as f64;
            }
            let (oh, ow) = (out_shape[2], out_shape[3]);
            for &(b, y, x) in &layer.positions[j] {
                for &c in &layer.kept_out {
                    let at = ((b * out_shape[1] + c) * oh + y) * ow + x;
                    layer.targets.push(output[at] as f64);
                }
            }
        }
        Ok(())
    })?;
    for layer in &mut layers {
        for m in &mut layer.removed_means {
            *m /= n as f64;
        }
    }

    // Bias compensation: the prior of the fit, and the whole of `Bias`.
    let priors: Vec<DMatrix<f64>> = layers
        .iter()
        .map(|l| compensated(original, pruned, l))
        .collect::<Result<_, _>>()?;
    let mut passes = 1;
    if options.method == Method::Bias {
        for (layer, prior) in layers.iter().zip(&priors) {
            write_weights(pruned, layer, prior)?;
        }
        for r in &mut reports {
            if r.method == Method::LeastSquares {
                r.method = Method::Bias;
            }
        }
    } else {
        for wave in 1..=waves {
            let now: Vec<usize> = (0..layers.len())
                .filter(|&i| layers[i].wave == wave)
                .collect();
            let mut inputs: Vec<String> = vec![];
            for &i in &now {
                if !inputs.contains(&layers[i].input) {
                    inputs.push(layers[i].input.clone());
                }
            }
            let at: Vec<usize> = now
                .iter()
                .map(|&i| index_of(&inputs, &layers[i].input))
                .collect();
            calibration.run(pruned, &inputs, &mut |j, tensors| {
                for (&i, &t) in now.iter().zip(&at) {
                    gather_patches(&mut layers[i], j, &tensors[t])?;
                }
                Ok(())
            })?;
            passes += 1;
            for &i in &now {
                let layer = &mut layers[i];
                let (before, after, fitted, solved) =
                    fit(layer, &priors[i], pruned, options.ridge)?;
                write_weights(pruned, layer, &fitted)?;
                let report = reports
                    .iter_mut()
                    .find(|r| r.node == layer.label)
                    .expect("every layer has a report");
                if !solved {
                    report.method = Method::Bias;
                    report.note = Some(format!(
                        "{} positions for {} unknowns: bias compensated instead",
                        layer.patches.len() / layer.unknowns(),
                        layer.unknowns()
                    ));
                }
                report.wave = Some(wave);
                report.samples = layer.positions.iter().map(Vec::len).sum();
                report.error = Some((before, after));
                layer.patches = vec![];
                layer.targets = vec![];
            }
        }
    }
    Ok(Recovery {
        method: options.method,
        inputs: n,
        passes,
        layers: reports,
    })
}

/// The dense convolutions of `original` that lost input channels, in
/// topological order with their waves, and a report line for every layer
/// that lost input channels (those not refit say why).
fn find_layers(
    original: &Model,
    facts: &Facts,
    pruned: &Model,
    kept: &HashMap<String, Vec<usize>>,
) -> Result<(Vec<Layer>, Vec<LayerReport>), PruneError> {
    let graph = &original.graph;
    let topology = Topology::new(graph).map_err(|e| PruneError::Internal(e.to_string()))?;
    // The wave of a value: the deepest wave of a refit layer upstream of it.
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let mut layers = vec![];
    let mut reports = vec![];
    for &ix in topology.order() {
        let node = &graph.nodes[ix];
        let upstream = node
            .present_inputs()
            .filter_map(|v| depth.get(v).copied())
            .max()
            .unwrap_or(0);
        let mut wave = upstream;
        let lost = node
            .inputs
            .first()
            .and_then(|i| kept.get(i.as_str()).map(|k| (i, k)));
        // A depthwise convolution's kept outputs read only kept inputs:
        // nothing to recover (it loses outputs along with its inputs).
        let depthwise = node.op_type == "Conv" && node.int_attr("group", 1) != 1;
        if let Some((input, kept_in)) = lost
            && matches!(node.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm")
            && !depthwise
        {
            let label = graph.node_label(ix);
            let before = facts
                .shape(input)
                .map_or(0, |s| s.get(1).copied().unwrap_or(0));
            let mut report = LayerReport {
                node: label.clone(),
                method: Method::LeastSquares,
                note: None,
                inputs: (before, kept_in.len()),
                wave: None,
                samples: 0,
                error: None,
            };
            let weight = node.inputs.get(1).cloned().unwrap_or_default();
            let rank = pruned
                .graph
                .initializers
                .iter()
                .find(|i| i.name == weight)
                .map(|i| i.tensor.rank());
            // Pruning renames no weight: sharing is the original graph's.
            let why_not = if node.op_type != "Conv" {
                Some(format!("{} is not refit", node.op_type))
            } else if rank != Some(4) {
                Some("not a 2-D convolution with an initializer weight".into())
            } else if topology.consumers(&weight).len() != 1 {
                Some(format!("its weight `{weight}` is shared"))
            } else {
                None
            };
            if let Some(why) = why_not {
                report.method = Method::None;
                report.note = Some(why);
                reports.push(report);
            } else {
                let output = node.outputs[0].clone();
                let geometry = geometry(node, facts, input, &output)?;
                let out_channels = facts.shape(&output).map_or(0, |s| s[1]);
                let kept_out = kept
                    .get(output.as_str())
                    .cloned()
                    .unwrap_or_else(|| (0..out_channels).collect());
                let removed_in = (0..before).filter(|c| !kept_in.contains(c)).collect();
                wave = upstream + 1;
                layers.push(Layer {
                    node: ix,
                    label,
                    input: input.clone(),
                    output,
                    weight,
                    geometry,
                    inputs_before: before,
                    kept_in: kept_in.clone(),
                    removed_in,
                    kept_out,
                    wave,
                    positions: vec![],
                    targets: vec![],
                    removed_means: vec![],
                    patches: vec![],
                });
                reports.push(report);
            }
        }
        for o in node.present_outputs() {
            depth.insert(o, wave);
        }
    }
    for l in &mut layers {
        l.removed_means = vec![0.0; l.removed_in.len()];
    }
    Ok((layers, reports))
}

fn geometry(
    node: &edgewise_graph::Node,
    facts: &Facts,
    input: &str,
    output: &str,
) -> Result<Geometry, PruneError> {
    let missing = |v: &str| PruneError::Internal(format!("no shape for `{v}`"));
    let in_shape = facts.shape(input).ok_or_else(|| missing(input))?;
    let out_shape = facts.shape(output).ok_or_else(|| missing(output))?;
    let weight = facts.shape(&node.inputs[1]).unwrap_or(&[]);
    let hw = |s: &[usize]| {
        [
            s.get(2).copied().unwrap_or(1),
            s.get(3).copied().unwrap_or(1),
        ]
    };
    Geometry::of(node, weight, hw(in_shape), hw(out_shape))
        .ok_or_else(|| PruneError::Internal(format!("no kernel shape for `{}`", node.name)))
}

/// Appends the patches of `layer` at its sampled positions for calibration
/// input `j`, read from the pruned model's input tensor `t`.
fn gather_patches(layer: &mut Layer, j: usize, t: &Tensor) -> Result<(), PruneError> {
    let x = f32s(t)?;
    let shape = t.shape();
    let (channels, h, w) = (shape[1], shape[2], shape[3]);
    if channels != layer.kept_in.len() {
        return Err(PruneError::Internal(format!(
            "`{}` has {channels} channels in the pruned model, {} expected",
            layer.input,
            layer.kept_in.len()
        )));
    }
    let g = layer.geometry;
    for &(b, oy, ox) in &layer.positions[j] {
        for c in 0..channels {
            let base = (b * channels + c) * h * w;
            for ky in 0..g.kernel[0] {
                let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad[0] as isize;
                for kx in 0..g.kernel[1] {
                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize - g.pad[1] as isize;
                    let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                    layer.patches.push(if inside {
                        x[base + iy as usize * w + ix as usize] as f64
                    } else {
                        0.0
                    });
                }
            }
        }
        layer.patches.push(1.0);
    }
    Ok(())
}

fn weight_of<'a>(model: &'a Model, name: &str) -> Result<&'a Initializer, PruneError> {
    model
        .graph
        .initializers
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| PruneError::Internal(format!("`{name}` is not an initializer")))
}

fn floats(t: &Tensor) -> Result<Vec<f32>, PruneError> {
    let f = t
        .cast_to::<f32>()
        .map_err(|e| PruneError::Internal(e.to_string()))?;
    f32s(&f).map(<[f32]>::to_vec)
}

/// The layer's pruned weights with bias compensation, as the fit's unknowns:
/// a `(patch + 1) x kept outputs` matrix (last row: the bias).
fn compensated(
    original: &Model,
    pruned: &Model,
    layer: &Layer,
) -> Result<DMatrix<f64>, PruneError> {
    let node = &original.graph.nodes[layer.node];
    let w0 = weight_of(original, &layer.weight)?;
    let w0_values = floats(&w0.tensor)?;
    let taps = layer.geometry.kernel[0] * layer.geometry.kernel[1];
    let per_out = layer.inputs_before * taps;
    let bias0 = match node.inputs.get(2).filter(|b| !b.is_empty()) {
        Some(b) => floats(&weight_of(original, b)?.tensor)?,
        None => vec![0.0; w0.tensor.shape()[0]],
    };
    let pruned_w = floats(&weight_of(pruned, &layer.weight)?.tensor)?;
    let unknowns = layer.unknowns();
    let mut m = DMatrix::<f64>::zeros(unknowns, layer.kept_out.len());
    for (col, &o) in layer.kept_out.iter().enumerate() {
        for f in 0..unknowns - 1 {
            m[(f, col)] = pruned_w[col * (unknowns - 1) + f] as f64;
        }
        let mut bias = bias0[o] as f64;
        for (k, &c) in layer.removed_in.iter().enumerate() {
            let filter = &w0_values[o * per_out + c * taps..o * per_out + (c + 1) * taps];
            bias += layer.removed_means[k] * filter.iter().map(|&v| v as f64).sum::<f64>();
        }
        m[(unknowns - 1, col)] = bias;
    }
    Ok(m)
}

/// Fits the layer: returns the relative error before (pruned weights,
/// original bias) and after, the unknowns, and whether they are a
/// least-squares fit (or else the compensated prior).
fn fit(
    layer: &Layer,
    prior: &DMatrix<f64>,
    pruned: &Model,
    ridge: f64,
) -> Result<(f64, f64, DMatrix<f64>, bool), PruneError> {
    let d = layer.unknowns();
    let outs = layer.kept_out.len();
    let samples = layer.patches.len() / d;
    let x = DMatrix::from_row_slice(samples, d, &layer.patches);
    let y = DMatrix::from_row_slice(samples, outs, &layer.targets[..samples * outs]);
    let energy = y.norm_squared().max(f64::MIN_POSITIVE);
    let relative = |w: &DMatrix<f64>| (&x * w - &y).norm_squared() / energy;
    // Before: the kept weights as they were, the original bias.
    let mut as_pruned = prior.clone();
    let bias = current_bias(pruned, layer)?;
    for (col, b) in bias.iter().enumerate() {
        as_pruned[(d - 1, col)] = *b;
    }
    let before = relative(&as_pruned);
    let compensated = relative(prior);
    // Without a usable fit: the compensated bias, unless the bias as it was
    // does better on the samples.
    let fallback = || {
        if compensated <= before {
            (before, compensated, prior.clone(), false)
        } else {
            (before, before, as_pruned.clone(), false)
        }
    };
    if samples < d {
        // Fewer positions than unknowns (a layer on a pooled 1x1 map): a fit
        // would only memorise them.
        return Ok(fallback());
    }
    let gram = x.tr_mul(&x);
    let rhs = x.tr_mul(&y);
    let scale = gram.trace() / d as f64;
    let mut lambda = ridge * scale + f64::MIN_POSITIVE;
    for _ in 0..6 {
        let mut a = gram.clone();
        for i in 0..d {
            a[(i, i)] += lambda;
        }
        if let Some(chol) = a.cholesky() {
            let fitted = chol.solve(&(&rhs + prior * lambda));
            let after = relative(&fitted);
            // A fit that does worse on its own samples than the prior is
            // numerically broken.
            return Ok(if after <= before.min(compensated) {
                (before, after, fitted, true)
            } else {
                fallback()
            });
        }
        lambda = (lambda * 100.0).max(1e-6 * scale);
    }
    Ok(fallback())
}

/// The layer's bias in `pruned` (zeros when it has none).
fn current_bias(pruned: &Model, layer: &Layer) -> Result<Vec<f64>, PruneError> {
    let node = &pruned.graph.nodes[layer.node];
    Ok(match node.inputs.get(2).filter(|b| !b.is_empty()) {
        Some(b) => floats(&weight_of(pruned, b)?.tensor)?
            .into_iter()
            .map(f64::from)
            .collect(),
        None => vec![0.0; layer.kept_out.len()],
    })
}

/// Writes `unknowns` (from [`compensated`] or [`fit`]) into the layer's
/// weight and bias in `pruned`; a layer without a bias gets one.
fn write_weights(
    pruned: &mut Model,
    layer: &Layer,
    unknowns: &DMatrix<f64>,
) -> Result<(), PruneError> {
    let d = layer.unknowns();
    let outs = layer.kept_out.len();
    let g = layer.geometry;
    let mut w = Vec::with_capacity(outs * (d - 1));
    for col in 0..outs {
        for f in 0..d - 1 {
            w.push(unknowns[(f, col)] as f32);
        }
    }
    let b: Vec<f32> = (0..outs).map(|col| unknowns[(d - 1, col)] as f32).collect();
    let weight = Tensor::from_shape(&[outs, layer.kept_in.len(), g.kernel[0], g.kernel[1]], &w)
        .map_err(|e| PruneError::Internal(e.to_string()))?;
    let bias = Tensor::from_shape(&[outs], &b).map_err(|e| PruneError::Internal(e.to_string()))?;
    let set = |model: &mut Model, name: &str, tensor: Tensor| -> Result<(), PruneError> {
        let init = model
            .graph
            .initializers
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| PruneError::Internal(format!("`{name}` is not an initializer")))?;
        let dt = init.tensor.datum_type();
        init.tensor = tensor
            .cast_to_dt(dt)
            .map_err(|e| PruneError::Internal(e.to_string()))?
            .into_owned();
        Ok(())
    };
    set(pruned, &layer.weight, weight)?;
    let bias_name = pruned.graph.nodes[layer.node]
        .inputs
        .get(2)
        .filter(|b| !b.is_empty())
        .cloned();
    let shared = bias_name.as_ref().is_some_and(|name| {
        pruned
            .graph
            .nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == name))
            .count()
            > 1
    });
    match bias_name {
        Some(name) if !shared => set(pruned, &name, bias)?,
        _ => {
            let mut name = format!("{}_recovered_bias", layer.label);
            while pruned.graph.initializers.iter().any(|i| i.name == name) {
                name.push('_');
            }
            pruned.graph.initializers.push(Initializer {
                name: name.clone(),
                tensor: bias,
            });
            let node = &mut pruned.graph.nodes[layer.node];
            node.inputs.resize(3.max(node.inputs.len()), String::new());
            node.inputs[2] = name;
        }
    }
    Ok(())
}

/// `count` distinct indices below `total` drawn from `rng`, sorted (all of
/// them when `count >= total`).
fn sample(rng: &mut Rng, total: usize, count: usize) -> Vec<usize> {
    if count >= total {
        return (0..total).collect();
    }
    // Floyd's algorithm: `count` draws, no rejection loop.
    let mut chosen = std::collections::BTreeSet::new();
    for j in total - count..total {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_distinct_and_deterministic() {
        let a = sample(&mut Rng::new(1), 100, 30);
        assert_eq!(a.len(), 30);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[29] < 100);
        assert_eq!(a, sample(&mut Rng::new(1), 100, 30));
        assert_eq!(sample(&mut Rng::new(1), 5, 9), vec![0, 1, 2, 3, 4]);
    }
}
