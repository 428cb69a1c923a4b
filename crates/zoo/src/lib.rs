//! The model zoo: detectors composed from a backbone, a neck and a head,
//! written as ONNX through `edgewise-graph`, with weights from a seed and
//! the true stage boundaries recorded in the model's metadata.
//!
//! ```text
//! backbones/  feature extractors (MobileNet, EfficientNet-Lite, ShuffleNet, ResNet, VGG, Xception)
//! necks/      cross-scale fusion (none, FPN, PAN, BiFPN)
//! heads/      box and class predictors (SSDLite, RetinaNet, YOLO, EfficientDet)
//! ```

/// The `name` of every entry of a registry table, in order, as an array
/// built at compile time: lists of names derive from the table, so adding a
/// part means adding its entry and nothing else.
macro_rules! registry_names {
    ($registry:expr) => {{
        let mut names = [""; $registry.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = $registry[i].name;
            i += 1;
        }
        names
    }};
}
pub(crate) use registry_names;

/// Checks a registry table's names (`registered`, in table order): none
/// twice, `names` derived from them in order, and every one builds.
#[cfg(test)]
pub(crate) fn check_registry(registered: &[&str], names: &[&str], builds: impl Fn(&str) -> bool) {
    for (i, name) in registered.iter().enumerate() {
        assert!(
            !registered[..i].contains(name),
            "`{name}` is registered twice"
        );
        assert!(builds(name), "`{name}` does not build");
    }
    assert_eq!(names, registered);
}

#[cfg(feature = "cli")]
mod args;
pub mod backbones;
pub mod heads;
pub mod necks;
pub mod net;
mod save;

/// The generator the zoo's seeded weights come from (`edgewise_graph::rng`).
pub use edgewise_graph::rng;

#[cfg(feature = "cli")]
pub use args::BuildArgs;
pub use save::Saved;

pub use backbones::{Backbone, by_name};
pub use net::{Act, Counts, Feature, Init, Net, Pad};

/// A backbone with its classification top at its native input size: the
/// network whose parameters and MACs the papers and frameworks publish.
pub fn classifier(
    backbone: &dyn Backbone,
    classes: usize,
    seed: u64,
    init: Init,
) -> (edgewise_graph::Model, Counts) {
    let mut net = Net::new(seed, init);
    let size = backbone.native_size();
    let image = net.input("image", 3, size, size);
    let [.., last] = backbone.build(&mut net, &image);
    let logits = backbone.classifier(&mut net, &last, classes);
    net.output(&logits);
    let counts = net.counts();
    (net.finish(), counts)
}

/// Metadata key of the tensors that leave the backbone (comma-separated).
pub const BACKBONE_OUT_KEY: &str = "edgewise.stages.backbone_out";
/// Metadata key of the tensors that enter the head (comma-separated).
pub const HEAD_IN_KEY: &str = "edgewise.stages.head_in";
/// Metadata key of the spec the model was built from.
pub const SPEC_KEY: &str = "edgewise.zoo.spec";

/// Why a detector cannot be built or saved.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// The spec string is malformed or names an unknown part.
    #[error("{0}")]
    Spec(String),
    /// The output path cannot hold a model and its manifest.
    #[error("{0}")]
    Output(String),
    /// Writing the model or its manifest failed.
    #[error(transparent)]
    Graph(#[from] edgewise_graph::GraphError),
}

/// `backbone[:width]+neck+head`, e.g. `mobilenet_v2:0.5+fpn+retinanet`.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Backbone name.
    pub backbone: String,
    /// Width multiplier.
    pub width: f32,
    /// Neck name.
    pub neck: String,
    /// Head name.
    pub head: String,
}

impl Spec {
    /// Parses a spec, naming what is known when a part is not.
    pub fn parse(text: &str) -> Result<Spec, ZooError> {
        let parts: Vec<&str> = text.split('+').collect();
        let [backbone, neck, head] = parts[..] else {
            return Err(ZooError::Spec(format!(
                "`{text}` is not backbone+neck+head (e.g. mobilenet_v2+fpn+retinanet)"
            )));
        };
        let (backbone, width) = match backbone.split_once(':') {
            Some((name, w)) => (
                name,
                w.parse::<f32>().ok().filter(|w| *w > 0.0).ok_or_else(|| {
                    ZooError::Spec(format!("width `{w}` of `{name}` is not a positive number"))
                })?,
            ),
            None => (backbone, 1.0),
        };
        let unknown = |what: &str, name: &str, known: &[&str]| {
            ZooError::Spec(format!(
                "unknown {what} `{name}`; known: {}",
                known.join(", ")
            ))
        };
        if !backbones::NAMES.contains(&backbone) {
            return Err(unknown("backbone", backbone, &backbones::NAMES));
        }
        if by_name(backbone, width).is_none() {
            return Err(ZooError::Spec(format!(
                "`{backbone}` has no width {width}; widths exist for {} (ShuffleNetV2: 0.5, 1.0, 1.5, 2.0)",
                backbones::WIDTH_MULTIPLIED.join(", ")
            )));
        }
        if necks::by_name(neck).is_none() {
            return Err(unknown("neck", neck, &necks::NAMES));
        }
        if heads::by_name(head).is_none() {
            return Err(unknown("head", head, &heads::NAMES));
        }
        Ok(Spec {
            backbone: backbone.to_string(),
            width,
            neck: neck.to_string(),
            head: head.to_string(),
        })
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if (self.width - 1.0).abs() < 1e-6 {
            write!(f, "{}+{}+{}", self.backbone, self.neck, self.head)
        } else {
            write!(
                f,
                "{}:{}+{}+{}",
                self.backbone, self.width, self.neck, self.head
            )
        }
    }
}

/// How to build a detector.
#[derive(Clone, Debug)]
pub struct Options {
    /// Square input size.
    pub size: usize,
    /// Object classes.
    pub classes: usize,
    /// Width of the neck's maps and of the heads' hidden layers.
    pub neck_channels: usize,
    /// Weight seed.
    pub seed: u64,
    /// Weight initialisation.
    pub init: Init,
}

impl Options {
    /// Refuses options no detector can be built with: zero classes or neck
    /// channels, or an input size that is not a multiple of 32 of at least
    /// 64. [`build`] checks them; callers taking options from people can
    /// check them before any work.
    pub fn check(&self) -> Result<(), ZooError> {
        self.check_counts()?;
        if self.size < 64 || !self.size.is_multiple_of(32) {
            return Err(ZooError::Spec(format!(
                "input size {} must be a multiple of 32, at least 64",
                self.size
            )));
        }
        Ok(())
    }

    /// Refuses zero classes or neck channels: what the command line checks
    /// before reading the spec (the size waits for [`build`]), so its flags
    /// name the error.
    pub(crate) fn check_counts(&self) -> Result<(), ZooError> {
        if self.classes == 0 || self.neck_channels == 0 {
            return Err(ZooError::Spec(
                "--classes and --neck-channels must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A built detector.
pub struct Detector {
    /// What it was built from.
    pub spec: Spec,
    /// How it was built.
    pub options: Options,
    /// The graph input (`[1, 3, size, size]`, RGB, ImageNet normalization).
    pub input: String,
    /// The ONNX model, stage boundaries in its metadata.
    pub model: edgewise_graph::Model,
    /// Parameters and MACs.
    pub counts: Counts,
    /// Tensors leaving the backbone.
    pub backbone_out: Vec<String>,
    /// Tensors entering the head.
    pub head_in: Vec<String>,
    /// The decoder family that reads the outputs, and its parameters as TOML lines.
    pub decoder: (&'static str, Vec<String>),
}

impl Detector {
    /// Replaces every node and value name with a meaningless one (the graph
    /// input and outputs too), and the recorded boundaries with the new names.
    pub fn anonymize(&mut self) {
        let map = self.model.anonymize();
        let rename = |names: &mut Vec<String>| {
            for n in names.iter_mut() {
                *n = map[n.as_str()].clone();
            }
        };
        rename(&mut self.backbone_out);
        rename(&mut self.head_in);
        self.input = map[self.input.as_str()].clone();
        self.model
            .set_metadata(BACKBONE_OUT_KEY, self.backbone_out.join(","));
        self.model.set_metadata(HEAD_IN_KEY, self.head_in.join(","));
    }
}

/// Writes the shapes tract infers into the graph outputs' declarations:
/// ONNX's checker requires a shape on every graph output.
fn declare_output_shapes(model: &mut edgewise_graph::Model) -> Result<(), ZooError> {
    let facts = edgewise_graph::analyze(model, &[])?;
    for output in &mut model.graph.outputs {
        if let Some(shape) = facts.shape(&output.name) {
            output.shape = Some(
                shape
                    .iter()
                    .map(|&d| edgewise_graph::model::Dim::Fixed(d as i64))
                    .collect(),
            );
        }
    }
    Ok(())
}

/// Builds `spec` with `options`.
pub fn build(spec: &Spec, options: &Options) -> Result<Detector, ZooError> {
    let backbone = by_name(&spec.backbone, spec.width)
        .ok_or_else(|| ZooError::Spec(format!("unknown backbone `{}`", spec.backbone)))?;
    let neck = necks::by_name(&spec.neck)
        .ok_or_else(|| ZooError::Spec(format!("unknown neck `{}`", spec.neck)))?;
    let head = heads::by_name(&spec.head)
        .ok_or_else(|| ZooError::Spec(format!("unknown head `{}`", spec.head)))?;
    options.check()?;
    let mut net = Net::new(options.seed, options.init);
    let image = net.input("image", 3, options.size, options.size);
    let [_, c3, c4, c5] = backbone.build(&mut net, &image);
    let taps = [c3, c4, c5];
    let mut maps = neck.build(&mut net, &taps, options.neck_channels, head.levels());
    while maps.len() < head.levels() {
        let next = head.extra_level(&mut net, &maps, options.neck_channels);
        maps.push(next);
    }
    let out = head.build(&mut net, &maps, options.classes, options.neck_channels);
    for o in &out.outputs {
        net.output_named(o);
    }
    let names = |fs: &[Feature]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    // Without a neck, the extra levels extend the backbone: no fusion, no neck.
    let backbone_out = if spec.neck == "none" {
        names(&maps)
    } else {
        names(&taps)
    };
    let head_in = names(&maps);
    net.set_metadata(BACKBONE_OUT_KEY, backbone_out.join(","));
    net.set_metadata(HEAD_IN_KEY, head_in.join(","));
    net.set_metadata(SPEC_KEY, spec.to_string());
    let counts = net.counts();
    let mut model = net.finish();
    declare_output_shapes(&mut model)?;
    Ok(Detector {
        spec: spec.clone(),
        options: options.clone(),
        input: image.name.clone(),
        model,
        counts,
        backbone_out,
        head_in,
        decoder: (out.decoder, out.params),
    })
}
