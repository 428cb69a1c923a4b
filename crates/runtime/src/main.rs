//! The `edge-run` command: detections as JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use edgewise_graph::{InputShape, Model};
use edgewise_manifest::Manifest;
#[cfg(not(feature = "gpio"))]
use edgewise_runtime::actions::LogPin;
use edgewise_runtime::actions::{Act, ActionsFile, Event};
use edgewise_runtime::draw::draw_detections;
use edgewise_runtime::{Detector, ModelSource, QdqMode, QdqRewrite, load_image};
use serde::Serialize;

/// Run a detector on images: one JSON line per detection on stdout, one
/// timing line per image on stderr.
#[derive(Parser)]
#[command(name = "edge-run", version, about)]
struct Cli {
    /// A model manifest (`models/*.toml`), or an ONNX file with --manifest.
    model: PathBuf,
    /// Images: files, folders (their .png and .jpg files), or glob patterns.
    #[arg(required = true)]
    images: Vec<String>,
    /// The manifest to use with an ONNX file given directly.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Write annotated images: a file for one image, else a folder.
    #[arg(long)]
    draw: Option<PathBuf>,
    /// Fix the input size (`HxW`, e.g. `640x640`) instead of the model's or the manifest's rule.
    #[arg(long)]
    input_size: Option<String>,
    /// Threads tract runs on (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How a QDQ (INT8) model runs: `float` (activation quantize/dequantize
    /// pairs removed; still the faster), `integer` (convolutions on
    /// Edgewise's INT8 convolution) or `integer-tract` (on tract's own).
    #[arg(long, value_enum, default_value_t = QdqMode::Float)]
    qdq: QdqMode,
    /// Decoder family, overriding the manifest's.
    #[arg(long)]
    family: Option<String>,
    /// Decoder parameters, overriding the manifest's: `--set score_threshold=0.5`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Rules acting on detections through output pins (`[[rule]]` tables).
    #[arg(long)]
    actions: Option<PathBuf>,
    /// GPIO chip for --actions (built with the `gpio` feature); without it,
    /// pin changes are only reported on stderr.
    #[arg(long, default_value = "/dev/gpiochip0")]
    gpio_chip: PathBuf,
}

/// Binds the actions file to GPIO lines, or to log pins without the `gpio` feature.
fn open_actions(cli: &Cli) -> Result<Vec<Box<dyn Act>>> {
    let Some(path) = &cli.actions else {
        return Ok(vec![]);
    };
    let file = ActionsFile::load(path).map_err(anyhow::Error::msg)?;
    #[cfg(feature = "gpio")]
    let bound = edgewise_runtime::actions::bind(&file, |line| {
        edgewise_runtime::actions::gpio_pin(&cli.gpio_chip, line)
    });
    #[cfg(not(feature = "gpio"))]
    let bound = {
        eprintln!(
            "edge-run: built without the `gpio` feature: pin changes for {} are reported here only",
            cli.gpio_chip.display()
        );
        edgewise_runtime::actions::bind(&file, |line| Ok(LogPin { line }))
    };
    bound.map_err(anyhow::Error::msg)
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a str,
    label: String,
    #[serde(flatten)]
    detection: &'a edgewise_decode::Detection,
}

/// Files named by `patterns`: files as they are, folders' images sorted, globs expanded.
fn expand(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in patterns {
        let path = Path::new(p);
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading folder {p}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                    })
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if p.contains(['*', '?', '[']) {
            let matches: Vec<PathBuf> = glob::glob(p)
                .with_context(|| format!("bad pattern {p}"))?
                .filter_map(Result::ok)
                .collect();
            if matches.is_empty() {
                bail!("no file matches {p}");
            }
            files.extend(matches);
        } else {
            files.push(path.to_path_buf());
        }
    }
    Ok(files)
}

fn parse_size(text: &str) -> Result<[usize; 2]> {
    let shape = InputShape::parse(text)?;
    match shape.dims[..] {
        [h, w] => Ok([h, w]),
        _ => bail!("--input-size takes HxW, e.g. 640x640"),
    }
}

/// For a QDQ (INT8) model: how it ran, and the kernels its convolutions got
/// (the audit of [`edgewise_quant::audit`]).
fn describe_precision(engine: &edgewise_runtime::Engine) -> Option<String> {
    let rewrite = engine.qdq_rewrite()?;
    let kernels = edgewise_quant::audit(engine.plan());
    let integer = kernels
        .iter()
        .filter(|k| k.precision == edgewise_quant::Precision::Integer)
        .count();
    let how = match rewrite {
        QdqRewrite::Float(d) => format!(
            "run in float (--qdq float): {} quantize/dequantize pair(s) removed, {} kept as a clip (a folded activation){}",
            d.pairs,
            d.clips,
            match d.kept.first() {
                Some((node, why)) => format!(", {} left as written ({node}: {why})", d.kept.len()),
                None => String::new(),
            }
        ),
        QdqRewrite::Integer(f) => format!(
            "run as integer (--qdq integer): {} convolution(s) as QLinearConv{}{}",
            f.fused,
            match f.skipped.first() {
                Some((node, why)) => format!(", {} left in float ({node}: {why})", f.skipped.len()),
                None => String::new(),
            },
            match engine.int8_kernels() {
                Some(k) => format!(
                    ", {} on Edgewise's INT8 convolution ({} dense, {} depthwise){}",
                    k.dense + k.depthwise,
                    k.dense,
                    k.depthwise,
                    match k.skipped.first() {
                        Some((node, why)) =>
                            format!(", {} left to tract ({node}: {why})", k.skipped.len()),
                        None => String::new(),
                    }
                ),
                None => String::new(),
            }
        ),
    };
    Some(format!(
        "INT8 (QDQ) model {how}; kernels: {integer} integer, {} float",
        kernels.len() - integer
    ))
}

fn load_manifest(cli: &Cli) -> Result<(PathBuf, Manifest)> {
    let (onnx, manifest) = match &cli.manifest {
        Some(m) => (cli.model.clone(), Manifest::load(m)?),
        None => {
            let source = ModelSource::resolve(&cli.model)?;
            let manifest = source.manifest.with_context(|| {
                format!("{} has no manifest: edge-run needs one to preprocess and decode; pass --manifest models/<name>.toml", cli.model.display())
            })?;
            (source.onnx, manifest)
        }
    };
    let mut manifest = manifest;
    if let Some(family) = &cli.family {
        manifest.decoder.family = family.clone();
    }
    for kv in &cli.params {
        let (key, value) = kv
            .split_once('=')
            .with_context(|| format!("--set takes KEY=VALUE, got {kv}"))?;
        let parsed: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        manifest
            .decoder
            .params
            .insert(key.trim().to_string(), parsed);
    }
    Ok((onnx, manifest))
}

/// Where the annotated copy of `image` goes.
fn draw_target(draw: &Path, image: &Path, many: bool) -> PathBuf {
    if many || draw.is_dir() {
        draw.join(image.file_name().unwrap_or_default())
            .with_extension("png")
    } else {
        draw.to_path_buf()
    }
}

fn run(cli: Cli) -> Result<bool> {
    let (onnx, manifest) = load_manifest(&cli)?;
    let images = expand(&cli.images)?;
    let fixed = cli.input_size.as_deref().map(parse_size).transpose()?;
    let threads = cli
        .threads
        .unwrap_or_else(edgewise_runtime::engine::default_threads);
    let model = Model::load(&onnx)?;
    let mut detector = Detector::new(model, manifest, fixed, threads)?.with_qdq_mode(cli.qdq);
    if let Some(dir) = &cli.draw
        && images.len() > 1
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut actions = open_actions(&cli)?;
    let started = std::time::Instant::now();
    let mut all_ok = true;
    let mut told_precision = false;
    for path in &images {
        let name = path.display().to_string();
        let outcome = load_image(path)
            .map_err(anyhow::Error::from)
            .and_then(|image| {
                let (detections, timing) = detector.detect(&image)?;
                Ok((image, detections, timing))
            });
        let (image, detections, timing) = match outcome {
            Ok(found) => found,
            Err(e) => {
                eprintln!("edge-run: error: {name}: {e:#}");
                all_ok = false;
                continue;
            }
        };
        if !told_precision {
            told_precision = true;
            if let Some(text) = detector.engines().next().and_then(describe_precision) {
                eprintln!("{text}");
            }
        }
        for d in &detections {
            let line = Line {
                image: &name,
                label: detector.label(d.class_id),
                detection: d,
            };
            println!("{}", serde_json::to_string(&line)?);
        }
        eprintln!(
            "{name}: {} detection(s); pre {:.1} ms, infer {:.1} ms, post {:.1} ms",
            detections.len(),
            timing.pre.as_secs_f64() * 1e3,
            timing.infer.as_secs_f64() * 1e3,
            timing.post.as_secs_f64() * 1e3
        );
        let seen: Vec<(String, f32)> = detections
            .iter()
            .map(|d| (detector.label(d.class_id), d.score))
            .collect();
        let seen: Vec<(&str, f32)> = seen.iter().map(|(l, s)| (l.as_str(), *s)).collect();
        for action in &mut actions {
            let event = action
                .feed(&seen, started.elapsed())
                .map_err(anyhow::Error::msg)?;
            if event != Event::None {
                eprintln!(
                    "{name}: rule `{}` on pin {}: {event:?}",
                    action.rule().label,
                    action.rule().pin
                );
            }
        }
        if let Some(draw) = &cli.draw {
            let mut canvas = image.to_rgb8();
            draw_detections(&mut canvas, &detections, |id| detector.label(id));
            let target = draw_target(draw, path, images.len() > 1);
            edgewise_runtime::draw::save_atomically(&canvas, &target)?;
        }
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edge-run: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
