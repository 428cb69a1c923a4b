//! Path Aggregation Network (PAFPN, Liu et al., 2018): FPN's top-down path,
//! then a bottom-up path of stride-2 convolutions added back in.

use super::Neck;
use super::fpn::top_down;
use crate::net::{Act, Feature, Net};

/// PAFPN.
pub struct Pan;

impl Neck for Pan {
    fn build(
        &self,
        net: &mut Net,
        taps: &[Feature; 3],
        channels: usize,
        _levels: usize,
    ) -> Vec<Feature> {
        let merged = top_down(net, taps, channels);
        let smoothed: Vec<Feature> = merged
            .iter()
            .map(|m| net.conv_bn_act(m, channels, 3, 1, 1, Act::Relu))
            .collect();
        let mut out = vec![smoothed[0].clone()];
        for level in &smoothed[1..] {
            let down =
                net.conv_bn_act(out.last().expect("one level"), channels, 3, 2, 1, Act::Relu);
            let sum = net.add(level, &down);
            out.push(net.conv_bn_act(&sum, channels, 3, 1, 1, Act::Relu));
        }
        out
    }
}
