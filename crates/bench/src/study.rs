//! Swap studies: zoo detectors that differ in one part, measured side by
//! side. `*+fpn+retinanet` swaps every backbone under an FPN and a RetinaNet
//! head; `mobilenet_v2+*+yolo` every neck; `resnet18,vgg16+pan+yolo` two
//! backbones.

use std::path::Path;

use anyhow::{Context, Result, bail};
use edgewise_graph::units::{si, thousands};
use edgewise_runtime::ModelSource;
use edgewise_stages::Overrides;
use edgewise_zoo::{Options, Spec, backbones, heads, necks};

use crate::render::tables::TextTable;
use crate::render::{Format, markdown, terminal};
use edgewise_measure::measure::Target;
use edgewise_measure::report::{Report, Variant};

/// The part a study swaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The feature extractor.
    Backbone,
    /// The fusion of scales.
    Neck,
    /// The predictor.
    Head,
}

impl Part {
    /// `backbone`, `neck` or `head`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Backbone => "backbone",
            Part::Neck => "neck",
            Part::Head => "head",
        }
    }
}

/// The detectors of one study.
#[derive(Clone, Debug)]
pub struct Study {
    /// The part that changes.
    pub swapped: Part,
    /// Each detector, labelled by its swapped part.
    pub specs: Vec<(String, Spec)>,
}

impl Study {
    /// Reads `backbone+neck+head` where one part is `*` (every registered
    /// one) or a comma-separated list.
    pub fn parse(pattern: &str) -> Result<Study> {
        let parts: Vec<&str> = pattern.split('+').collect();
        let [_, _, _] = parts[..] else {
            bail!(
                "study `{pattern}` is not backbone+neck+head with one part swapped, e.g. `*+fpn+retinanet`"
            )
        };
        let swapping = |p: &str| p == "*" || p.contains(',');
        let swapped: Vec<usize> = (0..3).filter(|&i| swapping(parts[i])).collect();
        let [i] = swapped[..] else {
            bail!(
                "study `{pattern}` must swap exactly one part: write `*` (all) or a list `a,b` for the backbone, the neck or the head, and name the other two"
            )
        };
        let (part, registry): (Part, &[&str]) = match i {
            0 => (Part::Backbone, &backbones::NAMES),
            1 => (Part::Neck, &necks::NAMES),
            _ => (Part::Head, &heads::NAMES),
        };
        let choices: Vec<&str> = if parts[i] == "*" {
            registry.to_vec()
        } else {
            parts[i].split(',').map(str::trim).collect()
        };
        let mut specs = vec![];
        for choice in choices {
            if specs.iter().any(|(label, _)| label == choice) {
                bail!("`{choice}` is listed twice in study `{pattern}`");
            }
            let mut spec_parts = parts.clone();
            spec_parts[i] = choice;
            let spec = Spec::parse(&spec_parts.join("+"))?;
            specs.push((choice.to_string(), spec));
        }
        Ok(Study {
            swapped: part,
            specs,
        })
    }

    /// Builds every detector into `dir` (ONNX and manifest) and loads it for
    /// measuring, labelled by its swapped part.
    pub fn targets(&self, options: &Options, dir: &Path) -> Result<Vec<Target>> {
        let mut targets = vec![];
        for (label, spec) in &self.specs {
            let detector = edgewise_zoo::build(spec, options)?;
            let file = dir.join(format!(
                "{}.onnx",
                spec.to_string().replace([':', '+'], "_")
            ));
            let saved = detector
                .save(&file)
                .with_context(|| format!("cannot write {spec} to {}", file.display()))?;
            let source = ModelSource::resolve(&saved.manifest)?;
            let shapes = source.input_shapes(None)?;
            targets.push(Target::new(
                label.clone(),
                source,
                shapes,
                &Overrides::default(),
            )?);
        }
        Ok(targets)
    }
}

const MODEL_STAGES: [&str; 3] = ["backbone", "neck", "head"];

fn stage_ms(v: &Variant, stage: &str) -> f64 {
    v.stage(stage).map_or(0.0, |r| r.time.median_ms)
}

fn ms(x: f64) -> String {
    format!("{x:.2}")
}

/// Latency per stage, one row per detector: preprocessing, the three model
/// stages, decoding (in-graph post and Rust decode+nms), the total, and the
/// total against the first row's.
pub fn latency_table(report: &Report, swapped: Part) -> TextTable {
    let mut header = vec![swapped.name().to_string(), "pre ms".into()];
    header.extend(MODEL_STAGES.iter().map(|s| format!("{s} ms")));
    header.extend(["decode ms".into(), "total ms".into(), "vs first".into()]);
    let first = report
        .variants
        .first()
        .map_or(0.0, |v| v.profiled.median_ms);
    let rows = report
        .variants
        .iter()
        .map(|v| {
            let total = v.profiled.median_ms;
            let mut row = vec![v.label.clone(), ms(stage_ms(v, "pre"))];
            row.extend(MODEL_STAGES.iter().map(|s| ms(stage_ms(v, s))));
            row.push(ms(stage_ms(v, "post") + stage_ms(v, "decode+nms")));
            row.push(ms(total));
            row.push(format!("{:.2}×", total / first));
            row
        })
        .collect();
    TextTable::labelled_rows(header, rows)
}

/// Parameters and MACs per stage, one row per detector.
pub fn cost_table(report: &Report, swapped: Part) -> TextTable {
    let mut header = vec![swapped.name().to_string(), "params".to_string()];
    header.extend(MODEL_STAGES.iter().map(|s| format!("{s} params")));
    header.push("MACs".into());
    header.extend(MODEL_STAGES.iter().map(|s| format!("{s} MACs")));
    let rows = report
        .variants
        .iter()
        .map(|v| {
            let params = |s: &str| v.stage(s).and_then(|r| r.params).unwrap_or(0);
            let macs = |s: &str| v.stage(s).and_then(|r| r.macs).unwrap_or(0);
            let all_params: u64 = v.stages.iter().filter_map(|r| r.params).sum();
            let all_macs: u64 = v.stages.iter().filter_map(|r| r.macs).sum();
            let mut row = vec![v.label.clone(), thousands(all_params)];
            row.extend(MODEL_STAGES.iter().map(|s| thousands(params(s))));
            row.push(si(all_macs));
            row.extend(MODEL_STAGES.iter().map(|s| si(macs(s))));
            row
        })
        .collect();
    TextTable::labelled_rows(header, rows)
}

/// The study as text (`Table` or `Markdown`): what ran where, the latency
/// and cost tables, and every variant's warnings.
pub fn render(report: &Report, swapped: Part, format: Format) -> String {
    let lay = |t: &TextTable| match format {
        Format::Markdown => markdown::table(t),
        _ => terminal::boxed(t).to_string() + "\n",
    };
    let mut out = String::new();
    if let Some(v) = report.variants.first() {
        let inputs: Vec<String> = v.inputs.iter().map(|i| format!("{:?}", i.dims)).collect();
        out += &format!(
            "{} swap at {}, {} thread(s), median of {} frames, image: {}, on {}\n\n",
            swapped.name(),
            inputs.join(", "),
            v.settings.threads,
            v.settings.runs,
            v.image,
            v.machine.describe()
        );
    }
    out += &lay(&latency_table(report, swapped));
    out += "\n";
    out += &lay(&cost_table(report, swapped));
    for v in &report.variants {
        for w in &v.warnings {
            out += &format!("warning ({}): {w}\n", v.label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_swaps_every_registered_part() {
        let s = Study::parse("*+fpn+retinanet").unwrap();
        assert_eq!(s.swapped, Part::Backbone);
        assert_eq!(s.specs.len(), backbones::NAMES.len());
        assert_eq!(s.specs[0].1.to_string(), "mobilenet_v2+fpn+retinanet");
        let s = Study::parse("resnet18+*+yolo").unwrap();
        assert_eq!(s.swapped, Part::Neck);
        assert_eq!(s.specs.len(), 4);
    }

    #[test]
    fn a_list_swaps_those_parts_widths_included() {
        let s = Study::parse("mobilenet_v2+fpn+ssdlite,yolo").unwrap();
        assert_eq!(s.swapped, Part::Head);
        let labels: Vec<&str> = s.specs.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["ssdlite", "yolo"]);
        let s = Study::parse("mobilenet_v2:0.5,mobilenet_v2+pan+yolo").unwrap();
        assert_eq!(s.specs[0].1.width, 0.5);
    }

    #[test]
    fn bad_studies_say_what_to_write() {
        for (pattern, message) in [
            ("mobilenet_v2+fpn+yolo", "must swap exactly one part"),
            ("*+*+yolo", "must swap exactly one part"),
            ("*+fpn", "is not backbone+neck+head"),
            ("resnet18,resnet18+fpn+yolo", "listed twice"),
            ("resnet18,lenet+fpn+yolo", "unknown backbone `lenet`"),
        ] {
            let e = Study::parse(pattern).unwrap_err().to_string();
            assert!(e.contains(message), "{pattern}: {e}");
        }
    }
}
