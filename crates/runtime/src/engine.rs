//! The inference engine: a model optimized once by tract for fixed input
//! shapes, then run many times with the same state (no re-planning, and
//! tract reuses its buffers between runs).

use std::path::Path;
use std::sync::Arc;

use edgewise_graph::analysis::{resolve_input_shapes, tract_model};
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core;
use edgewise_graph::{InputShape, Model};
use tract_linalg::multithread::Executor;

use crate::error::RuntimeError;

type Plan = Arc<TypedRunnableModel>;

/// Time spent in each node of the optimized plan: `(node id, time)` in evaluation order.
pub type NodeTimes = Vec<(usize, std::time::Duration)>;

/// A model ready to run at fixed input shapes.
pub struct Engine {
    state: TypedSimpleState,
    input_shapes: Vec<(String, Vec<usize>)>,
    output_names: Vec<String>,
    threads: usize,
}

/// The default thread count: every core the process may use. Measured on
/// PP-OCRv4 det (docs/benchmarks.md): two threads beat one on a 2-core host.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn run_options(threads: usize) -> RunOptions {
    let executor = if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    };
    RunOptions {
        executor: Some(executor),
        ..Default::default()
    }
}

fn engine_err(action: &'static str) -> impl Fn(TractError) -> RuntimeError {
    move |e| RuntimeError::Engine {
        action,
        message: format!("{e:#}"),
    }
}

impl Engine {
    /// Loads an ONNX file and optimizes it for `shapes` (or the model's own
    /// fixed input shapes), to run on `threads` threads.
    pub fn load(
        path: impl AsRef<Path>,
        shapes: &[InputShape],
        threads: usize,
    ) -> Result<Engine, RuntimeError> {
        let model = Model::load(path)?;
        Self::from_model(&model, shapes, threads)
    }

    /// Optimizes an in-memory model for `shapes`, to run on `threads` threads
    /// (tract splits its matrix products over a pool of that size).
    pub fn from_model(
        model: &Model,
        shapes: &[InputShape],
        threads: usize,
    ) -> Result<Engine, RuntimeError> {
        let input_shapes = resolve_input_shapes(model, shapes)?;
        let inference = tract_model(model, &input_shapes)?;
        let output_names = model.graph.outputs.iter().map(|o| o.name.clone()).collect();
        let plan: Plan = inference
            .into_optimized()
            .map_err(engine_err("optimize the model"))?
            .into_runnable_with_options(&run_options(threads))
            .map_err(engine_err("plan the model"))?;
        let state = plan.spawn().map_err(engine_err("prepare a run"))?;
        Ok(Engine {
            state,
            input_shapes,
            output_names,
            threads: threads.max(1),
        })
    }

    /// Threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The input names and the shapes the engine was built for.
    pub fn input_shapes(&self) -> &[(String, Vec<usize>)] {
        &self.input_shapes
    }

    /// The output names, in output order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// The optimized tract model (for profiling and reports).
    pub fn plan(&self) -> &TypedModel {
        self.state.model()
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RuntimeError> {
        if inputs.len() != self.input_shapes.len() {
            return Err(RuntimeError::InputCount {
                given: inputs.len(),
                expected: self.input_shapes.len(),
            });
        }
        for (index, (tensor, (_, expected))) in inputs.iter().zip(&self.input_shapes).enumerate() {
            if tensor.shape() != expected.as_slice() {
                return Err(RuntimeError::InputShape {
                    index,
                    given: tensor.shape().to_vec(),
                    expected: expected.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs the model once. Inputs must have the shapes the engine was built for.
    pub fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        self.check_inputs(&inputs)?;
        let outputs = self
            .state
            .run(inputs.into_iter().map(TValue::from).collect())
            .map_err(engine_err("run the model"))?;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
    }

    /// Runs the model once, timing every node of the optimized plan:
    /// returns the outputs and `(node id, time)` in evaluation order. The ids
    /// index [`Engine::plan`].
    pub fn run_profiled(
        &mut self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, NodeTimes), RuntimeError> {
        self.check_inputs(&inputs)?;
        let mut times = Vec::with_capacity(self.state.model().nodes().len());
        let outputs = self
            .state
            .run_plan_with_eval(
                inputs.into_iter().map(TValue::from).collect(),
                |ctx, state, node, input| {
                    let started = std::time::Instant::now();
                    let result = tract_core::plan::eval(ctx, state, node, input);
                    times.push((node.id, started.elapsed()));
                    result
                },
            )
            .map_err(engine_err("run the model"))?;
        Ok((
            outputs.into_iter().map(|t| t.into_tensor()).collect(),
            times,
        ))
    }
}
