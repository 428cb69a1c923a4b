//! GitHub-flavoured Markdown, for docs and pull requests.

use super::Options;
use super::tables::{self, TextTable};
use edgewise_measure::report::Report;

/// A pipe table; `|` in cells is escaped.
pub fn table(t: &TextTable) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}|\n",
        t.header
            .iter()
            .map(|h| escape(h))
            .collect::<Vec<_>>()
            .join(" | "),
        t.numeric
            .iter()
            .map(|&n| if n { "---:" } else { "---" })
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in &t.rows {
        out += &format!(
            "| {} |\n",
            row.iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    out
}

/// The report as Markdown: a section per variant, then the comparison.
pub fn render(report: &Report, options: Options) -> String {
    let mut out = String::new();
    for v in &report.variants {
        out += &format!("### {}\n\n", v.label);
        for (key, value) in tables::facts(v) {
            out += &format!("- **{key}**: {value}\n");
        }
        out += &format!("\n{}\n", table(&tables::stages(v)));
        if options.top > 0 {
            out += &format!(
                "Slowest {} of {} ONNX nodes:\n\n{}\n",
                options.top.min(v.nodes.len()),
                v.nodes.len(),
                table(&tables::nodes(v, options.top))
            );
        }
        if options.top > 0 && tables::shows_kernels(v) {
            out += &format!(
                "Slowest {} of {} convolutions and matrix products, by kernel:\n\n{}\n",
                options.top.min(v.kernels.len()),
                v.kernels.len(),
                table(&tables::kernels(v, options.top))
            );
        }
        for w in &v.warnings {
            out += &format!("> **Warning**: {w}\n\n");
        }
    }
    if report.variants.len() > 1 {
        out += &format!(
            "### Side by side\n\n{}\n",
            table(&tables::comparison(report))
        );
    }
    if let Some((title, t)) = tables::stream(report) {
        out += &format!("### On a stream\n\n{title}\n\n{}\n", table(&t));
    }
    out
}
