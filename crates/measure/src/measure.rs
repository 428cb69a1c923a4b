//! Measuring variants side by side: whole frames run plain and with
//! per-node timing, every model's and both kinds interleaved so all see the
//! same machine conditions; node times are attributed to ONNX nodes and
//! summed per stage.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgewise_boards::{Board, Precision};
use edgewise_graph::analysis::resolve_input_shapes;
use edgewise_graph::tract_onnx::prelude::{Tensor, TypedModel};
use edgewise_graph::{InputShape, Model};
use edgewise_runtime::engine::NodeTimes;
use edgewise_runtime::{
    Detector, Engine, EngineOptions, FloatConv, FloatPrecision, ModelSource, QdqMode, load_image,
};
use edgewise_stages::{Overrides, Stage, StagedModel};
use image::DynamicImage;

use crate::attribution::{Attributor, Origin};
use crate::machine::Machine;
use crate::report::{
    Input, KernelRow, MAX_OVERHEAD_PCT, MAX_STAGE_GAP_PCT, NodeRow, STAGE_ROWS, Settings, StageRow,
    Variant,
};
use crate::stats::Summary;

/// How many frames to run.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Frames of each kind before measuring (caches, allocations, clock
    /// ramp-up); at least 1, since the first frame pays one-off costs.
    pub warmup: usize,
    /// Measured frames of each kind, at most.
    pub runs: usize,
    /// Stop measuring after this long (at least one frame of each kind is made).
    pub max_seconds: f64,
    /// Threads tract runs on.
    pub threads: usize,
    /// How a QDQ (INT8) model runs: in float or on integer kernels.
    pub qdq: QdqMode,
    /// The float type of the float work.
    pub precision: FloatPrecision,
    /// Whose kernels run the dense float convolutions.
    pub float_conv: FloatConv,
}

impl Budget {
    /// Refuses budgets that cannot give a measurement.
    pub fn check(&self) -> Result<()> {
        if self.warmup == 0 {
            bail!("--warmup must be at least 1: the first frame pays one-off costs");
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        if !(self.max_seconds.is_finite() && self.max_seconds > 0.0) {
            bail!(
                "--max-seconds must be a positive number of seconds, not {}",
                self.max_seconds
            );
        }
        Ok(())
    }

    /// The engine settings every run of this budget uses.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            threads: self.threads,
            qdq: self.qdq,
            precision: self.precision,
            keep_f32: vec![],
            float_conv: self.float_conv,
        }
    }
}

/// `manifest`'s detector on `model`, fixed at the input shape `dims`
/// (a batch of one image) and run with `options`.
pub(crate) fn detector_at(
    model: Model,
    manifest: &edgewise_manifest::Manifest,
    dims: &[usize],
    options: &EngineOptions,
) -> Result<Detector> {
    let hw = manifest
        .input
        .hw_of(dims)
        .with_context(|| format!("the input shape {dims:?} is not an image batch"))?;
    Ok(
        Detector::new(model, manifest.clone(), Some(hw), options.threads)?
            .with_qdq_mode(options.qdq)
            .with_precision(options.precision, options.keep_f32.clone())
            .with_float_conv(options.float_conv),
    )
}

/// What to measure: a model, analysed and split into stages.
pub struct Target {
    /// Column header.
    pub label: String,
    /// The model and its manifest.
    pub source: ModelSource,
    /// Input shapes.
    pub shapes: Vec<InputShape>,
    /// The model analysed at `shapes`, with its stages and costs.
    pub staged: StagedModel,
}

impl Target {
    /// Loads and partitions `source` at `shapes`, so that a model that cannot
    /// be analysed is refused before anything is measured.
    pub fn new(
        label: String,
        source: ModelSource,
        shapes: Vec<InputShape>,
        overrides: &Overrides,
    ) -> Result<Target> {
        let model = Model::load(&source.onnx)?;
        let staged = StagedModel::new(model, &shapes, overrides)
            .with_context(|| format!("cannot find the stages of {}", source.onnx.display()))?;
        Ok(Target {
            label,
            source,
            shapes,
            staged,
        })
    }
}

const PRE: usize = 0;
const DECODE: usize = 5;
const UNATTRIBUTED: usize = 6;

fn row_of(stage: Stage) -> usize {
    match stage {
        Stage::Pre => PRE,
        Stage::Backbone => 1,
        Stage::Neck => 2,
        Stage::Head => 3,
        Stage::Post => 4,
    }
}

/// One frame's timings.
struct Sample {
    pre: Duration,
    infer: Duration,
    decode: Duration,
    nodes: NodeTimes,
    detections: Option<usize>,
}

impl Sample {
    fn total(&self) -> Duration {
        self.pre + self.infer + self.decode
    }
}

/// Runs frames: the whole detector with a manifest, the bare model without.
enum Runner {
    Detector {
        detector: Box<Detector>,
        frame: DynamicImage,
        shape: Vec<usize>,
    },
    Bare {
        engine: Box<Engine>,
        feed: Vec<Tensor>,
    },
}

impl Runner {
    /// The detector with its frame (manifest) or the bare engine with a
    /// fixed input; also the label of what is fed.
    fn new(
        source: &ModelSource,
        model: Model,
        inputs: &[(String, Vec<usize>)],
        shapes: &[InputShape],
        image: Option<&Path>,
        options: &EngineOptions,
    ) -> Result<(Runner, String)> {
        let dims = inputs.first().context("the model has no input")?.1.clone();
        Ok(match &source.manifest {
            Some(manifest) => {
                if dims.first() != Some(&1) {
                    bail!(
                        "with a manifest a frame is one image, so the batch must be 1, not input shape {dims:?}"
                    );
                }
                let (frame, label) = match image {
                    Some(path) => (load_image(path)?, path.display().to_string()),
                    None => {
                        let [h, w] = manifest.input.size;
                        (synthetic_image(w as u32, h as u32), "synthetic".to_string())
                    }
                };
                let detector = detector_at(model, manifest, &dims, options)?;
                let runner = Runner::Detector {
                    detector: Box::new(detector),
                    frame,
                    shape: dims.clone(),
                };
                (runner, label)
            }
            None => {
                // A bare ONNX file has no preprocessing to feed a photo through;
                // it runs on a fixed synthetic tensor (the caller refuses --image
                // when no model has a manifest).
                let engine = Engine::with_options(&model, shapes, options)?;
                let feed = inputs.iter().map(|(_, d)| ramp(d)).collect();
                let runner = Runner::Bare {
                    engine: Box::new(engine),
                    feed,
                };
                (runner, "none".to_string())
            }
        })
    }

    fn run(&mut self, profile: bool) -> Result<Sample> {
        Ok(match self {
            Runner::Detector {
                detector, frame, ..
            } => {
                let (found, t, nodes) = if profile {
                    detector.detect_profiled(frame)?
                } else {
                    let (found, t) = detector.detect(frame)?;
                    (found, t, vec![])
                };
                Sample {
                    pre: t.pre,
                    infer: t.infer,
                    decode: t.post,
                    nodes,
                    detections: Some(found.len()),
                }
            }
            Runner::Bare { engine, feed } => {
                // The copy of the input is made before the clock starts.
                let feed = feed.clone();
                let started = Instant::now();
                let nodes = if profile {
                    engine.run_profiled(feed)?.1
                } else {
                    engine.run(feed)?;
                    vec![]
                };
                Sample {
                    pre: Duration::ZERO,
                    infer: started.elapsed(),
                    decode: Duration::ZERO,
                    nodes,
                    detections: None,
                }
            }
        })
    }

    /// The plan the frames ran (after the first frame).
    fn plan(&self) -> Result<&TypedModel> {
        match self {
            Runner::Detector {
                detector, shape, ..
            } => detector.engine(shape).map(Engine::plan).with_context(|| {
                format!(
                    "the preprocessed image does not have the input shape {shape:?}; check --input-shape against the manifest's layout and channels"
                )
            }),
            Runner::Bare { engine, .. } => Ok(engine.plan()),
        }
    }
}

/// Measures `target`; `image` is preprocessed each frame (models with a
/// manifest; bare ONNX files run on a synthetic tensor),
/// `board` gives the peak the achieved throughput is compared with.
/// `progress` is told `(frames done, frames planned)` after every frame.
pub fn measure(
    target: &Target,
    image: Option<&Path>,
    budget: Budget,
    board: Option<&Board>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Variant> {
    let mut variants = measure_side_by_side(&[(target, budget)], image, board, progress)?;
    Ok(variants.remove(0))
}

/// Measures several targets side by side, as [`measure`] does one: every
/// model is loaded first, then each round runs one frame pair of each,
/// starting with a different model every round. Measured one after the
/// other, the first model ran while the machine was slowest (PP-OCRv4's
/// FP32 model took 171-234 ms first in line and 164-173 ms second, in
/// five runs on 2026-12-02), which no ratio between variants should carry.
pub fn measure_side_by_side(
    targets: &[(&Target, Budget)],
    image: Option<&Path>,
    board: Option<&Board>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Variant>> {
    let mut lanes = vec![];
    for &(target, budget) in targets {
        budget.check()?;
        lanes.push(Lane::new(target, budget, image).with_context(|| cannot_measure(target))?);
    }
    run_frames(&mut lanes, progress)?;
    lanes
        .into_iter()
        .map(|lane| {
            let target = lane.target;
            summarize(lane, image, board).with_context(|| cannot_measure(target))
        })
        .collect()
}

fn cannot_measure(target: &Target) -> String {
    format!("cannot measure {}", target.source.onnx.display())
}

/// One target being measured: its runner and the frames run so far.
struct Lane<'a> {
    target: &'a Target,
    budget: Budget,
    inputs: Vec<(String, Vec<usize>)>,
    runner: Runner,
    image_label: String,
    machine_before: Machine,
    plain: Vec<Sample>,
    profiled: Vec<Sample>,
    /// Time spent in measured frames, against `budget.max_seconds`.
    spent: Duration,
}

impl<'a> Lane<'a> {
    fn new(target: &'a Target, budget: Budget, image: Option<&Path>) -> Result<Lane<'a>> {
        let model = target.staged.model.clone();
        let inputs = resolve_input_shapes(&model, &target.shapes)?;
        let machine_before = Machine::detect();
        let (runner, image_label) = Runner::new(
            &target.source,
            model,
            &inputs,
            &target.shapes,
            image,
            &budget.engine_options(),
        )?;
        Ok(Lane {
            target,
            budget,
            inputs,
            runner,
            image_label,
            machine_before,
            plain: vec![],
            profiled: vec![],
            spent: Duration::ZERO,
        })
    }

    /// Whether it has all its runs, or has spent its time budget.
    fn finished(&self) -> Result<bool> {
        let limit = Duration::try_from_secs_f64(self.budget.max_seconds)?;
        Ok(self.profiled.len() >= self.budget.runs || self.spent > limit)
    }
}

/// The report of one lane's frames.
fn summarize(lane: Lane, image: Option<&Path>, board: Option<&Board>) -> Result<Variant> {
    let Lane {
        target,
        budget,
        inputs,
        runner,
        image_label,
        machine_before,
        plain,
        profiled,
        spent: _,
    } = lane;
    let source = &target.source;
    let staged = &target.staged;

    let Attributed {
        rows: row_samples,
        nodes: node_samples,
        plan_nodes_of,
        row_plan_nodes,
        between,
        unattributed,
    } = attribute(&profiled, runner.plan()?, staged);
    let kernels = kernel_rows(&profiled, runner.plan()?, staged);
    let onnx_count = staged.model.graph.nodes.len();

    let totals = |s: &[Sample]| Summary::of(&s.iter().map(Sample::total).collect::<Vec<_>>());
    let plain_summary = totals(&plain).expect("at least one plain frame");
    let profiled_summary = totals(&profiled).expect("at least one profiled frame");
    let frame_ms = profiled_summary.median_ms;

    // `--qdq auto` may have run a QDQ model in float: the plan's kernels say.
    let precision = if kernels.iter().any(|k| k.precision == "f16") {
        Precision::F16
    } else if budget.qdq == QdqMode::Auto {
        if kernels.iter().any(|k| k.precision == "integer") {
            Precision::I8
        } else {
            Precision::F32
        }
    } else {
        precision_of(&staged.model, budget.qdq)
    };
    let machine = Machine::detect();
    let mut warnings = vec![];
    let board_check = board.map(|b| {
        let b = crate::board::for_this_machine(b.clone(), &machine);
        let (check, mismatches) = crate::board::check(&b, &machine, precision, budget.threads);
        warnings.extend(mismatches);
        check
    });

    let mut stage_macs = [0u64; 7];
    let mut stage_params = [0u64; 7];
    for (ix, cost) in staged.costs.iter().enumerate() {
        let row = row_of(staged.partition.stages[ix]);
        if !staged.constant[ix] {
            stage_macs[row] += cost.macs;
        }
        stage_params[row] += cost.params;
    }
    let has_manifest = source.manifest.is_some();
    let mut stages = vec![];
    for (row, name) in STAGE_ROWS.iter().enumerate() {
        let rust_phase = has_manifest && (row == PRE || row == DECODE);
        if row_plan_nodes[row] == 0 && !rust_phase {
            continue;
        }
        let time = Summary::of(&row_samples[row]).expect("one sample per profiled frame");
        let macs = (stage_macs[row] > 0).then_some(stage_macs[row]);
        let gmacs_per_s = macs
            .filter(|_| time.median_ms > 0.0)
            .map(|m| m as f64 / (time.median_ms * 1e6));
        let onnx_nodes = (0..onnx_count)
            .filter(|&ix| plan_nodes_of[ix] > 0 && row_of(staged.partition.stages[ix]) == row)
            .count();
        stages.push(StageRow {
            stage: name.to_string(),
            share_pct: 100.0 * time.median_ms / frame_ms,
            params: (stage_params[row] > 0).then_some(stage_params[row]),
            macs,
            gmacs_per_s,
            peak_pct: gmacs_per_s
                .zip(board_check.as_ref())
                .map(|(g, b)| 100.0 * g / b.peak_gmacs),
            onnx_nodes,
            plan_nodes: row_plan_nodes[row],
            rust: rust_phase,
            time,
        });
    }

    let graph = &staged.model.graph;
    let mut nodes: Vec<NodeRow> = (0..onnx_count)
        .filter(|&ix| plan_nodes_of[ix] > 0)
        .map(|ix| {
            let median_ms = Summary::of(&node_samples[ix]).map_or(0.0, |s| s.median_ms);
            NodeRow {
                name: graph.node_label(ix),
                op: graph.nodes[ix].op_type.clone(),
                stage: staged.partition.stages[ix].name().to_string(),
                median_ms,
                share_pct: 100.0 * median_ms / frame_ms,
                macs: staged.costs[ix].macs,
                plan_nodes: plan_nodes_of[ix],
            }
        })
        .collect();
    nodes.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));

    let stage_sum_ms: f64 = stages.iter().map(|s| s.time.median_ms).sum();
    let stage_gap_pct = 100.0 * (stage_sum_ms / frame_ms - 1.0);
    let overhead_pct = 100.0 * (frame_ms / plain_summary.median_ms - 1.0);
    let between_nodes = Summary::of(&between).expect("one sample per profiled frame");
    if overhead_pct > MAX_OVERHEAD_PCT {
        warnings.push(format!(
            "profiling overhead {overhead_pct:.1}% exceeds {MAX_OVERHEAD_PCT}%: per-node times are inflated; use more --runs on a quieter machine"
        ));
    }
    if stage_gap_pct.abs() > MAX_STAGE_GAP_PCT {
        warnings.push(format!(
            "stage medians sum to {stage_sum_ms:.2} ms, {stage_gap_pct:+.1}% off the profiled median {frame_ms:.2} ms (limit {MAX_STAGE_GAP_PCT}%); {:.2} ms of each frame is spent between nodes, the rest is run-to-run variation (use more --runs)",
            between_nodes.median_ms
        ));
    }
    if !unattributed.is_empty() {
        warnings.push(format!(
            "{} plan node(s) have no ONNX origin: {}",
            unattributed.len(),
            unattributed.join(", ")
        ));
    }
    if profiled.len() < budget.runs {
        warnings.push(format!(
            "the {} s budget allowed {} of the {} runs asked; raise --max-seconds for steadier medians",
            budget.max_seconds,
            profiled.len(),
            budget.runs
        ));
    }
    if image.is_some() && source.manifest.is_none() {
        warnings.push(
            "--image is not used for this model: without a manifest it runs on a synthetic tensor"
                .to_string(),
        );
    }
    warnings.extend(machine_warnings(&machine_before, &machine));

    Ok(Variant {
        label: target.label.clone(),
        model: source.onnx.display().to_string(),
        inputs: inputs
            .into_iter()
            .map(|(name, dims)| Input { name, dims })
            .collect(),
        image: image_label,
        precision: match precision {
            Precision::F32 => "f32",
            Precision::I8 => "int8",
            Precision::F16 => "f16",
        }
        .to_string(),
        settings: Settings {
            warmup: budget.warmup,
            runs: profiled.len(),
            runs_requested: budget.runs,
            max_seconds: budget.max_seconds,
            threads: budget.threads,
            qdq: has_qdq(&staged.model).then_some(budget.qdq),
        },
        machine,
        board: board_check,
        plain: plain_summary,
        profiled: profiled_summary,
        overhead_pct,
        stage_sum_ms,
        stage_gap_pct,
        between_nodes,
        stages,
        nodes,
        kernels,
        unattributed,
        detections: profiled.last().and_then(|s| s.detections),
        stream: None,
        warnings,
    })
}

/// Machine conditions that make timings unsteady: a changing clock, and
/// throttling now or starting during the runs.
fn machine_warnings(before: &Machine, machine: &Machine) -> Vec<String> {
    let mut warnings = vec![];
    if let Some(governor) = machine.governor.as_deref()
        && governor != "performance"
    {
        warnings.push(format!(
            "cpufreq governor is `{governor}`: the clock may change during the runs; `performance` gives steadier numbers"
        ));
    }
    if let Some(flags) = &machine.throttling
        && flags.iter().any(|f| f.ends_with("now"))
    {
        warnings.push(format!("the board is throttling: {}", flags.join(", ")));
    }
    if let (Some(was), Some(is)) = (&before.throttling, &machine.throttling)
        && was != is
    {
        let new: Vec<&str> = is
            .iter()
            .filter(|f| !was.contains(f))
            .map(String::as_str)
            .collect();
        if !new.is_empty() {
            warnings.push(format!("during the runs: {}", new.join(", ")));
        }
    }
    warnings
}

/// Warm-up frames, then plain and profiled frames interleaved until each
/// lane has its runs or has spent its time budget. Every round runs one
/// pair per lane, starting from the next lane each round, and alternates
/// which kind goes first, so drift (clock, temperature, neighbours) hits
/// every model and both kinds alike.
fn run_frames(lanes: &mut [Lane], progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
    let planned = lanes
        .iter()
        .map(|l| 2 * (l.budget.warmup + l.budget.runs))
        .sum();
    let mut done = 0;
    let warmup = lanes.iter().map(|l| l.budget.warmup).max().unwrap_or(0);
    for round in 0..warmup {
        for lane in lanes.iter_mut().filter(|l| round < l.budget.warmup) {
            lane.runner.run(false)?;
            lane.runner.run(true)?;
            done += 2;
            progress(done, planned);
        }
    }
    let n = lanes.len();
    for round in 0.. {
        let mut ran = false;
        for k in 0..n {
            let lane = &mut lanes[(round + k) % n];
            if lane.finished()? {
                continue;
            }
            let started = Instant::now();
            for profile in [round % 2 == 1, round % 2 == 0] {
                let sample = lane.runner.run(profile)?;
                if profile {
                    lane.profiled.push(sample);
                } else {
                    lane.plain.push(sample);
                }
                done += 1;
                progress(done, planned);
            }
            lane.spent += started.elapsed();
            ran = true;
        }
        if !ran {
            break;
        }
    }
    Ok(())
}

/// Profiled frames summed per stage row and per ONNX node.
struct Attributed {
    /// Per stage row (in [`STAGE_ROWS`] order), one time per frame.
    rows: [Vec<Duration>; 7],
    /// Per ONNX node that ran, one time per frame.
    nodes: Vec<Vec<Duration>>,
    /// Plan nodes each ONNX node became (0: folded away or not run).
    plan_nodes_of: Vec<usize>,
    /// Plan nodes per stage row.
    row_plan_nodes: [usize; 7],
    /// Per frame, inference time outside any node.
    between: Vec<Duration>,
    /// Names of plan nodes with no ONNX origin.
    unattributed: Vec<String>,
}

/// The audit of `plan` ([`edgewise_kernels::audit`]): every convolution and
/// matrix product with its kernel's precision, its ONNX node and stage, and
/// its median time; slowest first.
fn kernel_rows(profiled: &[Sample], plan: &TypedModel, staged: &StagedModel) -> Vec<KernelRow> {
    let graph = &staged.model.graph;
    let attributor = Attributor::new(graph);
    let ids: HashMap<&str, usize> = plan
        .nodes()
        .iter()
        .map(|n| (n.name.as_str(), n.id))
        .collect();
    // Each plan node's time in each frame, gathered in one pass.
    let frames: Vec<Vec<Duration>> = profiled
        .iter()
        .map(|s| {
            let mut times = vec![Duration::ZERO; plan.nodes().len()];
            for &(id, t) in &s.nodes {
                times[id] += t;
            }
            times
        })
        .collect();
    let mut rows: Vec<KernelRow> = edgewise_kernels::audit(plan)
        .into_iter()
        .map(|k| {
            let id = ids.get(k.node.as_str()).copied();
            let samples: Vec<Duration> = frames
                .iter()
                .map(|times| id.map_or(Duration::ZERO, |id| times[id]))
                .collect();
            let (onnx_node, stage) = match attributor.origin(&k.node) {
                Origin::Node(ix) => (
                    Some(graph.node_label(ix)),
                    Some(staged.partition.stages[ix].name().to_string()),
                ),
                _ => (None, None),
            };
            KernelRow {
                plan_node: k.node,
                onnx_node,
                stage,
                op: k.op,
                precision: match k.precision {
                    edgewise_kernels::Precision::Integer => "integer",
                    edgewise_kernels::Precision::Float => "float",
                    edgewise_kernels::Precision::Half => "f16",
                }
                .into(),
                kernels: k.kernels,
                median_ms: Summary::of(&samples).map_or(0.0, |s| s.median_ms),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    rows
}

fn attribute(profiled: &[Sample], plan: &TypedModel, staged: &StagedModel) -> Attributed {
    let attributor = Attributor::new(&staged.model.graph);
    let origins: Vec<Origin> = plan
        .nodes()
        .iter()
        .map(|n| attributor.origin(&n.name))
        .collect();
    let row_of_origin = |origin: &Origin| match origin {
        Origin::Node(ix) => row_of(staged.partition.stages[*ix]),
        Origin::Input => PRE,
        Origin::Unattributed => UNATTRIBUTED,
    };
    let onnx_count = staged.model.graph.nodes.len();
    let mut row_samples: [Vec<Duration>; 7] = Default::default();
    let mut node_samples: Vec<Vec<Duration>> = vec![vec![]; onnx_count];
    let mut plan_nodes_of: Vec<usize> = vec![0; onnx_count];
    let mut row_plan_nodes = [0usize; 7];
    let mut between = vec![];
    let mut unattributed = vec![];
    for (frame, sample) in profiled.iter().enumerate() {
        let mut rows = [Duration::ZERO; 7];
        let mut per_node = vec![Duration::ZERO; onnx_count];
        let mut in_nodes = Duration::ZERO;
        for &(id, t) in &sample.nodes {
            let origin = &origins[id];
            rows[row_of_origin(origin)] += t;
            in_nodes += t;
            if let Origin::Node(ix) = origin {
                per_node[*ix] += t;
            }
            if frame == 0 {
                row_plan_nodes[row_of_origin(origin)] += 1;
                match origin {
                    Origin::Node(ix) => plan_nodes_of[*ix] += 1,
                    Origin::Unattributed => unattributed.push(plan.node(id).name.clone()),
                    Origin::Input => {}
                }
            }
        }
        rows[PRE] += sample.pre;
        rows[DECODE] += sample.decode;
        for (list, t) in row_samples.iter_mut().zip(rows) {
            list.push(t);
        }
        for ix in 0..onnx_count {
            if plan_nodes_of[ix] > 0 {
                node_samples[ix].push(per_node[ix]);
            }
        }
        between.push(sample.infer.saturating_sub(in_nodes));
    }
    Attributed {
        rows: row_samples,
        nodes: node_samples,
        plan_nodes_of,
        row_plan_nodes,
        between,
        unattributed,
    }
}

/// `I8` when the graph runs quantized operators, else `F32`: which peak the
/// achieved throughput is compared with.
fn precision_of(model: &Model, qdq: QdqMode) -> Precision {
    // Weights stored as int8 behind a DequantizeLinear alone fold back to f32
    // kernels; only quantized activations make integer kernels run, and only
    // when QDQ models run on the integer path.
    let integer = model.graph.nodes.iter().any(|n| {
        matches!(
            n.op_type.as_str(),
            "QLinearConv" | "ConvInteger" | "MatMulInteger" | "QLinearMatMul"
        )
    });
    if integer || (qdq != QdqMode::Float && has_qdq(model)) {
        Precision::I8
    } else {
        Precision::F32
    }
}

/// Whether the model quantizes activations (QDQ form).
fn has_qdq(model: &Model) -> bool {
    model
        .graph
        .nodes
        .iter()
        .any(|n| n.op_type == "QuantizeLinear")
}

/// A deterministic test card: gradients in each channel, so resizing does real work.
fn synthetic_image(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x + y) % 256) as u8,
        ])
    }))
}

/// A deterministic non-constant input in [-1, 1] for models without a manifest.
fn ramp(dims: &[usize]) -> Tensor {
    let len: usize = dims.iter().product();
    let data: Vec<f32> = (0..len).map(|i| ((i % 255) as f32 / 127.0) - 1.0).collect();
    Tensor::from_shape(dims, &data).expect("consistent shape")
}
