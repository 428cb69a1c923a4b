//! How long a model takes to become runnable: from the ONNX file, or from
//! tract's NNEF archive of the same (decluttered) model. Load and optimize,
//! median of several rounds, measured side by side.
//!
//! cargo run --release -p edgewise-bench --example load_time -- MODEL.onnx 1x3x640x640 [ROUNDS]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use edgewise_graph::tract_onnx::{self, prelude::*};
use tract_nnef::framework::Nnef;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .context("usage: load_time MODEL.onnx SHAPE [ROUNDS]")?;
    let shape: Vec<usize> = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("1x3x640x640")
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rounds: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(5);

    let onnx_runnable = || -> Result<()> {
        tract_onnx::onnx()
            .model_for_path(model)?
            .with_input_fact(0, f32::fact(&shape).into())?
            .into_optimized()?
            .into_runnable()?;
        Ok(())
    };
    let nnef: Nnef = tract_nnef::nnef().with_onnx();
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("model.nnef.tar");
    let typed = tract_onnx::onnx()
        .model_for_path(model)?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?
        .into_decluttered()?;
    nnef.write_to_tar(&typed, std::fs::File::create(&archive)?)?;
    let nnef_runnable = || -> Result<()> {
        nnef.model_for_path(&archive)?
            .into_optimized()?
            .into_runnable()?;
        Ok(())
    };

    let (mut from_onnx, mut from_nnef) = (vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        onnx_runnable()?;
        from_onnx.push(t.elapsed());
        let t = Instant::now();
        nnef_runnable()?;
        from_nnef.push(t.elapsed());
    }
    let size = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!("rounds {rounds}, shape {shape:?}");
    println!(
        "onnx  {:>8.1} ms median  ({:.2} MB file)",
        median(from_onnx),
        size(std::path::Path::new(model))
    );
    println!(
        "nnef  {:>8.1} ms median  ({:.2} MB archive)",
        median(from_nnef),
        size(&archive)
    );
    Ok(())
}
