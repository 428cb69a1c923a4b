//! Boxed tables for a terminal.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};

use super::Options;
use super::tables::{self, TextTable};
use edgewise_measure::report::Report;

/// `t` with box-drawing borders, numbers aligned right.
pub fn boxed(t: &TextTable) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(t.header.clone());
    for row in &t.rows {
        table.add_row(row.iter().zip(&t.numeric).map(|(text, &numeric)| {
            Cell::new(text).set_alignment(if numeric {
                CellAlignment::Right
            } else {
                CellAlignment::Left
            })
        }));
    }
    table
}

/// The report as text: per variant its facts, stage table, slowest nodes and
/// warnings; then the variants side by side.
pub fn render(report: &Report, options: Options) -> String {
    let mut out = String::new();
    for v in &report.variants {
        out += &format!("── {} ──\n", v.label);
        for (key, value) in tables::facts(v) {
            out += &format!("{key:<8} {value}\n");
        }
        out += &format!("{}\n", boxed(&tables::stages(v)));
        if options.top > 0 {
            out += &format!(
                "slowest {} of {} ONNX nodes:\n{}\n",
                options.top.min(v.nodes.len()),
                v.nodes.len(),
                boxed(&tables::nodes(v, options.top))
            );
        }
        if options.top > 0 && tables::shows_kernels(v) {
            out += &format!(
                "slowest {} of {} convolutions and matrix products, by kernel:\n{}\n",
                options.top.min(v.kernels.len()),
                v.kernels.len(),
                boxed(&tables::kernels(v, options.top))
            );
        }
        for w in &v.warnings {
            out += &format!("warning: {w}\n");
        }
        out += "\n";
    }
    if report.variants.len() > 1 {
        out += &format!("side by side:\n{}\n", boxed(&tables::comparison(report)));
    }
    if let Some((title, table)) = tables::stream(report) {
        out += &format!("on a stream: {title}\n{}\n", boxed(&table));
    }
    out
}
