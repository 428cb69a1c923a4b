//! Feature Pyramid Network (Lin et al., 2017): 1x1 laterals, a top-down
//! path of upsampling and addition, a 3x3 convolution on each sum.

use super::Neck;
use crate::net::{Feature, Net, Pad};

/// FPN.
pub struct Fpn;

/// Laterals and the top-down path: `P5 = L5`, `P4 = L4 + up(P5)`, `P3 = L3 + up(P4)`.
pub(crate) fn top_down(net: &mut Net, taps: &[Feature; 3], channels: usize) -> Vec<Feature> {
    let laterals: Vec<Feature> = taps
        .iter()
        .map(|t| net.conv(t, channels, 1, 1, 1, true, Pad::Valid))
        .collect();
    let mut merged = vec![laterals[2].clone()];
    for lateral in laterals[..2].iter().rev() {
        let up = net.resize_like(&merged[0], lateral);
        merged.insert(0, net.add(lateral, &up));
    }
    merged
}

impl Neck for Fpn {
    fn build(
        &self,
        net: &mut Net,
        taps: &[Feature; 3],
        channels: usize,
        _levels: usize,
    ) -> Vec<Feature> {
        let merged = top_down(net, taps, channels);
        merged
            .iter()
            .map(|m| net.conv(m, channels, 3, 1, 1, true, Pad::Symmetric))
            .collect()
    }
}
