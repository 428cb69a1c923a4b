//! `edge-convert optimize`: the fastest variant of a detector within an
//! accuracy budget, found by measuring. A greedy search over per-stage
//! pruning ratios (each step pruned with recovery on the calibration photos)
//! walks a path from the original; INT8 is then tried on every point of that
//! path. Every variant is scored on held-back photos against the original's
//! detections (the accuracy budget is a drop in F1) and timed beside the
//! original in one interleaved run, so the machine's drift cancels in the
//! speed-up. The report is the frontier explored: speed-up against fidelity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use edgewise_decode::Detection;
use edgewise_graph::InputShape;
use edgewise_graph::model::write_atomically;
use edgewise_manifest::Manifest;
use edgewise_measure::stats::Summary;
use edgewise_runtime::{Detector, ModelSource, QdqMode, load_image};
use edgewise_stages::Stage;
use image::DynamicImage;
use serde::Serialize;

use crate::fidelity::DetectionAgreement;
use crate::map::{Image, mean_ap};
use crate::quantize::{KeepFloat, write_manifest_beside};

/// The precision a variant runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The model's own float.
    Fp32,
    /// `edge-convert quantize` (MinMax), run on integer kernels.
    Int8,
}

impl Precision {
    fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// How to search.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stages whose channels may be pruned.
    pub stages: Vec<Stage>,
    /// Ratio added to one stage per step.
    pub step: f32,
    /// No stage is pruned beyond this ratio.
    pub max_ratio: f32,
    /// Whether INT8 is tried on the pruned path.
    pub int8: bool,
    /// Largest F1 drop allowed against the original's detections.
    pub max_drop: f64,
    /// Kept channel counts are multiples of this.
    pub round: usize,
    /// The input shape.
    pub shape: InputShape,
    /// Calibration photos (pruning's importance and recovery, INT8 ranges).
    pub calibration: Vec<PathBuf>,
    /// Held-back photos the variants are scored on.
    pub held_back: Vec<PathBuf>,
    /// Timed frames of each model per comparison.
    pub runs: usize,
    /// Threads for tract.
    pub threads: usize,
    /// Folder for the variants.
    pub work_dir: PathBuf,
}

/// One variant measured.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    /// Pruning ratio per stage (stages not listed keep every channel).
    #[serde(serialize_with = "ratios_as_decimals")]
    pub ratios: BTreeMap<Stage, f32>,
    /// Float or INT8.
    pub precision: Precision,
    /// The ONNX file (the original's for the original).
    pub model: PathBuf,
    /// Detections against the original's on the held-back photos.
    pub f1: f64,
    /// COCO mAP@0.5:0.95 against the original's detections.
    pub map50_95: Option<f64>,
    /// Median frame time (preprocessing, model, decoding), ms.
    pub median_ms: f64,
    /// The original's median in the same run, its frames taking turns with
    /// the variant's.
    pub original_ms: f64,
    /// The original's median over the variant's, in the same run.
    pub speedup: f64,
    /// `1 - f1 <= max_drop`.
    pub within_budget: bool,
    /// No other variant is both faster and closer to the original.
    pub on_frontier: bool,
}

impl Candidate {
    /// `backbone=0.2,neck=0.3 int8`, `original`.
    pub fn name(&self) -> String {
        let ratios = ratios_text(&self.ratios);
        match (ratios.is_empty(), self.precision) {
            (true, Precision::Fp32) => "original".into(),
            (true, p) => p.name().into(),
            (false, Precision::Fp32) => ratios,
            (false, p) => format!("{ratios} {}", p.name()),
        }
    }
}

/// What the search found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The original model.
    pub model: PathBuf,
    /// The input shape.
    pub shape: Vec<usize>,
    /// The largest F1 drop allowed.
    pub max_drop: f64,
    /// Threads the variants were timed on.
    pub threads: usize,
    /// Every variant measured, in the order measured (the original first).
    pub candidates: Vec<Candidate>,
    /// The fastest variant within the budget (an index into `candidates`).
    pub chosen: usize,
    /// Where the chosen variant was written.
    pub out: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Wall time of the search, seconds.
    pub seconds: f64,
}

/// The original model, its detections on the held-back photos, and a
/// detector kept warm to time variants against.
struct Reference {
    source: ModelSource,
    manifest: Manifest,
    hw: [usize; 2],
    photos: Vec<DynamicImage>,
    detections: Vec<Vec<Detection>>,
    detector: Detector,
    timing_image: DynamicImage,
}

/// Searches for the fastest variant of `source` within the budget and
/// writes it to `out` (and its manifest beside it).
pub fn optimize(source: &ModelSource, out: &Path, options: &Options) -> Result<Report> {
    let started = Instant::now();
    if out.extension().is_none_or(|e| e != "onnx") {
        bail!(
            "output {} must end in .onnx (the manifest is written beside it as .toml)",
            out.display()
        );
    }
    if !(options.step > 0.0 && options.step < 1.0) {
        bail!("--step must be in (0, 1), not {}", options.step);
    }
    if !(0.0..1.0).contains(&options.max_ratio) {
        bail!("--max-ratio must be in [0, 1), not {}", options.max_ratio);
    }
    if !(0.0..=1.0).contains(&options.max_drop) {
        bail!(
            "--max-drop is a drop in F1, in [0, 1], not {}",
            options.max_drop
        );
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if options.held_back.is_empty() {
        bail!("--eval holds no photos: the variants are scored on them");
    }
    let Some(manifest) = source.manifest.clone() else {
        bail!(
            "{} has no manifest: optimize needs the model's manifest (`models/*.toml`), which says how to preprocess and decode",
            source.onnx.display()
        );
    };
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("cannot create {}", options.work_dir.display()))?;
    let hw = manifest
        .input
        .hw_of(&options.shape.dims)
        .context("the input shape has no height and width")?;
    let photos = options
        .held_back
        .iter()
        .map(|p| load_image(p).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let model = edgewise_graph::Model::load(&source.onnx)?;
    let mut detector = Detector::new(model, manifest.clone(), Some(hw), options.threads)?;
    let detections = photos
        .iter()
        .map(|p| Ok(detector.detect(p)?.0))
        .collect::<Result<Vec<_>>>()?;
    let mut reference = Reference {
        source: source.clone(),
        manifest,
        hw,
        timing_image: photos[0].clone(),
        photos,
        detections,
        detector,
    };

    let mut search = Search {
        reference: &mut reference,
        options,
        candidates: vec![],
        sources: vec![],
    };
    search.original()?;
    let path = search.prune_path()?;
    if options.int8 {
        for &ix in &path {
            search.int8_of(ix)?;
        }
    }
    let Search {
        mut candidates,
        sources,
        ..
    } = search;
    mark_frontier(&mut candidates);
    let chosen = fastest_within_budget(&candidates);

    let bytes = std::fs::read(&candidates[chosen].model)
        .with_context(|| format!("cannot read {}", candidates[chosen].model.display()))?;
    write_atomically(out, &bytes)?;
    let what = format!(
        "optimized by edge-convert optimize: {} ({:.2}x the original's speed, F1 {:.3} against it, budget {})",
        candidates[chosen].name(),
        candidates[chosen].speedup,
        candidates[chosen].f1,
        options.max_drop
    );
    let chosen_manifest = sources[chosen]
        .manifest
        .as_ref()
        .expect("every variant has a manifest");
    let manifest_path = write_manifest_beside(chosen_manifest, out, &bytes, "optimized", what)?;
    Ok(Report {
        model: source.onnx.clone(),
        shape: options.shape.dims.clone(),
        max_drop: options.max_drop,
        threads: options.threads,
        candidates,
        chosen,
        out: out.to_path_buf(),
        manifest: manifest_path,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The search's state: the variants measured so far and their sources.
struct Search<'a> {
    reference: &'a mut Reference,
    options: &'a Options,
    candidates: Vec<Candidate>,
    sources: Vec<ModelSource>,
}

impl Search<'_> {
    /// The original, timed against itself (its speed-up is 1 by definition;
    /// the run gives its median).
    fn original(&mut self) -> Result<()> {
        let source = self.reference.source.clone();
        let candidate = Candidate {
            ratios: BTreeMap::new(),
            precision: Precision::Fp32,
            model: source.onnx.clone(),
            f1: 1.0,
            map50_95: mean_ap(
                &self
                    .reference
                    .detections
                    .iter()
                    .map(|d| Image {
                        truth: d.clone(),
                        found: d.clone(),
                    })
                    .collect::<Vec<_>>(),
            )
            .map(|m| m.map50_95),
            median_ms: 0.0,
            original_ms: 0.0,
            speedup: 1.0,
            within_budget: true,
            on_frontier: false,
        };
        let mut detector = Detector::new(
            edgewise_graph::Model::load(&source.onnx)?,
            self.reference.manifest.clone(),
            Some(self.reference.hw),
            self.options.threads,
        )?;
        let (original_ms, _) = self.time(&mut detector)?;
        self.push(
            Candidate {
                median_ms: original_ms,
                original_ms,
                ..candidate
            },
            source,
        );
        Ok(())
    }

    /// Greedy: from the original, add `step` to each open stage in turn,
    /// keep the fastest move within the budget, close a stage whose move
    /// breaks the budget (more pruning elsewhere only makes it worse).
    /// Returns the indices of the points taken, the original first.
    fn prune_path(&mut self) -> Result<Vec<usize>> {
        let options = self.options;
        let mut current: BTreeMap<Stage, f32> = BTreeMap::new();
        let mut open = options.stages.clone();
        let mut path = vec![0];
        loop {
            let mut best: Option<(usize, Stage)> = None;
            let mut closed = vec![];
            for &stage in &open {
                // Kept to three decimals, so that 0.1 + 0.2 reads 0.3.
                let ratio = current.get(&stage).copied().unwrap_or(0.0) + options.step;
                let ratio = (ratio * 1000.0).round() / 1000.0;
                if ratio > options.max_ratio + 1e-6 {
                    closed.push(stage);
                    continue;
                }
                let mut ratios = current.clone();
                ratios.insert(stage, ratio);
                let ix = self.pruned(&ratios)?;
                let c = &self.candidates[ix];
                if !c.within_budget {
                    closed.push(stage);
                } else if best.is_none_or(|(b, _)| c.speedup > self.candidates[b].speedup) {
                    best = Some((ix, stage));
                }
            }
            open.retain(|s| !closed.contains(s));
            let Some((ix, _)) = best else { break };
            current = self.candidates[ix].ratios.clone();
            path.push(ix);
        }
        Ok(path)
    }

    /// Prunes the original at `ratios` (activation importance, least-squares
    /// recovery), scores and times it.
    fn pruned(&mut self, ratios: &BTreeMap<Stage, f32>) -> Result<usize> {
        let options = self.options;
        let text = ratios_text(ratios);
        let out = options.work_dir.join(format!("{}.onnx", file_stem(ratios)));
        eprintln!("optimize: pruning {text}");
        let report = crate::prune::prune(
            &self.reference.source,
            &out,
            &crate::prune::Options {
                ratios: edgewise_prune::Ratios::parse(&text)?,
                criterion: edgewise_prune::Criterion::Activation,
                round: options.round,
                shape: options.shape.clone(),
                calibration: options.calibration.clone(),
                recovery: edgewise_prune::recover::Options::default(),
                threads: options.threads,
                // Timed below, beside the original.
                bench_runs: 0,
            },
        )
        .with_context(|| format!("pruning {text}"))?;
        for warning in &report.warnings {
            eprintln!("optimize: {text}: {warning}");
        }
        let manifest = report
            .manifest
            .context("the pruned model has no manifest beside it")?;
        let source = ModelSource::resolve(&manifest)?;
        self.measure(ratios.clone(), Precision::Fp32, source)
    }

    /// Quantizes variant `ix` to INT8, scores and times it on integer kernels.
    fn int8_of(&mut self, ix: usize) -> Result<usize> {
        let options = self.options;
        let ratios = self.candidates[ix].ratios.clone();
        let name = self.candidates[ix].name();
        let out = options
            .work_dir
            .join(format!("{}_int8.onnx", file_stem(&ratios)));
        eprintln!("optimize: quantizing {name}");
        let report = crate::quantize::quantize(
            &self.sources[ix],
            &out,
            &crate::quantize::Options {
                calibration: options.calibration.clone(),
                method: edgewise_quant::Method::Mse,
                keep_float: KeepFloat::default(),
                shape: Some(options.shape.clone()),
                cache_dir: None,
                threads: options.threads,
                max_drop: None,
                tune: None,
                correct_bias: true,
                through_activation: true,
                reconstruct_seconds: 0.0,
            },
        )
        .with_context(|| format!("quantizing {name}"))?;
        let source = ModelSource::resolve(&report.manifest)?;
        self.measure(ratios, Precision::Int8, source)
    }

    /// Scores the variant of `source` on the held-back photos and times it
    /// against the original.
    fn measure(
        &mut self,
        ratios: BTreeMap<Stage, f32>,
        precision: Precision,
        source: ModelSource,
    ) -> Result<usize> {
        let qdq = match precision {
            Precision::Fp32 => QdqMode::Float,
            Precision::Int8 => QdqMode::Integer,
        };
        let model = edgewise_graph::Model::load(&source.onnx)?;
        let mut detector = Detector::new(
            model,
            self.reference.manifest.clone(),
            Some(self.reference.hw),
            self.options.threads,
        )?
        .with_qdq_mode(qdq);
        let mut agreement = DetectionAgreement::default();
        let mut images = vec![];
        for (photo, truth) in self.reference.photos.iter().zip(&self.reference.detections) {
            let (found, _) = detector.detect(photo)?;
            agreement.add(truth, &found);
            images.push(Image {
                truth: truth.clone(),
                found,
            });
        }
        let (original_ms, median_ms) = self.time(&mut detector)?;
        let f1 = agreement.f1;
        let candidate = Candidate {
            ratios,
            precision,
            model: source.onnx.clone(),
            f1,
            map50_95: mean_ap(&images).map(|m| m.map50_95),
            median_ms,
            original_ms,
            speedup: original_ms / median_ms,
            within_budget: 1.0 - f1 <= self.options.max_drop + 1e-9,
            on_frontier: false,
        };
        eprintln!(
            "optimize: {}: F1 {:.3}, {:.2} ms, {:.2}x the original's speed",
            candidate.name(),
            candidate.f1,
            candidate.median_ms,
            candidate.speedup
        );
        Ok(self.push(candidate, source))
    }

    fn push(&mut self, candidate: Candidate, source: ModelSource) -> usize {
        self.candidates.push(candidate);
        self.sources.push(source);
        self.candidates.len() - 1
    }

    /// Median frame times of the original and of `detector`, frames taking
    /// turns (one warm-up frame each first).
    fn time(&mut self, detector: &mut Detector) -> Result<(f64, f64)> {
        let image = &self.reference.timing_image;
        let frame = |d: &mut Detector| -> Result<Duration> {
            let started = Instant::now();
            d.detect(image)?;
            Ok(started.elapsed())
        };
        frame(&mut self.reference.detector)?;
        frame(detector)?;
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..self.options.runs {
            a.push(frame(&mut self.reference.detector)?);
            b.push(frame(detector)?);
        }
        let median = |d: &[Duration]| Summary::of(d).expect("--runs is at least 1").median_ms;
        Ok((median(&a), median(&b)))
    }
}

/// Marks the variants no other variant beats on both speed and F1.
fn mark_frontier(candidates: &mut [Candidate]) {
    let dominated: Vec<bool> = candidates
        .iter()
        .map(|c| {
            candidates.iter().any(|o| {
                o.speedup >= c.speedup && o.f1 >= c.f1 && (o.speedup > c.speedup || o.f1 > c.f1)
            })
        })
        .collect();
    for (c, d) in candidates.iter_mut().zip(dominated) {
        c.on_frontier = !d;
    }
}

/// The index of the fastest variant within the budget (the original is).
fn fastest_within_budget(candidates: &[Candidate]) -> usize {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.within_budget)
        .max_by(|a, b| a.1.speedup.total_cmp(&b.1.speedup))
        .map(|(i, _)| i)
        .expect("the original is within any budget")
}

/// Ratios in JSON as the decimals they are on the command line (`0.1`,
/// not the f32's `0.10000000149011612`).
fn ratios_as_decimals<S: serde::Serializer>(
    ratios: &BTreeMap<Stage, f32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(ratios.len()))?;
    for (stage, ratio) in ratios {
        map.serialize_entry(stage, &ratio.to_string().parse::<f64>().unwrap_or(0.0))?;
    }
    map.end()
}

fn ratios_text(ratios: &BTreeMap<Stage, f32>) -> String {
    ratios
        .iter()
        .filter(|(_, r)| **r > 0.0)
        .map(|(s, r)| format!("{s}={r}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn file_stem(ratios: &BTreeMap<Stage, f32>) -> String {
    let text = ratios_text(ratios);
    if text.is_empty() {
        "original".into()
    } else {
        text.replace('=', "").replace(',', "_")
    }
}

/// The frontier as a table, the chosen variant marked, and where it went.
pub fn render(report: &Report) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header([
        "variant",
        "F1",
        "mAP@.5:.95",
        "ms",
        "original ms, same run",
        "speed-up",
        "budget",
        "frontier",
    ]);
    for (i, c) in report.candidates.iter().enumerate() {
        let name = if i == report.chosen {
            format!("> {}", c.name())
        } else {
            c.name()
        };
        table.add_row([
            name,
            format!("{:.3}", c.f1),
            c.map50_95.map_or("—".into(), |m| format!("{m:.3}")),
            format!("{:.2}", c.median_ms),
            format!("{:.2}", c.original_ms),
            format!("{:.2}x", c.speedup),
            if c.within_budget { "ok" } else { "over" }.into(),
            if c.on_frontier { "*" } else { "" }.into(),
        ]);
    }
    let chosen = &report.candidates[report.chosen];
    format!(
        "{} at {:?}, {} threads, F1 drop at most {} against the original's detections:\n{table}\n\
         chosen: {} ({:.2}x the original's speed, F1 {:.3}) -> {} ({})\n\
         Speed-ups are measured on this machine, each variant beside the original; \
         on the board, compare the two with `edge-bench` (edge-deploy bench).\n\
         {} variants in {:.0} s.\n",
        report.model.display(),
        report.shape,
        report.threads,
        report.max_drop,
        chosen.name(),
        chosen.speedup,
        chosen.f1,
        report.out.display(),
        report.manifest.display(),
        report.candidates.len(),
        report.seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(f1: f64, speedup: f64, max_drop: f64) -> Candidate {
        Candidate {
            ratios: BTreeMap::new(),
            precision: Precision::Fp32,
            model: PathBuf::new(),
            f1,
            map50_95: None,
            median_ms: 1.0,
            original_ms: speedup,
            speedup,
            within_budget: 1.0 - f1 <= max_drop,
            on_frontier: false,
        }
    }

    #[test]
    fn the_frontier_holds_what_nothing_beats_on_both_speed_and_f1() {
        let mut c = vec![
            candidate(1.0, 1.0, 0.05),
            candidate(1.0, 1.3, 0.05),
            candidate(0.9, 1.2, 0.05),
            candidate(0.8, 2.0, 0.05),
        ];
        mark_frontier(&mut c);
        let on: Vec<bool> = c.iter().map(|c| c.on_frontier).collect();
        assert_eq!(on, [false, true, false, true]);
        assert_eq!(fastest_within_budget(&c), 1);
    }

    #[test]
    fn the_original_is_chosen_when_nothing_else_is_within_budget() {
        let c = vec![candidate(1.0, 1.0, 0.0), candidate(0.99, 3.0, 0.0)];
        assert_eq!(fastest_within_budget(&c), 0);
    }

    #[test]
    fn variants_are_named_by_their_ratios_and_precision() {
        let mut c = candidate(1.0, 1.0, 0.0);
        assert_eq!(c.name(), "original");
        c.precision = Precision::Int8;
        assert_eq!(c.name(), "int8");
        c.ratios.insert(Stage::Neck, 0.3);
        c.ratios.insert(Stage::Backbone, 0.1);
        assert_eq!(c.name(), "backbone=0.1,neck=0.3 int8");
        assert_eq!(file_stem(&c.ratios), "backbone0.1_neck0.3");
    }
}
