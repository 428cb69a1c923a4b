//! CSV: one row per variant and stage (plus the profiled and plain totals),
//! numbers unformatted, for spreadsheets and scripts.

use anyhow::Result;

use edgewise_measure::report::Report;
use edgewise_measure::stats::Summary;

/// Column names.
pub const HEADER: [&str; 17] = [
    "variant",
    "model",
    "host",
    "board",
    "precision",
    "threads",
    "stage",
    "runs",
    "min_ms",
    "median_ms",
    "p90_ms",
    "max_ms",
    "share_pct",
    "macs",
    "gmacs_per_s",
    "peak_pct",
    "plan_nodes",
];

/// The report as CSV.
pub fn render(report: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(HEADER)?;
    let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for v in &report.variants {
        let board = v.board.as_ref().map(|b| b.name.as_str()).unwrap_or("");
        let threads = v.settings.threads.to_string();
        let mut record = |stage: &str,
                          s: &Summary,
                          share: Option<f64>,
                          macs: Option<u64>,
                          gmacs: Option<f64>,
                          peak: Option<f64>,
                          plan_nodes: Option<usize>|
         -> Result<()> {
            w.write_record([
                v.label.as_str(),
                v.model.as_str(),
                v.machine.host.as_str(),
                board,
                v.precision.as_str(),
                threads.as_str(),
                stage,
                &s.runs.to_string(),
                &s.min_ms.to_string(),
                &s.median_ms.to_string(),
                &s.p90_ms.to_string(),
                &s.max_ms.to_string(),
                &num(share),
                &macs.map(|m| m.to_string()).unwrap_or_default(),
                &num(gmacs),
                &num(peak),
                &plan_nodes.map(|n| n.to_string()).unwrap_or_default(),
            ])?;
            Ok(())
        };
        for r in &v.stages {
            record(
                &r.stage,
                &r.time,
                Some(r.share_pct),
                r.macs,
                r.gmacs_per_s,
                r.peak_pct,
                Some(r.plan_nodes),
            )?;
        }
        record(
            "total (profiled)",
            &v.profiled,
            Some(100.0),
            None,
            None,
            None,
            None,
        )?;
        record("plain run", &v.plain, None, None, None, None, None)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
