//! The report `edge-bench` writes: one or more variants (models, or the same
//! model on several boards), each with its per-stage and per-node timings and
//! the checks that say whether the numbers can be trusted.
//!
//! Serialized as JSON, it is the versioned document described by
//! `docs/schemas/edgewise.bench-1.schema.json`; every other format is
//! rendered from it, and `edge-bench merge` reads it back.

use edgewise_runtime::QdqMode;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::stats::Summary;

/// Identifier of the JSON document; bumped on any incompatible change.
pub const SCHEMA: &str = "edgewise.bench/1";

/// Largest profiling overhead (profiled against plain median) a report
/// accepts without a warning, in percent.
pub const MAX_OVERHEAD_PCT: f64 = 5.0;

/// Largest gap between the sum of stage medians and the profiled total, in percent.
pub const MAX_STAGE_GAP_PCT: f64 = 3.0;

/// Rows of the stage table, in pipeline order. `pre` and `decode+nms` are
/// the Rust code around the model; the rest are parts of tract's plan.
pub const STAGE_ROWS: [&str; 7] = [
    "pre",
    "backbone",
    "neck",
    "head",
    "post",
    "decode+nms",
    "unattributed",
];

/// A whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// The tool and version that wrote it.
    pub generator: String,
    /// One entry per model (or per board, after a merge).
    pub variants: Vec<Variant>,
}

/// One model measured on one machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Short name used as a column header.
    pub label: String,
    /// The ONNX file.
    pub model: String,
    /// Input names and shapes.
    pub inputs: Vec<Input>,
    /// The photo preprocessed each frame, `synthetic`, or `none` (no manifest).
    pub image: String,
    /// `f32`, or `int8` when the graph holds quantized operators.
    pub precision: String,
    /// How the measurement was made.
    pub settings: Settings,
    /// The machine it ran on.
    pub machine: Machine,
    /// The board profile it was checked against.
    pub board: Option<BoardCheck>,
    /// Whole frames without profiling.
    pub plain: Summary,
    /// Whole frames with per-node timing.
    pub profiled: Summary,
    /// `profiled.median / plain.median - 1`, in percent.
    pub overhead_pct: f64,
    /// Sum of the stage medians, ms.
    pub stage_sum_ms: f64,
    /// `stage_sum_ms / profiled.median - 1`, in percent.
    pub stage_gap_pct: f64,
    /// Inference time outside any node (tract's scheduling between nodes).
    pub between_nodes: Summary,
    /// One row per stage with time in it, in [`STAGE_ROWS`] order.
    pub stages: Vec<StageRow>,
    /// Every ONNX node tract ran, slowest first.
    pub nodes: Vec<NodeRow>,
    /// Every convolution and matrix product of tract's plan with the kernel
    /// it ran on, slowest first: which layers really ran in integer.
    #[serde(default)]
    pub kernels: Vec<KernelRow>,
    /// Plan nodes whose ONNX origin could not be found (should be empty).
    pub unattributed: Vec<String>,
    /// Detections on the image in the last frame, with a manifest.
    pub detections: Option<usize>,
    /// The detector on a stream (`edge-bench --source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::stream::StreamRun>,
    /// Problems that make numbers less trustworthy (overhead, gap, board mismatch).
    pub warnings: Vec<String>,
}

/// An input and the shape it was measured at.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Name in the graph.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<usize>,
}

/// How a variant was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Frames before measuring.
    pub warmup: usize,
    /// Measured frames of each kind (plain and profiled, interleaved).
    pub runs: usize,
    /// Frames asked for; fewer when the time budget ran out.
    pub runs_requested: usize,
    /// Time budget in seconds.
    pub max_seconds: f64,
    /// Threads tract ran on.
    pub threads: usize,
    /// How a QDQ (INT8) model ran: `float` or `integer`; absent for other
    /// models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdq: Option<QdqMode>,
}

/// The board profile and how the running machine compares with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardCheck {
    /// Profile name (`rpi4`).
    pub name: String,
    /// Board title.
    pub title: String,
    /// Clock the peak is computed at, GHz.
    pub clock_ghz: f64,
    /// Where that clock comes from: `cpufreq` (this CPU's maximum) or `profile`.
    pub clock_source: String,
    /// Peak giga-MACs per second at the report's precision and thread count.
    pub peak_gmacs: f64,
    /// Whether the machine matches the profile (no warnings).
    pub matches: bool,
}

/// Time of one stage over the profiled frames.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRow {
    /// One of [`STAGE_ROWS`].
    pub stage: String,
    /// Order statistics over the frames.
    pub time: Summary,
    /// Median as a share of the profiled frame median, percent.
    pub share_pct: f64,
    /// Parameters in the stage (model stages with weights only).
    pub params: Option<u64>,
    /// Multiply-accumulates in the stage (model stages only).
    pub macs: Option<u64>,
    /// MACs over the median time.
    pub gmacs_per_s: Option<f64>,
    /// Achieved over the board's peak, percent (with a board).
    pub peak_pct: Option<f64>,
    /// ONNX nodes the plan ran for this stage.
    pub onnx_nodes: usize,
    /// Plan nodes timed in this stage.
    pub plan_nodes: usize,
    /// Whether the row includes Rust code around the model (`pre`, `decode+nms`).
    pub rust: bool,
}

/// One ONNX node's time: all plan nodes that came from it, summed per frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRow {
    /// Node name (its first output when unnamed).
    pub name: String,
    /// Operator.
    pub op: String,
    /// Stage.
    pub stage: String,
    /// Median over the frames, ms.
    pub median_ms: f64,
    /// Median as a share of the profiled frame median, percent.
    pub share_pct: f64,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Plan nodes it became.
    pub plan_nodes: usize,
}

/// One convolution or matrix product of tract's optimized plan and the
/// arithmetic its kernel runs in.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRow {
    /// The plan node.
    pub plan_node: String,
    /// The ONNX node it comes from, when found.
    pub onnx_node: Option<String>,
    /// That node's stage.
    pub stage: Option<String>,
    /// tract's operator (`OptMatMul`, `DepthWiseConv`...).
    pub op: String,
    /// `integer` (8-bit operands, 32-bit accumulation) or `float`.
    pub precision: String,
    /// The matrix kernels it may pick from (empty for direct convolutions).
    pub kernels: Vec<String>,
    /// Median over the profiled frames, ms.
    pub median_ms: f64,
}

impl Variant {
    /// Convolutions and matrix products on integer kernels, those on float
    /// ones, and the integer ones' share of their summed time (percent).
    pub fn kernel_split(&self) -> (usize, usize, f64) {
        let integer = |k: &&KernelRow| k.precision == "integer";
        let total: f64 = self.kernels.iter().map(|k| k.median_ms).sum();
        let on_integer: f64 = self
            .kernels
            .iter()
            .filter(integer)
            .map(|k| k.median_ms)
            .sum();
        let n = self.kernels.iter().filter(integer).count();
        (
            n,
            self.kernels.len() - n,
            100.0 * on_integer / total.max(1e-12),
        )
    }

    /// The row of `stage`, if it had any time.
    pub fn stage(&self, stage: &str) -> Option<&StageRow> {
        self.stages.iter().find(|r| r.stage == stage)
    }
}

impl Report {
    /// A report of `variants` from this build of edge-bench.
    pub fn new(variants: Vec<Variant>) -> Report {
        Report {
            schema: SCHEMA.to_string(),
            generator: format!("edge-bench {}", env!("CARGO_PKG_VERSION")),
            variants,
        }
    }

    /// Reads a JSON report, refusing other schemas.
    pub fn from_json(text: &str, origin: &str) -> anyhow::Result<Report> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{origin} is not JSON: {e}"))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => anyhow::bail!(
                "{origin} is a `{other}` document; `edge-bench merge` reads `{SCHEMA}` reports (edge-bench --save report.json)"
            ),
            None => anyhow::bail!(
                "{origin} has no `schema` field; it is not an edge-bench report (edge-bench --save report.json)"
            ),
        }
        serde_json::from_value(value)
            .map_err(|e| anyhow::anyhow!("{origin} is not a valid {SCHEMA} report: {e}"))
    }

    /// Joins reports (from several boards, say) into one. A label that
    /// repeats gets the board (or host) it ran on, then a number if needed,
    /// so every column stays distinct.
    pub fn merge(reports: Vec<Report>) -> Report {
        let mut variants: Vec<Variant> = reports.into_iter().flat_map(|r| r.variants).collect();
        let count = |labels: &[String], l: &str| labels.iter().filter(|x| *x == l).count();
        let labels: Vec<String> = variants.iter().map(|v| v.label.clone()).collect();
        let placed: Vec<String> = variants
            .iter()
            .map(|v| {
                if count(&labels, &v.label) > 1 {
                    let place = v.board.as_ref().map_or(&v.machine.host, |b| &b.name);
                    format!("{} @ {place}", v.label)
                } else {
                    v.label.clone()
                }
            })
            .collect();
        for (i, v) in variants.iter_mut().enumerate() {
            v.label = if count(&placed, &placed[i]) > 1 {
                format!("{} #{}", placed[i], count(&placed[..i], &placed[i]) + 1)
            } else {
                placed[i].clone()
            };
        }
        Report::new(variants)
    }
}
