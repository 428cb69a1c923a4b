//! Structured pruning of ONNX detectors: whole channels go, so that the
//! pruned model is smaller and faster on every runtime, not sparse.
//!
//! - [`groups`]: which channels of which tensors must go together
//!   ([`ChannelGraph`]), through residual adds, concatenations, splits,
//!   depthwise convolutions, normalization, squeeze-excitation and
//!   flattening into fully connected layers; what it cannot follow stays
//!   unpruned, with a warning naming the node.
//! - [`select`]: the layers that share channels ([`Group`]), the importance
//!   of each channel (L1 or L2 norm of its filters) and which ones go at a
//!   ratio per stage, rounded to a multiple that suits the matrix kernels.
//! - [`apply`]: the pruned graph, with every weight sliced and every
//!   channel count in attributes and shape inputs rewritten.
//! - [`recover`]: training-free recovery on calibration photos: the layers
//!   that lost input channels refit by least squares to the unpruned
//!   model's outputs, or their bias compensated.

pub mod apply;
pub mod calibration;
pub mod error;
pub mod groups;
pub mod recover;
pub mod select;

use std::collections::{BTreeMap, HashMap};

use edgewise_graph::Model;
use edgewise_stages::{Stage, StagedModel};

pub use calibration::Calibration;
pub use error::PruneError;
pub use groups::ChannelGraph;
pub use select::{Criterion, Group};

/// The share of channels to remove in each stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ratios {
    /// Stage to ratio in [0, 1); stages not listed keep every channel.
    pub per_stage: BTreeMap<Stage, f32>,
}

impl Ratios {
    /// Parses `0.3` (backbone, neck and head alike) or
    /// `backbone=0.3,neck=0.5,head=0`.
    pub fn parse(text: &str) -> Result<Ratios, PruneError> {
        let err = |reason: String| PruneError::BadRatio {
            text: text.to_string(),
            reason,
        };
        let number = |s: &str| -> Result<f32, PruneError> {
            let r: f32 = s
                .trim()
                .parse()
                .map_err(|_| err(format!("`{s}` is not a number")))?;
            if !(0.0..1.0).contains(&r) {
                return Err(err(format!("{r} is outside [0, 1)")));
            }
            Ok(r)
        };
        let mut per_stage = BTreeMap::new();
        if !text.contains('=') {
            let r = number(text)?;
            for s in [Stage::Backbone, Stage::Neck, Stage::Head] {
                per_stage.insert(s, r);
            }
            return Ok(Ratios { per_stage });
        }
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("`{part}` is not `stage=ratio`")))?;
            let stage = match name.trim() {
                "backbone" => Stage::Backbone,
                "neck" => Stage::Neck,
                "head" => Stage::Head,
                other => {
                    return Err(err(format!(
                        "`{other}` is not a stage (backbone, neck or head)"
                    )));
                }
            };
            per_stage.insert(stage, number(value)?);
        }
        Ok(Ratios { per_stage })
    }

    /// The ratio of `stage` (0 when not given).
    pub fn of(&self, stage: Stage) -> f32 {
        self.per_stage.get(&stage).copied().unwrap_or(0.0)
    }
}

/// How to prune.
#[derive(Clone, Debug)]
pub struct Options {
    /// Share of channels to remove per stage.
    pub ratios: Ratios,
    /// How a channel's importance is measured.
    pub criterion: Criterion,
    /// Kept channel counts are rounded to the nearest multiple of this.
    pub round: usize,
}

/// One group of layers sharing channels, before and after.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupReport {
    /// The stage of its first layer.
    pub stage: Stage,
    /// Its layers' node names.
    pub layers: Vec<String>,
    /// Channels before.
    pub channels: usize,
    /// Channels after.
    pub kept: usize,
    /// Why some channels had to stay, if so.
    pub fixed: Option<String>,
}

/// A pruned model and what was done to it.
#[derive(Clone, Debug)]
pub struct Pruned {
    /// The pruned model.
    pub model: Model,
    /// Every group of layers, in graph order.
    pub groups: Vec<GroupReport>,
    /// Nodes whose channels could not be followed (left unpruned).
    pub warnings: Vec<String>,
    /// Every value that lost channels, with the original indices of the
    /// channels it kept.
    pub kept: HashMap<String, Vec<usize>>,
}

/// Prunes `staged` (a model analysed at a fixed input shape and split into
/// stages) as `options` say. [`Criterion::Activation`] runs the model on
/// `calibration`.
pub fn prune(
    staged: &StagedModel,
    options: &Options,
    calibration: Option<&mut dyn Calibration>,
) -> Result<Pruned, PruneError> {
    let model = &staged.model;
    let channels = ChannelGraph::new(model, &staged.facts);
    let groups = select::groups(&channels);
    let score = match (options.criterion, calibration) {
        (Criterion::Activation, Some(calibration)) if !calibration.is_empty() => {
            select::activation_importance(model, &channels, calibration)?
        }
        (Criterion::Activation, _) => {
            return Err(PruneError::Calibration(
                "--criterion activation needs calibration photos (--calib DIR)".into(),
            ));
        }
        (criterion, _) => select::importance(model, &channels, criterion)?,
    };
    let stage_of = |g: &Group| staged.partition.stages[channels.sources[g.sources[0]].node];
    let removed = select::choose(&groups, &score, options.round, |g| {
        options.ratios.of(stage_of(g))
    });
    let pruned = apply::apply(model, &channels, &removed)?;
    let reports = groups
        .iter()
        .map(|g| GroupReport {
            stage: stage_of(g),
            layers: g
                .sources
                .iter()
                .map(|&s| model.graph.node_label(channels.sources[s].node))
                .collect(),
            channels: g.components.len(),
            kept: g.components.iter().filter(|c| !removed.contains(c)).count(),
            fixed: g.fixed.clone(),
        })
        .collect();
    Ok(Pruned {
        model: pruned,
        groups: reports,
        warnings: channels.warnings.clone(),
        kept: apply::Kept::new(&channels, &removed).lost(),
    })
}
