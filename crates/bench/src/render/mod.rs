//! Turning a [`Report`] into something to read: a terminal table, Markdown,
//! CSV, or a self-contained HTML page with charts.
//!
//! The tables are built once ([`tables`]) and each text format lays them out
//! its own way, so every format shows the same numbers.

pub mod charts;
pub mod csv;
pub mod html;
pub mod markdown;
pub mod tables;
pub mod terminal;

use std::path::Path;

use anyhow::{Result, bail};

use edgewise_measure::report::Report;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Boxed tables for a terminal.
    Table,
    /// GitHub-flavoured Markdown.
    Markdown,
    /// The `edgewise.bench/1` JSON document.
    Json,
    /// One row per variant and stage.
    Csv,
    /// A self-contained page with charts.
    Html,
}

impl Format {
    /// The format a file name asks for, by extension.
    pub fn of_path(path: &Path) -> Result<Format> {
        Ok(
            match path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
            {
                "txt" => Format::Table,
                "md" => Format::Markdown,
                "json" => Format::Json,
                "csv" => Format::Csv,
                "html" | "htm" => Format::Html,
                other => bail!(
                    "cannot tell the format of {} from its extension `{other}`; use .txt, .md, .json, .csv or .html",
                    path.display()
                ),
            },
        )
    }
}

/// Options that shape every format.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Slowest nodes listed per variant.
    pub top: usize,
}

/// Renders `report` as `format`.
pub fn render(report: &Report, format: Format, options: Options) -> Result<String> {
    Ok(match format {
        Format::Table => terminal::render(report, options),
        Format::Markdown => markdown::render(report, options),
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Csv => csv::render(report)?,
        Format::Html => html::render(report, options)?,
    })
}

/// Writes `report` to `path` in the format its extension names, atomically.
pub fn save(report: &Report, path: &Path, options: Options) -> Result<()> {
    let text = render(report, Format::of_path(path)?, options)?;
    edgewise_graph::model::write_atomically(path, text.as_bytes())?;
    Ok(())
}

/// `12.34`.
pub(crate) fn ms(v: f64) -> String {
    format!("{v:.2}")
}

/// `41.2%`.
pub(crate) fn pct(v: f64) -> String {
    format!("{v:.1}%")
}
