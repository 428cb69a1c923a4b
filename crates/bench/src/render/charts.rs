//! SVG charts drawn with plotters: the frame split by stage per variant,
//! and each variant's slowest nodes.

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use edgewise_measure::report::{STAGE_ROWS, Variant};

/// The colour of each stage row, in [`STAGE_ROWS`] order (Okabe–Ito palette,
/// readable by colour-blind readers).
pub const STAGE_COLORS: [RGBColor; 7] = [
    RGBColor(153, 153, 153), // pre
    RGBColor(0, 114, 178),   // backbone
    RGBColor(230, 159, 0),   // neck
    RGBColor(0, 158, 115),   // head
    RGBColor(204, 121, 167), // post
    RGBColor(86, 180, 233),  // decode+nms
    RGBColor(213, 94, 0),    // unattributed
];

/// The colour of `stage`.
pub fn stage_color(stage: &str) -> RGBColor {
    STAGE_ROWS
        .iter()
        .position(|s| *s == stage)
        .map_or(BLACK, |i| STAGE_COLORS[i])
}

fn chart_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the chart: {e:?}")
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

/// One horizontal bar per row, made of coloured segments `(length, colour)`,
/// with a legend of `legend` entries.
fn horizontal_bars(
    title: &str,
    x_label: &str,
    labels: &[String],
    bars: &[Vec<(f64, RGBColor)>],
    legend: &[(&str, RGBColor)],
) -> Result<String> {
    let rows = labels.len();
    let longest = bars
        .iter()
        .map(|b| b.iter().map(|s| s.0).sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-3);
    let mut svg = String::new();
    {
        let height = (110 + 34 * rows as u32).max(70 + 24 * legend.len() as u32);
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let (plot, key) = root.split_horizontally(800);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(200)
            .build_cartesian_2d(0.0..longest * 1.05, (0..rows).into_segmented())
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            // Row 0 is drawn at the top: plotters counts upwards.
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) if *i < rows => shorten(&labels[rows - 1 - i], 30),
                _ => String::new(),
            })
            .x_desc(x_label)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_err)?;
        for (i, segments) in bars.iter().enumerate() {
            let row = rows - 1 - i;
            let mut start = 0.0;
            for &(length, color) in segments {
                let mut bar = Rectangle::new(
                    [
                        (start, SegmentValue::Exact(row)),
                        (start + length, SegmentValue::Exact(row + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                chart.draw_series(std::iter::once(bar)).map_err(chart_err)?;
                start += length;
            }
        }
        for (i, (name, color)) in legend.iter().enumerate() {
            let y = 40 + 24 * i as i32;
            key.draw(&Rectangle::new([(10, y), (26, y + 14)], color.filled()))
                .map_err(chart_err)?;
            key.draw(&Text::new(name.to_string(), (32, y), ("sans-serif", 14)))
                .map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// A stacked bar per variant: the median of each stage, end to end.
pub fn stage_bars(variants: &[Variant]) -> Result<String> {
    let labels: Vec<String> = variants.iter().map(|v| v.label.clone()).collect();
    let bars: Vec<Vec<(f64, RGBColor)>> = variants
        .iter()
        .map(|v| {
            v.stages
                .iter()
                .map(|r| (r.time.median_ms, stage_color(&r.stage)))
                .collect()
        })
        .collect();
    let legend: Vec<(&str, RGBColor)> = STAGE_ROWS
        .iter()
        .filter(|s| variants.iter().any(|v| v.stage(s).is_some()))
        .map(|s| (*s, stage_color(s)))
        .collect();
    horizontal_bars(
        "Frame time by stage (median of each stage)",
        "ms",
        &labels,
        &bars,
        &legend,
    )
}

/// The `top` slowest ONNX nodes of a variant, coloured by stage.
pub fn top_nodes(v: &Variant, top: usize) -> Result<String> {
    let nodes: Vec<_> = v.nodes.iter().take(top).collect();
    let labels: Vec<String> = nodes
        .iter()
        .map(|n| format!("{} ({})", n.name, n.op))
        .collect();
    let bars: Vec<Vec<(f64, RGBColor)>> = nodes
        .iter()
        .map(|n| vec![(n.median_ms, stage_color(&n.stage))])
        .collect();
    let legend: Vec<(&str, RGBColor)> = STAGE_ROWS
        .iter()
        .filter(|s| nodes.iter().any(|n| n.stage == **s))
        .map(|s| (*s, stage_color(s)))
        .collect();
    horizontal_bars(
        &format!("{}: slowest {} ONNX nodes (median)", v.label, nodes.len()),
        "ms",
        &labels,
        &bars,
        &legend,
    )
}
