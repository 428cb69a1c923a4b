//! After the fusions: which nodes are the head (the prediction branches and
//! the per-level layers that only serve them) and which are the neck's
//! output layers.

use std::collections::HashSet;

use crate::blocks::{Blocks, CONV_LIKE, spatial_inputs};
use crate::context::Context;
use crate::partition::{STRIDE_TOLERANCE, ancestors, deepest_stride_below, descendants};

/// Within `tail` (what follows or sits beside the fusions), the prediction
/// branches: where a map is read by two or more branches that never meet
/// again before decoding and never make a coarser map (a class and a box
/// branch), those branches are the head, and the layers leading to that map
/// (an FPN's output convolutions, extra levels) are neck, except the plain
/// per-level chain right before the fork ([`head_chain`]). Where no map fans
/// out like this (one prediction chain, as in DBNet), the whole tail is head.
///
/// `upstream` is the backbone and the lateral blocks (everything before the
/// first fusion).
pub fn prediction_branches(
    ctx: &Context,
    blocks: &Blocks,
    tail: &HashSet<usize>,
    in_body: &HashSet<usize>,
    upstream: &HashSet<usize>,
) -> HashSet<usize> {
    let deepest = deepest_stride_below(ctx, in_body, false);
    let maps = map_region(ctx, in_body);
    let mut head: HashSet<usize> = HashSet::new();
    let mut feeds_head: Vec<usize> = Vec::new();
    let mut values: Vec<&str> = in_body.iter().flat_map(|&n| ctx.outputs(n)).collect();
    values.sort_by_key(|v| ctx.producer(v).map(|p| ctx.position[p]));
    for value in values {
        let Some(stride) = ctx.stride_of(value) else {
            continue;
        };
        if ctx.producer(value).is_some_and(|p| head.contains(&p)) {
            continue;
        }
        let branches: Vec<usize> = ctx
            .readers(value)
            .iter()
            .copied()
            .filter(|r| tail.contains(r) && !head.contains(r))
            .filter(|&r| {
                ctx.outputs(r)
                    .filter_map(|o| deepest.get(o))
                    .all(|&d| d <= stride * STRIDE_TOLERANCE)
            })
            .collect();
        if branches.len() < 2 {
            continue;
        }
        let reach: Vec<HashSet<usize>> = branches
            .iter()
            .map(|&r| {
                let mut d = descendants(ctx, &[r], in_body);
                d.insert(r);
                d
            })
            .collect();
        // Whether the branches meet again is asked of the map-making part
        // only: see `map_region`.
        let on_maps: Vec<HashSet<usize>> = reach
            .iter()
            .map(|r| r.intersection(&maps).copied().collect())
            .collect();
        let parted = (0..on_maps.len())
            .any(|i| (i + 1..on_maps.len()).any(|j| on_maps[i].is_disjoint(&on_maps[j])));
        if parted {
            for r in reach {
                head.extend(r.into_iter().filter(|n| tail.contains(n)));
            }
            feeds_head.extend(ctx.producer(value));
        }
    }
    let leads_to_head = ancestors(ctx, &feeds_head, tail);
    let mut result: HashSet<usize> = tail
        .iter()
        .copied()
        .filter(|n| head.contains(n) || !(leads_to_head.contains(n) || feeds_head.contains(n)))
        .collect();
    let forks: Vec<usize> = feeds_head
        .iter()
        .copied()
        .filter(|f| tail.contains(f))
        .collect();
    for &fork in &forks {
        result.extend(head_chain(ctx, blocks, fork, tail, upstream, &forks));
    }
    result
}

/// The nodes that make feature maps: the layers with weights whose output is
/// a map, and everything upstream of them.
///
/// Why: two prediction branches count as parted when they never meet again
/// *here*. Older Ultralytics exports (YOLOv8 `Detect.forward`,
/// `torch.cat((cv2[i](x), cv3[i](x)), 1)` per level) rejoin the box and class
/// branches in a `Concat` and then only reshape and decode (DFL, whose
/// rank-4 values are not maps); that rejoin is output packing, not a merge,
/// and lies outside this region. A real merge inside a head (a residual, an
/// SSH-style concat) is followed by a map-making convolution, so it lies
/// inside and still joins the branches.
fn map_region(ctx: &Context, in_body: &HashSet<usize>) -> HashSet<usize> {
    let map_layers: Vec<usize> = in_body
        .iter()
        .copied()
        .filter(|&n| ctx.layer[n] && ctx.node_stride(n).is_some())
        .collect();
    let mut maps = ancestors(ctx, &map_layers, in_body);
    maps.extend(map_layers);
    maps
}

/// The head part of the per-level path into `fork` (a map read by parted
/// prediction branches): the plain chain that ends at the fork, without the
/// block that digests the neck's last join or lateral map.
///
/// Why: detection heads often start with per-level layers before the class
/// and box branches part, and those are head, not neck: YOLOX's `stems`
/// (`yolox/models/yolo_head.py`, a 1×1 conv per level before `cls_convs` and
/// `reg_convs`) and SCRFD's shared `stacked_convs` tower
/// (`mmdet/models/dense_heads/scrfd_head.py` with `cls_reg_share`). Walking up
/// from the fork, the chain stops
/// * at a node another fork also depends on (a level shared with a deeper
///   one: RetinaNet's P6 → P7, the SSDLite extra blocks);
/// * at a real join ([`Blocks::real_join`]): that is the neck's own block,
///   as the C3 after YOLOX-PAFPN's last concat, RetinaFace's SSH concat;
/// * where the stride changes: making a level is the neck's work.
///
/// If the chain's first convolution reads a value that no complete block has
/// produced yet (a join, a lateral map, a depthwise half), that convolution
/// and its element-wise tail (plus the pointwise half after a depthwise one)
/// close the neck's last block and stay neck: mmdet PAFPN's `pafpn_convs`
/// after the bottom-up adds, BiFPN's separable conv after the weighted
/// fusion. The head part starts at the next convolution.
fn head_chain(
    ctx: &Context,
    blocks: &Blocks,
    fork: usize,
    tail: &HashSet<usize>,
    upstream: &HashSet<usize>,
    forks: &[usize],
) -> HashSet<usize> {
    let Some(stride) = ctx.node_stride(fork) else {
        return HashSet::new();
    };
    let same = |s: Option<f32>| s.is_some_and(|s| (s - stride).abs() <= 0.01 * stride);
    let mut region = ancestors(ctx, &[fork], tail);
    region.insert(fork);
    let mut shared: HashSet<usize> = HashSet::new();
    for &other in forks.iter().filter(|&&g| g != fork) {
        shared.extend(ancestors(ctx, &[other], tail));
        shared.insert(other);
    }

    let mut chain: HashSet<usize> = HashSet::new();
    let mut n = fork;
    loop {
        if shared.contains(&n) || blocks.real_join(n) {
            break;
        }
        let inputs = spatial_inputs(ctx, n);
        if !same(ctx.node_stride(n)) || !inputs.iter().all(|v| same(ctx.stride_of(v))) {
            break;
        }
        chain.insert(n);
        let Some(up) = inputs
            .iter()
            .filter_map(|v| ctx.producer(v))
            .find(|p| region.contains(p))
        else {
            break;
        };
        n = up;
    }
    // The side nodes of self-gated activations (the Sigmoid of x·sigmoid(x)).
    let mut side: Vec<usize> = region.iter().copied().collect();
    side.sort_by_key(|&m| ctx.position[m]);
    for m in side {
        let readers: Vec<usize> = ctx
            .outputs(m)
            .flat_map(|o| ctx.readers(o).iter().copied())
            .collect();
        let inputs = spatial_inputs(ctx, m);
        if !chain.contains(&m)
            && !readers.is_empty()
            && readers.iter().all(|r| chain.contains(r))
            && !CONV_LIKE.contains(&ctx.op(m))
            && inputs.len() == 1
            && ctx.producer(inputs[0]).is_some_and(|p| chain.contains(&p))
        {
            chain.insert(m);
        }
    }

    let convs_of = |chain: &HashSet<usize>| -> Vec<usize> {
        let mut convs: Vec<usize> = chain
            .iter()
            .copied()
            .filter(|&m| CONV_LIKE.contains(&ctx.op(m)))
            .collect();
        convs.sort_by_key(|&m| ctx.position[m]);
        convs
    };
    let convs = convs_of(&chain);
    let Some(&first) = convs.first() else {
        return HashSet::new();
    };
    let digested = ctx.data_inputs[first]
        .first()
        .is_some_and(|v| blocks.digested(v, upstream));
    if !digested {
        let mut block = blocks.elementwise_tail(first, &chain);
        if blocks.is_depthwise(first)
            && let Some(&pointwise) = convs.get(1)
        {
            block.extend(blocks.elementwise_tail(pointwise, &chain));
        }
        chain.retain(|m| !block.contains(m));
    }
    // The head part starts at a convolution: element-wise leftovers of the
    // neck's block above it stay neck.
    let Some(&start) = convs_of(&chain).first() else {
        return HashSet::new();
    };
    let mut part = descendants(ctx, &[start], &chain);
    part.insert(start);
    part
}
