//! Which channels go: groups of layers that share channels, the importance
//! of each channel from its filters, and per-stage ratios rounded to what the
//! matrix kernels like.

use std::collections::{HashMap, HashSet};

use edgewise_graph::Model;
use edgewise_graph::tract_onnx::tract_core::ndarray::Axis;

use crate::calibration::{Calibration, f32s};
use crate::error::PruneError;
use crate::groups::ChannelGraph;

/// How a channel's importance is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// Sum of absolute weights of the filter that writes it.
    L1,
    /// Euclidean norm of that filter.
    L2,
    /// What it contributes to the layers that read it, on calibration
    /// inputs: its mean square times the squared norm of their weights
    /// reading it.
    Activation,
}

/// Layers whose output channels are tied together (a residual chain, a
/// convolution and the depthwise layers after it): they lose the same
/// channels.
#[derive(Clone, Debug)]
pub struct Group {
    /// The layers ([`crate::groups::Source`] indices of the [`ChannelGraph`]).
    pub sources: Vec<usize>,
    /// The group's channels, as components, in the first layer's order.
    pub components: Vec<usize>,
    /// Why some of its channels may not go (the first reason), if so.
    pub fixed: Option<String>,
    /// Components that may go.
    pub prunable: Vec<usize>,
}

/// The groups of `channels`, in the order of their first layer.
pub fn groups(channels: &ChannelGraph) -> Vec<Group> {
    let sources = &channels.sources;
    // Union-find over sources: two sources writing into one component.
    let mut parent: Vec<usize> = (0..sources.len()).collect();
    fn find(parent: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while parent[r] != r {
            r = parent[r];
        }
        parent[x] = r;
        r
    }
    let mut owner: HashMap<usize, usize> = HashMap::new();
    let comps: Vec<Vec<usize>> = sources
        .iter()
        .map(|s| channels.components_of(&s.value))
        .collect();
    for (i, cs) in comps.iter().enumerate() {
        for &c in cs {
            match owner.get(&c) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    owner.insert(c, i);
                }
            }
        }
    }
    let mut by_root: Vec<(usize, Vec<usize>)> = vec![];
    for i in 0..sources.len() {
        let r = find(&mut parent, i);
        match by_root.iter_mut().find(|(root, _)| *root == r) {
            Some((_, members)) => members.push(i),
            None => by_root.push((r, vec![i])),
        }
    }
    by_root
        .into_iter()
        .map(|(_, members)| {
            let mut seen = HashSet::new();
            let components: Vec<usize> = members
                .iter()
                .flat_map(|&i| comps[i].iter().copied())
                .filter(|c| seen.insert(*c))
                .collect();
            let fixed = components
                .iter()
                .find_map(|&c| channels.fixed_reason(c).map(String::from));
            let prunable = components
                .iter()
                .copied()
                .filter(|&c| channels.fixed_reason(c).is_none())
                .collect();
            Group {
                sources: members,
                components,
                fixed,
                prunable,
            }
        })
        .collect()
}

/// The importance of every component that some layer writes: the sum over
/// those layers of the channel's filter norm, each divided by the layer's
/// mean filter norm (so that layers of different scales weigh alike).
pub fn importance(
    model: &Model,
    channels: &ChannelGraph,
    criterion: Criterion,
) -> Result<HashMap<usize, f32>, PruneError> {
    let mut score: HashMap<usize, f32> = HashMap::new();
    for s in &channels.sources {
        let norms = filter_norms(model, &s.weight, s.axis, criterion)?;
        let mean = norms.iter().sum::<f32>() / norms.len().max(1) as f32;
        let comps = channels.components_of(&s.value);
        for (c, n) in comps.iter().zip(&norms) {
            *score.entry(*c).or_default() += if mean > 0.0 { n / mean } else { 0.0 };
        }
    }
    Ok(score)
}

/// The data-driven importance of every component that some layer reads:
/// over the layers reading its channels, `E[x²]·‖w‖²`, the mean square of
/// the channel on the calibration inputs times the squared norm of the
/// weights that read it (its share of those layers' output energy, were the
/// channels uncorrelated).
pub fn activation_importance(
    model: &Model,
    channels: &ChannelGraph,
    calibration: &mut dyn Calibration,
) -> Result<HashMap<usize, f32>, PruneError> {
    let mut values: Vec<String> = vec![];
    for c in &channels.consumers {
        if !values.contains(&c.value) && channels.span(&c.value).is_some() {
            values.push(c.value.clone());
        }
    }
    // Per value: the sum over inputs of each channel's mean square.
    let mut squares: Vec<Vec<f64>> = values
        .iter()
        .map(|v| vec![0.0; channels.span(v).map_or(0, |s| s.count)])
        .collect();
    let inputs = calibration.len().max(1) as f64;
    calibration.run(model, &values, &mut |_, tensors| {
        for (t, sums) in tensors.iter().zip(squares.iter_mut()) {
            let x = f32s(t)?;
            let shape = t.shape();
            let (batch, count) = (shape[0], shape.get(1).copied().unwrap_or(1));
            if count != sums.len() {
                return Err(PruneError::Internal(format!(
                    "an activation has {count} channels, {} expected",
                    sums.len()
                )));
            }
            let plane = x.len() / (batch * count).max(1);
            for b in 0..batch {
                for (c, sum) in sums.iter_mut().enumerate() {
                    let at = (b * count + c) * plane;
                    let s: f64 = x[at..at + plane].iter().map(|&v| (v as f64).powi(2)).sum();
                    *sum += s / (plane * batch) as f64;
                }
            }
        }
        Ok(())
    })?;
    let mut score: HashMap<usize, f32> = HashMap::new();
    for consumer in &channels.consumers {
        let Some(k) = values.iter().position(|v| *v == consumer.value) else {
            continue;
        };
        let norms = filter_norms(model, &consumer.weight, consumer.axis, Criterion::L2)?;
        let comps = channels.components_of(&consumer.value);
        for ((c, norm), square) in comps.iter().zip(&norms).zip(&squares[k]) {
            *score.entry(*c).or_default() += (square / inputs * (*norm as f64).powi(2)) as f32;
        }
    }
    Ok(score)
}

/// The norm of every slice of `weight` along `axis`: one per channel.
fn filter_norms(
    model: &Model,
    weight: &str,
    axis: usize,
    criterion: Criterion,
) -> Result<Vec<f32>, PruneError> {
    let unreadable = |e: String| PruneError::Internal(format!("reading weight `{weight}`: {e}"));
    let w = model
        .graph
        .constant(weight)
        .ok_or_else(|| unreadable("not a constant".into()))?;
    let w = w.cast_to::<f32>().map_err(|e| unreadable(e.to_string()))?;
    let view = w
        .to_plain_array_view::<f32>()
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(view
        .axis_iter(Axis(axis))
        .map(|filter| match criterion {
            Criterion::L1 => filter.iter().map(|x| x.abs()).sum(),
            _ => filter.iter().map(|x| x * x).sum::<f32>().sqrt(),
        })
        .collect())
}

/// How many of a group's `total` channels stay at `ratio` removed, rounded
/// to the nearest multiple of `round` (at least one multiple), when only
/// `prunable` of them may go.
pub fn kept_count(total: usize, prunable: usize, ratio: f32, round: usize) -> usize {
    let round = round.max(1);
    let wanted = total - ((total as f32 * ratio.clamp(0.0, 1.0)).floor() as usize).min(total);
    let mut keep = (wanted + round / 2) / round * round;
    keep = keep.clamp(round.min(total), total).max(1);
    let floor = total - prunable;
    while keep < floor {
        keep += round;
    }
    keep.min(total)
}

/// The components to remove: in each group, the least important prunable
/// ones, down to [`kept_count`] at the ratio `ratio_of(group)` gives.
pub fn choose(
    groups: &[Group],
    score: &HashMap<usize, f32>,
    round: usize,
    ratio_of: impl Fn(&Group) -> f32,
) -> HashSet<usize> {
    let mut removed = HashSet::new();
    for g in groups {
        let ratio = ratio_of(g);
        if ratio <= 0.0 || g.prunable.is_empty() {
            continue;
        }
        let total = g.components.len();
        let keep = kept_count(total, g.prunable.len(), ratio, round);
        let mut candidates = g.prunable.clone();
        candidates.sort_by(|a, b| {
            let (sa, sb) = (score.get(a).unwrap_or(&0.0), score.get(b).unwrap_or(&0.0));
            sa.total_cmp(sb).then(a.cmp(b))
        });
        removed.extend(candidates.into_iter().take(total - keep));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_counts_round_up_and_respect_fixed_channels() {
        // 30% of 64 leaves 45: rounded to 48; of 24, 17: rounded to 16.
        assert_eq!(kept_count(64, 64, 0.3, 8), 48);
        assert_eq!(kept_count(24, 24, 0.3, 8), 16);
        assert_eq!(kept_count(64, 64, 0.3, 1), 45);
        // Never below one rounding step, never all channels.
        assert_eq!(kept_count(16, 16, 1.0, 8), 8);
        assert_eq!(kept_count(3, 3, 1.0, 1), 1);
        // Only 10 of 64 may go: 54 at least, rounded to 56.
        assert_eq!(kept_count(64, 10, 0.5, 8), 56);
        assert_eq!(kept_count(64, 64, 0.0, 8), 64);
    }
}
