//! The `edge-convert` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use edgewise_convert::inspect::{inspect, render};
use edgewise_convert::zoo;
use edgewise_runtime::ModelSource;
use edgewise_zoo::BuildArgs;

/// Convert ONNX detectors for ARM boards: inspect their stages and costs, and
/// build detectors from the zoo.
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
    }
    Ok(())
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
