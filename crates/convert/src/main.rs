//! The `edge-convert` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use edgewise_convert::inspect::{inspect, render};
use edgewise_runtime::ModelSource;

/// Convert ONNX detectors for ARM boards: inspect their stages and costs.
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
