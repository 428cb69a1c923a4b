//! `edge-convert zoo`: build a detector from the zoo, save it with its
//! manifest, and say what was built.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use edgewise_graph::units::{si, thousands};
use edgewise_zoo::{Detector, Options, Saved, Spec, backbones, build, heads, necks};

/// Builds `spec`, anonymized if asked, and saves it to `out` with its manifest.
pub fn build_and_save(
    spec: &str,
    options: &Options,
    anonymous: bool,
    out: &Path,
) -> Result<(Detector, Saved)> {
    let spec = Spec::parse(spec)?;
    let mut detector = build(&spec, options)?;
    if anonymous {
        detector.anonymize();
    }
    let saved = detector
        .save(out)
        .with_context(|| format!("saving {spec} to {}", out.display()))?;
    Ok((detector, saved))
}

/// What was written, for people.
pub fn describe(detector: &Detector, saved: &Saved) -> String {
    let mut s = String::new();
    let c = &detector.counts;
    let _ = writeln!(
        s,
        "{}: {} parameters, {}MAC at {}x{}",
        detector.spec,
        thousands(c.trainable),
        si(c.macs),
        detector.options.size,
        detector.options.size
    );
    let _ = writeln!(
        s,
        "wrote {} ({}) and {}",
        saved.onnx.display(),
        edgewise_graph::units::bytes(saved.bytes),
        saved.manifest.display()
    );
    let _ = writeln!(s, "backbone out: {}", detector.backbone_out.join(", "));
    let _ = writeln!(s, "head in:      {}", detector.head_in.join(", "));
    let _ = writeln!(s, "decoder:      {}", detector.decoder.0);
    s
}

/// The parts the zoo knows, for `--list`.
pub fn catalogue() -> String {
    format!(
        "backbones: {} (width multiplier as `name:0.5` for {}; shufflenet_v2: 0.5, 1.0, 1.5, 2.0)\nnecks:     {}\nheads:     {}\n",
        backbones::NAMES.join(", "),
        backbones::WIDTH_MULTIPLIED.join(", "),
        necks::NAMES.join(", "),
        heads::NAMES.join(", ")
    )
}
