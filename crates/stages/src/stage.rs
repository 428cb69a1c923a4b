//! The stage labels and the partition they form.

use serde::Serialize;

/// The part of a detector a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// In-graph input normalization before the first layer.
    Pre,
    /// The feature extractor.
    Backbone,
    /// Where feature maps of several scales are fused.
    Neck,
    /// Per-level prediction branches after the last fusion.
    Head,
    /// In-graph decoding after the last layer with weights.
    Post,
}

impl Stage {
    /// All stages, in data-flow order.
    pub const ALL: [Stage; 5] = [
        Stage::Pre,
        Stage::Backbone,
        Stage::Neck,
        Stage::Head,
        Stage::Post,
    ];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Backbone => "backbone",
            Stage::Neck => "neck",
            Stage::Head => "head",
            Stage::Post => "post",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor on a stage boundary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Boundary {
    /// The value's name.
    pub value: String,
    /// Its shape at the analysed input shape.
    pub shape: Vec<usize>,
    /// Input height divided by the value's height, for spatial (NCHW) values.
    pub stride: Option<f32>,
}

/// How the partition was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// From the graph's structure alone.
    Structural,
    /// From boundary tensors given by the user (flags or manifest), the rest structural.
    Override,
}

/// Every node's stage, the tensors on the boundaries, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    /// One label per node, indexed like the graph's nodes. Constant nodes carry
    /// the stage of the layer that reads them.
    pub stages: Vec<Stage>,
    /// Values leaving the backbone (toward the neck, the head or an output).
    pub backbone_outputs: Vec<Boundary>,
    /// Values entering the head.
    pub head_inputs: Vec<Boundary>,
    /// One line per stage saying why its nodes are there.
    pub reasons: Vec<(Stage, String)>,
    /// How the partition was decided.
    pub method: Method,
}

impl Partition {
    /// Indices of the nodes in `stage`.
    pub fn nodes_in(&self, stage: Stage) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&i| self.stages[i] == stage)
            .collect()
    }

    /// The reason line of `stage`.
    pub fn reason(&self, stage: Stage) -> &str {
        self.reasons
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, r)| r.as_str())
            .unwrap_or("")
    }
}
