//! The `edge-bench` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use edgewise_bench::latency::{Budget, LatencyReport, measure};
use edgewise_bench::stats::Summary;
use edgewise_runtime::ModelSource;

/// Measure a detector's latency: preprocessing and inference, median of many runs.
#[derive(Parser)]
#[command(name = "edge-bench", version, about)]
struct Cli {
    /// An ONNX file, or a model manifest (`models/*.toml`).
    model: PathBuf,
    /// Input shape(s), e.g. `1x3x640x640`; default: the manifest's size.
    #[arg(long)]
    input_shape: Option<String>,
    /// A photo to preprocess each run (needs a manifest); default: a synthetic image.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Runs before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Measured runs.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Stop measuring after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Threads tract runs on (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print JSON (schema `edgewise.latency/1`).
    #[arg(long)]
    json: bool,
}

fn row(table: &mut Table, phase: &str, s: &Summary) {
    let cell = |v: f64| Cell::new(format!("{v:.2}")).set_alignment(CellAlignment::Right);
    table.add_row(vec![
        Cell::new(phase),
        cell(s.min_ms),
        cell(s.median_ms),
        cell(s.p90_ms),
        cell(s.max_ms),
        Cell::new(s.runs).set_alignment(CellAlignment::Right),
    ]);
}

fn render(r: &LatencyReport) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "phase",
        "min ms",
        "median ms",
        "p90 ms",
        "max ms",
        "runs",
    ]);
    if let Some(pre) = &r.pre {
        row(&mut table, "pre", pre);
    }
    row(&mut table, "infer", &r.infer);
    if let Some(post) = &r.post {
        row(&mut table, "post", post);
    }
    let shapes: Vec<String> = r.inputs.iter().map(|(n, d)| format!("{n} {d:?}")).collect();
    let m = &r.machine;
    format!(
        "model    {}\ninput    {} (image: {})\nmachine  {} ({}, {} cores; {}) governor {}, {}\nruns     {} warm-up, {} measured, {} thread(s)\n{table}\n",
        r.model,
        shapes.join(", "),
        r.image,
        m.cpu,
        m.arch,
        m.cores,
        m.features.join(" "),
        m.governor.as_deref().unwrap_or("n/a"),
        m.temperature_c
            .map(|t| format!("{t:.0} °C"))
            .unwrap_or_else(|| "temperature n/a".into()),
        r.warmup,
        r.infer.runs,
        r.threads,
    )
}

fn run(cli: Cli) -> Result<()> {
    let source = ModelSource::resolve(&cli.model)?;
    let shapes = source.input_shapes(cli.input_shape.as_deref())?;
    let threads = cli
        .threads
        .unwrap_or_else(edgewise_runtime::engine::default_threads);
    let budget = Budget {
        warmup: cli.warmup,
        runs: cli.runs,
        max_seconds: cli.max_seconds,
        threads,
    };
    let report = measure(&source, &shapes, cli.image.as_deref(), budget)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
