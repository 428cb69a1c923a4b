//! Which channels must be removed together.
//!
//! Every channel (axis 1) of every activation gets an id; each operator
//! joins the ids its semantics tie together: an elementwise op ties channel
//! `i` of its inputs and output, `Concat` ties input channels to their
//! offset in the output, a depthwise convolution ties its input channel to
//! its output channel, `Flatten` ties a channel to its `H*W` features. The
//! connected ids form a *component*: removing one means removing every
//! channel in it, and slicing every weight that reads or writes them.
//! A component is *fixed* (never removed) when it reaches a graph input or
//! output, or an operator whose channels this module does not understand.

use std::collections::{HashMap, HashSet};

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{AttributeValue, Facts, Model, Node, Topology};

/// The channels of one value: ids `first..first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first channel id.
    pub first: usize,
    /// The number of channels (axis 1).
    pub count: usize,
}

/// A weight to slice once channels go: axis `axis` of initializer `param`
/// keeps the entries of the kept channels of `value`, `block` entries per
/// channel (`H*W` for a `Flatten` into `Gemm`, else 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSlice {
    /// The initializer.
    pub param: String,
    /// Its axis that indexes the channels.
    pub axis: usize,
    /// The value whose channels it follows.
    pub value: String,
    /// Entries per channel.
    pub block: usize,
}

/// A node whose attributes or shape inputs say how many channels there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// A depthwise convolution: `group` becomes the kept channels of `value`.
    Group {
        /// The node.
        node: usize,
        /// Its output.
        value: String,
    },
    /// `Split` on the channel axis: the sizes become the kept channels of
    /// each output.
    Split {
        /// The node.
        node: usize,
    },
    /// `Slice` on the channel axis: start and end move to where the kept
    /// channels of the input fall.
    Slice {
        /// The node.
        node: usize,
        /// Which entry of its starts and ends is the channel axis.
        entry: usize,
        /// Where its channel range starts in the input.
        start: usize,
        /// Exclusive end.
        end: usize,
    },
    /// `Resize` with `sizes`, or a flattening `Reshape` with an explicit
    /// target: entry 1 of input `input` becomes the kept channels (times
    /// `block`) of the output.
    ShapeInput {
        /// The node.
        node: usize,
        /// Which input holds the shape.
        input: usize,
        /// Features per channel.
        block: usize,
    },
}

/// A layer whose output channels are new: a convolution, a transposed
/// convolution or a fully connected layer. Its filters give the importance
/// of the channels it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The node.
    pub node: usize,
    /// Its output.
    pub value: String,
    /// Its weight initializer.
    pub weight: String,
    /// The weight's axis of output channels.
    pub axis: usize,
}

/// A layer that reads channels through a weight: a dense convolution, a
/// transposed convolution or a fully connected layer. What a channel
/// contributes to its output is the data-driven measure of importance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// The node.
    pub node: usize,
    /// The input whose channels it reads.
    pub value: String,
    /// Its weight initializer.
    pub weight: String,
    /// The weight's axis of input channels.
    pub axis: usize,
}

/// The channel dependency structure of a model.
#[derive(Clone, Debug)]
pub struct ChannelGraph {
    spans: HashMap<String, Span>,
    parent: Vec<usize>,
    fixed: HashMap<usize, String>,
    /// Weights to slice.
    pub slices: Vec<ParamSlice>,
    /// Attributes and shape inputs to rewrite.
    pub rewrites: Vec<Rewrite>,
    /// The layers that create channels.
    pub sources: Vec<Source>,
    /// The layers that read channels through a weight.
    pub consumers: Vec<Consumer>,
    /// One line per node whose channels could not be followed.
    pub warnings: Vec<String>,
}

/// Ops that keep every channel where it is (first input to first output).
const PASS_THROUGH: &[&str] = &[
    "Relu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Mish",
    "Softplus",
    "Softsign",
    "Tanh",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Not",
    "Identity",
    "Dropout",
    "Cast",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "QuantizeLinear",
    "DequantizeLinear",
];

/// Elementwise ops with broadcasting over all their inputs.
const ELEMENTWISE: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
    "Greater", "And", "Or", "Xor",
];

/// Ops that read only a value's shape, not its channels.
const SHAPE_READERS: &[&str] = &["Shape", "Size"];

impl ChannelGraph {
    /// Follows the channels of every activation of `model`, whose shapes are
    /// `facts` (from `edgewise_graph::analyze`).
    pub fn new(model: &Model, facts: &Facts) -> ChannelGraph {
        let graph = &model.graph;
        // Values computed from constants alone (a `Constant` node, a reshaped
        // initializer) are weights, not activations: never tracked, so that
        // an elementwise op reading one per channel is checked as a weight.
        let constant = Topology::new(graph)
            .map(|t| t.constant_nodes(graph))
            .unwrap_or_else(|_| vec![false; graph.nodes.len()]);
        let initializers: HashSet<&str> =
            graph.initializers.iter().map(|i| i.name.as_str()).collect();
        let mut spans = HashMap::new();
        let mut total = 0;
        let mut track = |name: &str| {
            if initializers.contains(name) || spans.contains_key(name) {
                return;
            }
            if let Some(shape) = facts.shape(name)
                && shape.len() >= 2
                && shape[1] > 0
            {
                spans.insert(
                    name.to_string(),
                    Span {
                        first: total,
                        count: shape[1],
                    },
                );
                total += shape[1];
            }
        };
        for input in &graph.inputs {
            track(&input.name);
        }
        for (node, _) in graph.nodes.iter().zip(&constant).filter(|(_, c)| !**c) {
            for output in node.present_outputs() {
                track(output);
            }
        }
        let mut cg = ChannelGraph {
            spans,
            parent: (0..total).collect(),
            fixed: HashMap::new(),
            slices: vec![],
            rewrites: vec![],
            sources: vec![],
            consumers: vec![],
            warnings: vec![],
        };
        for input in &graph.inputs {
            cg.fix_value(&input.name, "a graph input");
        }
        for output in &graph.outputs {
            cg.fix_value(&output.name, "a graph output");
        }
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for node in &graph.nodes {
            for input in node.present_inputs() {
                *readers.entry(input).or_default() += 1;
            }
        }
        for (ix, node) in graph.nodes.iter().enumerate() {
            if constant[ix] {
                continue;
            }
            let (reason, warn) = match cg.follow(model, facts, ix, node) {
                Ok(()) => continue,
                Err(Blocked::Unknown(reason)) => (reason, true),
                Err(Blocked::Layout(reason)) => (reason, false),
            };
            let touched: Vec<&str> = node
                .present_inputs()
                .chain(node.present_outputs())
                .filter(|v| cg.spans.contains_key(*v))
                .collect();
            if touched.is_empty() {
                continue;
            }
            if warn {
                cg.warnings.push(format!(
                    "node `{}` ({}): {reason}; its channels are left unpruned",
                    graph.node_label(ix),
                    node.op_type
                ));
            }
            let why = format!("`{}` ({}): {reason}", graph.node_label(ix), node.op_type);
            for v in touched {
                cg.fix_value(v, &why);
            }
        }
        // A weight read by two nodes (shared between layers) cannot be
        // sliced for one of them alone.
        let shared: Vec<ParamSlice> = cg
            .slices
            .iter()
            .filter(|s| readers.get(s.param.as_str()).copied().unwrap_or(0) > 1)
            .cloned()
            .collect();
        for s in shared {
            cg.fix_value(
                &s.value,
                &format!("weight `{}` is shared between layers", s.param),
            );
        }
        cg
    }

    /// Every value whose channels are tracked.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.spans.keys().map(String::as_str)
    }

    /// The channels of `value`, when it has any.
    pub fn span(&self, value: &str) -> Option<Span> {
        self.spans.get(value).copied()
    }

    /// The component of channel id `id`.
    pub fn component(&self, id: usize) -> usize {
        let mut x = id;
        while self.parent[x] != x {
            x = self.parent[x];
        }
        x
    }

    /// Why component `root` may not be removed, if it may not.
    pub fn fixed_reason(&self, root: usize) -> Option<&str> {
        self.fixed.get(&root).map(String::as_str)
    }

    /// The components of the channels of `value`, in channel order.
    pub fn components_of(&self, value: &str) -> Vec<usize> {
        self.span(value)
            .map(|s| {
                (s.first..s.first + s.count)
                    .map(|id| self.component(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn find(&mut self, id: usize) -> usize {
        let mut root = id;
        while self.parent[root] != root {
            root = self.parent[root];
        }
        let mut x = id;
        while self.parent[x] != root {
            let next = self.parent[x];
            self.parent[x] = root;
            x = next;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[gone] = keep;
        if let Some(reason) = self.fixed.remove(&gone) {
            self.fixed.entry(keep).or_insert(reason);
        }
    }

    fn fix_value(&mut self, value: &str, reason: &str) {
        if let Some(span) = self.span(value) {
            for id in span.first..span.first + span.count {
                let root = self.find(id);
                self.fixed.entry(root).or_insert_with(|| reason.to_string());
            }
        }
    }

    /// Ties channel `i` of `a` to channel `offset + i * 1` of `b` for every
    /// channel of `a` (`a` within `b`), `block` channels of `b` per channel
    /// of `a`.
    fn tie(&mut self, a: &str, b: &str, offset: usize, block: usize) -> Result<(), String> {
        let (sa, sb) = match (self.span(a), self.span(b)) {
            (Some(sa), Some(sb)) => (sa, sb),
            _ => return Err(format!("the shape of `{a}` or `{b}` is unknown")),
        };
        if offset + sa.count * block > sb.count {
            return Err(format!(
                "{} channels of `{a}` do not fit {} of `{b}` at {offset}",
                sa.count, sb.count
            ));
        }
        for i in 0..sa.count {
            for j in 0..block {
                self.union(sa.first + i, sb.first + offset + i * block + j);
            }
        }
        Ok(())
    }

    fn follow(
        &mut self,
        model: &Model,
        facts: &Facts,
        ix: usize,
        node: &Node,
    ) -> Result<(), Blocked> {
        self.follow_op(model, facts, ix, node)
            .map_err(|reason| match reason.as_str() {
                MOVES_CHANNELS => Blocked::Layout(reason),
                _ => Blocked::Unknown(reason),
            })
    }

    fn follow_op(
        &mut self,
        model: &Model,
        facts: &Facts,
        ix: usize,
        node: &Node,
    ) -> Result<(), String> {
        let graph = &model.graph;
        let input = |k: usize| node.inputs.get(k).filter(|s| !s.is_empty()).cloned();
        let x = input(0).unwrap_or_default();
        let y = node.outputs.first().cloned().unwrap_or_default();
        let is_init = |name: &str| graph.initializers.iter().any(|i| i.name == name);
        let rank = |name: &str| facts.shape(name).map(<[usize]>::len).unwrap_or(0);
        let op = node.op_type.as_str();
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(format!(
                "operator domain `{}` is not understood",
                node.domain
            ));
        }
        if op == "Constant" || SHAPE_READERS.contains(&op) {
            return Ok(());
        }
        if PASS_THROUGH.contains(&op) {
            if op == "QuantizeLinear" || op == "DequantizeLinear" {
                let per_tensor = node
                    .inputs
                    .iter()
                    .skip(1)
                    .filter(|s| !s.is_empty())
                    .all(|s| graph.constant(s).is_some_and(|t| t.len() == 1));
                if !per_tensor {
                    return Err("per-channel quantization parameters".into());
                }
            }
            return self.tie(&x, &y, 0, 1);
        }
        match op {
            "Conv" | "ConvTranspose" => {
                let w = input(1).ok_or("no weight")?;
                let wt = graph.constant(&w).ok_or("the weight is not a constant")?;
                if !is_init(&w) || wt.datum_type() != f32::datum_type() {
                    return Err("the weight is not a float initializer".into());
                }
                let group = node.int_attr("group", 1) as usize;
                let (cin, cout) = (
                    self.span(&x).ok_or("unknown input shape")?.count,
                    self.span(&y).ok_or("unknown output shape")?.count,
                );
                let transposed = op == "ConvTranspose";
                let (in_axis, out_axis) = if transposed { (0, 1) } else { (1, 0) };
                let bias = input(2);
                if let Some(b) = &bias
                    && !is_init(b)
                {
                    return Err("the bias is not an initializer".into());
                }
                if group == 1 {
                    self.sources.push(Source {
                        node: ix,
                        value: y.clone(),
                        weight: w.clone(),
                        axis: out_axis,
                    });
                    self.consumers.push(Consumer {
                        node: ix,
                        value: x.clone(),
                        weight: w.clone(),
                        axis: in_axis,
                    });
                    self.slice(&w, in_axis, &x, 1);
                    self.slice(&w, out_axis, &y, 1);
                } else if group == cin && cout == cin {
                    // Depthwise: channel i in, channel i out.
                    self.tie(&x, &y, 0, 1)?;
                    self.slice(&w, 0, &y, 1);
                    self.rewrites.push(Rewrite::Group {
                        node: ix,
                        value: y.clone(),
                    });
                } else {
                    return Err(format!("grouped convolution ({group} groups)"));
                }
                if let Some(b) = bias {
                    self.slice(&b, 0, &y, 1);
                }
                Ok(())
            }
            "Gemm" => {
                if node.int_attr("transA", 0) != 0 {
                    return Err("transposed A".into());
                }
                let w = input(1).ok_or("no weight")?;
                if !is_init(&w) || rank(&x) != 2 {
                    return Err("B is not an initializer or A is not a matrix".into());
                }
                let (k_axis, n_axis) = if node.int_attr("transB", 0) != 0 {
                    (1, 0)
                } else {
                    (0, 1)
                };
                self.sources.push(Source {
                    node: ix,
                    value: y.clone(),
                    weight: w.clone(),
                    axis: n_axis,
                });
                self.consumers.push(Consumer {
                    node: ix,
                    value: x.clone(),
                    weight: w.clone(),
                    axis: k_axis,
                });
                self.slice(&w, k_axis, &x, 1);
                self.slice(&w, n_axis, &y, 1);
                if let Some(c) = input(2) {
                    let t = graph.constant(&c).ok_or("C is not a constant")?;
                    let n = self.span(&y).ok_or("unknown output shape")?.count;
                    match t.shape() {
                        [len] if *len == n => self.slice(&c, 0, &y, 1),
                        [1, len] if *len == n => self.slice(&c, 1, &y, 1),
                        s if s.iter().product::<usize>() == 1 => {}
                        _ => return Err("C broadcasts in a way not followed".into()),
                    }
                    if !is_init(&c) {
                        return Err("C is not an initializer".into());
                    }
                }
                Ok(())
            }
            "BatchNormalization" | "InstanceNormalization" => {
                self.tie(&x, &y, 0, 1)?;
                for k in 1..node.inputs.len().min(5) {
                    let p = input(k).ok_or("missing parameter")?;
                    if !is_init(&p) {
                        return Err("a parameter is not an initializer".into());
                    }
                    self.slice(&p, 0, &y, 1);
                }
                Ok(())
            }
            "PRelu" => {
                self.tie(&x, &y, 0, 1)?;
                self.broadcast_param(model, facts, &input(1).ok_or("no slope")?, &y)
            }
            _ if ELEMENTWISE.contains(&op) => {
                for k in 0..node.inputs.len() {
                    let Some(v) = input(k) else { continue };
                    if self.spans.contains_key(&v) && rank(&v) == rank(&y) {
                        let (a, b) = (self.span(&v).unwrap(), self.span(&y).unwrap());
                        if a.count == b.count {
                            self.tie(&v, &y, 0, 1)?;
                        } else if a.count != 1 {
                            return Err(format!("input `{v}` broadcasts over channels"));
                        }
                    } else {
                        self.broadcast_param(model, facts, &v, &y)?;
                    }
                }
                Ok(())
            }
            "Concat" | "Split" => {
                let r = rank(&y).max(rank(&x)) as i64;
                let mut axis = node.int_attr("axis", 0);
                if axis < 0 {
                    axis += r;
                }
                if axis != 1 {
                    // Channels pass straight through.
                    let (ins, outs): (Vec<String>, Vec<String>) = if op == "Concat" {
                        (node.present_inputs().map(String::from).collect(), vec![y])
                    } else {
                        (vec![x], node.present_outputs().map(String::from).collect())
                    };
                    for a in &ins {
                        for b in &outs {
                            self.tie(a, b, 0, 1)?;
                        }
                    }
                    return Ok(());
                }
                let mut offset = 0;
                if op == "Concat" {
                    for v in node.present_inputs() {
                        if !self.spans.contains_key(v) {
                            return Err(format!("input `{v}` is a constant"));
                        }
                        self.tie(v, &y, offset, 1)?;
                        offset += self.span(v).unwrap().count;
                    }
                } else {
                    for v in node.present_outputs() {
                        self.tie(v, &x, offset, 1)?;
                        offset += self.span(v).ok_or("unknown output shape")?.count;
                    }
                    self.rewrites.push(Rewrite::Split { node: ix });
                }
                Ok(())
            }
            "Slice" => {
                let (starts, ends, axes, steps) = slice_args(model, node)?;
                let r = rank(&x) as i64;
                let count = self.span(&x).ok_or("unknown input shape")?.count as i64;
                let axes: Vec<i64> = match axes {
                    Some(a) => a.iter().map(|&a| if a < 0 { a + r } else { a }).collect(),
                    None => (0..starts.len() as i64).collect(),
                };
                let Some(k) = axes.iter().position(|&a| a == 1) else {
                    return self.tie(&x, &y, 0, 1);
                };
                if steps.as_ref().is_some_and(|s| s[k] != 1) {
                    return Err("a step other than 1 on the channel axis".into());
                }
                let clamp = |v: i64| (if v < 0 { v + count } else { v }).clamp(0, count) as usize;
                let (start, end) = (clamp(starts[k]), clamp(ends[k]));
                self.tie(&y, &x, start, 1)?;
                self.rewrites.push(Rewrite::Slice {
                    node: ix,
                    entry: k,
                    start,
                    end,
                });
                Ok(())
            }
            "Resize" | "Upsample" => {
                self.tie(&x, &y, 0, 1)?;
                // `sizes` (Resize input 3) holds the channel count: a constant
                // is rewritten; computed, it must copy the count from the
                // resized tensor itself.
                match input(3) {
                    Some(sizes) if graph.constant(&sizes).is_some() => {
                        self.rewrites.push(Rewrite::ShapeInput {
                            node: ix,
                            input: 3,
                            block: 1,
                        });
                        Ok(())
                    }
                    Some(sizes) if op == "Resize" && sizes_follow_input(graph, &sizes, &x) => {
                        Ok(())
                    }
                    Some(_) if op == "Resize" => {
                        Err("Resize sizes computed at run time from other tensors".into())
                    }
                    _ => Ok(()),
                }
            }
            "Pad" => {
                let pads: Vec<i64> = match input(1) {
                    Some(p) => ints_of(model, &p).ok_or("pads are not a constant")?,
                    None => node.ints_attr("pads").unwrap_or(&[]).to_vec(),
                };
                let r = rank(&x);
                if pads.len() == 2 * r && (pads[1] != 0 || pads[r + 1] != 0) {
                    return Err("padding on the channel axis".into());
                }
                self.tie(&x, &y, 0, 1)
            }
            "Flatten" => {
                let shape = facts.shape(&x).ok_or("unknown input shape")?;
                if node.int_attr("axis", 1) != 1 {
                    return Err("flattening at an axis other than 1".into());
                }
                let block = shape[2..].iter().product::<usize>();
                self.tie(&x, &y, 0, block)
            }
            "Reshape" => {
                let (si, so) = (
                    facts.shape(&x).ok_or("unknown input shape")?,
                    facts.shape(&y).ok_or("unknown output shape")?,
                );
                if si.len() < 2 {
                    return Err("reshaping a tensor without a channel axis".into());
                }
                if input(1).and_then(|t| graph.constant(&t)).is_none() {
                    return Err("a Reshape whose target shape is computed at run time".into());
                }
                let block = si[2..].iter().product::<usize>();
                if so.len() == 2 && si.len() >= 2 && so[0] == si[0] && so[1] == si[1] * block {
                    self.tie(&x, &y, 0, block)?;
                    self.rewrites.push(Rewrite::ShapeInput {
                        node: ix,
                        input: 1,
                        block,
                    });
                    Ok(())
                } else if si.len() >= 2 && so.len() >= 2 && si[..2] == so[..2] {
                    // Only the spatial axes change.
                    self.tie(&x, &y, 0, 1)?;
                    self.rewrites.push(Rewrite::ShapeInput {
                        node: ix,
                        input: 1,
                        block: 1,
                    });
                    Ok(())
                } else {
                    Err(MOVES_CHANNELS.into())
                }
            }
            "Transpose" => {
                let perm = node.ints_attr("perm").ok_or("no perm")?;
                if perm.get(1) == Some(&1) && perm.first() == Some(&0) {
                    self.tie(&x, &y, 0, 1)
                } else {
                    Err(MOVES_CHANNELS.into())
                }
            }
            _ => Err("channels are not followed through this operator".into()),
        }
    }

    fn slice(&mut self, param: &str, axis: usize, value: &str, block: usize) {
        self.slices.push(ParamSlice {
            param: param.to_string(),
            axis,
            value: value.to_string(),
            block,
        });
    }

    /// An elementwise operand `v` that is not an activation: a constant, or
    /// a value computed from constants only (BiFPN's normalized fusion
    /// weights), broadcast against `y`, per channel (sliced with it) or not.
    fn broadcast_param(
        &mut self,
        model: &Model,
        facts: &Facts,
        v: &str,
        y: &str,
    ) -> Result<(), String> {
        let shape: Vec<usize> = match model.graph.constant(v) {
            Some(t) => t.shape().to_vec(),
            None => facts.shape(v).map(<[usize]>::to_vec).ok_or_else(|| {
                format!("operand `{v}` is neither a tracked activation nor a constant")
            })?,
        };
        let out_rank = facts
            .shape(y)
            .map(<[usize]>::len)
            .ok_or("unknown output shape")?;
        let count = self.span(y).ok_or("unknown output shape")?.count;
        // Right-aligned broadcasting: the operand's axis facing channel axis 1.
        let Some(axis) = (shape.len() + 1).checked_sub(out_rank) else {
            return Ok(()); // too short to reach the channel axis
        };
        match shape[axis] {
            1 => Ok(()),
            n if n == count => {
                if !model.graph.initializers.iter().any(|i| i.name == v) {
                    return Err(format!("per-channel operand `{v}` is not an initializer"));
                }
                self.slice(v, axis, y, 1);
                Ok(())
            }
            n => Err(format!("operand `{v}` has {n} entries on the channel axis")),
        }
    }
}

/// Why a node's channels could not be followed.
enum Blocked {
    /// An operator or a use of one this module does not understand: warned.
    Unknown(String),
    /// A layout change that gives channels a fixed meaning (the head's
    /// prediction layout) or shuffles them: understood, not prunable.
    Layout(String),
}

/// A layout change: the head's prediction layout, or a channel shuffle.
const MOVES_CHANNELS: &str = "moves channels off axis 1 (a prediction layout or a channel shuffle)";

/// Whether a computed `Resize` `sizes` value takes its first two entries
/// (batch and channels) from the shape of the resized tensor `x`, as
/// PyTorch exports `F.interpolate(x, size=...)`:
/// `Concat(Slice(Shape(x), 0, 2), target)`, casts allowed.
fn sizes_follow_input(graph: &edgewise_graph::Graph, sizes: &str, x: &str) -> bool {
    let producers = graph.producers();
    let through_casts = |value: &str| -> Option<&Node> {
        let mut node = &graph.nodes[*producers.get(value)?];
        while node.op_type == "Cast" {
            node = &graph.nodes[*producers.get(node.inputs.first()?)?];
        }
        Some(node)
    };
    let Some(concat) = through_casts(sizes).filter(|n| n.op_type == "Concat") else {
        return false;
    };
    let Some(slice) = concat.inputs.first().and_then(|v| through_casts(v)) else {
        return false;
    };
    let from_shape_of_x = slice.op_type == "Slice"
        && through_casts(&slice.inputs[0])
            .is_some_and(|s| s.op_type == "Shape" && s.inputs[0] == x);
    let constant = |k: usize| {
        slice
            .inputs
            .get(k)
            .and_then(|v| graph.constant(v))
            .and_then(|t| t.cast_to::<i64>().ok().map(|t| t.into_owned()))
            .and_then(|t| edgewise_graph::tensor::values::<i64>(&t).map(<[i64]>::to_vec))
    };
    from_shape_of_x && constant(1) == Some(vec![0]) && constant(2).is_some_and(|e| e[0] >= 2)
}

/// The integers of a constant input.
pub(crate) fn ints_of(model: &Model, name: &str) -> Option<Vec<i64>> {
    let t = model.graph.constant(name)?;
    let t = t.cast_to::<i64>().ok()?;
    Some(edgewise_graph::tensor::values::<i64>(&t)?.to_vec())
}

type SliceArgs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);

/// `Slice`'s starts, ends, axes and steps, from inputs (opset 10 on) or
/// attributes.
pub(crate) fn slice_args(model: &Model, node: &Node) -> Result<SliceArgs, String> {
    if node.inputs.len() >= 3 {
        let get = |k: usize| -> Result<Option<Vec<i64>>, String> {
            match node.inputs.get(k).filter(|s| !s.is_empty()) {
                Some(name) => ints_of(model, name)
                    .map(Some)
                    .ok_or_else(|| format!("input {k} is not a constant")),
                None => Ok(None),
            }
        };
        Ok((
            get(1)?.ok_or("no starts")?,
            get(2)?.ok_or("no ends")?,
            get(3)?,
            get(4)?,
        ))
    } else {
        let attr = |n: &str| match node.attribute(n) {
            Some(AttributeValue::Ints(v)) => Some(v.clone()),
            _ => None,
        };
        Ok((
            attr("starts").ok_or("no starts")?,
            attr("ends").ok_or("no ends")?,
            attr("axes"),
            None,
        ))
    }
}
