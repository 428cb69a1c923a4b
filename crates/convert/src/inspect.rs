//! `edge-convert inspect`: inputs, outputs, operators, and the per-stage table.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use edgewise_graph::units::{bytes, si, thousands};
use edgewise_graph::{InputShape, Model, NodeCost};
use edgewise_stages::{Boundary, Method, Overrides, Stage, StageSummary, StagedModel, summarize};
use serde::Serialize;

/// Version of the JSON document below; bumped on any incompatible change.
pub const SCHEMA: &str = "edgewise.inspect/1";

/// A declared graph input or output, and its analysed shape.
#[derive(Debug, Serialize)]
pub struct Port {
    /// Value name.
    pub name: String,
    /// Declared element type.
    pub elem_type: String,
    /// Declared shape, symbolic dims by name.
    pub declared: String,
    /// Shape at the analysed input shape.
    pub shape: Option<Vec<usize>>,
}

/// One stage's line of the report.
#[derive(Debug, Serialize)]
pub struct StageLine {
    /// Totals.
    #[serde(flatten)]
    pub summary: StageSummary,
    /// Why these nodes are in this stage.
    pub reason: String,
}

/// One node's line (with `--values`).
#[derive(Debug, Serialize)]
pub struct NodeLine {
    /// Node name (or first output).
    pub name: String,
    /// Operator.
    pub op: String,
    /// Stage.
    pub stage: Stage,
    /// Outputs and their shapes.
    pub outputs: Vec<(String, Option<Vec<usize>>)>,
    /// Costs.
    #[serde(flatten)]
    pub cost: NodeCost,
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// JSON schema identifier.
    pub schema: &'static str,
    /// The model file.
    pub model: String,
    /// Exporter.
    pub producer: String,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Standard opset.
    pub opset: i64,
    /// Graph inputs.
    pub inputs: Vec<Port>,
    /// Graph outputs.
    pub outputs: Vec<Port>,
    /// Operator histogram, most frequent first.
    pub operators: Vec<(String, usize)>,
    /// Multiply-accumulates by operator.
    pub macs_by_op: BTreeMap<String, u64>,
    /// Whole-model totals.
    pub total: NodeCost,
    /// Non-constant node count.
    pub nodes: usize,
    /// How the stages were decided.
    pub method: Method,
    /// Per-stage lines.
    pub stages: Vec<StageLine>,
    /// Tensors leaving the backbone.
    pub backbone_outputs: Vec<Boundary>,
    /// Tensors entering the head.
    pub head_inputs: Vec<Boundary>,
    /// Per-node lines, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_lines: Option<Vec<NodeLine>>,
}

/// Loads, analyses and partitions a model.
pub fn analyse(path: &Path, shapes: &[InputShape], overrides: &Overrides) -> Result<StagedModel> {
    Ok(StagedModel::new(Model::load(path)?, shapes, overrides)?)
}

/// Builds the report.
pub fn inspect(
    path: &Path,
    shapes: &[InputShape],
    overrides: &Overrides,
    with_nodes: bool,
) -> Result<Inspection> {
    let a = analyse(path, shapes, overrides)?;
    let graph = &a.model.graph;
    let constant = &a.constant;
    let port = |vi: &edgewise_graph::ValueInfo| Port {
        name: vi.name.clone(),
        elem_type: edgewise_graph::tensor::onnx_type_name(vi.elem_type),
        declared: vi.shape_text(),
        shape: a.facts.shape(&vi.name).map(<[usize]>::to_vec),
    };
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    let mut macs_by_op: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = NodeCost::default();
    for (ix, node) in graph.nodes.iter().enumerate() {
        *histogram.entry(node.op_type.clone()).or_default() += 1;
        if a.costs[ix].macs > 0 {
            *macs_by_op.entry(node.op_type.clone()).or_default() += a.costs[ix].macs;
        }
        total += a.costs[ix];
    }
    let mut operators: Vec<(String, usize)> = histogram.into_iter().collect();
    operators.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let stages = summarize(&a.partition, &a.costs, constant)
        .into_iter()
        .map(|summary| StageLine {
            reason: a.partition.reason(summary.stage).to_string(),
            summary,
        })
        .collect();
    let node_lines = with_nodes.then(|| {
        a.topo
            .order()
            .iter()
            .filter(|&&ix| !constant[ix])
            .map(|&ix| NodeLine {
                name: graph.node_label(ix),
                op: graph.nodes[ix].op_type.clone(),
                stage: a.partition.stages[ix],
                outputs: graph.nodes[ix]
                    .present_outputs()
                    .map(|o| (o.to_string(), a.facts.shape(o).map(<[usize]>::to_vec)))
                    .collect(),
                cost: a.costs[ix],
            })
            .collect()
    });
    Ok(Inspection {
        schema: SCHEMA,
        model: path.display().to_string(),
        producer: match format!("{} {}", a.model.producer_name, a.model.producer_version).trim() {
            "" => "unknown".to_string(),
            named => named.to_string(),
        },
        ir_version: a.model.ir_version,
        opset: a.model.opset(),
        inputs: graph.real_inputs().into_iter().map(port).collect(),
        outputs: graph.outputs.iter().map(port).collect(),
        operators,
        macs_by_op,
        total,
        nodes: constant.iter().filter(|c| !**c).count(),
        method: a.partition.method,
        stages,
        backbone_outputs: a.partition.backbone_outputs.clone(),
        head_inputs: a.partition.head_inputs.clone(),
        node_lines,
    })
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

fn boundary_text(b: &Boundary) -> String {
    let stride = b.stride.map(|s| {
        format!(
            " stride {}",
            if (s - s.round()).abs() < 0.05 {
                format!("{}", s.round())
            } else {
                format!("{s:.2}")
            }
        )
    });
    format!(
        "{} {}{}",
        b.value,
        shape_text(&b.shape),
        stride.unwrap_or_default()
    )
}

/// The report for people.
pub fn render(report: &Inspection) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("model     {}", report.model));
    line(
        &mut out,
        format!(
            "producer  {} (IR {}, opset {})",
            report.producer, report.ir_version, report.opset
        ),
    );
    let ports = [
        ("input ", "analysed at", &report.inputs),
        ("output", "->", &report.outputs),
    ];
    for (label, verb, list) in ports {
        for p in list {
            let at = p
                .shape
                .as_deref()
                .map(shape_text)
                .unwrap_or_else(|| "?".into());
            let text = format!(
                "{label}    {} {} declared {} {verb} {at}",
                p.name, p.elem_type, p.declared
            );
            line(&mut out, text);
        }
    }
    let ops: Vec<String> = report
        .operators
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    line(&mut out, format!("operators {}", ops.join(", ")));
    let macs: Vec<String> = report
        .macs_by_op
        .iter()
        .map(|(op, m)| format!("{op} {}", si(*m)))
        .collect();
    line(
        &mut out,
        format!(
            "total     {} nodes, {} parameters, {}MAC ({}), {} of activations written",
            report.nodes,
            thousands(report.total.params),
            si(report.total.macs),
            macs.join(", "),
            bytes(report.total.output_bytes)
        ),
    );
    out.push('\n');

    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "stage",
        "nodes",
        "params",
        "MACs",
        "MAC share",
        "activations",
        "boundary tensors",
    ]);
    for s in &report.stages {
        let boundaries: Vec<String> = match s.summary.stage {
            Stage::Backbone => report
                .backbone_outputs
                .iter()
                .map(|b| format!("out: {}", boundary_text(b)))
                .collect(),
            Stage::Head => report
                .head_inputs
                .iter()
                .map(|b| format!("in: {}", boundary_text(b)))
                .collect(),
            _ => vec![],
        };
        table.add_row(vec![
            Cell::new(s.summary.stage.name()),
            Cell::new(s.summary.nodes).set_alignment(CellAlignment::Right),
            Cell::new(thousands(s.summary.cost.params)).set_alignment(CellAlignment::Right),
            Cell::new(si(s.summary.cost.macs)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.1}%", s.summary.mac_share * 100.0))
                .set_alignment(CellAlignment::Right),
            Cell::new(bytes(s.summary.cost.output_bytes)).set_alignment(CellAlignment::Right),
            Cell::new(boundaries.join("\n")),
        ]);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    let method = match report.method {
        Method::Structural => "structural (from strides and cross-scale fusions; names unused)",
        Method::Override => "boundaries given by the user, the rest structural",
    };
    line(&mut out, format!("\nstages: {method}"));
    for s in &report.stages {
        line(
            &mut out,
            format!("  {:<8} {}", s.summary.stage.name(), s.reason),
        );
    }
    if let Some(nodes) = &report.node_lines {
        out.push('\n');
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED);
        table.set_header(vec!["node", "op", "stage", "outputs", "params", "MACs"]);
        for n in nodes {
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|(v, s)| {
                    format!(
                        "{v} {}",
                        s.as_deref().map(shape_text).unwrap_or_else(|| "?".into())
                    )
                })
                .collect();
            table.add_row(vec![
                Cell::new(&n.name),
                Cell::new(&n.op),
                Cell::new(n.stage.name()),
                Cell::new(outs.join("\n")),
                Cell::new(thousands(n.cost.params)).set_alignment(CellAlignment::Right),
                Cell::new(si(n.cost.macs)).set_alignment(CellAlignment::Right),
            ]);
        }
        out.push_str(&table.to_string());
        out.push('\n');
    }
    out
}
