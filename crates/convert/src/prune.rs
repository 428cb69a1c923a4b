//! `edge-convert prune`: structured pruning by stage (`edgewise-prune`),
//! recovered on calibration photos (least squares or bias compensation),
//! checked by tract before anything is written, with parameters and MACs
//! per stage before and after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use edgewise_graph::InputShape;
use edgewise_graph::analysis::tract_model;
use edgewise_graph::model::write_atomically;
use edgewise_graph::tract_onnx::prelude::{InferenceModelExt, Tensor};
use edgewise_prune::Calibration;
use edgewise_prune::recover::{self, Recovery};
use edgewise_prune::{Criterion, GroupReport, PruneError, Ratios};
use edgewise_runtime::{Engine, ModelSource};
use edgewise_stages::{Stage, StagedModel};
use serde::Serialize;

use crate::photos::input_tensors;
use crate::quantize::write_manifest_beside;

/// How to prune.
pub struct Options {
    /// Share of channels to remove per stage.
    pub ratios: Ratios,
    /// Filter importance.
    pub criterion: Criterion,
    /// Kept channel counts are multiples of this.
    pub round: usize,
    /// The input shape the model is analysed at.
    pub shape: InputShape,
    /// Calibration photos for recovery (none: no recovery).
    pub calibration: Vec<PathBuf>,
    /// How the pruned layers are recovered.
    pub recovery: recover::Options,
    /// Threads for tract.
    pub threads: usize,
    /// Frames `edge-bench` times each model on, before and after, for the
    /// per-stage latency (0: not timed).
    pub bench_runs: usize,
}

/// Parameters, MACs and measured latency of one stage, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct StageCost {
    /// The stage.
    pub stage: Stage,
    /// Parameters before.
    pub params_before: u64,
    /// Parameters after.
    pub params_after: u64,
    /// Multiply-accumulates before.
    pub macs_before: u64,
    /// Multiply-accumulates after.
    pub macs_after: u64,
    /// Median latency before, ms (`edge-bench`, when timed).
    pub ms_before: Option<f64>,
    /// Median latency after, ms.
    pub ms_after: Option<f64>,
}

/// What `prune` did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The original model.
    pub model: PathBuf,
    /// The pruned model written.
    pub out: PathBuf,
    /// The manifest written beside it, when the source had one.
    pub manifest: Option<PathBuf>,
    /// The input shape used.
    pub shape: Vec<usize>,
    /// Per-stage cost.
    pub stages: Vec<StageCost>,
    /// Every group of layers sharing channels.
    pub groups: Vec<GroupReport>,
    /// Nodes whose channels could not be followed.
    pub warnings: Vec<String>,
    /// What recovery did, when it ran.
    pub recovery: Option<Recovery>,
}

/// The calibration photos, preprocessed once, run through tract.
struct Photos {
    inputs: Vec<Tensor>,
    shape: InputShape,
    threads: usize,
    bar: indicatif::ProgressBar,
}

impl Photos {
    /// The calibration photos of `options`, preprocessed as the model's
    /// manifest says.
    fn load(source: &ModelSource, options: &Options) -> Result<Photos> {
        let Some(manifest) = &source.manifest else {
            bail!(
                "{} has no manifest: --calib needs the model's manifest (`models/*.toml`), which says how to preprocess photos",
                source.onnx.display()
            );
        };
        let inputs = input_tensors(manifest, &options.shape, &options.calibration)?;
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{msg:>12} {bar:30} {pos}/{len} model runs")
                .expect("a valid template"),
        );
        bar.set_message("calibration");
        Ok(Photos {
            inputs,
            shape: options.shape.clone(),
            threads: options.threads,
            bar,
        })
    }
}

impl Calibration for Photos {
    fn len(&self) -> usize {
        self.inputs.len()
    }

    fn expect_passes(&mut self, passes: usize) {
        self.bar.inc_length((passes * self.inputs.len()) as u64);
    }

    fn run(
        &mut self,
        model: &edgewise_graph::Model,
        values: &[String],
        sink: &mut edgewise_prune::calibration::Sink,
    ) -> Result<(), PruneError> {
        if self.bar.length() == Some(0) {
            self.bar.set_length(self.inputs.len() as u64);
        }
        let failed = |e: edgewise_runtime::RuntimeError| PruneError::Calibration(e.to_string());
        // The engine's outputs are the probed model's, in `values` order.
        let probed = model.with_outputs(values);
        let mut engine =
            Engine::from_model(&probed, std::slice::from_ref(&self.shape), self.threads)
                .map_err(failed)?;
        for (j, input) in self.inputs.iter().enumerate() {
            let outputs = engine.run(vec![input.clone()]).map_err(failed)?;
            sink(j, &outputs)?;
            self.bar.inc(1);
        }
        Ok(())
    }
}

/// Prunes the model of `source` into `out` (and a manifest beside it).
pub fn prune(source: &ModelSource, out: &Path, options: &Options) -> Result<Report> {
    if out.extension().is_none_or(|e| e != "onnx") {
        bail!(
            "output {} must end in .onnx (the manifest is written beside it as .toml)",
            out.display()
        );
    }
    let mut model = edgewise_graph::Model::load(&source.onnx)?;
    // Exporters such as Paddle2ONNX write weights as `Constant` nodes.
    model.constants_to_initializers();
    // Paddle's exports reshape every per-channel constant at run time and add
    // biases after the convolution: folded, their channels can be pruned.
    edgewise_graph::passes::fold_reshaped_initializers(&mut model)?;
    edgewise_graph::passes::fold_bias_adds(&mut model)?;
    edgewise_graph::passes::fold_batch_norms(&mut model)?;
    let overrides = source.stage_boundaries(&[], &[]);
    let shapes = std::slice::from_ref(&options.shape);
    let before = StagedModel::new(model, shapes, &overrides)?;
    let mut photos = if options.calibration.is_empty() {
        None
    } else {
        Some(Photos::load(source, options)?)
    };
    let mut pruned = edgewise_prune::prune(
        &before,
        &edgewise_prune::Options {
            ratios: options.ratios.clone(),
            criterion: options.criterion,
            round: options.round,
        },
        photos.as_mut().map(|p| p as &mut dyn Calibration),
    )?;
    let recovery = match &mut photos {
        Some(photos) => {
            let r = recover::recover(
                &before.model,
                &before.facts,
                &mut pruned.model,
                &pruned.kept,
                photos,
                &options.recovery,
            )?;
            photos.bar.finish_and_clear();
            Some(r)
        }
        None => None,
    };
    // The stage boundaries of the original hold for the pruned model: the
    // same nodes, fewer channels.
    let after = StagedModel::new(pruned.model.clone(), shapes, &overrides)
        .context("the pruned model does not analyse: this is a bug in edge-convert prune")?;
    let inputs = vec![(
        before.model.graph.real_inputs()[0].name.clone(),
        options.shape.dims.clone(),
    )];
    tract_model(&pruned.model, &inputs)?
        .into_typed()
        .and_then(|m| m.into_optimized())
        .context("tract cannot optimize the pruned model: this is a bug in edge-convert prune")?;

    let stages = [Stage::Backbone, Stage::Neck, Stage::Head]
        .into_iter()
        .map(|stage| {
            let sum = |m: &StagedModel| {
                m.costs
                    .iter()
                    .zip(&m.partition.stages)
                    .filter(|(_, s)| **s == stage)
                    .fold((0, 0), |(p, c), (cost, _)| (p + cost.params, c + cost.macs))
            };
            let ((p0, m0), (p1, m1)) = (sum(&before), sum(&after));
            StageCost {
                stage,
                params_before: p0,
                params_after: p1,
                macs_before: m0,
                macs_after: m1,
                ms_before: None,
                ms_after: None,
            }
        })
        .collect::<Vec<_>>();

    let bytes = pruned.model.to_bytes()?;
    write_atomically(out, &bytes)?;
    let manifest = source
        .manifest
        .as_ref()
        .map(|m| {
            let what = format!(
                "pruned by edge-convert prune ({})",
                ratios_text(&options.ratios)
            );
            write_manifest_beside(m, out, &bytes, "pruned", what)
        })
        .transpose()?;
    let mut stages = stages;
    if options.bench_runs > 0 {
        let pruned_source = ModelSource::resolve(manifest.as_deref().unwrap_or(out))?;
        let image = options.calibration.first().map(PathBuf::as_path);
        // Rounds taking turns, so that the machine's drift falls on both.
        let (mut before, mut after) = (vec![], vec![]);
        for _ in 0..BENCH_ROUNDS {
            before.push(stage_medians(source, &options.shape, image, options)?);
            after.push(stage_medians(
                &pruned_source,
                &options.shape,
                image,
                options,
            )?);
        }
        let median_of = |rounds: &[HashMap<String, f64>], stage: Stage| {
            let mut ms: Vec<f64> = rounds
                .iter()
                .filter_map(|r| r.get(stage.name()).copied())
                .collect();
            ms.sort_by(f64::total_cmp);
            (!ms.is_empty()).then(|| ms[ms.len() / 2])
        };
        for cost in &mut stages {
            cost.ms_before = median_of(&before, cost.stage);
            cost.ms_after = median_of(&after, cost.stage);
        }
    }
    Ok(Report {
        model: source.onnx.clone(),
        out: out.to_path_buf(),
        manifest,
        shape: options.shape.dims.clone(),
        stages,
        groups: pruned.groups,
        warnings: pruned.warnings,
        recovery,
    })
}

/// `edge-bench` rounds per model when timing before and after (the
/// median round is reported).
pub const BENCH_ROUNDS: usize = 3;

/// Median milliseconds per stage of `source`, measured by `edge-bench`'s
/// measurement (whole frames, per-node timing attributed to stages).
fn stage_medians(
    source: &ModelSource,
    shape: &InputShape,
    image: Option<&Path>,
    options: &Options,
) -> Result<HashMap<String, f64>> {
    let target = edgewise_measure::measure::Target::new(
        source.onnx.display().to_string(),
        source.clone(),
        vec![shape.clone()],
        &source.stage_boundaries(&[], &[]),
    )?;
    let budget = edgewise_measure::measure::Budget {
        warmup: 1,
        runs: options.bench_runs,
        max_seconds: 120.0,
        threads: options.threads,
        qdq: edgewise_runtime::QdqMode::Float,
        precision: Default::default(),
        float_conv: Default::default(),
    };
    let variant = edgewise_measure::measure::measure(&target, image, budget, None, &mut |_, _| {})
        .with_context(|| format!("timing {}", source.onnx.display()))?;
    Ok(variant
        .stages
        .into_iter()
        .map(|row| (row.stage, row.time.median_ms))
        .collect())
}

fn ratios_text(ratios: &Ratios) -> String {
    ratios
        .per_stage
        .iter()
        .map(|(s, r)| format!("{s}={r}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn change(before: u64, after: u64) -> String {
    if before == 0 {
        return "—".into();
    }
    format!("{:+.1}%", (after as f64 / before as f64 - 1.0) * 100.0)
}

/// The report as text: per-stage cost, the groups that changed, warnings.
pub fn render(report: &Report) -> String {
    let mut s = format!(
        "{} -> {} at {}\n",
        report.model.display(),
        report.out.display(),
        report
            .shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x")
    );
    if let Some(m) = &report.manifest {
        s += &format!("manifest {}\n", m.display());
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let timed = report.stages.iter().any(|c| c.ms_before.is_some());
    let mut header = vec![
        "stage", "params", "after", "change", "MACs", "after", "change",
    ];
    if timed {
        header.extend(["median ms", "after", "speed-up"]);
    }
    table.set_header(header);
    for c in &report.stages {
        let mut row = vec![
            c.stage.to_string(),
            millions(c.params_before),
            millions(c.params_after),
            change(c.params_before, c.params_after),
            millions(c.macs_before),
            millions(c.macs_after),
            change(c.macs_before, c.macs_after),
        ];
        if timed {
            let ms = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
            row.extend([
                ms(c.ms_before),
                ms(c.ms_after),
                match (c.ms_before, c.ms_after) {
                    (Some(b), Some(a)) if a > 0.0 => format!("{:.2}x", b / a),
                    _ => "—".into(),
                },
            ]);
        }
        table.add_row(row);
    }
    s += &format!("{table}\n");
    if timed {
        s += &format!(
            "median ms: edge-bench on this machine, {BENCH_ROUNDS} rounds taking turns before and after (--bench-runs frames each), the median round\n"
        );
    }
    let changed = report.groups.iter().filter(|g| g.kept < g.channels).count();
    s += &format!(
        "groups: {} of {} pruned (layers sharing channels lose the same ones)\n",
        changed,
        report.groups.len()
    );
    for g in &report.groups {
        let layers = match g.layers.as_slice() {
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} and {} more", rest.len()),
            [] => continue,
        };
        let note = match &g.fixed {
            Some(why) if g.kept == g.channels => format!("  (kept: {why})"),
            Some(why) => format!("  (some kept: {why})"),
            None => String::new(),
        };
        s += &format!(
            "  {:<8} {:>4} -> {:<4} {layers}{note}\n",
            g.stage.name(),
            g.channels,
            g.kept
        );
    }
    if let Some(r) = &report.recovery {
        s += &render_recovery(r);
    }
    for w in &report.warnings {
        s += &format!("warning: {w}\n");
    }
    s
}

/// What recovery did: how many layers, and their error before and after.
fn render_recovery(r: &Recovery) -> String {
    use recover::Method;
    let mut s = String::new();
    let refit: Vec<_> = r
        .layers
        .iter()
        .filter(|l| l.method != Method::None)
        .collect();
    let waves = refit.iter().filter_map(|l| l.wave).max().unwrap_or(0);
    s += &format!(
        "recovery: {} on {} photos, {} of {} layers that lost input channels{} ({} model runs over the photos)\n",
        r.method.name(),
        r.inputs,
        refit.len(),
        r.layers.len(),
        if waves > 0 {
            format!(", refit in {waves} waves")
        } else {
            String::new()
        },
        r.passes
    );
    let mut errors: Vec<(f64, f64, &str)> = refit
        .iter()
        .filter_map(|l| l.error.map(|(b, a)| (b, a, l.node.as_str())))
        .collect();
    if !errors.is_empty() {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let before = median(errors.iter().map(|e| e.0).collect());
        let after = median(errors.iter().map(|e| e.1).collect());
        errors.sort_by(|a, b| b.1.total_cmp(&a.1));
        s += &format!(
            "  relative error of a refit layer's output on the photos, median: {before:.4} -> {after:.4}; worst after: {:.4} ({})\n",
            errors[0].1, errors[0].2
        );
    }
    for l in r.layers.iter().filter(|l| l.note.is_some()) {
        s += &format!(
            "  not refit: {} ({})\n",
            l.node,
            l.note.as_deref().unwrap_or_default()
        );
    }
    s
}
