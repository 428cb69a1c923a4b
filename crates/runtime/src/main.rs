//! The `edge-run` command: detections as JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::Parser;
use edgewise_graph::{InputShape, Model};
use edgewise_manifest::Manifest;
#[cfg(not(feature = "gpio"))]
use edgewise_runtime::actions::LogPin;
use edgewise_runtime::actions::{Act, ActionsFile, Event};
use edgewise_runtime::draw::draw_detections;
use edgewise_runtime::selftest::{self, Recorded};
use edgewise_runtime::{
    Detector, FloatConv, FloatPrecision, ModelSource, QdqMode, QdqRewrite, load_image,
};

/// Run a detector on images: one JSON line per detection on stdout, one
/// timing line per image on stderr.
#[derive(Parser)]
#[command(name = "edge-run", version, about)]
struct Cli {
    /// A model manifest (`models/*.toml`), or an ONNX file with --manifest.
    model: PathBuf,
    /// Images: files, folders (their .png and .jpg files), or glob patterns.
    #[arg(required_unless_present_any = ["self_test", "source"], conflicts_with = "source")]
    images: Vec<String>,
    /// Read a stream instead of images: a V4L2 camera (`/dev/video0`, or
    /// `0`), a video file, an `rtsp://` or `http(s)://` URL, or a GStreamer
    /// pipeline ending in an appsink (`"libcamerasrc ! videoconvert !
    /// appsink"`). One JSON line per processed frame on stdout, the
    /// stream's figures on stderr. Needs the `gstreamer` feature.
    #[arg(long, conflicts_with_all = ["watch", "self_test"])]
    source: Option<String>,
    /// With --source: infer on the newest frame only, dropping frames that
    /// arrive while the model is busy (live sources' default).
    #[arg(long, requires = "source", conflicts_with = "every_frame")]
    latest: bool,
    /// With --source: infer on every frame, holding the source back (video
    /// files' default).
    #[arg(long, requires = "source")]
    every_frame: bool,
    /// With --source: process one frame in N.
    #[arg(long, requires = "source", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    stride: u64,
    /// With --source: process at most F frames per second of the source's
    /// time.
    #[arg(long, requires = "source")]
    max_fps: Option<f64>,
    /// With --source: print the stream's figures on stderr every S seconds
    /// (0: only at the end).
    #[arg(long, requires = "source", default_value_t = 1.0, value_name = "S")]
    report_every: f64,
    /// With --source: write the stream's figures over the whole run as JSON.
    #[arg(long, requires = "source", value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Keep running and process the images that appear in the folders given
    /// as IMAGES (a camera's capture folder), each once it has stopped
    /// growing: the board service's mode.
    #[arg(long, conflicts_with = "self_test")]
    watch: bool,
    /// Check this build against the detections recorded on the build machine:
    /// run on the folder's images and compare with its `expected.jsonl`
    /// (boxes within 1 px, scores within 1e-3). The deployment health check.
    #[arg(long, value_name = "DIR")]
    self_test: Option<PathBuf>,
    /// The manifest to use with an ONNX file given directly.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Write annotated images: a file for one image, else a folder. With
    /// --source, an annotated video of the processed frames (`.mp4` or
    /// `.mkv` at the source's own frame times, or `.avi`), complete when
    /// the stream ends.
    #[arg(long)]
    draw: Option<PathBuf>,
    /// Fix the input size (`HxW`, e.g. `640x640`) instead of the model's or the manifest's rule.
    #[arg(long)]
    input_size: Option<String>,
    /// Threads tract runs on (default: the physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How a QDQ (INT8) model runs: `auto` (integer when every quantized
    /// convolution runs on Edgewise's INT8 convolution, else float),
    /// `integer` (convolutions on Edgewise's INT8 convolution, element-wise
    /// work as int8 tables), `float` (activation quantize/dequantize pairs
    /// removed) or `integer-tract` (convolutions on tract's own).
    #[arg(long, default_value_t = QdqMode::Auto)]
    qdq: QdqMode,
    /// The float type of the model's float work: `f32`, or `f16` for CPUs
    /// with half-precision arithmetic (Raspberry Pi 5, Jetson Orin; elsewhere
    /// tract emulates it, slower than f32). Reductions, softmax, exp, log
    /// and pow stay in f32.
    #[arg(long, default_value_t = FloatPrecision::F32)]
    precision: FloatPrecision,
    /// Whose kernels run the dense float convolutions: `edgewise` (the input
    /// read in place, bias and activation fused) or `tract` (its own, for
    /// comparison).
    #[arg(long, default_value_t = FloatConv::Edgewise)]
    float_conv: FloatConv,
    /// With `--precision f16`: nodes whose name contains one of these stay
    /// in f32 (comma-separated or repeated), e.g. `--keep-f32 Sigmoid,Conv.61`.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    keep_f32: Vec<String>,
    /// Decoder family, overriding the manifest's (with that family's default parameters, and --set).
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
/// (the audit of [`edgewise_kernels::audit`]).
fn describe_precision(engine: &edgewise_runtime::Engine) -> Option<String> {
    let rewrite = engine.qdq_rewrite()?;
    let kernels = edgewise_kernels::audit(engine.plan());
    let integer = kernels
        .iter()
        .filter(|k| k.precision == edgewise_kernels::Precision::Integer)
        .count();
    let mode = engine.qdq_fallback().map_or_else(
        || "--qdq float".to_string(),
        |why| format!("--qdq auto chose float: {why}"),
    );
    let how = match rewrite {
        QdqRewrite::Float(d) => format!(
            "run in float ({mode}): {} quantize/dequantize pair(s) removed, {} kept as a clip (a folded activation){}",
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
                    ", {} on Edgewise's INT8 convolution ({} dense, {} depthwise), {} quantize and {} dequantize steps on its vector loops, {} element-wise graphs as int8 tables, {} tables applied by the convolution they read, {} identity tables removed, {} int8 DepthToSpace as PixelShuffle{}",
                    k.dense + k.depthwise,
                    k.dense,
                    k.depthwise,
                    k.quantize,
                    k.dequantize,
                    k.tables,
                    k.tables_in_convs,
                    k.identities,
                    k.pixel_shuffles,
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

/// Whether the CPU computes in f16 natively (FEAT_FP16 on aarch64). tract
/// has no native f16 kernels on x86.
fn cpu_has_f16_arithmetic() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// With `--precision f16`: how much of the model runs in f16, and the
/// kernels its convolutions and matrix products got.
fn describe_half(engine: &edgewise_runtime::Engine) -> Option<String> {
    let half = engine.half_precision()?;
    let kernels = edgewise_kernels::audit(engine.plan());
    let in_f16 = kernels
        .iter()
        .filter(|k| k.precision == edgewise_kernels::Precision::Half)
        .count();
    let mut names: Vec<&str> = kernels
        .iter()
        .filter(|k| k.precision == edgewise_kernels::Precision::Half)
        .flat_map(|k| k.kernels.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    Some(format!(
        "FP16 (--precision f16): {} node(s) in f16, {} kept in f32{}; kernels: {in_f16} f16 of {}{}",
        half.nodes,
        half.kept.len(),
        match half.kept.first() {
            Some((node, why)) => format!(" ({node}: {why})"),
            None => String::new(),
        },
        kernels.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
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
    if let Some(family) = cli
        .family
        .as_ref()
        .filter(|f| **f != manifest.decoder.family)
    {
        // The manifest's parameters belong to its own family; the new one
        // starts from its defaults (and --set).
        manifest.decoder.family = family.clone();
        manifest.decoder.params.clear();
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

/// A loaded detector with what acts on its detections.
struct Session<'a> {
    cli: &'a Cli,
    detector: Detector,
    actions: Vec<Box<dyn Act>>,
    started: std::time::Instant,
    told_precision: bool,
    /// Whether --draw names a folder (several images) rather than a file.
    many: bool,
}

impl Session<'_> {
    /// Detects on one image: prints its detections (unless `quiet`), drives
    /// the actions and draws; `None` (after saying why) when it fails.
    fn process(&mut self, path: &Path, quiet: bool) -> Result<Option<Vec<Recorded>>> {
        let name = path.display().to_string();
        let outcome = load_image(path)
            .map_err(anyhow::Error::from)
            .and_then(|image| {
                let (detections, timing) = self.detector.detect(&image)?;
                Ok((image, detections, timing))
            });
        let (image, detections, timing) = match outcome {
            Ok(found) => found,
            Err(e) => {
                eprintln!("edge-run: error: {name}: {e:#}");
                return Ok(None);
            }
        };
        if !self.told_precision {
            self.told_precision = true;
            if let Some(engine) = self.detector.engines().next() {
                for text in [describe_precision(engine), describe_half(engine)]
                    .into_iter()
                    .flatten()
                {
                    eprintln!("{text}");
                }
            }
        }
        let recorded: Vec<Recorded> = detections
            .iter()
            .map(|d| Recorded {
                image: name.clone(),
                label: self.detector.label(d.class_id),
                detection: d.clone(),
            })
            .collect();
        if !quiet {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in &recorded {
                writeln!(out, "{}", serde_json::to_string(line)?)
                    .context("writing to standard output")?;
            }
        }
        eprintln!(
            "{name}: {} detection(s); pre {:.1} ms, infer {:.1} ms, post {:.1} ms",
            detections.len(),
            timing.pre.as_secs_f64() * 1e3,
            timing.infer.as_secs_f64() * 1e3,
            timing.post.as_secs_f64() * 1e3
        );
        let seen: Vec<(&str, f32)> = recorded
            .iter()
            .map(|r| (r.label.as_str(), r.detection.score))
            .collect();
        act(&mut self.actions, &name, &seen, self.started)?;
        if let Some(draw) = &self.cli.draw {
            let mut canvas = image.to_rgb8();
            draw_detections(&mut canvas, &detections, |id| self.detector.label(id));
            let target = draw_target(draw, path, self.many);
            edgewise_runtime::draw::save_atomically(&canvas, &target)?;
        }
        Ok(Some(recorded))
    }
}

/// Drives the actions' pins with what was seen on `name`.
fn act(
    actions: &mut [Box<dyn Act>],
    name: &str,
    seen: &[(&str, f32)],
    started: std::time::Instant,
) -> Result<()> {
    for action in actions {
        let event = action
            .feed(seen, started.elapsed())
            .map_err(anyhow::Error::msg)?;
        if event != Event::None {
            eprintln!(
                "{name}: rule `{}` on pin {}: {event:?}",
                action.rule().label,
                action.rule().pin
            );
        }
    }
    Ok(())
}

/// One line of `edge-run --source`'s output: a processed frame.
#[derive(serde::Serialize)]
struct FrameLine<'a> {
    /// The frame's position in the stream, counting from 0.
    frame: u64,
    /// The source's timestamp, in milliseconds.
    timestamp_ms: Option<f64>,
    /// From capture to these detections.
    latency_ms: f64,
    detections: Vec<Labeled<'a>>,
}

#[derive(serde::Serialize)]
struct Labeled<'a> {
    label: String,
    #[serde(flatten)]
    detection: &'a edgewise_decode::Detection,
}

/// `--draw` with `--source`: the processed frames with their detections,
/// as a video started at the first frame's size.
struct AnnotatedVideo<'a> {
    path: &'a Path,
    writer: Option<Box<dyn edgewise_stream::VideoWriter>>,
}

impl<'a> AnnotatedVideo<'a> {
    fn new(path: &'a Path) -> AnnotatedVideo<'a> {
        AnnotatedVideo { path, writer: None }
    }

    fn add(
        &mut self,
        frame: edgewise_stream::pipeline::Frame,
        detections: &[edgewise_decode::Detection],
        label: impl Fn(usize) -> String,
    ) -> Result<()> {
        let mut canvas = frame.image.into_rgb8();
        draw_detections(&mut canvas, detections, label);
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(edgewise_stream::writer::create(
                self.path,
                canvas.width(),
                canvas.height(),
            )?),
        };
        Ok(writer.write(&canvas, frame.timestamp)?)
    }

    /// Ends the video; nothing is written when no frame came.
    fn finish(self) -> Result<()> {
        if let Some(writer) = self.writer {
            let frames = writer.finish()?;
            eprintln!(
                "edge-run: wrote {frames} annotated frame(s) to {}",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// A flag SIGINT and SIGTERM set, so that a stream ends cleanly with its
/// figures; a second signal exits at once (130 for SIGINT, 143 for
/// SIGTERM, as a shell reports them).
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Handlers run in the order registered: the exit checks the flag
        // before this signal sets it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

/// `--source`: the stream through the pipeline until it ends or `stop` is
/// set ([`stop_on_signals`]).
fn stream(session: &mut Session, text: &str, stop: &AtomicBool) -> Result<bool> {
    use edgewise_stream::{Event as StreamEvent, Options, Policy, Source};

    let cli = session.cli;
    let source = Source::parse(text)?;
    let asked = match (cli.latest, cli.every_frame) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let mut capture = edgewise_stream::open(&source, asked)?;
    let policy = if asked.unwrap_or(capture.is_live()) {
        Policy::Latest
    } else {
        Policy::EveryFrame
    };
    eprintln!(
        "edge-run: reading {source} ({}; {})",
        if capture.is_live() {
            "live"
        } else {
            "not live"
        },
        match policy {
            Policy::Latest => "the latest frame, stale ones dropped",
            Policy::EveryFrame => "every frame",
        }
    );
    let options = Options {
        policy,
        stride: cli.stride,
        max_fps: cli.max_fps,
        report_every: (cli.report_every > 0.0)
            .then(|| std::time::Duration::from_secs_f64(cli.report_every)),
    };
    let classes = session.detector.manifest().classes.clone();
    let label = |id: usize| edgewise_runtime::detector::label_of(&classes, id);
    let started = session.started;
    let actions = &mut session.actions;
    let mut failure: Option<anyhow::Error> = None;
    let mut video = cli.draw.as_deref().map(AnnotatedVideo::new);
    let ended = edgewise_runtime::stream::detect_stream(
        &mut session.detector,
        capture.as_mut(),
        &options,
        stop,
        |event| {
            let done = match event {
                StreamEvent::Frame(p) => match &p.result {
                    Ok(detections) => {
                        let line = FrameLine {
                            frame: p.frame.index,
                            timestamp_ms: p.frame.timestamp.map(|t| t.as_secs_f64() * 1e3),
                            latency_ms: p.times.latency.as_secs_f64() * 1e3,
                            detections: detections
                                .iter()
                                .map(|d| Labeled {
                                    label: label(d.class_id),
                                    detection: d,
                                })
                                .collect(),
                        };
                        let seen: Vec<(&str, f32)> = line
                            .detections
                            .iter()
                            .map(|l| (l.label.as_str(), l.detection.score))
                            .collect();
                        let name = format!("frame {}", p.frame.index);
                        // A reader that went away (a closed pipe) ends the
                        // stream instead of panicking in println!.
                        serde_json::to_string(&line)
                            .map_err(anyhow::Error::from)
                            .and_then(|json| {
                                use std::io::Write;
                                writeln!(std::io::stdout(), "{json}")
                                    .context("writing to standard output")
                            })
                            .and_then(|()| act(actions, &name, &seen, started))
                            .and_then(|()| match &mut video {
                                Some(video) => video.add(p.frame, detections, label),
                                None => Ok(()),
                            })
                    }
                    Err(e) => {
                        eprintln!("edge-run: error: frame {}: {e}", p.frame.index);
                        // The video keeps the frame, without boxes.
                        match &mut video {
                            Some(video) => video.add(p.frame, &[], label),
                            None => Ok(()),
                        }
                    }
                },
                StreamEvent::Report(r) => {
                    eprintln!("stream: {}", r.line());
                    Ok(())
                }
            };
            match done {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        },
    )?;
    // A video cut short by a failed frame line, action or write is not
    // kept; one whose source failed holds what came before.
    if let (Some(video), None) = (video, &failure) {
        video.finish()?;
    }
    let report = ended.report;
    eprintln!(
        "stream, whole run ({:.1} s): {}",
        report.seconds,
        report.line()
    );
    if let Some(path) = &cli.stats_json {
        edgewise_graph::model::write_atomically(
            path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(e) = ended.error {
        return Err(e.into());
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report.failed == 0),
    }
}

/// `--watch`: polls the folders and processes each image that appeared
/// after the start once its size and modification time hold still for one
/// poll (a file being written is not read half-way). Runs until killed.
fn watch(session: &mut Session, folders: &[String]) -> Result<bool> {
    type Stamp = (u64, std::time::SystemTime);
    let poll = std::time::Duration::from_millis(250);
    let stamp = |path: &Path| -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    };
    for folder in folders {
        if !Path::new(folder).is_dir() {
            bail!("--watch takes folders; {folder} is not one");
        }
    }
    let mut done: std::collections::HashMap<PathBuf, Stamp> = expand(folders)?
        .into_iter()
        .filter_map(|p| stamp(&p).map(|s| (p, s)))
        .collect();
    let mut pending: std::collections::HashMap<PathBuf, Stamp> = Default::default();
    eprintln!(
        "edge-run: watching {} for new images ({} already there, left alone)",
        folders.join(", "),
        done.len()
    );
    loop {
        let present = expand(folders)?;
        done.retain(|p, _| present.contains(p));
        pending.retain(|p, _| present.contains(p));
        for path in present {
            let Some(now) = stamp(&path) else { continue };
            if done.get(&path) == Some(&now) {
                continue;
            }
            if pending.insert(path.clone(), now) == Some(now) {
                pending.remove(&path);
                session.process(&path, false)?;
                done.insert(path, now);
            }
        }
        std::thread::sleep(poll);
    }
}

/// `--self-test DIR`: the folder's images against its recording.
fn self_test(session: &mut Session, dir: &Path) -> Result<bool> {
    let expected = selftest::read(&dir.join(selftest::EXPECTED)).map_err(anyhow::Error::msg)?;
    let images = expand(&[dir.display().to_string()])?;
    if images.is_empty() {
        bail!("self-test folder {} holds no image", dir.display());
    }
    let mut got = Vec::new();
    for path in &images {
        match session.process(path, true)? {
            Some(found) => got.extend(found),
            None => return Ok(false),
        }
    }
    match selftest::compare(&expected, &got, selftest::Tolerance::default()) {
        Ok(agreement) => {
            println!(
                "self-test passed: {} detection(s) on {} image(s) agree with the recording (largest differences: box {:.3} px, score {:.2e})",
                agreement.detections,
                images.len(),
                agreement.worst_box_px,
                agreement.worst_score
            );
            Ok(true)
        }
        Err(why) => {
            eprintln!("edge-run: self-test failed: {why}");
            Ok(false)
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    // Before the model loads: a stream's service may be stopped any time.
    let stop = cli.source.is_some().then(stop_on_signals).transpose()?;
    if let (Some(_), Some(video)) = (&cli.source, &cli.draw) {
        edgewise_stream::writer::check(video)?;
    }
    let (onnx, manifest) = load_manifest(&cli)?;
    let fixed = cli.input_size.as_deref().map(parse_size).transpose()?;
    let threads = cli
        .threads
        .unwrap_or_else(edgewise_runtime::engine::default_threads);
    let model = Model::load(&onnx)?;
    if cli.precision == FloatPrecision::F16 && !cpu_has_f16_arithmetic() {
        eprintln!(
            "edge-run: warning: this CPU has no half-precision arithmetic; tract emulates f16, slower than f32 (--precision f16 is for Cortex-A76 and later: Raspberry Pi 5, Jetson Orin)"
        );
    }
    if cli.precision == FloatPrecision::F32 && !cli.keep_f32.is_empty() {
        bail!("--keep-f32 names nodes to keep out of f16: it needs --precision f16");
    }
    let detector = Detector::new(model, manifest, fixed, threads)?
        .with_qdq_mode(cli.qdq)
        .with_precision(cli.precision, cli.keep_f32.clone())
        .with_float_conv(cli.float_conv);
    let images = if cli.watch || cli.self_test.is_some() {
        vec![]
    } else {
        expand(&cli.images)?
    };
    let many = cli.watch || images.len() > 1;
    if let Some(dir) = &cli.draw
        && many
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut session = Session {
        cli: &cli,
        detector,
        actions: open_actions(&cli)?,
        started: std::time::Instant::now(),
        told_precision: false,
        many,
    };
    if let Some(dir) = &cli.self_test {
        return self_test(&mut session, dir);
    }
    if cli.watch {
        return watch(&mut session, &cli.images);
    }
    if let (Some(source), Some(stop)) = (&cli.source, &stop) {
        return stream(&mut session, source, stop);
    }
    let mut all_ok = true;
    for path in &images {
        all_ok &= session.process(path, false)?.is_some();
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader went away (`edge-run ... | head`): it has what it
        // wanted, as with any Unix filter.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-run: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has closed it.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
