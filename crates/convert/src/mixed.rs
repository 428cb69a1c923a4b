//! `quantize --max-drop`: automatic mixed precision. The convolutions whose
//! int8 costs the most accuracy for the least compute stay in float, as few
//! as bring the detections on the calibration photos within the drop.
//!
//! Two measurements, both on the calibration photos (the held-back photos of
//! `--eval` only report the result, so they are not tuned on):
//! 1. Sensitivity: for each quantized convolution, the model with that one
//!    convolution in float, run on integer kernels as a board runs it; its
//!    gain is how many dB of output signal-to-noise ratio (against the float
//!    model, averaged over the outputs) that buys over the all-int8 model.
//! 2. The search: convolutions ranked by gain per share of the model's
//!    multiply-adds (a float convolution runs about half as fast as an int8
//!    one, so compute is what keeping it costs), then the shortest prefix of
//!    that ranking whose detections agree with the float model's within the
//!    drop (F1), found by doubling and then bisecting.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};
use edgewise_decode::Detection;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_graph::{InputShape, Model};
use edgewise_manifest::Manifest;
use edgewise_quant::ptq::{self, Plan};
use edgewise_runtime::{Detector, Engine, QdqMode};
use image::DynamicImage;
use serde::Serialize;

use crate::fidelity::DetectionAgreement;
use crate::photos::tensors_of;

/// Photos the sensitivity of each convolution is measured on (the first of
/// the calibration photos): each convolution costs one engine and a run on
/// each of them.
const SENSITIVITY_PHOTOS: usize = 8;

/// What kept each convolution in float, or could have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sensitivity {
    /// The convolution.
    pub node: String,
    /// Output SNR gained (dB) with it alone in float.
    pub gain_db: f64,
    /// Its share of the model's multiply-adds.
    pub mac_share: f64,
}

/// One model tried by the search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Convolutions in float (the first of the ranking).
    pub float: usize,
    /// Their share of the model's multiply-adds.
    pub mac_share: f64,
    /// Detections' F1 against the float model on the calibration photos.
    pub f1: f64,
}

/// What `--max-drop` did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixedPrecision {
    /// The F1 drop allowed.
    pub max_drop: f64,
    /// Detections of the float model on the calibration photos.
    pub reference_detections: usize,
    /// Output SNR (dB) of the all-int8 model on the sensitivity photos.
    pub int8_snr_db: f64,
    /// Every quantized convolution, best candidate for float first.
    pub ranking: Vec<Sensitivity>,
    /// The models tried, in order.
    pub steps: Vec<Step>,
    /// The convolutions kept in float.
    pub float: Vec<String>,
    /// Whether the drop was met; when not, every convolution with a
    /// positive gain is in float.
    pub met: bool,
}

/// The inputs of a search.
pub struct Search<'a> {
    /// The prepared float model.
    pub model: &'a Model,
    /// The all-int8 plan.
    pub plan: &'a Plan,
    /// Each activation's range.
    pub ranges: &'a HashMap<String, (f32, f32)>,
    /// Multiply-adds of every node, by label (a convolution's share is of
    /// their sum).
    pub macs: HashMap<String, u64>,
    /// The model's manifest.
    pub manifest: &'a Manifest,
    /// The input shape quantized at.
    pub shape: &'a InputShape,
    /// The photos F1 is measured on (the calibration photos, or
    /// `--tune`'s), decoded.
    pub photos: &'a [DynamicImage],
    /// Threads for tract.
    pub threads: usize,
}

impl Search<'_> {
    /// The plan with the convolutions of `float` left in float.
    pub fn plan_without(&self, float: &HashSet<&str>, max_drop: f64) -> Plan {
        let mut plan = self.plan.clone();
        plan.convs.retain(|c| !float.contains(c.node.as_str()));
        plan.float.extend(float.iter().map(|node| {
            (
                node.to_string(),
                format!("--max-drop {max_drop}: int8 here cost the most accuracy per multiply-add"),
            )
        }));
        plan
    }

    fn quantized(&self, float: &HashSet<&str>) -> Result<Model> {
        let mut model = self.model.clone();
        ptq::quantize(&mut model, &self.plan_without(float, 0.0), self.ranges)?;
        Ok(model)
    }

    fn hw(&self) -> Result<[usize; 2]> {
        self.manifest
            .input
            .hw_of(&self.shape.dims)
            .context("the input shape has no height and width")
    }

    /// Runs the search for the drop `max_drop`.
    pub fn run(&self, max_drop: f64) -> Result<MixedPrecision> {
        if !(0.0..1.0).contains(&max_drop) {
            bail!("--max-drop {max_drop} must be at least 0 and below 1 (0.03: F1 at least 0.97)");
        }
        let reference = self.detections(self.model, QdqMode::Float)?;
        let reference_detections = reference.iter().map(Vec::len).sum();
        if reference_detections == 0 {
            bail!(
                "the float model finds nothing on the {} calibration photos, so --max-drop has no \
                 detections to keep: calibrate on photos of what the model detects",
                self.photos.len()
            );
        }
        let (int8_snr_db, ranking) = self.rank()?;
        let candidates: Vec<&Sensitivity> = ranking.iter().filter(|s| s.gain_db > 0.0).collect();

        let bar = progress(
            candidates.len().max(1).ilog2() as u64 * 2 + 2,
            "mixed precision",
            "models",
        );
        let mut steps = vec![];
        let mut try_prefix = |k: usize| -> Result<f64> {
            let float: HashSet<&str> = candidates[..k].iter().map(|s| s.node.as_str()).collect();
            let found = self.detections(&self.quantized(&float)?, QdqMode::Integer)?;
            let f1 = agreement(&reference, &found);
            steps.push(Step {
                float: k,
                mac_share: candidates[..k].iter().map(|s| s.mac_share).sum(),
                f1,
            });
            bar.inc(1);
            Ok(f1)
        };
        let target = 1.0 - max_drop;
        // Doubling finds a prefix that meets the target, bisecting the shortest.
        let (mut low, mut high) = (0, None);
        let mut k = 0;
        loop {
            if try_prefix(k)? >= target {
                high = Some(k);
                break;
            }
            low = k;
            if k == candidates.len() {
                break;
            }
            k = (k * 2).clamp(1, candidates.len());
        }
        if let Some(mut h) = high {
            while h - low > 1 {
                let mid = (low + h) / 2;
                if try_prefix(mid)? >= target {
                    h = mid;
                } else {
                    low = mid;
                }
            }
            high = Some(h);
        }
        bar.finish_and_clear();
        let chosen = high.unwrap_or(candidates.len());
        Ok(MixedPrecision {
            max_drop,
            reference_detections,
            int8_snr_db,
            float: candidates[..chosen]
                .iter()
                .map(|s| s.node.clone())
                .collect(),
            met: high.is_some(),
            ranking,
            steps,
        })
    }

    /// Every planned convolution's gain with it alone in float, best
    /// candidate first; and the all-int8 model's output SNR.
    fn rank(&self) -> Result<(f64, Vec<Sensitivity>)> {
        let photos = &self.photos[..self.photos.len().min(SENSITIVITY_PHOTOS)];
        let inputs = tensors_of(self.manifest, self.shape, photos)?;
        let against = OutputSnr::new(self.model, self.shape, &inputs, self.threads)?;
        let snr = |model: &Model| against.of(model);
        let total: u64 = self.macs.values().sum::<u64>().max(1);
        let all_int8 = snr(&self.quantized(&HashSet::new())?)?;
        let bar = progress(self.plan.convs.len() as u64, "sensitivity", "models");
        let mut ranking = vec![];
        for conv in &self.plan.convs {
            let alone = HashSet::from([conv.node.as_str()]);
            let gain_db = snr(&self.quantized(&alone)?)? - all_int8;
            ranking.push(Sensitivity {
                node: conv.node.clone(),
                gain_db,
                mac_share: self.macs.get(&conv.node).copied().unwrap_or(0) as f64 / total as f64,
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        // A convolution of almost no compute still costs a float island.
        let priority = |s: &Sensitivity| s.gain_db / s.mac_share.max(0.005);
        ranking.sort_by(|a, b| priority(b).total_cmp(&priority(a)));
        Ok((all_int8, ranking))
    }

    /// The detections of `model` on every calibration photo.
    fn detections(&self, model: &Model, mode: QdqMode) -> Result<Vec<Vec<Detection>>> {
        let mut detector = Detector::new(
            model.clone(),
            self.manifest.clone(),
            Some(self.hw()?),
            self.threads,
        )?
        .with_qdq_mode(mode);
        self.photos
            .iter()
            .map(|p| Ok(detector.detect(p)?.0))
            .collect()
    }
}

/// F1 of `candidate`'s detections against `reference`'s, over all photos.
fn agreement(reference: &[Vec<Detection>], candidate: &[Vec<Detection>]) -> f64 {
    let mut a = DetectionAgreement::default();
    for (r, c) in reference.iter().zip(candidate) {
        a.add(r, c);
    }
    a.f1
}

/// A float model's outputs on some inputs, to measure its int8 versions
/// against.
pub(crate) struct OutputSnr<'a> {
    shape: &'a InputShape,
    inputs: &'a [Tensor],
    threads: usize,
    reference: Vec<Vec<Vec<f32>>>,
}

impl<'a> OutputSnr<'a> {
    /// Runs `float` on `inputs`.
    pub(crate) fn new(
        float: &Model,
        shape: &'a InputShape,
        inputs: &'a [Tensor],
        threads: usize,
    ) -> Result<OutputSnr<'a>> {
        let mut engine =
            Engine::with_qdq_mode(float, std::slice::from_ref(shape), threads, QdqMode::Float)?;
        let reference = outputs_on(&mut engine, inputs)?;
        Ok(OutputSnr {
            shape,
            inputs,
            threads,
            reference,
        })
    }

    /// The [`mean_snr_db`] of the QDQ model `int8`, run on integer kernels.
    pub(crate) fn of(&self, int8: &Model) -> Result<f64> {
        let mut engine = Engine::with_qdq_mode(
            int8,
            std::slice::from_ref(self.shape),
            self.threads,
            QdqMode::Integer,
        )?;
        Ok(mean_snr_db(
            &self.reference,
            &outputs_on(&mut engine, self.inputs)?,
        ))
    }
}

/// Every output of `engine` on each of `inputs`, as floats: per input, per
/// output, the values.
fn outputs_on(engine: &mut Engine, inputs: &[Tensor]) -> Result<Vec<Vec<Vec<f32>>>> {
    inputs
        .iter()
        .map(|input| {
            engine
                .run(vec![input.clone()])?
                .iter()
                .map(|t| {
                    let t = t.cast_to::<f32>()?;
                    Ok(edgewise_graph::tensor::values::<f32>(&t)
                        .context("an output is not readable as f32")?
                        .to_vec())
                })
                .collect()
        })
        .collect()
}

/// Signal-to-noise ratio (dB) of `candidate` against `reference` per output
/// over all photos, averaged over the outputs: outputs of different scales
/// (pixels, logits) count alike.
fn mean_snr_db(reference: &[Vec<Vec<f32>>], candidate: &[Vec<Vec<f32>>]) -> f64 {
    let outputs = reference.first().map_or(0, Vec::len);
    let mut total = 0.0;
    for o in 0..outputs {
        let (mut signal, mut noise) = (0f64, 0f64);
        for (r, c) in reference.iter().zip(candidate) {
            for (&a, &b) in r[o].iter().zip(&c[o]) {
                signal += (a as f64).powi(2);
                noise += (a as f64 - b as f64).powi(2);
            }
        }
        total += 10.0 * (signal.max(1e-30) / noise.max(1e-30)).log10();
    }
    total / outputs.max(1) as f64
}

/// A progress bar of `len` `unit`s, labeled `what`.
pub(crate) fn progress(len: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
    let template = format!("{{msg:>15}} {{bar:30}} {{pos}}/{{len}} {unit}, {{eta}} left");
    let bar = indicatif::ProgressBar::new(len)
        .with_style(indicatif::ProgressStyle::with_template(&template).expect("a valid template"));
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snr_averages_the_outputs_in_db() {
        // Output 0: noise a tenth of the signal's energy (10 dB); output 1: a
        // hundredth (20 dB), at a thousand times the scale.
        let reference = vec![vec![vec![1.0, 0.0], vec![1000.0]]];
        let candidate = vec![vec![vec![1.0, 0.1f32.sqrt()], vec![1000.0 - 100.0]]];
        let snr = mean_snr_db(&reference, &candidate);
        assert!((snr - 15.0).abs() < 1e-3, "{snr}");
    }
}
