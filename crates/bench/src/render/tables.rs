//! The tables every text format shows, as strings, built once.

use edgewise_graph::units::si;

use super::{ms, pct};
use edgewise_measure::report::{MAX_OVERHEAD_PCT, MAX_STAGE_GAP_PCT, Report, STAGE_ROWS, Variant};
use edgewise_measure::stats::Summary;
use edgewise_measure::stream::StreamRun;

/// A table of text cells.
pub struct TextTable {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows of cells, as many as the header.
    pub rows: Vec<Vec<String>>,
    /// Whether each column holds numbers (aligned right).
    pub numeric: Vec<bool>,
}

impl TextTable {
    /// A table whose first column names the row and the others hold numbers.
    pub fn labelled_rows(header: Vec<String>, rows: Vec<Vec<String>>) -> TextTable {
        let numeric = (0..header.len()).map(|c| c > 0).collect();
        TextTable {
            header,
            rows,
            numeric,
        }
    }
}

const NONE: &str = "—";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| NONE.to_string())
}

/// The facts above a variant's tables: what ran, where, and the checks.
pub fn facts(v: &Variant) -> Vec<(&'static str, String)> {
    let inputs: Vec<String> = v
        .inputs
        .iter()
        .map(|i| format!("{} {:?}", i.name, i.dims))
        .collect();
    let s = &v.settings;
    let mut lines = vec![
        ("model", v.model.clone()),
        (
            "input",
            format!(
                "{} ({}), image: {}",
                inputs.join(", "),
                v.precision,
                v.image
            ),
        ),
        (
            "machine",
            format!("{} on {}", v.machine.describe(), v.machine.host),
        ),
    ];
    if let Some(b) = &v.board {
        lines.push((
            "board",
            format!(
                "{} ({}): peak {:.1} GMAC/s {} on {} thread(s) at {:.2} GHz ({}){}",
                b.name,
                b.title,
                b.peak_gmacs,
                v.precision,
                s.threads,
                b.clock_ghz,
                b.clock_source,
                if b.matches {
                    ""
                } else {
                    "; this machine differs from the profile (see warnings)"
                }
            ),
        ));
    }
    lines.push((
        "runs",
        format!(
            "{} warm-up, {} measured of each kind (plain and profiled, interleaved; {} asked, budget {} s), {} thread(s)",
            s.warmup, s.runs, s.runs_requested, s.max_seconds, s.threads
        ),
    ));
    lines.push((
        "checks",
        format!(
            "plain median {} ms, profiled {} ms: overhead {:+.1}% (limit {MAX_OVERHEAD_PCT}%); stage medians sum to {} ms, {:+.1}% off (limit {MAX_STAGE_GAP_PCT}%); between nodes {} ms; {} unattributed plan node(s)",
            ms(v.plain.median_ms),
            ms(v.profiled.median_ms),
            v.overhead_pct,
            ms(v.stage_sum_ms),
            v.stage_gap_pct,
            ms(v.between_nodes.median_ms),
            v.unattributed.len()
        ),
    ));
    if !v.kernels.is_empty() {
        let (integer, float, share) = v.kernel_split();
        let text = match (integer, float) {
            (0, n) => format!("{n} convolution(s) and matrix product(s), all on float kernels"),
            (n, 0) => format!("{n} convolution(s) and matrix product(s), all on integer kernels"),
            (i, f) => format!(
                "{i} convolution(s) and matrix product(s) on integer kernels, {f} on float; the integer ones take {share:.0}% of their time"
            ),
        };
        lines.push(("kernels", text));
    }
    if let Some(n) = v.detections {
        lines.push(("found", format!("{n} detection(s) in the last frame")));
    }
    lines
}

/// `min, median, p90, max` as cells.
fn summary_cells(s: &Summary) -> [String; 4] {
    [ms(s.min_ms), ms(s.median_ms), ms(s.p90_ms), ms(s.max_ms)]
}

/// One variant's stage table.
pub fn stages(v: &Variant) -> TextTable {
    let mut header: Vec<String> = [
        "stage",
        "min ms",
        "median ms",
        "p90 ms",
        "max ms",
        "share",
        "MACs",
        "GMAC/s",
    ]
    .map(String::from)
    .to_vec();
    if v.board.is_some() {
        header.push("% peak".into());
    }
    header.push("nodes".into());
    let mut rows = vec![];
    for r in &v.stages {
        let mut row = vec![r.stage.clone()];
        row.extend(summary_cells(&r.time));
        row.extend([
            pct(r.share_pct),
            opt(r.macs, si),
            opt(r.gmacs_per_s, |g| format!("{g:.2}")),
        ]);
        if v.board.is_some() {
            row.push(opt(r.peak_pct, pct));
        }
        // Rows made of Rust code say so; model rows give ONNX and plan node counts.
        row.push(match (r.rust, r.plan_nodes) {
            (true, 0) => "Rust".to_string(),
            (true, n) => format!("Rust + {n} plan"),
            (false, n) => format!("{} ONNX / {n} plan", r.onnx_nodes),
        });
        rows.push(row);
    }
    let total_macs: u64 = v.stages.iter().filter_map(|r| r.macs).sum();
    let total_gmacs = total_macs as f64 / (v.profiled.median_ms * 1e6);
    let mut total = vec!["total (profiled)".to_string()];
    total.extend(summary_cells(&v.profiled));
    total.extend([pct(100.0), si(total_macs), format!("{total_gmacs:.2}")]);
    if let Some(b) = &v.board {
        total.push(pct(100.0 * total_gmacs / b.peak_gmacs));
    }
    total.push(String::new());
    rows.push(total);
    let mut plain = vec!["plain run".to_string()];
    plain.extend(summary_cells(&v.plain));
    plain.resize(header.len(), String::new());
    rows.push(plain);
    let numeric = (0..header.len())
        .map(|c| c > 0 && c + 1 < header.len())
        .collect();
    TextTable {
        header,
        rows,
        numeric,
    }
}

/// Whether a variant's kernel audit is worth a table: a quantized model.
pub fn shows_kernels(v: &Variant) -> bool {
    !v.kernels.is_empty() && (v.settings.qdq.is_some() || v.precision == "int8")
}

/// One variant's slowest `top` convolutions and matrix products, with the
/// arithmetic of their kernel.
pub fn kernels(v: &Variant, top: usize) -> TextTable {
    let header = [
        "plan node",
        "ONNX node",
        "stage",
        "op",
        "precision",
        "median ms",
        "kernel",
    ]
    .map(String::from)
    .to_vec();
    let rows = v
        .kernels
        .iter()
        .take(top)
        .map(|k| {
            vec![
                k.plan_node.clone(),
                k.onnx_node.clone().unwrap_or_else(|| NONE.into()),
                k.stage.clone().unwrap_or_else(|| NONE.into()),
                k.op.clone(),
                k.precision.clone(),
                ms(k.median_ms),
                k.kernels.first().cloned().unwrap_or_else(|| NONE.into()),
            ]
        })
        .collect();
    TextTable {
        header,
        rows,
        numeric: vec![false, false, false, false, false, true, false],
    }
}

/// One variant's slowest `top` ONNX nodes.
pub fn nodes(v: &Variant, top: usize) -> TextTable {
    let header = [
        "node",
        "op",
        "stage",
        "median ms",
        "share",
        "MACs",
        "plan nodes",
    ]
    .map(String::from)
    .to_vec();
    let rows = v
        .nodes
        .iter()
        .take(top)
        .map(|n| {
            vec![
                n.name.clone(),
                n.op.clone(),
                n.stage.clone(),
                ms(n.median_ms),
                pct(n.share_pct),
                if n.macs > 0 { si(n.macs) } else { NONE.into() },
                n.plan_nodes.to_string(),
            ]
        })
        .collect();
    TextTable {
        header,
        rows,
        numeric: vec![false, false, false, true, true, true, true],
    }
}

/// Stage medians of every variant side by side, each after the first with
/// its speedup over the first (`vs first`: the first's time over its own).
pub fn comparison(report: &Report) -> TextTable {
    let variants = &report.variants;
    let base = &variants[0];
    let mut header = vec!["stage (median ms)".to_string()];
    for (i, v) in variants.iter().enumerate() {
        header.push(v.label.clone());
        if i > 0 {
            header.push("vs first".to_string());
        }
    }
    let speedup = |b: Option<f64>, x: Option<f64>| match (b, x) {
        (Some(b), Some(x)) if x > 0.0 => format!("{:.2}×", b / x),
        _ => NONE.to_string(),
    };
    let mut rows = vec![];
    let mut line = |name: &str, get: &dyn Fn(&Variant) -> Option<f64>| {
        let mut row = vec![name.to_string()];
        for (i, v) in variants.iter().enumerate() {
            row.push(opt(get(v), ms));
            if i > 0 {
                row.push(speedup(get(base), get(v)));
            }
        }
        rows.push(row);
    };
    for stage in STAGE_ROWS {
        if variants.iter().any(|v| v.stage(stage).is_some()) {
            line(stage, &|v: &Variant| {
                v.stage(stage).map(|r| r.time.median_ms)
            });
        }
    }
    line("total (profiled)", &|v: &Variant| {
        Some(v.profiled.median_ms)
    });
    line("plain run", &|v: &Variant| Some(v.plain.median_ms));
    TextTable::labelled_rows(header, rows)
}

/// The variants measured on a stream (`--source`), side by side: frames,
/// rate and latency through the pipeline, against the per-stage run's
/// one-frame-at-a-time rate. `None` when none was.
pub fn stream(report: &Report) -> Option<(String, TextTable)> {
    let runs: Vec<(&Variant, &StreamRun)> = report
        .variants
        .iter()
        .filter_map(|v| v.stream.as_ref().map(|s| (v, s)))
        .collect();
    let (_, first) = runs.first()?;
    let title = format!(
        "{} ({}, {}), {:.1} s asked",
        first.source,
        if first.live { "live" } else { "not live" },
        first.policy,
        first.seconds_asked
    );
    let mut header = vec!["stream".to_string()];
    header.extend(runs.iter().map(|(v, _)| v.label.clone()));
    type Cell = fn(&Variant, &StreamRun) -> String;
    let rows: [(&str, Cell); 15] = [
        ("seconds", |_, s| format!("{:.1}", s.report.seconds)),
        ("frames captured", |_, s| u64::to_string(&s.report.captured)),
        ("processed", |_, s| u64::to_string(&s.report.processed)),
        ("dropped (stale)", |_, s| u64::to_string(&s.report.dropped)),
        ("skipped", |_, s| u64::to_string(&s.report.skipped)),
        ("failed", |_, s| u64::to_string(&s.report.failed)),
        ("processed fps", |_, s| format!("{:.1}", s.report.fps)),
        ("one frame at a time, fps", |v, _| {
            format!("{:.1}", 1e3 / v.plain.median_ms)
        }),
        ("latency median ms", |_, s| ms(s.report.latency.median_ms)),
        ("latency p90 ms", |_, s| ms(s.report.latency.p90_ms)),
        ("latency max ms", |_, s| ms(s.report.latency.max_ms)),
        ("pre median ms", |_, s| ms(s.report.pre.median_ms)),
        ("infer median ms", |_, s| ms(s.report.infer.median_ms)),
        ("post median ms", |_, s| ms(s.report.post.median_ms)),
        ("inference busy", |_, s| pct(s.inference_busy_pct())),
    ];
    let rows = rows
        .iter()
        .map(|(name, cell)| {
            let mut row = vec![name.to_string()];
            row.extend(runs.iter().map(|(v, s)| cell(v, s)));
            row
        })
        .collect();
    Some((title, TextTable::labelled_rows(header, rows)))
}
