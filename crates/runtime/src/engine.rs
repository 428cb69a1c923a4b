//! The inference engine: a model optimized once by tract for fixed input
//! shapes, then run many times with the same state (no re-planning, and
//! tract reuses its buffers between runs). A QDQ (INT8) model runs one of
//! two ways, [`QdqMode`]: in float, its activation quantize/dequantize pairs
//! turned into clips ([`edgewise_quant::float`]), or with its convolutions
//! rewritten into `QLinearConv` ([`edgewise_quant::qdq`]) and then run as
//! integer by [`edgewise_quant::Int8Conv`] ([`edgewise_quant::kernels`]).

use std::path::Path;
use std::sync::Arc;

use edgewise_graph::analysis::{resolve_input_shapes, tract_model};
use edgewise_graph::simd::clear_upper_vector_state;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core;
use edgewise_graph::{InputShape, Model};
use edgewise_quant::{
    Dequantized, Fusion, Installed, dequantize_activations, fuse_qdq_convs, kernels,
};
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
    qdq: Option<QdqRewrite>,
    int8_kernels: Option<Installed>,
    fallback: Option<String>,
}

/// How a model with QuantizeLinear/DequantizeLinear (QDQ) nodes runs.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum QdqMode {
    /// [`QdqMode::Integer`] when every quantized convolution runs on
    /// [`edgewise_quant::Int8Conv`], else [`QdqMode::Float`]: tract's own
    /// quantized convolution, which would take the rest, is slower than
    /// float (weights with a zero point, as onnxruntime writes them for
    /// `Constant` weights, are such a case). The default.
    #[default]
    Auto,
    /// In float: each activation quantize/dequantize pair becomes a clip to
    /// its range, weights keep their quantized values. Runs at FP32 speed;
    /// it measures what the weights' quantization alone costs.
    Float,
    /// Convolutions as `QLinearConv`, then run by [`edgewise_quant::Int8Conv`]
    /// on tract-linalg's integer kernels (a direct loop for depthwise), the
    /// element-wise work between quantized tensors as int8 tables
    /// ([`edgewise_quant::kernels::install`]). PP-OCRv4 det runs 1.5x faster
    /// than in FP32 (`docs/benchmarks.md`).
    Integer,
    /// Convolutions as `QLinearConv` run by tract's own quantized
    /// convolution (im2col, then separate zero-point and requantization
    /// passes): for comparison.
    IntegerTract,
}

/// What the engine did to a QDQ model before tract optimized it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum QdqRewrite {
    /// [`QdqMode::Float`].
    Float(Dequantized),
    /// [`QdqMode::Integer`].
    Integer(Fusion),
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
        Self::with_qdq_mode(model, shapes, threads, QdqMode::default())
    }

    /// [`Engine::from_model`], running a QDQ model the way `mode` says.
    pub fn with_qdq_mode(
        model: &Model,
        shapes: &[InputShape],
        threads: usize,
        mode: QdqMode,
    ) -> Result<Engine, RuntimeError> {
        let has_qdq = model
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "DequantizeLinear");
        if mode == QdqMode::Auto {
            if !has_qdq {
                return Self::with_qdq_mode(model, shapes, threads, QdqMode::Float);
            }
            let integer = Self::with_qdq_mode(model, shapes, threads, QdqMode::Integer)?;
            let Some((node, why)) = integer.int8_kernels().and_then(|k| k.skipped.first()) else {
                return Ok(integer);
            };
            let reason = format!(
                "{} convolution(s) would be left to tract's quantized convolution, slower than float ({node}: {why})",
                integer.int8_kernels().map_or(0, |k| k.skipped.len())
            );
            let mut float = Self::with_qdq_mode(model, shapes, threads, QdqMode::Float)?;
            float.fallback = Some(reason);
            return Ok(float);
        }
        let (rewritten, qdq) = if has_qdq {
            let mut m = model.clone();
            let rewrite = match mode {
                QdqMode::Float | QdqMode::Auto => QdqRewrite::Float(dequantize_activations(&mut m)),
                QdqMode::Integer | QdqMode::IntegerTract => {
                    QdqRewrite::Integer(fuse_qdq_convs(&mut m))
                }
            };
            (Some(m), Some(rewrite))
        } else {
            (None, None)
        };
        let model = rewritten.as_ref().unwrap_or(model);
        let input_shapes = resolve_input_shapes(model, shapes)?;
        let inference = tract_model(model, &input_shapes)?;
        let output_names = model.graph.outputs.iter().map(|o| o.name.clone()).collect();
        let mut typed = inference
            .into_typed()
            .map_err(engine_err("analyse the model"))?;
        let int8_kernels = if mode == QdqMode::Integer {
            Some(kernels::install(&mut typed).map_err(engine_err("install the INT8 kernels"))?)
        } else {
            None
        };
        let optimized = typed
            .into_optimized()
            .map_err(engine_err("optimize the model"))?;
        let plan: Plan = optimized
            .into_runnable_with_options(&run_options(threads))
            .map_err(engine_err("plan the model"))?;
        let state = plan.spawn().map_err(engine_err("prepare a run"))?;
        Ok(Engine {
            state,
            input_shapes,
            output_names,
            threads: threads.max(1),
            qdq,
            int8_kernels,
            fallback: None,
        })
    }

    /// With [`QdqMode::Auto`], when the model runs in float: why not in
    /// integer.
    pub fn qdq_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// For a model with QDQ nodes: what was rewritten before tract read it,
    /// and what was left as it was, with the reason.
    pub fn qdq_rewrite(&self) -> Option<&QdqRewrite> {
        self.qdq.as_ref()
    }

    /// With [`QdqMode::Integer`]: the quantized convolutions moved onto
    /// [`edgewise_quant::Int8Conv`], and those left to tract.
    pub fn int8_kernels(&self) -> Option<&Installed> {
        self.int8_kernels.as_ref()
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
        // Node by node, to clear the vector state tract's x86 kernels leave
        // behind before the next node's Rust code runs (see `simd`).
        let outputs = self
            .state
            .run_plan_with_eval(
                inputs.into_iter().map(TValue::from).collect(),
                |ctx, state, node, input| {
                    let result = tract_core::plan::eval(ctx, state, node, input);
                    clear_upper_vector_state();
                    result
                },
            )
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
                    clear_upper_vector_state();
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

#[cfg(test)]
mod tests {
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_graph::model::AttributeValue;

    use super::*;

    /// `Q(x) -> DQ -> Conv(DQ(w_q), b) -> Q -> DQ`: one 3x3 convolution in
    /// the QDQ form, with per-channel int8 weights.
    /// `x_zero_point` -128 gives the input the range [0, 12.75]: a `Relu`
    /// folded into the pair, as onnxruntime's quantizer does.
    fn qdq_conv(x_zero_point: i8) -> (Model, Vec<f32>) {
        let mut b = ModelBuilder::new(17);
        let x = b.input("x", &[1, 2, 4, 4]);
        let scalar = |b: &mut ModelBuilder, v: f32| b.initializer("s", tensor0(v));
        let zero_i8 = |b: &mut ModelBuilder, z: i8| b.initializer("z", tensor0(z));
        let (sx, zx) = (scalar(&mut b, 0.05), zero_i8(&mut b, x_zero_point));
        let xq = b.op("QuantizeLinear", &[&x, &sx, &zx], vec![]);
        let xd = b.op("DequantizeLinear", &[&xq, &sx, &zx], vec![]);
        let weights: Vec<i8> = (0..3 * 2 * 9).map(|i| (i % 7) as i8 - 3).collect();
        let wq = b.initializer("wq", Tensor::from_shape(&[3, 2, 3, 3], &weights).unwrap());
        let sw = b.initializer("sw", tensor1(&[0.02f32, 0.03, 0.04]));
        let zw = b.initializer("zw", tensor1(&[0i8; 3]));
        let wd = b.op(
            "DequantizeLinear",
            &[&wq, &sw, &zw],
            vec![("axis", AttributeValue::Int(0))],
        );
        let bias = b.initializer("b", tensor1(&[0.1f32, -0.2, 0.3]));
        let y = b.op(
            "Conv",
            &[&xd, &wd, &bias],
            vec![("pads", AttributeValue::Ints(vec![1, 1, 1, 1]))],
        );
        let (sy, zy) = (scalar(&mut b, 0.1), zero_i8(&mut b, 0));
        let yq = b.op("QuantizeLinear", &[&y, &sy, &zy], vec![]);
        let yd = b.op("DequantizeLinear", &[&yq, &sy, &zy], vec![]);
        b.output(&yd);
        let input: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.1).collect();
        (b.finish(), input)
    }

    #[test]
    fn qdq_convolutions_run_as_integer_and_agree_with_float() {
        let (model, input) = qdq_conv(0);
        let shapes = [InputShape::parse("1x2x4x4").unwrap()];
        let mut engine = Engine::with_qdq_mode(&model, &shapes, 1, QdqMode::Integer).unwrap();
        let Some(QdqRewrite::Integer(fusion)) = engine.qdq_rewrite() else {
            panic!("{:?}", engine.qdq_rewrite());
        };
        assert_eq!(fusion.fused, 1);
        let uses = edgewise_quant::audit(engine.plan());
        assert!(!uses.is_empty());
        assert!(
            uses.iter()
                .all(|u| u.precision == edgewise_quant::Precision::Integer),
            "{uses:?}"
        );
        let x = Tensor::from_shape(&[1, 2, 4, 4], &input).unwrap();
        let ours = engine.run(vec![x.clone()]).unwrap();
        let a = edgewise_graph::tensor::values::<f32>(&ours[0])
            .unwrap()
            .to_vec();
        let reference = run_as_written(&model, x);
        let b = edgewise_graph::tensor::values::<f32>(&reference).unwrap();
        // Both quantize the output to steps of 0.1; integer and float
        // accumulation may round a value to the neighbouring step.
        let worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 0.1001, "largest difference {worst}");
        assert!(a.iter().zip(b).filter(|(p, q)| p != q).count() <= a.len() / 10);
    }

    /// The graph run by tract as written: every QDQ pair evaluated in float.
    fn run_as_written(model: &Model, x: Tensor) -> Tensor {
        let inputs = vec![("x".to_string(), x.shape().to_vec())];
        let outputs = tract_model(model, &inputs)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(tvec!(x.into()))
            .unwrap();
        outputs[0].clone().into_tensor()
    }

    /// Runs `model` in float mode on `input` and returns the largest
    /// difference from tract's run of the QDQ graph as written.
    fn float_mode_difference(model: &Model, input: &[f32], expect: (usize, usize)) -> f32 {
        let shapes = [InputShape::parse("1x2x4x4").unwrap()];
        let mut engine = Engine::with_qdq_mode(model, &shapes, 1, QdqMode::Float).unwrap();
        let Some(QdqRewrite::Float(done)) = engine.qdq_rewrite() else {
            panic!("{:?}", engine.qdq_rewrite());
        };
        assert_eq!((done.pairs, done.clips), expect, "{done:?}");
        assert!(done.kept.is_empty(), "{done:?}");
        assert!(
            engine
                .plan()
                .nodes()
                .iter()
                .all(|n| !n.op.name().contains("Quantize")),
            "a quantize step is left in the plan"
        );
        let x = Tensor::from_shape(&[1, 2, 4, 4], input).unwrap();
        let ours = engine.run(vec![x.clone()]).unwrap();
        let a = edgewise_graph::tensor::values::<f32>(&ours[0]).unwrap();
        let reference = run_as_written(model, x);
        let b = edgewise_graph::tensor::values::<f32>(&reference).unwrap();
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    }

    // Without rounding, an output moves by at most the input's rounding
    // carried through 18 weights (18 · 0.025 · 0.12) plus half an output step.
    const ROUNDING: f32 = 0.11;

    #[test]
    fn qdq_models_run_in_float_without_their_pairs() {
        let (model, input) = qdq_conv(0);
        let worst = float_mode_difference(&model, &input, (2, 0));
        assert!(worst <= ROUNDING, "largest difference {worst}");
    }

    #[test]
    fn a_relu_folded_into_a_pair_survives_as_a_clip() {
        // Half the input is negative: without the clip at 0 that the pair's
        // range implies, those values flow through and outputs differ by
        // whole units.
        let (model, input) = qdq_conv(-128);
        let worst = float_mode_difference(&model, &input, (2, 1));
        assert!(worst <= ROUNDING, "largest difference {worst}");
    }
}
