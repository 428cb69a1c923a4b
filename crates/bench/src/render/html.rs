//! A self-contained HTML page: the charts inline as SVG, the same tables as
//! the other formats, no scripts and nothing fetched.

use anyhow::Result;

use super::tables::{self, TextTable};
use super::{Options, charts};
use edgewise_measure::report::Report;

/// Escapes text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(t: &TextTable) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in &t.header {
        out += &format!("<th>{}</th>", escape(h));
    }
    out += "</tr></thead>\n<tbody>\n";
    for row in &t.rows {
        out += "<tr>";
        for (cell, &numeric) in row.iter().zip(&t.numeric) {
            let class = if numeric { " class=\"num\"" } else { "" };
            out += &format!("<td{class}>{}</td>", escape(cell));
        }
        out += "</tr>\n";
    }
    out + "</tbody>\n</table>\n"
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}\
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:14px}dt{font-weight:600}dd{margin:0}\
.warning{background:#fff4e5;border-left:4px solid #d55e00;padding:4px 10px;margin:4px 0}\
figure{margin:1em 0}svg{max-width:100%;height:auto}";

/// The report as an HTML page.
pub fn render(report: &Report, options: Options) -> Result<String> {
    let labels: Vec<&str> = report.variants.iter().map(|v| v.label.as_str()).collect();
    let mut body = format!(
        "<h1>edge-bench: {}</h1>\n<p>{} variant(s); written by {}; schema <code>{}</code>.</p>\n",
        escape(&labels.join(", ")),
        report.variants.len(),
        escape(&report.generator),
        escape(&report.schema)
    );
    body += &format!(
        "<figure id=\"stage-chart\">{}</figure>\n",
        charts::stage_bars(&report.variants)?
    );
    if report.variants.len() > 1 {
        body += &format!(
            "<h2>Side by side</h2>\n{}",
            table(&tables::comparison(report))
        );
    }
    if let Some((title, t)) = tables::stream(report) {
        body += &format!(
            "<h2>On a stream</h2>\n<p>{}</p>\n{}",
            escape(&title),
            table(&t)
        );
    }
    for (i, v) in report.variants.iter().enumerate() {
        body += &format!("<h2>{}</h2>\n<dl>\n", escape(&v.label));
        for (key, value) in tables::facts(v) {
            body += &format!("<dt>{key}</dt><dd>{}</dd>\n", escape(&value));
        }
        body += "</dl>\n";
        for w in &v.warnings {
            body += &format!("<p class=\"warning\">{}</p>\n", escape(w));
        }
        body += &table(&tables::stages(v));
        if options.top > 0 && !v.nodes.is_empty() {
            body += &format!(
                "<figure id=\"nodes-chart-{i}\">{}</figure>\n{}",
                charts::top_nodes(v, options.top)?,
                table(&tables::nodes(v, options.top))
            );
        }
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>edge-bench: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(&labels.join(", "))
    ))
}
