//! Learned rounding of one convolution's int8 weights (AdaRound: Nagel et
//! al., "Up or Down? Adaptive Rounding for Post-Training Quantization",
//! ICML 2020), with the annealed regularizer of BRECQ (Li et al., ICLR
//! 2021).
//!
//! Rounding each weight to its nearest level minimizes the weights' own
//! error, not the layer's: errors of neighbouring weights add up in every
//! output, and the layer's input is already the int8 model's, not the
//! float one's. Each weight instead goes up or down as a learned soft
//! choice `h(V)` in [0, 1], fitted with Adam so that the layer, given the
//! int8 model's inputs, reproduces the float model's outputs after the
//! activation that follows; a regularizer, weak at first and annealed,
//! pushes every `h` to 0 or 1 by the end. The result is kept only if it
//! beats nearest rounding on held-out pixels.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;

use crate::ReconstructError;
use crate::elementwise::{self, Scalar};
use crate::patches::Samples;

/// The stretch of AdaRound's rectified sigmoid: `h = clip(sigmoid(V) *
/// (ZETA - GAMMA) + GAMMA, 0, 1)` reaches 0 and 1 at finite `V`.
const ZETA: f64 = 1.1;
const GAMMA: f64 = -0.1;
/// Steps timed before the step count is fixed from the time budget.
const TIMED_STEPS: usize = 5;
/// How far every V must be able to move over the steps taken.
const MOVE: f64 = 5.0;
/// Fewer steps than this and the layer keeps nearest rounding.
const MIN_STEPS: usize = 100;
/// Rows per forward pass when measuring the error on a whole set.
const CHUNK: usize = 4096;

/// A convolution's float weights and how they are quantized.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a> {
    /// `[out, in / groups * kh * kw]`, row by output channel.
    pub weights: &'a [f32],
    /// The symmetric int8 scale of every output channel.
    pub scales: &'a [f32],
    /// The bias, one per output channel.
    pub bias: Option<&'a [f32]>,
    /// Groups of the convolution.
    pub groups: usize,
}

/// How the rounding is fitted.
#[derive(Clone, Debug)]
pub struct Settings {
    /// At most this many Adam steps.
    pub iterations: usize,
    /// Time for this layer, in seconds: fewer steps when they would not fit.
    pub seconds: f64,
    /// Pixels per step.
    pub batch: usize,
    /// Adam's step size for `V`.
    pub learning_rate: f64,
    /// Weight of the regularizer against the reconstruction error (that
    /// error is measured relative to nearest rounding's).
    pub regularization: f64,
    /// Share of the steps before the regularizer starts.
    pub warmup: f64,
    /// The regularizer's exponent, annealed from the first to the second.
    pub beta: (f64, f64),
    /// Seed of the batches drawn.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            iterations: 2000,
            seconds: 10.0,
            batch: 512,
            learning_rate: 1e-2,
            regularization: 1.0,
            warmup: 0.2,
            beta: (20.0, 2.0),
            seed: 0,
        }
    }
}

/// What learning the rounding gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Learned {
    /// The int8 weights to use: the learned ones if they won on the
    /// held-out pixels, else nearest rounding's.
    #[serde(skip)]
    pub values: Vec<i8>,
    /// Adam steps taken.
    pub iterations: usize,
    /// Mean squared error after the activation on the held-out pixels,
    /// nearest rounding.
    pub nearest_error: f64,
    /// The same with the learned rounding.
    pub learned_error: f64,
    /// Share of the weights the learned rounding sends the other way.
    pub flipped: f64,
    /// Whether the learned rounding is the one kept.
    pub kept: bool,
}

/// Learns the rounding of `layer` from the `fit` samples, judged on `held`,
/// with the loss taken after `activation` (none: on the outputs).
pub fn learn_rounding(
    layer: &Layer,
    fit: &Samples,
    held: &Samples,
    activation: Option<&Scalar>,
    settings: &Settings,
) -> Result<Learned, ReconstructError> {
    let out = layer.scales.len();
    if out == 0 || !layer.weights.len().is_multiple_of(out) {
        return Err(ReconstructError::Shape(format!(
            "{} weights for {out} output channels",
            layer.weights.len()
        )));
    }
    let per_out = layer.weights.len() / out;
    let groups = layer.groups.max(1);
    if fit.patch_len != per_out * groups || fit.outputs != out || held.outputs != out {
        return Err(ReconstructError::Shape(format!(
            "patches of {} values and {} outputs for a layer of {out} outputs, {per_out} weights each, {groups} groups",
            fit.patch_len, fit.outputs
        )));
    }
    let dev = Device::Cpu;
    let divided: Vec<f32> = layer
        .weights
        .iter()
        .enumerate()
        .map(|(i, w)| w / layer.scales[i / per_out])
        .collect();
    let nearest: Vec<i8> = divided
        .iter()
        .map(|d| d.round_ties_even().clamp(-127.0, 127.0) as i8)
        .collect();
    let floor: Vec<f32> = divided.iter().map(|d| d.floor()).collect();
    // V such that h(V) starts at the fractional part: the float weight.
    let v0: Vec<f32> = divided
        .iter()
        .zip(&floor)
        .map(|(d, f)| {
            let p = (((d - f) as f64 - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1.0 - 1e-4);
            (p / (1.0 - p)).ln() as f32
        })
        .collect();

    let floor_levels = Tensor::from_slice(&floor, (out, per_out), &dev)?;
    let scales = Tensor::from_slice(layer.scales, (out, 1), &dev)?;
    let bias = layer
        .bias
        .map(|b| Tensor::from_slice(b, out, &dev))
        .transpose()?;
    let apply = |t: Tensor| -> candle_core::Result<Tensor> {
        match activation {
            Some(f) => elementwise::apply(&t, f),
            None => Ok(t),
        }
    };
    let forward = |patches: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
        apply(outputs(patches, w, bias.as_ref(), groups)?)
    };
    let of_ints = |ints: &[i8]| -> candle_core::Result<Tensor> {
        let values: Vec<f32> = ints.iter().map(|&q| q as f32).collect();
        Tensor::from_vec(values, (out, per_out), &dev)?.broadcast_mul(&scales)
    };
    // The mean squared error of weights `w` on a whole set, in chunks.
    let error_on = |set: &Samples, w: &Tensor| -> Result<f64, ReconstructError> {
        let rows = set.rows();
        let mut sum = 0.0;
        for start in (0..rows).step_by(CHUNK) {
            let n = CHUNK.min(rows - start);
            let p = Tensor::from_slice(
                &set.patches[start * set.patch_len..(start + n) * set.patch_len],
                (n, set.patch_len),
                &dev,
            )?;
            let t =
                Tensor::from_slice(&set.targets[start * out..(start + n) * out], (n, out), &dev)?;
            let diff = (forward(&p, w)? - apply(t)?)?;
            sum += diff
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        Ok(sum / (rows * out).max(1) as f64)
    };
    let nearest_weights = of_ints(&nearest)?;
    let nearest_error = error_on(held, &nearest_weights)?;
    let reference = error_on(fit, &nearest_weights)?.max(f64::MIN_POSITIVE);

    let patches = Tensor::from_slice(&fit.patches, (fit.rows(), fit.patch_len), &dev)?;
    let targets = apply(Tensor::from_slice(&fit.targets, (fit.rows(), out), &dev)?)?;
    let v = Var::from_vec(v0, (out, per_out), &dev)?;
    let mut adam = AdamW::new(
        vec![v.clone()],
        ParamsAdamW {
            lr: settings.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let soft = |v: &Tensor| -> candle_core::Result<Tensor> {
        candle_nn::ops::sigmoid(v)?
            .affine(ZETA - GAMMA, GAMMA)?
            .clamp(0f32, 1f32)
    };
    let mut rng = edgewise_graph::rng::Rng::new(settings.seed);
    let batch = settings.batch.min(fit.rows()).max(1);
    let mut steps = settings.iterations;
    let started = Instant::now();
    let mut step = 0;
    while step < steps && fit.rows() > 0 {
        let rows: Vec<u32> = (0..batch).map(|_| rng.below(fit.rows()) as u32).collect();
        let rows = Tensor::from_vec(rows, batch, &dev)?;
        let p = patches.index_select(&rows, 0)?;
        let t = targets.index_select(&rows, 0)?;
        let h = soft(v.as_tensor())?;
        let w = (&floor_levels + &h)?
            .clamp(-127f32, 127f32)?
            .broadcast_mul(&scales)?;
        let rec = ((forward(&p, &w)? - t)?.sqr()?.mean_all()? / reference)?;
        let start = (settings.warmup * steps as f64) as usize;
        let loss = if step >= start && settings.regularization > 0.0 {
            let progress = (step - start) as f64 / (steps - start).max(1) as f64;
            let beta = settings.beta.1 + (settings.beta.0 - settings.beta.1) * (1.0 - progress);
            let sharp = h.affine(2.0, -1.0)?.abs()?.powf(beta)?;
            let reg = (1.0 - sharp)?.mean_all()?;
            (rec + (reg * settings.regularization)?)?
        } else {
            rec
        };
        adam.backward_step(&loss)?;
        step += 1;
        if step == TIMED_STEPS {
            let per_step = started.elapsed().as_secs_f64() / TIMED_STEPS as f64;
            let fits = (settings.seconds / per_step.max(1e-9)) as usize;
            if fits < MIN_STEPS.min(settings.iterations) {
                // Too few steps to anneal: a few large ones only scramble
                // the rounding (on a zoo detector given 20 s, most such
                // convolutions lost to nearest). Its time goes to the others.
                return Ok(Learned {
                    values: nearest,
                    iterations: step,
                    nearest_error,
                    learned_error: nearest_error,
                    flipped: 0.0,
                    kept: false,
                });
            }
            steps = steps.min(fits);
            // Each Adam step moves V by about the step size, and V must be
            // able to cross the soft region (|V| < 2.4) while annealing.
            adam.set_learning_rate(settings.learning_rate.max(MOVE / steps as f64));
        }
    }

    // Up where V says so, at the end of the annealing (h(V) >= 1/2).
    let decided = v
        .as_tensor()
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let learned: Vec<i8> = floor
        .iter()
        .zip(&decided)
        .map(|(f, v)| (f + if *v >= 0.0 { 1.0 } else { 0.0 }).clamp(-127.0, 127.0) as i8)
        .collect();
    let learned_error = error_on(held, &of_ints(&learned)?)?;
    let flipped =
        learned.iter().zip(&nearest).filter(|(a, b)| a != b).count() as f64 / nearest.len() as f64;
    let kept = learned_error < nearest_error;
    Ok(Learned {
        values: if kept { learned } else { nearest },
        iterations: step,
        nearest_error,
        learned_error,
        flipped,
        kept,
    })
}

/// The convolution's outputs `[rows, out]` for patches `[rows, groups *
/// per_out]` and weights `[out, per_out]`.
fn outputs(
    patches: &Tensor,
    weights: &Tensor,
    bias: Option<&Tensor>,
    groups: usize,
) -> candle_core::Result<Tensor> {
    let (rows, _) = patches.dims2()?;
    let (out, per_out) = weights.dims2()?;
    let y = if groups == 1 {
        patches.matmul(&weights.t()?)?
    } else if out == groups {
        // One output per group (depthwise): each output reads its own
        // slice of the patch.
        patches
            .reshape((rows, groups, per_out))?
            .broadcast_mul(weights)?
            .sum(2)?
    } else {
        let p = patches
            .reshape((rows, groups, per_out))?
            .transpose(0, 1)?
            .contiguous()?;
        let w = weights
            .reshape((groups, out / groups, per_out))?
            .transpose(1, 2)?
            .contiguous()?;
        p.matmul(&w)?.transpose(0, 1)?.reshape((rows, out))?
    };
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patches::{ConvGeometry, Map};
    use edgewise_graph::rng::Rng;
    use std::sync::Arc;

    /// A `groups`-grouped 3x3 convolution of `channels` in and `out`
    /// channels out on random maps: patches and float outputs, with inputs
    /// perturbed as an int8 model's upstream would.
    fn samples(
        channels: usize,
        out: usize,
        groups: usize,
        seed: u64,
    ) -> (Vec<f32>, Vec<f32>, Samples) {
        let mut rng = Rng::new(seed);
        let per_out = channels / groups * 9;
        let weights: Vec<f32> = (0..out * per_out).map(|_| rng.uniform(-0.3, 0.3)).collect();
        let bias: Vec<f32> = (0..out).map(|_| rng.uniform(-0.2, 0.2)).collect();
        let g = ConvGeometry {
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            pad: [1, 1],
            groups,
        };
        let mut set = Samples::new(channels * 9, out);
        for _ in 0..24 {
            // Smooth maps, as photos give: neighbouring taps correlate,
            // which is what makes rounding to nearest not the best.
            let mut x = vec![0f32; channels * 64];
            for c in 0..channels {
                let (u, v, w) = (
                    rng.uniform(-1.0, 1.0),
                    rng.uniform(-1.0, 1.0),
                    rng.uniform(-1.0, 1.0),
                );
                for p in 0..64 {
                    let (y, xx) = ((p / 8) as f32 / 8.0, (p % 8) as f32 / 8.0);
                    x[c * 64 + p] = u + v * y + w * xx + rng.uniform(-0.1, 0.1);
                }
            }
            // The float output, computed directly.
            let mut y = vec![0f32; out * 64];
            for o in 0..out {
                let group = o / (out / groups);
                for p in 0..64 {
                    let (oy, ox) = (p / 8, p % 8);
                    let mut s = bias[o];
                    for c in 0..channels / groups {
                        let ci = group * (channels / groups) + c;
                        for k in 0..9 {
                            let (iy, ix) = (oy as isize + k / 3 - 1, ox as isize + k % 3 - 1);
                            if (0..8).contains(&iy) && (0..8).contains(&ix) {
                                s += weights[o * per_out + c * 9 + k as usize]
                                    * x[ci * 64 + iy as usize * 8 + ix as usize];
                            }
                        }
                    }
                    y[o * 64 + p] = s;
                }
            }
            // What the int8 model feeds the layer: its input with the
            // coarse rounding of the activations upstream.
            let noisy: Vec<f32> = x.iter().map(|v| (v * 64.0).round() / 64.0).collect();
            let pixels: Vec<(usize, usize)> = (0..64).map(|p| (p / 8, p % 8)).collect();
            set.push(
                &g,
                &Map::new(&[1, channels, 8, 8], &noisy).unwrap(),
                &Map::new(&[1, out, 8, 8], &y).unwrap(),
                &pixels,
            )
            .unwrap();
        }
        (weights, bias, set)
    }

    fn scales(weights: &[f32], out: usize) -> Vec<f32> {
        weights
            .chunks(weights.len() / out)
            .map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
            .collect()
    }

    #[test]
    fn learned_rounding_beats_nearest_on_held_out_pixels() {
        for (channels, out, groups) in [(8, 6, 1), (8, 8, 8), (8, 4, 2)] {
            let (weights, bias, set) = samples(channels, out, groups, 7);
            // Coarse scales (as at 4 bits) make the rounding matter.
            let scales: Vec<f32> = scales(&weights, out).iter().map(|s| s * 16.0).collect();
            let (fit, held) = set.split_every(4);
            let layer = Layer {
                weights: &weights,
                scales: &scales,
                bias: Some(&bias),
                groups,
            };
            let silu: Scalar = Arc::new(|x| x / (1.0 + (-x).exp()));
            let settings = Settings {
                iterations: 1500,
                seconds: 60.0,
                batch: 128,
                ..Settings::default()
            };
            let learned = learn_rounding(&layer, &fit, &held, Some(&silu), &settings).unwrap();
            assert!(learned.kept, "{channels}/{out}/{groups}: {learned:?}");
            assert!(
                learned.learned_error < 0.8 * learned.nearest_error,
                "{channels}/{out}/{groups}: {learned:?}"
            );
            assert_eq!(learned.iterations, 1500);
            // Every weight went to one of its two neighbouring levels.
            for (q, w) in learned.values.iter().zip(&weights) {
                let i = weights.iter().position(|x| x == w).unwrap();
                let d = w / scales[i / (weights.len() / out)];
                assert!((*q as f32 - d).abs() < 1.0 + 1e-4, "{q} for {d}");
            }
        }
    }

    #[test]
    fn a_mismatched_layer_is_refused() {
        let (weights, _, set) = samples(4, 2, 1, 1);
        let scales = scales(&weights, 2);
        let layer = Layer {
            weights: &weights[1..],
            scales: &scales,
            bias: None,
            groups: 1,
        };
        let err = learn_rounding(&layer, &set, &set, None, &Settings::default()).unwrap_err();
        assert!(err.to_string().contains("output channels"), "{err}");
    }
}
