//! The `edge-convert` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use edgewise_convert::fidelity::{Comparison, Fidelity, Probe};
use edgewise_convert::inspect::{inspect, render};
use edgewise_convert::labels::Labels;
use edgewise_convert::photos::{photos_in, write_inputs};
use edgewise_convert::quantize::{self, KeepFloat, Options};
use edgewise_convert::zoo;
use edgewise_graph::InputShape;
use edgewise_quant::Method;
use edgewise_runtime::{ModelSource, QdqMode};
use edgewise_stages::Stage;
use edgewise_zoo::BuildArgs;

/// Convert ONNX detectors for ARM boards: inspect their stages and costs,
/// build detectors from the zoo, quantize them to INT8, prune them by stage,
/// and search both for the fastest variant within an accuracy budget.
#[derive(Parser)]
#[command(name = "edge-convert", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs, outputs, operators, and the per-stage table (backbone, neck, head).
    Inspect {
        /// An ONNX file, or a model manifest (`models/*.toml`).
        model: PathBuf,
        /// Input shape(s), e.g. `1x3x640x640` or `images:1x3x640x640`; default:
        /// the manifest's size, or the model's own fixed shape.
        #[arg(long)]
        input_shape: Option<String>,
        /// Values where the backbone ends (comma-separated), instead of the
        /// structural search.
        #[arg(long, value_delimiter = ',')]
        backbone_out: Vec<String>,
        /// Values where the head starts (comma-separated).
        #[arg(long, value_delimiter = ',')]
        head_in: Vec<String>,
        /// Also list every node with its stage, shapes and costs.
        #[arg(long)]
        values: bool,
        /// Print JSON (schema `edgewise.inspect/1`) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Build a detector from a backbone, a neck and a head, and write it as
    /// ONNX with a manifest beside it (same name, `.toml`).
    Zoo {
        /// `backbone[:width]+neck+head`, e.g. `mobilenet_v2+fpn+retinanet`;
        /// `--list` shows the parts.
        #[arg(required_unless_present = "list")]
        spec: Option<String>,
        #[command(flatten)]
        build: BuildArgs,
        /// Replace every node and value name with a meaningless one (the
        /// stage boundaries in the metadata follow).
        #[arg(long)]
        anonymous: bool,
        /// The ONNX file to write.
        #[arg(short, long, required_unless_present = "list")]
        out: Option<PathBuf>,
        /// List the backbones, necks and heads.
        #[arg(long)]
        list: bool,
    },
    /// Post-training static INT8: calibrate on photos, write a portable QDQ
    /// model (onnxruntime, TensorRT and edge-run read it) and a manifest
    /// beside it, and measure its fidelity on held-back photos.
    Quantize {
        /// A model manifest (`models/*.toml`, or the `.toml` beside a zoo
        /// model): it says how to preprocess the photos.
        model: PathBuf,
        /// Folder of calibration photos.
        #[arg(long)]
        calib: PathBuf,
        /// The QDQ model to write (`.onnx`; the manifest goes beside it).
        #[arg(short, long)]
        out: PathBuf,
        /// How each activation's range is chosen.
        #[arg(long, value_enum, default_value_t = CalibrationMethod::Mse)]
        method: CalibrationMethod,
        /// For `--method percentile`: percent of the values kept inside the range.
        #[arg(long, default_value_t = 99.99)]
        percentile: f64,
        /// Stages (`backbone`, `neck`, `head`) or node-name globs to keep in
        /// float, comma-separated.
        #[arg(long, value_delimiter = ',')]
        keep_float: Vec<String>,
        /// Mixed precision: keep in float the fewest convolutions (ranked by
        /// measured accuracy gain per multiply-add) that bring the detections'
        /// F1 against the float model, on the calibration photos, within
        /// this drop (0.03: F1 at least 0.97).
        #[arg(long)]
        max_drop: Option<f64>,
        /// Folder of photos `--max-drop` measures F1 on (default: the
        /// calibration photos): photos with many detections of what the
        /// model finds, none of them in --eval.
        #[arg(long, requires = "max_drop")]
        tune: Option<PathBuf>,
        /// Leave the biases as they are: by default each convolution's bias
        /// absorbs the mean error int8 leaves in its output on the
        /// calibration photos.
        #[arg(long)]
        no_bias_correction: bool,
        /// Seconds to spend learning each convolution's weight rounding
        /// (AdaRound), the float model as teacher on the calibration photos,
        /// a level of depth at a time; 0: round every weight to nearest.
        #[arg(long, default_value_t = 0.0)]
        reconstruct_seconds: f64,
        /// With `--method mse`: judge each range on the tensor's values
        /// alone. By default a convolution's output followed by an
        /// element-wise activation (SiLU, hard-swish...) is judged by the
        /// error left after that activation.
        #[arg(long)]
        range_on_values: bool,
        /// Folder of held-back photos (none of them in --calib): compare the
        /// INT8 model with the original on them.
        #[arg(long)]
        eval: Option<PathBuf>,
        /// Input shape, e.g. `1x3x640x640`; default: the manifest's size.
        #[arg(long)]
        input_shape: Option<String>,
        /// Where calibration statistics are cached; default
        /// `~/.cache/edgewise/calibration`.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Do not read or write the calibration cache.
        #[arg(long)]
        no_cache: bool,
        /// Threads for tract (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Structured pruning: remove whole channels, by stage, so that the model
    /// is smaller and faster on every runtime; writes the pruned model and a
    /// manifest beside it, with parameters and MACs per stage before and after.
    /// Measure it with `edge-bench` and `edge-convert compare`.
    Prune {
        /// A model manifest (`models/*.toml`) or an ONNX file.
        model: PathBuf,
        /// Share of channels to remove: `0.3` in every stage, or per stage,
        /// `backbone=0.3,neck=0.5,head=0`.
        #[arg(long)]
        ratio: String,
        /// How a channel's importance is measured: the L1 or L2 norm of the
        /// filter writing it, or (with --calib) what it contributes to the
        /// layers reading it on the photos.
        #[arg(long, value_enum, default_value_t = PruneCriterion::L1)]
        criterion: PruneCriterion,
        /// Kept channel counts are rounded to the nearest multiple of this;
        /// default: the --board's `channel_multiple`, else 8 (the 8-row matrix
        /// kernels of ARM boards).
        #[arg(long)]
        round: Option<usize>,
        /// The board the model is for (`rpi4`, or a profile file): its matrix
        /// kernels set the default --round.
        #[arg(long)]
        board: Option<String>,
        /// Input shape, e.g. `1x3x640x640`; default: the manifest's size.
        #[arg(long)]
        input_shape: Option<String>,
        /// Folder of calibration photos: the layers that lost input channels
        /// are refit on them to match the unpruned model (needs the model's
        /// manifest). Without it, nothing is recovered.
        #[arg(long)]
        calib: Option<PathBuf>,
        /// How the pruned layers are recovered on --calib: a least-squares
        /// refit of their weights and bias, or bias compensation only.
        #[arg(long, value_enum, default_value_t = PruneRecovery::LeastSquares)]
        recover: PruneRecovery,
        /// Recover nothing, even with --calib (to compare).
        #[arg(long)]
        no_reconstruct: bool,
        /// Ridge strength of the least-squares refit, relative to the mean
        /// diagonal of its normal equations: larger pulls the refit towards the
        /// pruned weights (with their bias compensated), for few photos.
        #[arg(long, default_value_t = 0.1)]
        ridge: f64,
        /// Folder of held-back photos (none of them in --calib): compare the
        /// pruned model with the original on them.
        #[arg(long)]
        eval: Option<PathBuf>,
        /// Frames `edge-bench` times each model on, before and after, for the
        /// per-stage latency in the report (0: not timed).
        #[arg(long, default_value_t = 5)]
        bench_runs: usize,
        /// Threads for tract (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// The pruned model to write (`.onnx`).
        #[arg(short, long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find the fastest variant within an accuracy budget, by measuring:
    /// a greedy search over per-stage pruning ratios (recovered on --calib),
    /// then INT8 on each point of that path; every variant is scored on
    /// held-back photos against the original's detections and timed beside
    /// the original. Prints the frontier explored and writes the fastest
    /// variant within the budget.
    Optimize {
        /// The model's manifest (`models/*.toml`).
        model: PathBuf,
        /// The board the model is for (`rpi4`, or a profile file): its cores
        /// cap --threads and its matrix kernels set --round.
        #[arg(long)]
        board: String,
        /// Largest drop in F1 against the original's detections on --eval
        /// (0.05: F1 at least 0.95).
        #[arg(long)]
        max_drop: f64,
        /// Folder of calibration photos (pruning recovery, INT8 ranges).
        #[arg(long)]
        calib: PathBuf,
        /// Folder of held-back photos (none of them in --calib).
        #[arg(long)]
        eval: PathBuf,
        /// Stages that may be pruned, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "backbone,neck,head")]
        stages: Vec<String>,
        /// Ratio one search step adds to a stage.
        #[arg(long, default_value_t = 0.1)]
        step: f32,
        /// No stage is pruned beyond this ratio.
        #[arg(long, default_value_t = 0.5)]
        max_ratio: f32,
        /// Search pruning only, in float.
        #[arg(long)]
        no_int8: bool,
        /// Kept channel counts are multiples of this (default: the board's).
        #[arg(long)]
        round: Option<usize>,
        /// Input shape, e.g. `1x3x640x640`; default: the manifest's size.
        #[arg(long)]
        input_shape: Option<String>,
        /// Timed frames of each model per comparison.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Threads for tract (default: the board's cores, at most this machine's).
        #[arg(long)]
        threads: Option<usize>,
        /// Folder for every variant tried (default: beside --out, `<name>.variants`).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// The chosen model (`.onnx`; its manifest goes beside it).
        #[arg(short, long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare a converted model (quantized by any tool, pruned) with the
    /// original on held-back photos: tensors at every stage boundary and
    /// output, and detections; then the original's noise floor, itself on
    /// inputs moved by one gray level, to read those figures against.
    Compare {
        /// The original model's manifest.
        model: PathBuf,
        /// The converted ONNX model (same inputs and outputs).
        candidate: PathBuf,
        /// Folder of held-back photos.
        #[arg(long)]
        eval: PathBuf,
        /// Input shape, e.g. `1x3x640x640`; default: the manifest's size.
        #[arg(long)]
        input_shape: Option<String>,
        /// Threads for tract (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// How to run a QDQ candidate, comma-separated: `float` (weights
        /// quantized, activations clipped), `integer` (our INT8 kernels, as
        /// `edge-run` does), `integer-tract` (tract's quantized convolution).
        #[arg(long, value_delimiter = ',', default_values = ["float", "integer"])]
        qdq: Vec<QdqMode>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write photos as the model's input tensors, preprocessed as its
    /// manifest says (for other tools: onnxruntime's calibration, for
    /// instance): per tensor, rank and dims as little-endian u32, then f32 values.
    Preprocess {
        /// The model's manifest.
        model: PathBuf,
        /// Folder of photos.
        photos: PathBuf,
        /// The file to write.
        #[arg(short, long)]
        out: PathBuf,
        /// Input shape, e.g. `1x3x640x640`; default: the manifest's size.
        #[arg(long)]
        input_shape: Option<String>,
    },
}

/// `--method` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CalibrationMethod {
    /// The extremes seen.
    Minmax,
    /// A percentile of the values (`--percentile`).
    Percentile,
    /// The range of least KL divergence (TensorRT's entropy calibration).
    Entropy,
    /// The range of least squared quantization error (the default: on
    /// the evaluation set it never broke a model, where minmax broke
    /// PP-OCRv5, docs/benchmarks.md).
    Mse,
}

/// `--recover` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PruneRecovery {
    /// Refit each layer that lost input channels by least squares.
    LeastSquares,
    /// Add the removed channels' mean contribution to the bias.
    Bias,
}

/// `--criterion` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PruneCriterion {
    /// Sum of absolute weights.
    L1,
    /// Euclidean norm.
    L2,
    /// Mean square on the calibration photos times the norm of the weights
    /// reading the channel.
    Activation,
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            model,
            input_shape,
            backbone_out,
            head_in,
            values,
            json,
        } => {
            let source = ModelSource::resolve(&model)?;
            let shapes = source.input_shapes(input_shape.as_deref())?;
            let overrides = source.stage_boundaries(&backbone_out, &head_in);
            let report = inspect(&source.onnx, &shapes, &overrides, values)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
        }
        Command::Zoo {
            spec,
            build,
            anonymous,
            out,
            list,
        } => {
            if list {
                print!("{}", zoo::catalogue());
                return Ok(());
            }
            let (Some(spec), Some(out)) = (spec, out) else {
                anyhow::bail!("give a spec and --out, or --list");
            };
            let options = build.options()?;
            let (detector, saved) = zoo::build_and_save(&spec, &options, anonymous, &out)?;
            print!("{}", zoo::describe(&detector, &saved));
        }
        Command::Quantize {
            model,
            calib,
            out,
            method,
            percentile,
            keep_float,
            max_drop,
            tune,
            no_bias_correction,
            reconstruct_seconds,
            range_on_values,
            eval,
            input_shape,
            cache_dir,
            no_cache,
            threads,
            json,
        } => {
            let source = ModelSource::resolve(&model)?;
            let calibration = photos_in(&calib)?;
            let held_back = eval.as_deref().map(photos_in).transpose()?;
            let tune = tune.as_deref().map(photos_in).transpose()?;
            if let Some(photos) = &held_back {
                disjoint(&calibration, photos)?;
                if let Some(tune) = &tune {
                    disjoint_from("a --tune photo", tune, photos)?;
                }
            }
            let shape = source
                .input_shapes(input_shape.as_deref())?
                .into_iter()
                .next();
            let options = Options {
                calibration,
                method: match method {
                    CalibrationMethod::Minmax => Method::MinMax,
                    CalibrationMethod::Percentile => Method::Percentile { percentile },
                    CalibrationMethod::Entropy => Method::Entropy,
                    CalibrationMethod::Mse => Method::Mse,
                },
                keep_float: KeepFloat::parse(&keep_float)?,
                shape,
                cache_dir: if no_cache {
                    None
                } else {
                    cache_dir.or_else(quantize::default_cache_dir)
                },
                threads: threads.unwrap_or_else(edgewise_runtime::engine::default_threads),
                max_drop,
                correct_bias: !no_bias_correction,
                through_activation: !range_on_values,
                tune,
                reconstruct_seconds,
            };
            let report = quantize::quantize(&source, &out, &options)?;
            let measured = match &held_back {
                Some(photos) => {
                    let shape = InputShape {
                        name: source.manifest.as_ref().and_then(|m| m.input.name.clone()),
                        dims: report.shape.clone(),
                    };
                    compare(
                        &source,
                        &report.out,
                        &shape,
                        photos,
                        options.threads,
                        BOTH_QDQ,
                        false,
                    )?
                }
                None => Measured::default(),
            };
            if json {
                let value = serde_json::json!({
                    "schema": "edgewise.quantize/1",
                    "report": report,
                    "fidelity": measured.fidelity,
                    "noise_floor": measured.noise_floor,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", quantize::render(&report));
                print!("{}", measured.render());
            }
        }
        Command::Prune {
            model,
            ratio,
            criterion,
            round,
            board,
            input_shape,
            calib,
            recover,
            no_reconstruct,
            ridge,
            eval,
            bench_runs,
            threads,
            out,
            json,
        } => {
            let source = ModelSource::resolve(&model)?;
            let calibration = calib.as_deref().map(photos_in).transpose()?;
            let held_back = eval.as_deref().map(photos_in).transpose()?;
            if let (Some(c), Some(h)) = (&calibration, &held_back) {
                disjoint(c, h)?;
            }
            if held_back.is_some() && source.manifest.is_none() {
                anyhow::bail!(
                    "{} has no manifest: --eval needs the model's manifest (`models/*.toml`), which says how to preprocess and decode",
                    source.onnx.display()
                );
            }
            let threads = threads.unwrap_or_else(edgewise_runtime::engine::default_threads);
            let shape = source
                .input_shapes(input_shape.as_deref())?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no input shape: give --input-shape"))?;
            let round = channel_multiple(round, board.as_deref())?;
            let options = edgewise_convert::prune::Options {
                ratios: edgewise_prune::Ratios::parse(&ratio)?,
                criterion: match criterion {
                    PruneCriterion::L1 => edgewise_prune::Criterion::L1,
                    PruneCriterion::L2 => edgewise_prune::Criterion::L2,
                    PruneCriterion::Activation => edgewise_prune::Criterion::Activation,
                },
                round,
                shape: shape.clone(),
                calibration: calibration.unwrap_or_default(),
                recovery: edgewise_prune::recover::Options {
                    method: match (no_reconstruct, recover) {
                        (true, _) => edgewise_prune::recover::Method::None,
                        (false, PruneRecovery::LeastSquares) => {
                            edgewise_prune::recover::Method::LeastSquares
                        }
                        (false, PruneRecovery::Bias) => edgewise_prune::recover::Method::Bias,
                    },
                    ridge,
                    ..Default::default()
                },
                threads,
                bench_runs,
            };
            let report = edgewise_convert::prune::prune(&source, &out, &options)?;
            let measured = match &held_back {
                Some(photos) => compare(
                    &source,
                    &report.out,
                    &shape,
                    photos,
                    threads,
                    BOTH_QDQ,
                    false,
                )?,
                None => Measured::default(),
            };
            if json {
                let value = serde_json::json!({
                    "schema": "edgewise.prune/1",
                    "report": report,
                    "fidelity": measured.fidelity,
                    "noise_floor": measured.noise_floor,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", edgewise_convert::prune::render(&report));
                print!("{}", measured.render());
            }
        }
        Command::Optimize {
            model,
            board,
            max_drop,
            calib,
            eval,
            stages,
            step,
            max_ratio,
            no_int8,
            round,
            input_shape,
            runs,
            threads,
            work_dir,
            out,
            json,
        } => {
            let source = ModelSource::resolve(&model)?;
            let shape = manifest_shape(&source, input_shape.as_deref())?;
            let calibration = photos_in(&calib)?;
            let held_back = photos_in(&eval)?;
            disjoint(&calibration, &held_back)?;
            let profile = edgewise_boards::Board::resolve(&board)?;
            let stages = stages
                .iter()
                .map(|name| {
                    [Stage::Backbone, Stage::Neck, Stage::Head]
                        .into_iter()
                        .find(|s| s.name() == name.trim())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "--stages: `{name}` is not a stage that can be pruned (backbone, neck, head)"
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let threads = threads.unwrap_or_else(|| {
                profile
                    .cores
                    .min(edgewise_runtime::engine::default_threads())
            });
            let work_dir = work_dir.unwrap_or_else(|| out.with_extension("variants"));
            let options = edgewise_convert::optimize::Options {
                stages,
                step,
                max_ratio,
                int8: !no_int8,
                max_drop,
                round: channel_multiple(round, Some(&board))?,
                shape,
                calibration,
                held_back,
                runs,
                threads,
                work_dir,
            };
            let report = edgewise_convert::optimize::optimize(&source, &out, &options)?;
            if json {
                let value = serde_json::json!({
                    "schema": "edgewise.optimize/1",
                    "board": profile.name,
                    "report": report,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("board: {} ({})", profile.name, profile.title);
                print!("{}", edgewise_convert::optimize::render(&report));
            }
        }
        Command::Compare {
            model,
            candidate,
            eval,
            input_shape,
            threads,
            qdq,
            json,
        } => {
            let source = ModelSource::resolve(&model)?;
            let shape = manifest_shape(&source, input_shape.as_deref())?;
            let photos = photos_in(&eval)?;
            let threads = threads.unwrap_or_else(edgewise_runtime::engine::default_threads);
            let measured = compare(&source, &candidate, &shape, &photos, threads, &qdq, true)?;
            if json {
                let value = serde_json::json!({
                    "schema": "edgewise.compare/1",
                    "model": source.onnx,
                    "candidate": candidate,
                    "fidelity": measured.fidelity,
                    "noise_floor": measured.noise_floor,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", measured.render());
            }
        }
        Command::Preprocess {
            model,
            photos,
            out,
            input_shape,
        } => {
            let source = ModelSource::resolve(&model)?;
            let shape = manifest_shape(&source, input_shape.as_deref())?;
            let photos = photos_in(&photos)?;
            let manifest = source.manifest.as_ref().expect("manifest_shape checked it");
            write_inputs(manifest, &shape, &photos, &out)?;
            println!(
                "{}: {} tensors of shape {:?}",
                out.display(),
                photos.len(),
                shape.dims
            );
        }
    }
    Ok(())
}

/// The input shape of a model named by its manifest: `given`, else the manifest's size.
fn manifest_shape(source: &ModelSource, given: Option<&str>) -> Result<InputShape> {
    if source.manifest.is_none() {
        anyhow::bail!(
            "{} has no manifest: give the model's manifest (`models/*.toml`), which says how to preprocess photos",
            source.onnx.display()
        );
    }
    source
        .input_shapes(given)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no input shape"))
}

/// The multiple kept channel counts are rounded to: `--round`, else the
/// board's, else 8.
fn channel_multiple(round: Option<usize>, board: Option<&str>) -> Result<usize> {
    let round = match (round, board) {
        (Some(round), _) => round,
        (None, Some(board)) => edgewise_boards::Board::resolve(board)?.cpu.channel_multiple,
        (None, None) => 8,
    };
    if round == 0 {
        anyhow::bail!("--round must be at least 1");
    }
    Ok(round)
}

/// Refuses held-back photos that are also calibration photos (same bytes).
fn disjoint(calibration: &[PathBuf], held_back: &[PathBuf]) -> Result<()> {
    disjoint_from("a calibration photo", calibration, held_back)
}

/// Fails when a held-back photo has the bytes of one of `photos` (`what`
/// names them in the error).
fn disjoint_from(what: &str, photos: &[PathBuf], held_back: &[PathBuf]) -> Result<()> {
    let digest = |p: &PathBuf| -> Result<Vec<u8>> {
        use sha2::Digest;
        Ok(sha2::Sha256::digest(std::fs::read(p)?).to_vec())
    };
    let seen: std::collections::HashMap<Vec<u8>, &PathBuf> = photos
        .iter()
        .map(|p| Ok((digest(p)?, p)))
        .collect::<Result<_>>()?;
    for p in held_back {
        if let Some(c) = seen.get(&digest(p)?) {
            anyhow::bail!(
                "held-back photo {} is also {what} ({}): fidelity must be measured on photos the conversion did not see",
                p.display(),
                c.display()
            );
        }
    }
    Ok(())
}

/// A QDQ model both ways: what the weights cost, and what runs on a board.
const BOTH_QDQ: &[QdqMode] = &[QdqMode::Float, QdqMode::Integer];

/// The fidelity of `candidate` against the original model of `source`; a QDQ
/// candidate once per mode of `qdq`; and, with `noise_floor`, the
/// original's noise floor (`compare` measures it; `quantize --eval` and
/// `prune --eval` leave it out, as it costs two more runs of the original).
fn compare(
    source: &ModelSource,
    candidate: &std::path::Path,
    shape: &InputShape,
    photos: &[PathBuf],
    threads: usize,
    qdq: &[QdqMode],
    noise_floor: bool,
) -> Result<Measured> {
    let manifest = source.manifest.as_ref().expect("the caller checked it");
    // Labels beside the photos (the evaluation set's `labels.json`).
    let truth = match photos.first().and_then(|p| p.parent()) {
        Some(dir) => match Labels::read(dir)? {
            Some(labels) => labels.truth_for(photos, manifest)?,
            None => None,
        },
        None => None,
    };
    let reference = edgewise_graph::Model::load(&source.onnx)?;
    let candidate = edgewise_graph::Model::load(candidate)?;
    let is_qdq = candidate
        .graph
        .nodes
        .iter()
        .any(|n| n.op_type == "DequantizeLinear");
    let staged = edgewise_stages::StagedModel::new(
        reference.clone(),
        std::slice::from_ref(shape),
        &source.stage_boundaries(&[], &[]),
    )?;
    let p = &staged.partition;
    let probes: Vec<Probe> = p
        .backbone_outputs
        .iter()
        .map(|b| (b, "backbone out"))
        .chain(p.head_inputs.iter().map(|b| (b, "head in")))
        .map(|(b, role)| Probe {
            value: b.value.clone(),
            role: role.into(),
        })
        .chain(reference.graph.outputs.iter().map(|o| Probe {
            value: o.name.clone(),
            role: "output".into(),
        }))
        .fold(Vec::new(), |mut probes: Vec<Probe>, p| {
            if !probes.iter().any(|q| q.value == p.value) {
                probes.push(p);
            }
            probes
        });
    let comparison = Comparison {
        reference: &reference,
        candidate: &candidate,
        manifest,
        shape,
        probes: &probes,
        photos,
        threads,
        truth: truth.as_ref(),
    };
    let modes: &[QdqMode] = if is_qdq { qdq } else { &[QdqMode::Float] };
    Ok(Measured {
        fidelity: modes
            .iter()
            .map(|&mode| comparison.run(mode))
            .collect::<Result<_>>()?,
        noise_floor: if noise_floor {
            Some(comparison.noise_floor()?)
        } else {
            None
        },
    })
}

/// What [`compare`] measured: the converted model's fidelity, and the
/// original's own noise floor to read it against.
#[derive(Default)]
struct Measured {
    /// One per way the converted model ran.
    fidelity: Vec<Fidelity>,
    /// The original against itself, its input moved by -1, 0 or +1 gray
    /// level per value.
    noise_floor: Option<Fidelity>,
}

impl Measured {
    fn render(&self) -> String {
        self.fidelity
            .iter()
            .chain(&self.noise_floor)
            .map(edgewise_convert::fidelity::render)
            .collect()
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-convert: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
