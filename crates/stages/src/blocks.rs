//! What a block of layers looks like from the graph alone: which convolution a
//! map comes from (through normalization, bias and activations), whether a
//! join really merges two computations, where a block closes, and whether a
//! map is the finished output of a block. The head and lateral-path rules of
//! the partition read these (op types, shapes and the `group` attribute only;
//! never names).

use std::collections::{HashMap, HashSet};

use crate::context::{Context, RESAMPLING_OPS};

/// Operators that compute a new map from learned weights: the start of a
/// block. Element-wise steps after one (normalization, bias, activation,
/// self-gating) belong to its block.
pub const CONV_LIKE: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "Gemm",
    "MatMul",
];

/// Block structure of a graph, for one [`Context`].
pub struct Blocks<'c, 'a> {
    ctx: &'c Context<'a>,
    /// For each value, the node its computation comes from: the convolution
    /// it was computed from through single-map steps, or the join where maps
    /// from different convolutions meet.
    source: HashMap<&'a str, Option<usize>>,
}

impl<'c, 'a> Blocks<'c, 'a> {
    /// Indexes the sources of every value of `ctx`'s graph.
    pub fn new(ctx: &'c Context<'a>) -> Blocks<'c, 'a> {
        let mut source: HashMap<&'a str, Option<usize>> = HashMap::new();
        for n in ctx.data_nodes() {
            let from = if CONV_LIKE.contains(&ctx.op(n)) {
                Some(n)
            } else {
                let inputs = spatial_inputs(ctx, n);
                let of = |v: &str| source.get(v).copied().flatten();
                match inputs.as_slice() {
                    [one] => of(one),
                    _ => {
                        // Several maps of one source meet in self-gating
                        // (x·sigmoid(x), hard-swish): still that source.
                        let mut sources: Vec<Option<usize>> =
                            inputs.iter().map(|v| of(v)).collect();
                        sources.sort_unstable();
                        sources.dedup();
                        match sources.as_slice() {
                            [single] => *single,
                            _ => Some(n),
                        }
                    }
                }
            };
            for out in ctx.outputs(n) {
                source.insert(out, from);
            }
        }
        Blocks { ctx, source }
    }

    /// The convolution (or the join of different ones) that `value` comes from.
    pub fn source(&self, value: &str) -> Option<usize> {
        self.source.get(value).copied().flatten()
    }

    /// A join of two or more maps whose sources differ: a real merge of two
    /// computations (a concat of branches, a residual around a convolution),
    /// unlike self-gating or an SE gate, whose inputs all come from one
    /// convolution.
    pub fn real_join(&self, n: usize) -> bool {
        let inputs = spatial_inputs(self.ctx, n);
        if inputs.len() < 2 {
            return false;
        }
        let first = self.source(inputs[0]);
        inputs[1..].iter().any(|v| self.source(v) != first)
    }

    /// A `Conv` whose groups are its input channels (one filter per channel).
    pub fn is_depthwise(&self, n: usize) -> bool {
        let ctx = self.ctx;
        if ctx.op(n) != "Conv" {
            return false;
        }
        let group = ctx.graph.nodes[n].int_attr("group", 1);
        let channels = ctx.data_inputs[n]
            .first()
            .and_then(|v| ctx.facts.shape(v))
            .filter(|s| s.len() == 4)
            .map(|s| s[1] as i64);
        group > 1 && Some(group) == channels
    }

    /// A convolution that reads a `Concat` of two or more maps, directly or
    /// through at most four single-map element-wise steps: the conv that
    /// closes a block by fusing its branches (Ultralytics C2f/C3k2/C2PSA and
    /// SPPF `cv2`, CSPNet's `conv3`).
    pub fn closes_concat(&self, conv: usize) -> bool {
        let ctx = self.ctx;
        let Some(mut value) = ctx.data_inputs[conv].first().copied() else {
            return false;
        };
        for _ in 0..4 {
            let Some(p) = ctx.producer(value) else {
                return false;
            };
            let inputs = spatial_inputs(ctx, p);
            if ctx.op(p) == "Concat" && inputs.len() >= 2 {
                return true;
            }
            if CONV_LIKE.contains(&ctx.op(p)) || inputs.len() != 1 {
                return false;
            }
            value = inputs[0];
        }
        false
    }

    /// `conv` and the element-wise steps after it within `within`
    /// (normalization, bias, activation), up to the next convolution, join or
    /// resampling.
    pub fn elementwise_tail(&self, conv: usize, within: &HashSet<usize>) -> HashSet<usize> {
        let ctx = self.ctx;
        let mut block = HashSet::from([conv]);
        let mut frontier: Vec<&str> = ctx.outputs(conv).collect();
        while let Some(value) = frontier.pop() {
            for &r in ctx.readers(value) {
                let op = ctx.op(r);
                if within.contains(&r)
                    && !block.contains(&r)
                    && !CONV_LIKE.contains(&op)
                    && !RESAMPLING_OPS.contains(&op)
                    && !self.real_join(r)
                {
                    block.insert(r);
                    frontier.extend(ctx.outputs(r));
                }
            }
        }
        block
    }

    /// Whether `value` is a finished map: produced, through element-wise
    /// steps, by a complete (not depthwise) convolution outside `upstream`
    /// (the backbone and lateral region). A join's output, a backbone or
    /// lateral map, and a depthwise output (half of a separable block) are
    /// not: a convolution reading them still belongs to the neck.
    pub fn digested(&self, value: &str, upstream: &HashSet<usize>) -> bool {
        let ctx = self.ctx;
        let mut value = value;
        for _ in 0..16 {
            let Some(p) = ctx.producer(value) else {
                return false;
            };
            if upstream.contains(&p) {
                return false;
            }
            if CONV_LIKE.contains(&ctx.op(p)) {
                return !self.is_depthwise(p);
            }
            if self.real_join(p) {
                return false;
            }
            let Some(&first) = spatial_inputs(ctx, p).first() else {
                return false;
            };
            value = first;
        }
        false
    }
}

/// The data inputs of `n` that are feature maps.
pub fn spatial_inputs<'a>(ctx: &Context<'a>, n: usize) -> Vec<&'a str> {
    ctx.data_inputs[n]
        .iter()
        .copied()
        .filter(|v| ctx.stride_of(v).is_some())
        .collect()
}
