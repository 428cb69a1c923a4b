//! The `edge-bench` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use edgewise_bench::render::{self, Format, Options};
use edgewise_bench::study::{self, Study};
use edgewise_boards::Board;
use edgewise_measure::measure::{Budget, Target, measure_side_by_side};
use edgewise_measure::report::{Report, Variant};
use edgewise_runtime::{FloatConv, FloatPrecision, ModelSource, QdqMode};
use indicatif::{ProgressBar, ProgressStyle};

/// Where a detector's time goes: pre, backbone, neck, head, post and
/// decode+nms, per node and side by side across variants.
#[derive(Parser)]
#[command(
    name = "edge-bench",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    measure: MeasureArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Combine JSON reports (from several boards, say) into one report.
    Merge(MergeArgs),
    /// Build zoo detectors that differ in one part and measure them side by
    /// side: per-stage latency, parameters and MACs for each choice.
    Study(StudyArgs),
}

#[derive(Args)]
struct Timing {
    /// Frames of each kind before measuring (at least 1: the first frame
    /// pays one-off costs).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Measured frames of each kind (plain and profiled).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Stop measuring a model after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Board profile (`rpi4`, or a .toml path): checks this machine matches
    /// it and shows the share of its peak.
    #[arg(long)]
    board: Option<String>,
    /// A photo to preprocess each frame (models with a manifest); default: a synthetic image.
    #[arg(long)]
    image: Option<PathBuf>,
    /// How QDQ (INT8) models run: `auto` (integer when every quantized
    /// convolution runs on Edgewise's INT8 convolution, else float),
    /// `integer` (convolutions on Edgewise's INT8 convolution, element-wise
    /// work as int8 tables), `float` (activation quantize/dequantize pairs
    /// as clips) or `integer-tract` (convolutions on tract's own).
    #[arg(long, default_value_t = QdqMode::Auto)]
    qdq: QdqMode,
    /// The float type of the float work: `f32`, or `f16` (tract's f16
    /// kernels; native on CPUs with half-precision arithmetic, such as the
    /// Raspberry Pi 5's, emulated and slow elsewhere).
    #[arg(long, default_value_t = FloatPrecision::F32)]
    precision: FloatPrecision,
    /// Whose kernels run the dense float convolutions: `edgewise` (the input
    /// read in place, bias and activation fused) or `tract` (its own, for
    /// comparison).
    #[arg(long, default_value_t = FloatConv::Edgewise)]
    float_conv: FloatConv,
}

#[derive(Args)]
struct StudyArgs {
    /// `backbone+neck+head` with one part swapped: `*` for every registered
    /// one, or a list, e.g. `*+fpn+retinanet`, `mobilenet_v2+*+yolo`,
    /// `resnet18,vgg16+pan+yolo`.
    #[arg(value_name = "SPECS")]
    specs: String,
    #[command(flatten)]
    build: edgewise_zoo::BuildArgs,
    /// Threads tract runs on (default: the physical cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
struct Output {
    /// Format printed on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write the report to this file, in the format of its extension
    /// (.txt, .md, .json, .csv, .html); may be repeated.
    #[arg(long, value_name = "PATH")]
    save: Vec<PathBuf>,
    /// Slowest ONNX nodes listed per variant.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args)]
struct MeasureArgs {
    /// ONNX files or model manifests (`models/*.toml`); several give one
    /// column each, compared with the first.
    #[arg(required = true, value_name = "MODEL")]
    models: Vec<PathBuf>,
    /// Column names, one per model, in order; default: the file names.
    #[arg(long)]
    label: Vec<String>,
    /// Input shape(s), e.g. `1x3x640x640`; default: each manifest's size.
    #[arg(long)]
    input_shape: Option<String>,
    /// Threads tract runs on (default: the physical cores); a list such as `1,2`
    /// measures every model at each count, side by side.
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    #[command(flatten)]
    timing: Timing,
    /// Tensors that end the backbone (default: the manifest's, else found).
    #[arg(long, value_delimiter = ',')]
    backbone_out: Vec<String>,
    /// Tensors that start the head (default: the manifest's, else found).
    #[arg(long, value_delimiter = ',')]
    head_in: Vec<String>,
    /// Also run each model on a stream, as `edge-run --source` does: a
    /// camera (`/dev/video0`), a video file, an `rtsp://` URL or a
    /// GStreamer pipeline ending in an appsink. The report gains the
    /// frames captured, processed and dropped, the fps and the latency
    /// from capture to detections. Needs a manifest and the `gstreamer`
    /// feature.
    #[arg(long, value_name = "SRC")]
    source: Option<String>,
    /// With --source: how long each model runs on it (a video file may
    /// end sooner).
    #[arg(long, default_value_t = 30.0, requires = "source", value_name = "S")]
    seconds: f64,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
struct MergeArgs {
    /// JSON reports written by `edge-bench --save report.json`.
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// Default labels from file names; repeats get a number.
fn labels(models: &[PathBuf], given: &[String]) -> Result<Vec<String>> {
    if !given.is_empty() {
        if given.len() != models.len() {
            bail!(
                "{} --label given for {} model(s); give one per model, or none",
                given.len(),
                models.len()
            );
        }
        if let Some(repeated) = given
            .iter()
            .find(|l| given.iter().filter(|m| m == l).count() > 1)
        {
            bail!("--label `{repeated}` is given twice; every column needs its own name");
        }
        return Ok(given.to_vec());
    }
    let stems: Vec<String> = models
        .iter()
        .map(|m| {
            m.file_stem()
                .map_or_else(|| m.display().to_string(), |s| s.to_string_lossy().into())
        })
        .collect();
    Ok(stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let before = stems[..i].iter().filter(|x| *x == s).count();
            if before == 0 {
                s.clone()
            } else {
                format!("{s} ({})", before + 1)
            }
        })
        .collect())
}

fn emit(report: &Report, output: &Output) -> Result<()> {
    let options = Options { top: output.top };
    for path in &output.save {
        render::save(report, path, options)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    print!("{}", render::render(report, output.format, options)?);
    Ok(())
}

impl Timing {
    /// Refuses a bad budget at any of `threads`, or an unknown board, before
    /// anything is built or measured.
    fn check(&self, threads: &[usize]) -> Result<()> {
        for &t in threads {
            self.budget(t)?;
        }
        self.board.as_deref().map(Board::resolve).transpose()?;
        Ok(())
    }

    fn budget(&self, threads: usize) -> Result<Budget> {
        let budget = Budget {
            warmup: self.warmup,
            runs: self.runs,
            max_seconds: self.max_seconds,
            threads,
            qdq: self.qdq,
            precision: self.precision,
            float_conv: self.float_conv,
        };
        budget.check()?;
        Ok(budget)
    }
}

/// Measures the targets side by side, each at its thread count, with a
/// progress bar.
fn measure_all(targets: &[(Target, usize)], timing: &Timing) -> Result<Vec<Variant>> {
    let board = timing.board.as_deref().map(Board::resolve).transpose()?;
    if timing.image.is_some() && targets.iter().all(|(t, _)| t.source.manifest.is_none()) {
        bail!(
            "--image needs a manifest to know how to preprocess; give models/<name>.toml instead of the .onnx file"
        );
    }
    let lanes = targets
        .iter()
        .map(|(target, threads)| Ok((target, timing.budget(*threads)?)))
        .collect::<Result<Vec<_>>>()?;
    // Drawn only when stderr is a terminal; logs and pipes stay clean.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} frames, {elapsed}")
            .expect("valid template"),
    );
    bar.set_prefix(match targets {
        [(target, threads)] => format!("measuring {} ({threads} thread(s))", target.label),
        _ => format!("measuring {} variants side by side", targets.len()),
    });
    let variants = measure_side_by_side(
        &lanes,
        timing.image.as_deref(),
        board.as_ref(),
        &mut |done, planned| {
            bar.set_length(planned as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    Ok(variants)
}

fn check_save_paths(output: &Output) -> Result<()> {
    // Check every output path's format before spending minutes measuring.
    for path in &output.save {
        Format::of_path(path)?;
    }
    Ok(())
}

fn run_measure(args: MeasureArgs) -> Result<()> {
    check_save_paths(&args.output)?;
    let mut thread_counts = vec![];
    for t in &args.threads {
        if !thread_counts.contains(t) {
            thread_counts.push(*t);
        }
    }
    if thread_counts.is_empty() {
        thread_counts.push(edgewise_runtime::engine::default_threads());
    }
    args.timing.check(&thread_counts)?;
    check_source(&args)?;
    let labels = labels(&args.models, &args.label)?;
    let mut targets = vec![];
    for (path, label) in args.models.iter().zip(labels) {
        let source = ModelSource::resolve(path)?;
        if args.source.is_some() {
            edgewise_measure::stream::manifest_of(&source)?;
        }
        let shapes = source.input_shapes(args.input_shape.as_deref())?;
        let overrides = source.stage_boundaries(&args.backbone_out, &args.head_in);
        for &threads in &thread_counts {
            let label = match thread_counts.len() {
                1 => label.clone(),
                _ => format!("{label} ({threads}t)"),
            };
            let target = Target::new(label, source.clone(), shapes.clone(), &overrides)?;
            targets.push((target, threads));
        }
    }
    if let Some(source) = &args.source
        && !edgewise_stream::AVAILABLE
    {
        return Err(edgewise_stream::StreamError::NoGstreamer {
            input: source.clone(),
        }
        .into());
    }
    let mut variants = measure_all(&targets, &args.timing)?;
    if let Some(source) = &args.source {
        for ((target, threads), variant) in targets.iter().zip(&mut variants) {
            variant.stream = Some(run_stream(target, *threads, &args, source)?);
        }
    }
    emit(&Report::new(variants), &args.output)
}

/// Refuses a `--source` that cannot run before minutes are spent
/// measuring.
fn check_source(args: &MeasureArgs) -> Result<()> {
    let Some(source) = &args.source else {
        return Ok(());
    };
    edgewise_stream::Source::parse(source)?;
    edgewise_measure::stream::check_seconds(args.seconds)
}

/// `target` on the stream for `--seconds`, with a progress bar.
fn run_stream(
    target: &Target,
    threads: usize,
    args: &MeasureArgs,
    source: &str,
) -> Result<edgewise_measure::stream::StreamRun> {
    let bar = ProgressBar::new((args.seconds * 10.0) as u64).with_style(
        ProgressStyle::with_template("{prefix} {bar:30} {msg}").expect("valid template"),
    );
    bar.set_prefix(format!("{} on {source}", target.label));
    let mut frames = 0u64;
    let run = edgewise_measure::stream::measure_stream(
        target,
        args.timing.budget(threads)?,
        source,
        args.seconds,
        &mut |elapsed| {
            frames += 1;
            bar.set_position((elapsed * 10.0) as u64);
            bar.set_message(format!("{frames} frames, {elapsed:.0} s"));
        },
    )
    .with_context(|| format!("cannot run {} on {source}", target.label))?;
    bar.finish_and_clear();
    Ok(run)
}

fn run_study(args: StudyArgs) -> Result<()> {
    check_save_paths(&args.output)?;
    let threads = args
        .threads
        .unwrap_or_else(edgewise_runtime::engine::default_threads);
    args.timing.check(&[threads])?;
    let options = args.build.options()?;
    let plan = Study::parse(&args.specs)?;
    let dir = tempfile::tempdir().context("cannot create a folder for the study's models")?;
    eprintln!(
        "building {} detector(s) for the {} swap",
        plan.specs.len(),
        plan.swapped.name()
    );
    let targets: Vec<(Target, usize)> = plan
        .targets(&options, dir.path())?
        .into_iter()
        .map(|t| (t, threads))
        .collect();
    let report = Report::new(measure_all(&targets, &args.timing)?);
    let options = Options {
        top: args.output.top,
    };
    for path in &args.output.save {
        match Format::of_path(path)? {
            format @ (Format::Table | Format::Markdown) => {
                let text = study::render(&report, plan.swapped, format);
                edgewise_graph::model::write_atomically(path, text.as_bytes())?;
            }
            _ => render::save(&report, path, options)
                .with_context(|| format!("cannot write the report to {}", path.display()))?,
        }
    }
    match args.output.format {
        format @ (Format::Table | Format::Markdown) => {
            print!("{}", study::render(&report, plan.swapped, format))
        }
        format => print!("{}", render::render(&report, format, options)?),
    }
    Ok(())
}

fn run_merge(args: MergeArgs) -> Result<()> {
    let mut reports = vec![];
    for path in &args.reports {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read report {}", path.display()))?;
        reports.push(Report::from_json(&text, &path.display().to_string())?);
    }
    emit(&Report::merge(reports), &args.output)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge(args)) => run_merge(args),
        Some(Command::Study(args)) => run_study(args),
        None => run_measure(cli.measure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
