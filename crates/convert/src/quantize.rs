//! `edge-convert quantize`: post-training static INT8 into portable QDQ ONNX,
//! calibrated on real photos preprocessed as the model's manifest says.
//!
//! The steps: prepare the model ([`edgewise_quant::ptq::prepare`]: BatchNorm
//! folded, constants made initializers), choose the convolutions to quantize
//! (all but those `--keep-float` names), observe their activations on the
//! calibration photos (two passes: the extremes, then a histogram over
//! them; cached, so another `--method` costs no inference), pick each range
//! with the calibration method, write the QDQ model and a manifest beside it,
//! and check which convolutions tract runs on integer kernels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgewise_graph::model::write_atomically;
use edgewise_graph::{InputShape, Model};
use edgewise_kernels::{Precision, audit};
use edgewise_manifest::{Manifest, Source};
use edgewise_quant::calib::{Extremes, Histogram, Method};
use edgewise_quant::follow;
use edgewise_quant::ptq::{self, Plan, Prepared, Quantized};
use edgewise_runtime::{Engine, ModelSource, QdqMode, load_image};
use edgewise_stages::{Stage, StagedModel};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::bias::{self, BiasCorrection};
use crate::mixed::{MixedPrecision, Search};
use crate::photos::{input_tensors, tensors_of};
use crate::reconstruct::{self, Reconstruction};
use sha2::{Digest, Sha256};

/// What to keep in float: stage names (`backbone`, `neck`, `head`, `pre`,
/// `post`) or glob patterns over node names.
#[derive(Clone, Debug, Default)]
pub struct KeepFloat {
    stages: Vec<Stage>,
    patterns: Vec<glob::Pattern>,
}

impl KeepFloat {
    /// Parses the `--keep-float` entries.
    pub fn parse(entries: &[String]) -> Result<KeepFloat> {
        let mut keep = KeepFloat::default();
        for e in entries {
            match Stage::ALL.iter().find(|s| s.name() == e.as_str()) {
                Some(s) => keep.stages.push(*s),
                None => keep.patterns.push(glob::Pattern::new(e).with_context(|| {
                    format!("--keep-float entry `{e}` is not a stage name or a glob pattern")
                })?),
            }
        }
        Ok(keep)
    }

    fn reason(&self, stage: Stage, label: &str) -> Option<String> {
        if self.stages.contains(&stage) {
            return Some(format!("--keep-float {stage}"));
        }
        self.patterns
            .iter()
            .find(|p| p.matches(label))
            .map(|p| format!("--keep-float {}", p.as_str()))
    }
}

/// Options of one quantization.
#[derive(Clone, Debug)]
pub struct Options {
    /// The calibration photos.
    pub calibration: Vec<PathBuf>,
    /// How activation ranges are chosen.
    pub method: Method,
    /// What stays float.
    pub keep_float: KeepFloat,
    /// The input shape; default: the manifest's size.
    pub shape: Option<InputShape>,
    /// Where calibration statistics are cached.
    pub cache_dir: Option<PathBuf>,
    /// Threads for tract.
    pub threads: usize,
    /// Whether [`Method::Mse`] judges a range through the element-wise
    /// function that follows the tensor ([`follow`]), not on its values.
    pub through_activation: bool,
    /// Whether biases absorb the mean error of int8 ([`crate::bias`]).
    pub correct_bias: bool,
    /// With a drop in F1 (against the float model, on the calibration
    /// photos): keep in float the fewest convolutions that bring int8
    /// within it ([`crate::mixed`]).
    pub max_drop: Option<f64>,
    /// The photos `--max-drop` measures F1 on; default: the calibration
    /// photos.
    pub tune: Option<Vec<PathBuf>>,
    /// Seconds for learning every convolution's rounding from the float
    /// model ([`crate::reconstruct`]); 0: round to nearest.
    pub reconstruct_seconds: f64,
}

/// The calibration statistics of one model on one set of photos.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Statistics {
    key: String,
    histograms: HashMap<String, Histogram>,
}

/// What a quantization did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The model quantized.
    pub model: PathBuf,
    /// The QDQ model written.
    pub out: PathBuf,
    /// The manifest written beside it.
    pub manifest: PathBuf,
    /// The input shape calibrated at.
    pub shape: Vec<usize>,
    /// Calibration method.
    pub method: Method,
    /// Calibration photos.
    pub calibration_photos: usize,
    /// Whether the statistics came from the cache.
    pub cached_statistics: bool,
    /// Activations whose range was judged through the element-wise
    /// function their readers compute (SiLU, hard-swish...).
    pub through_activation: usize,
    /// Preparation.
    pub prepared: Prepared,
    /// The plan: convolutions quantized and kept float.
    pub plan: Plan,
    /// The rewrite.
    pub quantized: Quantized,
    /// What learned rounding did.
    pub reconstruction: Option<Reconstruction>,
    /// What bias correction did.
    pub bias_correction: Option<BiasCorrection>,
    /// What `--max-drop` kept in float, and why.
    pub mixed: Option<MixedPrecision>,
    /// Convolutions tract runs on integer kernels when the model runs with
    /// `--qdq integer`, and those left in float.
    pub integer_convs: usize,
    /// Convolutions in float in that run.
    pub float_convs: usize,
    /// File sizes in bytes: before, after.
    pub bytes: (u64, u64),
}

/// Writes the manifest of a model derived from `manifest` (its ONNX bytes
/// already written to `out`) beside `out` as `.toml`: the name gets
/// `_{suffix}`, the description ` -- {what}`, the source is the new file and
/// its sha256. Returns the manifest's path.
pub(crate) fn write_manifest_beside(
    manifest: &Manifest,
    out: &Path,
    bytes: &[u8],
    suffix: &str,
    what: String,
) -> Result<PathBuf> {
    let path = out.with_extension("toml");
    let file = out
        .file_name()
        .and_then(|f| f.to_str())
        .context("the output file name is not UTF-8")?
        .to_string();
    let mut derived = manifest.clone();
    derived.name = format!("{}_{suffix}", manifest.name);
    derived.description = format!("{} -- {what}", manifest.description);
    derived.source = Source {
        pip: None,
        member: None,
        sdist: false,
        python_version: None,
        python_literal: None,
        path: Some(file.clone()),
        file,
        sha256: sha256_hex(bytes),
    };
    write_atomically(&path, toml::to_string(&derived)?.as_bytes())?;
    Ok(path)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache folder: `$XDG_CACHE_HOME/edgewise/calibration`, else
/// `~/.cache/edgewise/calibration`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("edgewise").join("calibration"))
}

/// Quantizes the model of `source` to `out` (and a manifest beside it).
pub fn quantize(source: &ModelSource, out: &Path, options: &Options) -> Result<Report> {
    if out.extension().is_none_or(|e| e != "onnx") {
        bail!(
            "output {} must end in .onnx (the manifest is written beside it as .toml)",
            out.display()
        );
    }
    let manifest = source.manifest.as_ref().with_context(|| {
        format!(
            "{} has no manifest: quantize needs one to preprocess the calibration photos as the \
             model expects; give the manifest (`models/*.toml`, or the .toml `edge-convert zoo` writes)",
            source.onnx.display()
        )
    })?;
    let shape = options.shape.clone().unwrap_or_else(|| InputShape {
        name: manifest.input.name.clone(),
        dims: manifest.input.shape(),
    });
    // Checked before any work (the photos are read only if not cached).
    manifest
        .input
        .hw_of(&shape.dims)
        .with_context(|| format!("input shape {:?} has no height and width", shape.dims))?;
    let original_bytes = std::fs::metadata(&source.onnx)?.len();
    let mut model = Model::load(&source.onnx)?;
    let constants = model.constants_to_initializers();
    // Raised here, where the input shape is known (Softmax's axis needs the
    // rank); the report says so as if `prepare` had done it.
    let raised =
        edgewise_graph::passes::raise_opset_to_13(&mut model, std::slice::from_ref(&shape))?;
    edgewise_graph::passes::fold_reshaped_initializers(&mut model)?;
    let mut prepared = ptq::prepare(&mut model)?;
    if let Some(old) = raised {
        prepared.opset_raised = Some((old, 13));
    }
    // Made initializers above, before `prepare`, which would have counted them.
    prepared.constants += constants;

    let staged = StagedModel::new(
        model.clone(),
        std::slice::from_ref(&shape),
        &source.stage_boundaries(&[], &[]),
    )
    .context("cannot find the model's stages (for --keep-float)")?;
    let plan = ptq::plan(&model, |ix, _| {
        options
            .keep_float
            .reason(staged.partition.stages[ix], &model.graph.node_label(ix))
    });
    if plan.convs.is_empty() {
        bail!(
            "no convolution to quantize ({} kept in float): check --keep-float",
            plan.float.len()
        );
    }
    let observed = plan.observed_values();

    let key = statistics_key(&model, &observed, manifest, &shape, &options.calibration)?;
    let cache = options
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.json", &key[..16])));
    let cached = cache
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Statistics>(&b).ok())
        .filter(|s| s.key == key);
    let cached_statistics = cached.is_some();
    let histograms = match cached {
        Some(s) => s.histograms,
        None => {
            let h = observe(&model, &observed, manifest, &shape, options)?;
            if let Some(path) = &cache {
                std::fs::create_dir_all(path.parent().expect("a file in a folder")).with_context(
                    || format!("cannot create cache folder for {}", path.display()),
                )?;
                let stats = Statistics {
                    key,
                    histograms: h.clone(),
                };
                write_atomically(path, &serde_json::to_vec(&stats)?)?;
            }
            h
        }
    };
    // With `mse`, each range judged through the activation its readers compute.
    let judge_through = options.through_activation && options.method == Method::Mse;
    let mut through_activation = 0;
    let ranges: HashMap<String, (f32, f32)> = histograms
        .iter()
        .map(|(name, h)| {
            let range = match judge_through
                .then(|| follow::following(&model, name))
                .flatten()
            {
                Some(f) => {
                    through_activation += 1;
                    h.range_through(options.method, Some(&|x| f.apply(x)))
                }
                None => h.range(options.method),
            };
            (name.clone(), range)
        })
        .collect();
    // Decoded once for bias correction and mixed precision.
    let load = |paths: &[PathBuf]| -> Result<Vec<DynamicImage>> {
        paths.iter().map(|p| Ok(load_image(p)?)).collect()
    };
    let reconstructing = options.reconstruct_seconds > 0.0;
    let calibration_images = if options.correct_bias || options.max_drop.is_some() || reconstructing
    {
        load(&options.calibration)?
    } else {
        vec![]
    };
    let calibration_inputs = tensors_of(manifest, &shape, &calibration_images)?;
    let tune_images = match (&options.tune, options.max_drop) {
        (Some(tune), Some(_)) => Some(load(tune)?),
        _ => None,
    };
    let float_model = model;
    // Weights rounded once: bias correction and mixed precision quantize
    // the model again and again.
    let mut plan = plan;
    ptq::fill_nearest_weights(&float_model, &mut plan)?;
    // Learned rounding first: bias correction then measures the int8 model
    // as it will be written.
    let reconstruction = if reconstructing {
        let (weights, done) = reconstruct::reconstruct(
            &float_model,
            &plan,
            &ranges,
            &shape,
            &calibration_inputs,
            options.threads,
            options.reconstruct_seconds,
        )?;
        plan.weights = weights;
        Some(done)
    } else {
        None
    };
    let correct = |plan: &Plan| -> Result<(Model, Option<BiasCorrection>)> {
        if !options.correct_bias {
            return Ok((float_model.clone(), None));
        }
        let (model, done) = bias::correct(
            &float_model,
            plan,
            &ranges,
            &shape,
            &calibration_inputs,
            options.threads,
        )?;
        Ok((model, Some(done)))
    };
    let (mut model, mut bias_correction) = correct(&plan)?;
    let (plan, mixed) = match options.max_drop {
        None => (plan, None),
        Some(max_drop) => {
            let search = Search {
                model: &model,
                plan: &plan,
                ranges: &ranges,
                macs: (0..model.graph.nodes.len())
                    .map(|ix| (model.graph.node_label(ix), staged.costs[ix].macs))
                    .collect(),
                manifest,
                shape: &shape,
                photos: tune_images.as_deref().unwrap_or(&calibration_images),
                threads: options.threads,
            };
            let mixed = search.run(max_drop)?;
            let float = mixed.float.iter().map(String::as_str).collect();
            let plan = search.plan_without(&float, max_drop);
            // The float convolutions change the errors the biases absorb.
            if !mixed.float.is_empty() {
                (model, bias_correction) = correct(&plan)?;
            }
            (plan, Some(mixed))
        }
    };
    let mut quantized_model = model;
    let quantized = ptq::quantize(&mut quantized_model, &plan, &ranges)?;
    quantized_model.set_metadata(
        "edgewise.quantization",
        format!(
            "int8 QDQ: weights symmetric per output channel, activations asymmetric per tensor; \
             {} calibration on {} photos at {:?}",
            options.method,
            options.calibration.len(),
            shape.dims
        ),
    );

    // Which convolutions tract runs in integer: a quantized conv silently
    // left in float is an error in this tool, not a detail.
    let engine = Engine::with_qdq_mode(
        &quantized_model,
        std::slice::from_ref(&shape),
        1,
        QdqMode::Integer,
    )?;
    let kernels = audit(engine.plan());
    let integer_convs = kernels
        .iter()
        .filter(|k| k.precision == Precision::Integer)
        .count();
    let float_convs = kernels.len() - integer_convs;
    if integer_convs < plan.convs.len() {
        bail!(
            "{} convolution(s) were quantized but only {integer_convs} run on integer kernels in tract",
            plan.convs.len()
        );
    }

    let bytes = quantized_model.to_bytes()?;
    write_atomically(out, &bytes)?;
    let manifest_path = write_manifest_beside(
        manifest,
        out,
        &bytes,
        "int8",
        format!(
            "INT8 (QDQ) by edge-convert quantize, {} calibration on {} photos",
            options.method,
            options.calibration.len()
        ),
    )?;

    Ok(Report {
        model: source.onnx.clone(),
        out: out.to_path_buf(),
        manifest: manifest_path,
        shape: shape.dims.clone(),
        method: options.method,
        calibration_photos: options.calibration.len(),
        cached_statistics,
        through_activation,
        prepared,
        plan,
        quantized,
        reconstruction,
        bias_correction,
        mixed,
        integer_convs,
        float_convs,
        bytes: (original_bytes, bytes.len() as u64),
    })
}

/// Identifies a calibration: the prepared model, the values observed, the
/// preprocessing and shape, and every photo's bytes.
fn statistics_key(
    model: &Model,
    observed: &[String],
    manifest: &Manifest,
    shape: &InputShape,
    photos: &[PathBuf],
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"edgewise.calibration/1\0");
    h.update(model.to_bytes()?);
    for v in observed {
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    h.update(serde_json::to_vec(&manifest.input)?);
    h.update(format!("{:?}", shape.dims));
    for p in photos {
        let bytes =
            std::fs::read(p).with_context(|| format!("cannot read photo {}", p.display()))?;
        h.update(Sha256::digest(&bytes));
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Runs the model on every calibration photo, twice: the extremes of each
/// observed value, then its histogram over them.
fn observe(
    model: &Model,
    observed: &[String],
    manifest: &Manifest,
    shape: &InputShape,
    options: &Options,
) -> Result<HashMap<String, Histogram>> {
    let probed = model.with_outputs(observed);
    let mut engine = Engine::from_model(&probed, std::slice::from_ref(shape), options.threads)?;
    let inputs = input_tensors(manifest, shape, &options.calibration)?;
    let bar = indicatif::ProgressBar::new(2 * inputs.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} {bar:30} {pos}/{len} photos, {eta} left",
        )
        .expect("a valid template"),
    );
    bar.set_message("extremes");
    let mut extremes = vec![Extremes::default(); observed.len()];
    for input in &inputs {
        let outputs = engine.run(vec![input.clone()])?;
        for (e, t) in extremes.iter_mut().zip(&outputs) {
            e.observe(floats(t)?);
        }
        bar.inc(1);
    }
    bar.set_message("histograms");
    let mut histograms: Vec<Histogram> = extremes.iter().map(|e| Histogram::new(*e)).collect();
    for input in &inputs {
        let outputs = engine.run(vec![input.clone()])?;
        for (h, t) in histograms.iter_mut().zip(&outputs) {
            h.add(floats(t)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(observed.iter().cloned().zip(histograms).collect())
}

fn floats(t: &edgewise_graph::tract_onnx::prelude::Tensor) -> Result<&[f32]> {
    edgewise_graph::tensor::values::<f32>(t).context("an observed activation is not float32")
}

/// The text report.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let q = &report.quantized;
    let _ = writeln!(
        s,
        "{} -> {} ({:.1} MB -> {:.1} MB), manifest {}",
        report.model.display(),
        report.out.display(),
        report.bytes.0 as f64 / 1e6,
        report.bytes.1 as f64 / 1e6,
        report.manifest.display()
    );
    let p = &report.prepared;
    let _ = writeln!(
        s,
        "prepared: {} BatchNormalization folded, {} bias Add folded, {} ConvTranspose as \
         Conv + DepthToSpace, {} constants made initializers{}",
        p.folded_batch_norms,
        p.folded_bias_adds,
        p.deconvs_as_convs,
        p.constants,
        p.opset_raised
            .map(|(a, b)| format!(", opset {a} -> {b}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "calibration: {} on {} photos at {:?}{}{}",
        report.method,
        report.calibration_photos,
        report.shape,
        if report.cached_statistics {
            " (statistics from the cache)"
        } else {
            ""
        },
        if report.through_activation > 0 {
            format!(
                "; {} range(s) judged through the activation that follows",
                report.through_activation
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "quantized: {} convolutions (int8 weights per channel), {} activation pairs, {} Relu/Clip absorbed{}",
        q.convs,
        q.activation_pairs,
        q.absorbed,
        if q.float_biases.is_empty() {
            String::new()
        } else {
            format!(", {} float bias(es)", q.float_biases.len())
        }
    );
    let _ = writeln!(
        s,
        "in tract (--qdq integer): {} convolutions on integer kernels, {} on float",
        report.integer_convs, report.float_convs
    );
    if let Some(r) = &report.reconstruction {
        let _ = writeln!(
            s,
            "reconstruction: learned rounding kept for {} of {} convolutions ({} levels, {:.0} s, \
             median {} steps); held-out error after the activation {:.2}x nearest rounding's on them",
            r.kept(),
            r.convs.len(),
            r.levels,
            r.seconds,
            r.median_steps(),
            r.mean_ratio(),
        );
    }
    if let Some(b) = &report.bias_correction {
        let _ = writeln!(
            s,
            "bias correction: {} convolutions in {} levels; mean channel shift against float \
             {:.4} -> {:.4} standard deviations; output SNR {:.1} -> {:.1} dB: {}",
            b.convs,
            b.levels,
            b.shift.0,
            b.shift.1,
            b.snr_db.0,
            b.snr_db.1,
            if b.applied {
                "kept"
            } else {
                "dropped (the outputs moved away from float)"
            }
        );
    }
    if let Some(m) = &report.mixed {
        let first = m.steps.first().map_or(0.0, |s| s.f1);
        let last = m.steps.iter().find(|s| s.float == m.float.len());
        let _ = writeln!(
            s,
            "mixed precision (--max-drop {}): {} of {} convolutions in float ({:.1}% of the \
             multiply-adds); detections F1 against float on the calibration photos ({} \
             detections) {:.3} -> {:.3}{}",
            m.max_drop,
            m.float.len(),
            m.ranking.len(),
            100.0 * last.map_or(0.0, |s| s.mac_share),
            m.reference_detections,
            first,
            last.map_or(first, |s| s.f1),
            if m.met {
                String::new()
            } else {
                format!(
                    "; NOT met: every convolution whose float helps is in float, \
                     and F1 is still below {:.3}",
                    1.0 - m.max_drop
                )
            }
        );
        let _ = writeln!(
            s,
            "  sensitivity (output SNR {:.1} dB all int8; dB gained with one convolution in float, share of multiply-adds):",
            m.int8_snr_db
        );
        for r in m.ranking.iter().take(10) {
            let _ = writeln!(
                s,
                "    {:>+6.2} dB {:>5.1}%  {}{}",
                r.gain_db,
                100.0 * r.mac_share,
                r.node,
                if m.float.contains(&r.node) {
                    "  (float)"
                } else {
                    ""
                }
            );
        }
    }
    if !report.plan.float.is_empty() {
        let _ = writeln!(s, "kept in float:");
        for (node, why) in &report.plan.float {
            let _ = writeln!(s, "  {node}: {why}");
        }
    }
    s
}
