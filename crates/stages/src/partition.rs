//! The structural stage finder.
//!
//! 1. `pre`: element-wise normalization (and layout changes) between the graph
//!    input and the first layer.
//! 2. `post`: nodes after which no layer with weights follows (decoding).
//! 3. Cross-scale fusions: a join whose inputs, traced back to a common
//!    ancestor, travelled through strides outside the range spanned by that
//!    ancestor and the join itself (a coarse map brought back up, or a fine map
//!    brought down by another path). A residual join inside a backbone block
//!    never does; an FPN, PAN or BiFPN join always does. Maps are values
//!    with one integer stride that are not attention token products, and
//!    the paths do not follow shape-only reads (`Shape`, `Size`).
//! 4. With fusions: the neck is the fusions, what lies between them, and on
//!    each lateral path the last block (the last convolution and what follows
//!    it) before the first fusion, unless that convolution closes a concat
//!    block of the backbone (a tap read as is); the backbone is the rest
//!    upstream. After the fusions, the head is the prediction branches: where
//!    a map is read by two or more branches that never meet again before
//!    decoding and never make a coarser map (class and box branches), the
//!    branches are head, as is the plain per-level chain just before the map
//!    (YOLOX stems, a shared head tower), and the rest of what leads to that
//!    map (output convolutions, extra levels such as P6 and P7) is neck.
//!    With no such map (a single prediction chain, as in DBNet), everything
//!    after the last fusion is head (`head.rs`).
//! 5. Without fusions (SSD heads straight on backbone taps, classifiers): the
//!    backbone runs up to the end of the deepest trunk (extra levels made from
//!    it included), the neck is empty, and the head is the rest.

use std::collections::{HashMap, HashSet};

use edgewise_graph::{Facts, Graph, Topology};

use crate::blocks::Blocks;
use crate::context::{Context, RESAMPLING_OPS, is_graph_input};
use crate::error::StageError;
use crate::head::prediction_branches;
use crate::stage::{Boundary, Method, Partition, Stage};

/// Boundary tensors given by the user, overriding the structural search.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Values where the backbone ends.
    #[serde(default)]
    pub backbone_out: Vec<String>,
    /// Values where the head starts.
    #[serde(default)]
    pub head_in: Vec<String>,
}

impl Overrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.backbone_out.is_empty() && self.head_in.is_empty()
    }
}

const PRE_OPS: &[&str] = &["Sub", "Div", "Mul", "Add", "Transpose", "Cast", "Identity"];
pub(crate) const STRIDE_TOLERANCE: f32 = 1.01;

/// Labels every node of `graph` with its stage.
pub fn partition(
    graph: &Graph,
    topo: &Topology,
    facts: &Facts,
    overrides: &Overrides,
) -> Result<Partition, StageError> {
    let ctx = Context::new(graph, topo, facts);
    let mut stages: Vec<Option<Stage>> = vec![None; graph.nodes.len()];
    let mut reasons = Vec::new();

    let pre = find_pre(&ctx);
    for &n in &pre {
        stages[n] = Some(Stage::Pre);
    }
    reasons.push((Stage::Pre, pre_reason(&ctx, &pre)));

    let post = find_post(&ctx, &stages);
    for &n in &post {
        stages[n] = Some(Stage::Post);
    }
    reasons.push((Stage::Post, post_reason(&ctx, &post)));

    let body: Vec<usize> = ctx.data_nodes().filter(|&n| stages[n].is_none()).collect();
    if body.is_empty() {
        return Err(StageError::NoLayers);
    }
    let structural = structural_body(&ctx, &body);
    let (body_labels, method) = if overrides.is_empty() {
        (structural, Method::Structural)
    } else {
        (
            apply_overrides(&ctx, &body, structural, overrides)?,
            Method::Override,
        )
    };
    let BodyLabels {
        labels,
        reasons: body_reasons,
    } = body_labels;
    for (n, s) in labels {
        stages[n] = Some(s);
    }
    reasons.extend(body_reasons);
    reasons.sort_by_key(|(s, _)| *s);

    // Constant nodes take the stage of the first layer reading them.
    let mut order: Vec<usize> = topo.order().to_vec();
    order.reverse();
    for n in order {
        if ctx.constant[n] {
            let reader_stage = ctx
                .outputs(n)
                .flat_map(|o| topo.consumers(o).iter().copied())
                .filter_map(|r| stages[r])
                .min_by_key(|s| *s);
            stages[n] = Some(reader_stage.unwrap_or(Stage::Backbone));
        }
    }
    let stages: Vec<Stage> = stages
        .into_iter()
        .map(|s| s.unwrap_or(Stage::Backbone))
        .collect();
    let backbone_outputs = boundary(
        &ctx,
        &stages,
        |from, to| from == Stage::Backbone && to != Stage::Backbone,
        true,
    );
    let head_inputs = boundary(
        &ctx,
        &stages,
        |from, to| from != Stage::Head && to == Stage::Head,
        false,
    );
    let tap_strides: Vec<f32> = backbone_outputs.iter().filter_map(|b| b.stride).collect();
    if !tap_strides.is_empty()
        && let Some((_, reason)) = reasons.iter_mut().find(|(s, _)| *s == Stage::Backbone)
    {
        reason.push_str(&format!(
            " (outputs at strides {})",
            fmt_strides(tap_strides)
        ));
    }
    Ok(Partition {
        stages,
        backbone_outputs,
        head_inputs,
        reasons,
        method,
    })
}

/// Values produced in a stage `from` and read in a stage `to` where `crosses(from, to)`.
fn boundary(
    ctx: &Context,
    stages: &[Stage],
    crosses: impl Fn(Stage, Stage) -> bool,
    outputs_count: bool,
) -> Vec<Boundary> {
    let graph_outputs: HashSet<&str> = ctx.graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut found = Vec::new();
    for n in ctx.data_nodes() {
        for value in ctx.outputs(n) {
            let read_across = ctx
                .readers(value)
                .iter()
                .any(|&r| crosses(stages[n], stages[r]));
            let leaves =
                outputs_count && graph_outputs.contains(value) && crosses(stages[n], Stage::Post);
            if read_across || leaves {
                found.push(make_boundary(ctx, value));
            }
        }
    }
    // Graph inputs read straight by the head (a model with no backbone at all).
    for input in &ctx.graph.inputs {
        if is_graph_input(ctx.topo, &input.name)
            && ctx
                .readers(&input.name)
                .iter()
                .any(|&r| crosses(Stage::Pre, stages[r]) && stages[r] == Stage::Head)
        {
            found.push(make_boundary(ctx, &input.name));
        }
    }
    found
}

fn make_boundary(ctx: &Context, value: &str) -> Boundary {
    Boundary {
        value: value.to_string(),
        shape: ctx
            .facts
            .shape(value)
            .map(<[usize]>::to_vec)
            .unwrap_or_default(),
        stride: ctx.stride_of(value),
    }
}

fn find_pre(ctx: &Context) -> Vec<usize> {
    let mut pre = Vec::new();
    let mut pre_values: HashSet<&str> = HashSet::new();
    for n in ctx.data_nodes() {
        let node = &ctx.graph.nodes[n];
        let inputs = &ctx.data_inputs[n];
        let from_input = !inputs.is_empty()
            && inputs
                .iter()
                .all(|v| pre_values.contains(v) || is_graph_input(ctx.topo, v));
        let arithmetic = matches!(node.op_type.as_str(), "Sub" | "Div" | "Mul" | "Add");
        // Arithmetic counts as normalization only against a constant.
        let qualifies = PRE_OPS.contains(&node.op_type.as_str())
            && !ctx.layer[n]
            && (!arithmetic || (inputs.len() == 1 && node.present_inputs().count() == 2));
        if from_input && qualifies {
            pre.push(n);
            pre_values.extend(ctx.outputs(n));
        }
    }
    pre
}

fn pre_reason(ctx: &Context, pre: &[usize]) -> String {
    if pre.is_empty() {
        "none: the first layer reads the graph input directly".into()
    } else {
        format!(
            "{} node(s) ({}) transform the graph input with constants before the first layer",
            pre.len(),
            op_summary(ctx, pre)
        )
    }
}

fn find_post(ctx: &Context, stages: &[Option<Stage>]) -> Vec<usize> {
    // A node is post when no layer with weights is at or below it.
    let mut layer_below = vec![false; ctx.graph.nodes.len()];
    let mut order: Vec<usize> = ctx.data_nodes().collect();
    order.reverse();
    for &n in &order {
        layer_below[n] = ctx.layer[n]
            || ctx
                .outputs(n)
                .flat_map(|o| ctx.readers(o).iter())
                .any(|&r| layer_below[r]);
    }
    order.reverse();
    order
        .into_iter()
        .filter(|&n| !layer_below[n] && stages[n].is_none())
        .collect()
}

fn post_reason(ctx: &Context, post: &[usize]) -> String {
    if post.is_empty() {
        "none: the graph outputs come straight from layers with weights".into()
    } else {
        format!(
            "{} node(s) ({}) follow the last layer with weights: in-graph decoding",
            post.len(),
            op_summary(ctx, post)
        )
    }
}

/// `Sigmoid`, or `Reshape x3, Concat` style summary of the operators of `nodes`.
fn op_summary(ctx: &Context, nodes: &[usize]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for &n in nodes {
        let op = ctx.op(n);
        match counts.iter_mut().find(|(o, _)| *o == op) {
            Some(entry) => entry.1 += 1,
            None => counts.push((op, 1)),
        }
    }
    counts
        .iter()
        .map(|(op, c)| {
            if *c > 1 {
                format!("{op} x{c}")
            } else {
                op.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct BodyLabels {
    labels: Vec<(usize, Stage)>,
    reasons: Vec<(Stage, String)>,
}

fn fmt_stride(s: f32) -> String {
    if (s - s.round()).abs() < 0.05 {
        format!("{}", s.round() as i64)
    } else {
        format!("{s:.2}")
    }
}

fn fmt_strides(strides: impl IntoIterator<Item = f32>) -> String {
    let mut v: Vec<f32> = strides.into_iter().collect();
    v.sort_by(f32::total_cmp);
    v.dedup_by(|a, b| (*a / *b) < STRIDE_TOLERANCE);
    v.into_iter().map(fmt_stride).collect::<Vec<_>>().join(", ")
}

fn structural_body(ctx: &Context, body: &[usize]) -> BodyLabels {
    let in_body: HashSet<usize> = body.iter().copied().collect();
    let fusions: Vec<usize> = body
        .iter()
        .copied()
        .filter(|&n| is_cross_scale_fusion(ctx, n, &in_body))
        .collect();
    if fusions.is_empty() {
        no_neck(ctx, body, &in_body)
    } else {
        with_neck(ctx, body, &in_body, &fusions)
    }
}

/// Node sets reachable downstream (descendants) from `seeds`, within `within`.
pub(crate) fn descendants(
    ctx: &Context,
    seeds: &[usize],
    within: &HashSet<usize>,
) -> HashSet<usize> {
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = seeds.to_vec();
    while let Some(n) = stack.pop() {
        for out in ctx.outputs(n) {
            for &r in ctx.readers(out) {
                if within.contains(&r) && seen.insert(r) {
                    stack.push(r);
                }
            }
        }
    }
    seen
}

/// Node sets reachable upstream (ancestors) from `seeds`, within `within`.
pub(crate) fn ancestors(ctx: &Context, seeds: &[usize], within: &HashSet<usize>) -> HashSet<usize> {
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = seeds.to_vec();
    while let Some(n) = stack.pop() {
        for &v in &ctx.data_inputs[n] {
            if let Some(p) = ctx.producer(v)
                && within.contains(&p)
                && seen.insert(p)
            {
                stack.push(p);
            }
        }
    }
    seen
}

/// A stride as one bit: strides within about 19% of each other share a bit, so
/// 7.87 (299 / 38) counts as 8.
fn stride_bit(stride: f32) -> u64 {
    let bucket = (stride.max(1.0).log2() * 4.0).round() as u32;
    1u64 << bucket.min(63)
}

/// For every ancestor value of `value`, the strides met on the paths from it to
/// `value` (both ends included; non-spatial values are transparent), as bits.
///
/// The paths do not go through `Shape` or `Size`: those read only a map's
/// dimensions, not its contents. Why: `F.interpolate(x, size=[H, W] of the
/// finer map)`, as in RetinaFace's FPN (biubug6 Pytorch_Retinaface,
/// `models/net.py` `FPN.forward`), exports as a `Resize` whose sizes are
/// computed from `Shape(lateral)`. Followed, that edge made the lateral map a
/// common ancestor of both inputs of the top-down add, on both paths at the
/// same stride, and hid the fusion.
fn path_strides<'a>(
    ctx: &Context<'a>,
    value: &'a str,
    in_body: &HashSet<usize>,
) -> HashMap<&'a str, u64> {
    let mut visited: HashMap<&str, u64> = HashMap::new();
    let Some(s) = ctx.stride_of(value) else {
        return visited;
    };
    visited.insert(value, stride_bit(s));
    let Some(start) = ctx.producer(value) else {
        return visited;
    };
    let mut nodes: Vec<usize> = ancestors(ctx, &[start], in_body).into_iter().collect();
    nodes.push(start);
    nodes.sort_by_key(|&n| std::cmp::Reverse(ctx.position[n]));
    for n in nodes {
        if matches!(ctx.op(n), "Shape" | "Size") {
            continue;
        }
        let below = ctx
            .outputs(n)
            .filter_map(|o| visited.get(o).copied())
            .fold(0u64, |a, b| a | b);
        if below == 0 {
            continue;
        }
        for &input in &ctx.data_inputs[n] {
            let own = ctx.stride_of(input).map(stride_bit).unwrap_or(0);
            *visited.entry(input).or_insert(0) |= below | own;
        }
    }
    visited
}

/// A join of spatial inputs whose paths, from the point where they part (their
/// lowest common ancestor), went through different sets of strides: one came
/// from a coarser or finer map than the other. Inside a backbone block both
/// paths see the same strides (a residual, or a downsampling block with a
/// strided shortcut).
fn is_cross_scale_fusion(ctx: &Context, n: usize, in_body: &HashSet<usize>) -> bool {
    if ctx.node_stride(n).is_none() {
        return false;
    }
    let spatial: Vec<&str> = ctx.data_inputs[n]
        .iter()
        .copied()
        .filter(|v| ctx.stride_of(v).is_some())
        .collect();
    if spatial.len() < 2 {
        return false;
    }
    let visited: Vec<HashMap<&str, u64>> = spatial
        .iter()
        .map(|v| path_strides(ctx, v, in_body))
        .collect();
    for i in 0..visited.len() {
        for j in i + 1..visited.len() {
            let common = |v: &str| visited[i].contains_key(v) && visited[j].contains_key(v);
            for (value, &seen_i) in &visited[i] {
                let Some(&seen_j) = visited[j].get(value) else {
                    continue;
                };
                // Only the lowest common ancestors, where the two paths part:
                // older ones would see every earlier fusion again.
                let lowest = !ctx
                    .readers(value)
                    .iter()
                    .flat_map(|&r| ctx.outputs(r))
                    .any(common);
                if lowest && ctx.stride_of(value).is_some() && seen_i != seen_j {
                    return true;
                }
            }
        }
    }
    false
}

fn with_neck(
    ctx: &Context,
    body: &[usize],
    in_body: &HashSet<usize>,
    fusions: &[usize],
) -> BodyLabels {
    let after_fusion = descendants(ctx, fusions, in_body);
    let before_fusion = ancestors(ctx, fusions, in_body);
    let fusion_set: HashSet<usize> = fusions.iter().copied().collect();
    // Upstream of every fusion: the backbone, plus the lateral blocks of the neck.
    let upstream: HashSet<usize> = body
        .iter()
        .copied()
        .filter(|n| {
            before_fusion.contains(n) && !after_fusion.contains(n) && !fusion_set.contains(n)
        })
        .collect();
    let trunk = trunk(ctx, fusions, &upstream);
    let layers_below = deepest_stride_below(ctx, &trunk, true);

    let blocks = Blocks::new(ctx);
    let mut lateral_seeds: Vec<usize> = Vec::new();
    let mut walked: HashSet<usize> = HashSet::new();
    for &f in fusions {
        for &input in &ctx.data_inputs[f] {
            if ctx.producer(input).is_some_and(|p| upstream.contains(&p)) {
                let (seeds, through) =
                    last_block_start(ctx, &blocks, input, &upstream, &layers_below);
                lateral_seeds.extend(seeds);
                walked.extend(through);
            }
        }
    }
    lateral_seeds.sort_unstable();
    lateral_seeds.dedup();
    let mut lateral = descendants(ctx, &lateral_seeds, &upstream);
    lateral.extend(lateral_seeds.iter().copied());
    // The neck's resampling on the walked paths, and what was walked after
    // it, is neck even where no lateral block was seeded (a tap read as it
    // is, then upsampled into the fusion).
    let resamples: Vec<usize> = walked
        .iter()
        .copied()
        .filter(|&n| matches!(ctx.op(n), "Resize" | "Upsample"))
        .collect();
    lateral.extend(
        descendants(ctx, &resamples, &upstream)
            .into_iter()
            .filter(|n| walked.contains(n)),
    );
    lateral.extend(resamples);

    let core = |n: &usize| {
        fusion_set.contains(n) || (after_fusion.contains(n) && before_fusion.contains(n))
    };
    // Beside and after the fusions: the neck's output layers, its extra
    // levels, and the prediction branches.
    let tail: HashSet<usize> = body
        .iter()
        .copied()
        .filter(|n| !core(n) && !upstream.contains(n))
        .collect();
    let head = prediction_branches(ctx, &blocks, &tail, in_body, &upstream);

    let mut labels = Vec::with_capacity(body.len());
    for &n in body {
        let stage = if core(&n) {
            Stage::Neck
        } else if upstream.contains(&n) {
            if lateral.contains(&n) {
                Stage::Neck
            } else {
                Stage::Backbone
            }
        } else if head.contains(&n) {
            Stage::Head
        } else {
            Stage::Neck
        };
        labels.push((n, stage));
    }

    let ordered: Vec<usize> = {
        let mut f = fusions.to_vec();
        f.sort_by_key(|&n| ctx.position[n]);
        f
    };
    let first = ordered[0];
    let last = *ordered.last().expect("at least one fusion");
    let backbone: Vec<usize> = labels
        .iter()
        .filter(|(_, s)| *s == Stage::Backbone)
        .map(|(n, _)| *n)
        .collect();
    let deepest = backbone
        .iter()
        .filter_map(|&n| ctx.node_stride(n))
        .fold(0.0f32, f32::max);
    let head_count = labels.iter().filter(|(_, s)| *s == Stage::Head).count();
    let fusion_ops = op_summary(ctx, &ordered);
    let reasons = vec![
        (
            Stage::Backbone,
            format!(
                "{} node(s): the input-side extractor down to stride {}, upstream of every cross-scale fusion; its outputs are the taps the neck reads",
                backbone.len(),
                fmt_stride(deepest)
            ),
        ),
        (
            Stage::Neck,
            format!(
                "{} cross-scale fusion(s) ({fusion_ops}) from `{}` to `{}`, what lies between them, the last block on each lateral path into them, and the layers from them to the maps the head reads",
                ordered.len(),
                ctx.graph.node_label(first),
                ctx.graph.node_label(last)
            ),
        ),
        (
            Stage::Head,
            format!(
                "{head_count} node(s) after the last cross-scale fusion (`{}`): the prediction branches on each map",
                ctx.graph.node_label(last)
            ),
        ),
    ];
    BodyLabels { labels, reasons }
}

/// For each value produced in `region`, the deepest stride reachable downstream
/// of it within `region` (its own stride included); with `layers_only`, the
/// deepest output of a layer with weights (pooling alone does not count).
pub(crate) fn deepest_stride_below<'a>(
    ctx: &Context<'a>,
    region: &HashSet<usize>,
    layers_only: bool,
) -> HashMap<&'a str, f32> {
    let mut deepest: HashMap<&str, f32> = HashMap::new();
    let mut nodes: Vec<usize> = region.iter().copied().collect();
    nodes.sort_by_key(|&n| std::cmp::Reverse(ctx.position[n]));
    for n in nodes {
        for out in ctx.outputs(n) {
            let own = if layers_only && !ctx.layer[n] {
                0.0
            } else {
                ctx.stride_of(out).unwrap_or(0.0)
            };
            let below = ctx
                .readers(out)
                .iter()
                .filter(|r| region.contains(r))
                .flat_map(|&r| ctx.outputs(r))
                .filter_map(|o| deepest.get(o).copied())
                .fold(own, f32::max);
            deepest.insert(out, below);
        }
    }
    deepest
}

/// The part of `upstream` that the top-down path grows from: the ancestors
/// of the fusions whose inputs all come from `upstream` (the first fusions of
/// the neck, which fuse nothing the neck made). When there are none, all of
/// `upstream`.
///
/// Why: `upstream` also holds neck branches that feed only a later fusion,
/// such as the extra level of PP-PicoDet's CSP-PAN
/// (PaddleDetection `ppdet/modeling/necks/csp_pan.py`,
/// `first_top_conv(inputs[-1]) + second_top_conv(outs[-1])`), a strided
/// conv from the top lateral map to stride 64. Counted as trunk, it made that
/// lateral map look like a tap from which the backbone goes on deeper, so the
/// lateral conv, the upsample and the extra level stayed in the backbone.
fn trunk(ctx: &Context, fusions: &[usize], upstream: &HashSet<usize>) -> HashSet<usize> {
    let first: Vec<usize> = fusions
        .iter()
        .copied()
        .filter(|&f| {
            ctx.data_inputs[f]
                .iter()
                .all(|v| ctx.producer(v).is_none_or(|p| upstream.contains(&p)))
        })
        .collect();
    let trunk = ancestors(ctx, &first, upstream);
    if trunk.is_empty() {
        upstream.clone()
    } else {
        trunk
    }
}

/// Walking back from a fusion input along its lateral path: the convolution(s)
/// that start the last block before the fusion, and the nodes walked through
/// on the way. The walk stops, with no block, at a value from which the trunk
/// goes on deeper (a backbone tap read as is), and at a convolution that
/// closes a concat block ([`Blocks::closes_concat`]).
///
/// Why the closing convolution: the deepest tap is read as is too, but no
/// trunk goes on below it, so the walk used to enter the backbone's last
/// block. In Ultralytics YOLOv8 and YOLO26 (`ultralytics/cfg/models/v8/yolov8.yaml`,
/// `26/yolo26.yaml`) the neck reads SPPF (layer 9) or C2PSA (layer 10) and
/// upsamples it, and their `cv2` (which fuses a concat) was taken for a
/// lateral block. A lateral 1x1 on a residual `Add` (an FPN on a MobileNetV2
/// block) is still a block of the neck: residuals are not concat blocks.
fn last_block_start(
    ctx: &Context,
    blocks: &Blocks,
    value: &str,
    upstream: &HashSet<usize>,
    layers_below: &HashMap<&str, f32>,
) -> (Vec<usize>, Vec<usize>) {
    let mut seeds = Vec::new();
    let mut walked = Vec::new();
    let mut stack = vec![value];
    let mut seen: HashSet<&str> = HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        let own = ctx.stride_of(v);
        let Some(own) = own else { continue };
        if layers_below
            .get(v)
            .is_some_and(|&d| d > own * STRIDE_TOLERANCE)
        {
            continue;
        }
        let Some(p) = ctx.producer(v) else { continue };
        if !upstream.contains(&p) {
            continue;
        }
        let op = ctx.op(p);
        if op == "Conv" || op == "ConvTranspose" {
            if !blocks.closes_concat(p) {
                seeds.push(extend_to_depthwise(ctx, p, upstream));
            }
        } else if !RESAMPLING_OPS.contains(&op) || op == "Resize" || op == "Upsample" {
            walked.push(p);
            stack.extend(
                ctx.data_inputs[p]
                    .iter()
                    .copied()
                    .filter(|i| ctx.stride_of(i).is_some()),
            );
        }
    }
    (seeds, walked)
}

/// A pointwise convolution fed (through activations) by a depthwise one forms
/// one separable block: start the block at the depthwise convolution.
fn extend_to_depthwise(ctx: &Context, conv: usize, upstream: &HashSet<usize>) -> usize {
    let mut value = match ctx.data_inputs[conv].first() {
        Some(v) => *v,
        None => return conv,
    };
    for _ in 0..4 {
        let Some(p) = ctx.producer(value) else {
            return conv;
        };
        if !upstream.contains(&p) || ctx.readers(value).len() > 1 {
            return conv;
        }
        if ctx.op(p) == "Conv" {
            let group = ctx.graph.nodes[p].int_attr("group", 1);
            let channels = ctx
                .facts
                .shape(value)
                .and_then(|s| s.get(1).copied())
                .unwrap_or(0) as i64;
            return if group > 1 && group == channels {
                p
            } else {
                conv
            };
        }
        if ctx.data_inputs[p].len() != 1 {
            return conv;
        }
        value = ctx.data_inputs[p][0];
    }
    conv
}

fn no_neck(ctx: &Context, body: &[usize], in_body: &HashSet<usize>) -> BodyLabels {
    let deepest = body
        .iter()
        .filter_map(|&n| ctx.node_stride(n))
        .fold(0.0f32, f32::max);
    // The trunk ends at the last deepest-stride node upstream of every
    // deepest-stride leaf (a deepest-stride node with none below it): the
    // branches that fork off there are heads.
    let deep: Vec<usize> = {
        let mut d: Vec<usize> = body
            .iter()
            .copied()
            .filter(|&n| {
                ctx.node_stride(n)
                    .is_some_and(|s| s * STRIDE_TOLERANCE >= deepest)
            })
            .collect();
        d.sort_by_key(|&n| ctx.position[n]);
        d
    };
    let below: HashMap<usize, HashSet<usize>> = deep
        .iter()
        .map(|&d| (d, descendants(ctx, &[d], in_body)))
        .collect();
    let leaves: Vec<usize> = deep
        .iter()
        .copied()
        .filter(|d| !deep.iter().any(|e| below[d].contains(e)))
        .collect();
    let trunk_end = deep.iter().rev().copied().find(|d| {
        leaves
            .iter()
            .all(|leaf| leaf == d || below[d].contains(leaf))
    });
    let mut backbone: HashSet<usize> = HashSet::new();
    if let Some(end) = trunk_end {
        backbone = ancestors(ctx, &[end], in_body);
        backbone.insert(end);
    }
    let labels: Vec<(usize, Stage)> = body
        .iter()
        .map(|&n| {
            (
                n,
                if backbone.contains(&n) {
                    Stage::Backbone
                } else {
                    Stage::Head
                },
            )
        })
        .collect();
    let head_count = body.len() - backbone.len();
    let reasons = vec![
        (
            Stage::Backbone,
            match trunk_end {
                Some(end) => format!(
                    "{} node(s): the trunk from the input to its deepest map (stride {}, `{}`)",
                    backbone.len(),
                    fmt_stride(deepest),
                    ctx.graph.node_label(end)
                ),
                None => "none: the graph has no spatial feature maps".into(),
            },
        ),
        (
            Stage::Neck,
            "empty: no cross-scale fusion in the graph (heads read the backbone taps directly)"
                .into(),
        ),
        (
            Stage::Head,
            format!("{head_count} node(s) branching off the backbone to the outputs"),
        ),
    ];
    BodyLabels { labels, reasons }
}

fn apply_overrides(
    ctx: &Context,
    body: &[usize],
    structural: BodyLabels,
    overrides: &Overrides,
) -> Result<BodyLabels, StageError> {
    let in_body: HashSet<usize> = body.iter().copied().collect();
    let known = |v: &String| -> Result<(), StageError> {
        if ctx.topo.producer(v).is_some() {
            Ok(())
        } else {
            Err(StageError::UnknownValue(v.clone()))
        }
    };
    overrides
        .backbone_out
        .iter()
        .chain(&overrides.head_in)
        .try_for_each(known)?;
    let mut labels: HashMap<usize, Stage> = structural.labels.iter().copied().collect();
    let mut reasons: HashMap<Stage, String> = structural.reasons.into_iter().collect();

    if !overrides.backbone_out.is_empty() {
        let producers: Vec<usize> = overrides
            .backbone_out
            .iter()
            .filter_map(|v| ctx.producer(v))
            .collect();
        let mut backbone = ancestors(ctx, &producers, &in_body);
        backbone.extend(producers.iter().filter(|p| in_body.contains(p)));
        for &n in body {
            let s = labels.get_mut(&n).expect("body node");
            if backbone.contains(&n) {
                *s = Stage::Backbone;
            } else if *s == Stage::Backbone {
                *s = Stage::Neck;
            }
        }
        reasons.insert(
            Stage::Backbone,
            format!(
                "{} node(s): upstream of the given backbone outputs {}",
                backbone.len(),
                overrides.backbone_out.join(", ")
            ),
        );
    }
    if !overrides.head_in.is_empty() {
        let readers: Vec<usize> = overrides
            .head_in
            .iter()
            .flat_map(|v| ctx.readers(v).iter().copied())
            .filter(|r| in_body.contains(r))
            .collect();
        let mut head = descendants(ctx, &readers, &in_body);
        head.extend(readers.iter().copied());
        for &n in body {
            let s = labels.get_mut(&n).expect("body node");
            if head.contains(&n) {
                if *s == Stage::Backbone && !overrides.backbone_out.is_empty() {
                    return Err(StageError::OverlappingOverrides {
                        node: ctx.graph.node_label(n),
                    });
                }
                *s = Stage::Head;
            } else if *s == Stage::Head {
                *s = Stage::Neck;
            }
        }
        reasons.insert(
            Stage::Head,
            format!(
                "{} node(s): downstream of the given head inputs {}",
                head.len(),
                overrides.head_in.join(", ")
            ),
        );
    }
    let neck = labels.values().filter(|s| **s == Stage::Neck).count();
    reasons.insert(
        Stage::Neck,
        format!("{neck} node(s) between the backbone outputs and the head inputs"),
    );
    let mut labels: Vec<(usize, Stage)> = labels.into_iter().collect();
    labels.sort_unstable();
    Ok(BodyLabels {
        labels,
        reasons: reasons.into_iter().collect(),
    })
}
