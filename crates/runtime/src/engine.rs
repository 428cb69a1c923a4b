//! The inference engine: a model optimized once by tract for fixed input
//! shapes, then run many times with the same state (no re-planning, and
//! tract reuses its buffers between runs). A QDQ (INT8) model runs one of
//! two ways, [`QdqMode`]: in float, its activation quantize/dequantize pairs
//! turned into clips ([`edgewise_kernels::float`]), or with its convolutions
//! rewritten into `QLinearConv` ([`edgewise_kernels::qdq`]) and then run as
//! integer by [`edgewise_kernels::Int8Conv`] ([`edgewise_kernels::int8`]).
//! Its float work runs in f32, or in f16 ([`FloatPrecision`]) on CPUs with
//! half-precision arithmetic.

use std::path::Path;
use std::sync::Arc;

use edgewise_graph::analysis::{resolve_input_shapes, tract_model};
use edgewise_graph::simd::clear_upper_vector_state;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core;
use edgewise_graph::{InputShape, Model, passes};
use edgewise_kernels::{
    Dequantized, Fusion, Installed, dequantize_activations, fp32, fuse_qdq_convs, int8,
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
    fp32_kernels: Option<fp32::Installed>,
    fallback: Option<String>,
    half: Option<HalfPrecision>,
    executor: Executor,
}

/// The float type of a model's float work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatPrecision {
    /// Single precision, as the model is written. The default.
    #[default]
    F32,
    /// Half precision, by tract's `f32 -> f16` translation: its NEON fp16
    /// kernels on CPUs with half-precision arithmetic (Cortex-A76 and later:
    /// Raspberry Pi 5, Jetson Orin). Elsewhere tract emulates f16, slower
    /// than f32. Nodes whose range or accumulation f16 cannot hold stay in
    /// f32 ([`HalfPrecision::kept`]).
    F16,
}

/// How an [`Engine`] builds its plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Threads tract splits its work over (at least one).
    pub threads: usize,
    /// How a QDQ (INT8) model runs.
    pub qdq: QdqMode,
    /// The float type of the float work.
    pub precision: FloatPrecision,
    /// With [`FloatPrecision::F16`]: nodes whose name contains one of these
    /// stay in f32, besides the sensitive ones.
    pub keep_f32: Vec<String>,
    /// Whose kernels run the dense float convolutions.
    pub float_conv: FloatConv,
}

/// Whose kernels run a model's dense float convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatConv {
    /// Edgewise's [`edgewise_kernels::fp32::F32Conv`] where this CPU has a
    /// tile loop of ours (AVX-512, AVX2, NEON): the input read in place,
    /// bias and activation fused. The default, in f32.
    #[default]
    Edgewise,
    /// tract's own (im2col packed panel by panel, then a matrix product):
    /// for comparison. Always the case with [`FloatPrecision::F16`].
    Tract,
}

impl EngineOptions {
    /// FP32, `--qdq auto`, on `threads` threads.
    pub fn threads(threads: usize) -> EngineOptions {
        EngineOptions {
            threads,
            ..EngineOptions::default()
        }
    }
}

/// What [`FloatPrecision::F16`] translated.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HalfPrecision {
    /// Float nodes now computing in f16.
    pub nodes: usize,
    /// Float nodes kept in f32: node and why.
    pub kept: Vec<(String, String)>,
}

/// Operators kept in f32 under [`FloatPrecision::F16`]: their sums or their
/// results leave f16's range (largest 65504) or its 11 bits of precision.
/// A reduction over a 160x160 map of values near 3 is already past 65504;
/// `exp` is past it from 11.1.
const F32_OPS: [&str; 5] = ["Reduce", "Softmax", "Exp", "Ln", "Pow"];

/// How a model with QuantizeLinear/DequantizeLinear (QDQ) nodes runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QdqMode {
    /// [`QdqMode::Integer`] when every quantized convolution runs on
    /// [`edgewise_kernels::Int8Conv`], else [`QdqMode::Float`]: tract's own
    /// quantized convolution, which would take the rest, is slower than
    /// float (grouped convolutions that are not depthwise are such a
    /// case). The default.
    #[default]
    Auto,
    /// In float: each activation quantize/dequantize pair becomes a clip to
    /// its range, weights keep their quantized values. Runs at FP32 speed;
    /// it measures what the weights' quantization alone costs (with the
    /// biases as the quantizer wrote them: `edge-convert quantize` corrects
    /// them for the integer run's rounding).
    Float,
    /// Convolutions as `QLinearConv`, then run by [`edgewise_kernels::Int8Conv`]
    /// on tract-linalg's integer kernels (a direct loop for depthwise), the
    /// element-wise work between quantized tensors as int8 tables
    /// ([`edgewise_kernels::int8::install`]). Speed: `docs/benchmarks.md`.
    Integer,
    /// Convolutions as `QLinearConv` run by tract's own quantized
    /// convolution (im2col, then separate zero-point and requantization
    /// passes): for comparison.
    IntegerTract,
}

/// Names as words (the command lines' `--qdq` and `--precision` values)
/// for the engine's plain enums: each list in the enum's order.
macro_rules! named {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every value's name, as [`std::str::FromStr`] reads it.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($ty::$variant => $name),+
                })
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<$ty, String> {
                match text {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " `{}`; use one of: {}"),
                        text,
                        $ty::NAMES.join(", ")
                    )),
                }
            }
        }
    };
}

named!(QdqMode, "QDQ mode", [
    Auto => "auto",
    Float => "float",
    Integer => "integer",
    IntegerTract => "integer-tract",
]);
named!(FloatPrecision, "precision", [F32 => "f32", F16 => "f16"]);
named!(FloatConv, "float convolution", [Edgewise => "edgewise", Tract => "tract"]);

/// What the engine did to a QDQ model before tract optimized it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum QdqRewrite {
    /// [`QdqMode::Float`].
    Float(Dequantized),
    /// [`QdqMode::Integer`].
    Integer(Fusion),
}

/// The default thread count: the physical cores the process may use (a
/// second hardware thread of a core shares its vector units, and splitting
/// work over it slows a matrix kernel down), at most the CPUs it may use.
/// On a board, the profile's core count is the better choice
/// (`edge-deploy` writes it into the service's `--threads`).
pub fn default_threads() -> usize {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    physical_cores().map_or(usable, |cores| cores.clamp(1, usable))
}

/// Distinct (package, core) pairs among the online CPUs, from Linux's sysfs;
/// `None` where it cannot be read.
fn physical_cores() -> Option<usize> {
    let cpus = std::fs::read_dir("/sys/devices/system/cpu").ok()?;
    let mut cores = std::collections::HashSet::new();
    for cpu in cpus.flatten() {
        let name = cpu.file_name();
        let Some(index) = name.to_str().and_then(|n| n.strip_prefix("cpu")) else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |file: &str| std::fs::read_to_string(cpu.path().join("topology").join(file));
        // An offline CPU has no topology.
        if let (Ok(package), Ok(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((package.trim().to_string(), core.trim().to_string()));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// The pool tract splits its work over: none for one thread, else one pool
/// per thread count for the whole process. Every engine of that count runs
/// on the same threads, so their thread-local buffers and their memory
/// (glibc keeps an arena per thread) serve them all: with a pool per engine,
/// `edge-run` on PP-OCRv4 det at two input sizes (an engine each) peaked at
/// 549 MB on two threads, with one pool at 348 MB.
fn executor(threads: usize) -> Executor {
    static POOLS: std::sync::Mutex<Vec<(usize, Executor)>> = std::sync::Mutex::new(Vec::new());
    if threads <= 1 {
        return Executor::SingleThread;
    }
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return pool.clone();
    }
    let pool = Executor::multithread_with_name(threads, "edgewise");
    pools.push((threads, pool.clone()));
    pool
}

/// Runs `work` on a thread of `executor`'s pool. Run from outside the
/// pool, every parallel step of the plan would queue its tasks, park the
/// calling thread and wake it again: one thread more than the pool's, and
/// two context switches per step. Inside the pool, the caller is one of the
/// workers: it takes its share of every step, and nested steps run inline.
fn on_pool<R: Send>(executor: &Executor, work: impl FnOnce() -> R + Send) -> R {
    match executor {
        Executor::MultiThread(pool) => pool.install(work),
        _ => work(),
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
        let options = EngineOptions {
            qdq: mode,
            ..EngineOptions::threads(threads)
        };
        Self::with_options(model, shapes, &options)
    }

    /// [`Engine::from_model`], built the way `options` say.
    pub fn with_options(
        model: &Model,
        shapes: &[InputShape],
        options: &EngineOptions,
    ) -> Result<Engine, RuntimeError> {
        // Each frame frees and reallocates megabytes of feature maps.
        crate::memory::keep_freed_memory();
        let (threads, mode) = (options.threads, options.qdq);
        let with_mode = |mode| {
            let options = EngineOptions {
                qdq: mode,
                ..options.clone()
            };
            Self::with_options(model, shapes, &options)
        };
        let has_qdq = model
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "DequantizeLinear");
        if mode == QdqMode::Auto {
            if !has_qdq {
                return with_mode(QdqMode::Float);
            }
            let integer = with_mode(QdqMode::Integer)?;
            let Some((node, why)) = integer.int8_kernels().and_then(|k| k.skipped.first()) else {
                return Ok(integer);
            };
            let reason = format!(
                "{} convolution(s) would be left to tract's quantized convolution, slower than float ({node}: {why})",
                integer.int8_kernels().map_or(0, |k| k.skipped.len())
            );
            let mut float = with_mode(QdqMode::Float)?;
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
        // Our float convolutions go in first, while tract's are still
        // `Conv`s: the INT8 rewrite and the float install both declutter,
        // which makes 1x1 convolutions matrix products (f32 only: the f16
        // translation knows tract's).
        let float_convs =
            options.precision == FloatPrecision::F32 && options.float_conv == FloatConv::Edgewise;
        // A deconvolution whose kernel is its stride (DBNet's upsampling
        // head) is a pointwise convolution and a pixel shuffle: `F32Conv`
        // and `PixelShuffle` run those on every thread, where tract packs
        // and sums a deconvolution on one (PP-OCRv4's two took 8.7 ms of 70
        // at 640).
        let pointwise;
        let model = if float_convs
            && model
                .graph
                .nodes
                .iter()
                .any(|n| n.op_type == "ConvTranspose")
        {
            let mut m = model.clone();
            // Exporters give the weights as `Constant` nodes (Paddle2ONNX)
            // and follow the deconvolution with a batch norm, folded in
            // first so that it runs inside the convolution.
            m.constants_to_initializers();
            passes::fold_batch_norms(&mut m)?;
            passes::deconvs_to_convs(&mut m)?;
            pointwise = m;
            &pointwise
        } else {
            model
        };
        let input_shapes = resolve_input_shapes(model, shapes)?;
        let inference = tract_model(model, &input_shapes)?;
        let output_names = model.graph.outputs.iter().map(|o| o.name.clone()).collect();
        let mut typed = inference
            .into_typed()
            .map_err(engine_err("analyse the model"))?;
        let convs = if float_convs {
            Some(
                fp32::install_convs(&mut typed)
                    .map_err(engine_err("install the FP32 convolutions"))?,
            )
        } else {
            None
        };
        let int8_kernels = if mode == QdqMode::Integer {
            Some(int8::install(&mut typed).map_err(engine_err("install the INT8 kernels"))?)
        } else {
            None
        };
        // Float operators of ours where tract's are slow.
        let fp32_kernels = match options.precision {
            FloatPrecision::F32 => Some(
                fp32::install(&mut typed, convs).map_err(engine_err("install the FP32 kernels"))?,
            ),
            FloatPrecision::F16 => None,
        };
        let half = match options.precision {
            FloatPrecision::F32 => None,
            FloatPrecision::F16 => Some(
                to_half(&mut typed, &options.keep_f32)
                    .map_err(engine_err("translate the model to f16"))?,
            ),
        };
        let optimized = typed
            .into_optimized()
            .map_err(engine_err("optimize the model"))?;
        let executor = executor(threads);
        let run_options = RunOptions {
            executor: Some(executor.clone()),
            ..Default::default()
        };
        let plan: Plan = optimized
            .into_runnable_with_options(&run_options)
            .map_err(engine_err("plan the model"))?;
        let state = plan.spawn().map_err(engine_err("prepare a run"))?;
        Ok(Engine {
            state,
            input_shapes,
            output_names,
            threads: threads.max(1),
            qdq,
            int8_kernels,
            fp32_kernels,
            fallback: None,
            half,
            executor,
        })
    }

    /// With [`FloatPrecision::F16`]: what runs in f16, and what stays f32.
    pub fn half_precision(&self) -> Option<&HalfPrecision> {
        self.half.as_ref()
    }

    /// The inputs in the type the plan takes: f32 images become f16 for a
    /// plan translated to f16.
    fn plan_inputs(&self, inputs: Vec<Tensor>) -> Result<TVec<TValue>, RuntimeError> {
        let model = self.state.model();
        inputs
            .into_iter()
            .zip(
                model
                    .input_outlets()
                    .map_err(engine_err("read the inputs"))?,
            )
            .map(|(tensor, outlet)| {
                let dt = model.outlet_fact(*outlet)?.datum_type;
                if tensor.datum_type() == dt {
                    Ok(tensor.into())
                } else {
                    Ok(tensor.cast_to_dt(dt)?.into_owned().into())
                }
            })
            .collect::<TractResult<_>>()
            .map_err(engine_err("convert the inputs"))
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
    /// [`edgewise_kernels::Int8Conv`], and those left to tract.
    pub fn int8_kernels(&self) -> Option<&Installed> {
        self.int8_kernels.as_ref()
    }

    /// In f32: the float operators moved onto Edgewise's
    /// ([`edgewise_kernels::fp32`]).
    pub fn fp32_kernels(&self) -> Option<&fp32::Installed> {
        self.fp32_kernels.as_ref()
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
        let inputs = self.plan_inputs(inputs)?;
        let state = &mut self.state;
        // Node by node, to clear the vector state tract's x86 kernels leave
        // behind before the next node's Rust code runs (see `simd`).
        let outputs = on_pool(&self.executor, || {
            state.run_plan_with_eval(inputs, |ctx, state, node, input| {
                let result = tract_core::plan::eval(ctx, state, node, input);
                clear_upper_vector_state();
                result
            })
        })
        .map_err(engine_err("run the model"))?;
        self.model_outputs(outputs)
    }

    /// The plan's outputs in the model's own types: f16 outputs of a plan
    /// translated to f16 back to f32.
    fn model_outputs(&self, outputs: TVec<TValue>) -> Result<Vec<Tensor>, RuntimeError> {
        outputs
            .into_iter()
            .map(|t| {
                let t = t.into_tensor();
                if self.half.is_some() && t.datum_type() == DatumType::F16 {
                    Ok(t.cast_to::<f32>()?.into_owned())
                } else {
                    Ok(t)
                }
            })
            .collect::<TractResult<_>>()
            .map_err(engine_err("convert the outputs"))
    }

    /// Runs the model once, timing every node of the optimized plan:
    /// returns the outputs and `(node id, time)` in evaluation order. The ids
    /// index [`Engine::plan`].
    pub fn run_profiled(
        &mut self,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, NodeTimes), RuntimeError> {
        self.check_inputs(&inputs)?;
        let inputs = self.plan_inputs(inputs)?;
        let mut times = Vec::with_capacity(self.state.model().nodes().len());
        let state = &mut self.state;
        let outputs = on_pool(&self.executor, || {
            state.run_plan_with_eval(inputs, |ctx, state, node, input| {
                let started = std::time::Instant::now();
                let result = tract_core::plan::eval(ctx, state, node, input);
                clear_upper_vector_state();
                times.push((node.id, started.elapsed()));
                result
            })
        })
        .map_err(engine_err("run the model"))?;
        Ok((self.model_outputs(outputs)?, times))
    }
}

/// The entry of [`F32_OPS`] that `node` computes, if any.
fn sensitive_op(node: &TypedNode) -> Option<&'static str> {
    let op = node.op.name();
    F32_OPS
        .iter()
        .find(|s| op == **s || op.starts_with(&format!("{s}<")))
        .copied()
}

/// Translates `model`'s float work to f16, but for the nodes of
/// [`F32_OPS`], those named by `keep`, and those reading or writing int8
/// tensors (quantize, dequantize and the integer kernels take f32).
fn to_half(model: &mut TypedModel, keep: &[String]) -> TractResult<HalfPrecision> {
    fn why_f32(model: &TypedModel, node: &TypedNode, keep: &[String]) -> Option<String> {
        if let Some(pattern) = keep.iter().find(|p| node.name.contains(p.as_str())) {
            return Some(format!("its name contains {pattern:?} (--keep-f32)"));
        }
        if let Some(sensitive) = sensitive_op(node) {
            return Some(format!("{sensitive} leaves f16's range"));
        }
        // A mean is a sum, then a product by 1/n: the sum would overflow on
        // its way into the product.
        let scales_a_sum = node.op_is::<tract_core::ops::binary::TypedBinOp>()
            && node
                .inputs
                .iter()
                .any(|i| sensitive_op(model.node(i.node)) == Some("Reduce"));
        if scales_a_sum {
            return Some("it scales a reduction (a mean's 1/n)".into());
        }
        let facts = node
            .inputs
            .iter()
            .filter_map(|i| model.outlet_fact(*i).ok())
            .chain(node.outputs.iter().map(|o| &o.fact));
        for fact in facts {
            if matches!(fact.datum_type.unquantized(), DatumType::I8 | DatumType::U8) {
                return Some("it reads or writes int8".into());
            }
        }
        None
    }
    let mut report = HalfPrecision::default();
    let mut stay = std::collections::HashSet::new();
    for node in model.nodes() {
        if node.op_as::<tract_core::ops::konst::Const>().is_some()
            || node
                .op_as::<tract_core::ops::source::TypedSource>()
                .is_some()
        {
            continue;
        }
        let computes_f32 = node
            .outputs
            .iter()
            .any(|o| o.fact.datum_type == DatumType::F32);
        match why_f32(model, node, keep) {
            Some(why) => {
                stay.insert(node.id);
                if computes_f32 {
                    report.kept.push((node.name.clone(), why));
                }
            }
            None if computes_f32 => report.nodes += 1,
            None => {}
        }
    }
    let translator = tract_core::floats::FloatPrecisionTranslator::with_filter(
        DatumType::F32,
        DatumType::F16,
        move |node| !stay.contains(&node.id),
    );
    tract_core::transform::ModelTransform::transform(&translator, model)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_graph::model::AttributeValue;

    use super::*;

    #[test]
    fn the_default_is_the_physical_cores_within_the_usable_cpus() {
        let usable = std::thread::available_parallelism().unwrap().get();
        let threads = default_threads();
        assert!((1..=usable).contains(&threads), "{threads} of {usable}");
        if cfg!(target_os = "linux") {
            let cores = physical_cores().expect("sysfs lists the CPU topology on Linux");
            assert_eq!(threads, cores.min(usable));
        }
    }

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
        let uses = edgewise_kernels::audit(engine.plan());
        assert!(!uses.is_empty());
        assert!(
            uses.iter()
                .all(|u| u.precision == edgewise_kernels::Precision::Integer),
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

    /// `x -> Conv 3x3 -> GlobalAveragePool -> Mul(conv, pooled)`: a
    /// squeeze-style block. On inputs near 100 its pooling sums 1024 values
    /// past f16's largest, 65504.
    fn pooled_block() -> Model {
        let mut b = ModelBuilder::new(17);
        let x = b.input("x", &[1, 4, 32, 32]);
        let y = b.conv(&x, 4, 4, 3, 1, 1);
        let pooled = b.op("GlobalAveragePool", &[&y], vec![]);
        let out = b.op("Mul", &[&y, &pooled], vec![]);
        b.output(&out);
        b.finish()
    }

    #[test]
    fn f16_runs_close_to_f32_with_its_means_in_f32() {
        let model = pooled_block();
        let shapes = [InputShape::parse("1x4x32x32").unwrap()];
        let input: Vec<f32> = (0..4096).map(|i| 90.0 + (i % 37) as f32).collect();
        let x = Tensor::from_shape(&[1, 4, 32, 32], &input).unwrap();
        let run = |precision, keep_f32: &[&str]| {
            let options = EngineOptions {
                precision,
                keep_f32: keep_f32.iter().map(|s| s.to_string()).collect(),
                ..EngineOptions::threads(1)
            };
            let mut engine = Engine::with_options(&model, &shapes, &options).unwrap();
            let out = engine.run(vec![x.clone()]).unwrap().remove(0);
            (engine, out)
        };
        let (_, reference) = run(FloatPrecision::F32, &[]);
        let (engine, half) = run(FloatPrecision::F16, &[]);
        // The outputs come back in the model's type, finite, and as close
        // as f16's 11 bits allow (about 1e-3 relative per rounding).
        assert_eq!(half.datum_type(), DatumType::F32);
        let a = edgewise_graph::tensor::values::<f32>(&reference).unwrap();
        let b = edgewise_graph::tensor::values::<f32>(&half).unwrap();
        assert!(b.iter().all(|v| v.is_finite()), "f16 overflowed");
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-2 * scale,
            "largest difference {worst} of {scale}"
        );
        let report = engine.half_precision().unwrap();
        assert!(report.nodes > 0, "{report:?}");
        let whys: Vec<&str> = report.kept.iter().map(|(_, why)| why.as_str()).collect();
        assert!(whys.iter().any(|w| w.starts_with("Reduce")), "{report:?}");
        assert!(
            whys.iter().any(|w| w.contains("scales a reduction")),
            "{report:?}"
        );
        assert!(
            engine
                .plan()
                .nodes()
                .iter()
                .any(|n| n.outputs[0].fact.datum_type == DatumType::F16),
            "nothing runs in f16"
        );
        // Nodes named on the command line stay in f32.
        let (engine, _) = run(FloatPrecision::F16, &["Conv"]);
        let report = engine.half_precision().unwrap();
        assert!(
            report
                .kept
                .iter()
                .any(|(node, why)| node.contains("Conv") && why.contains("--keep-f32")),
            "{report:?}"
        );
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
