//! BiFPN (Tan et al., EfficientDet, 2020): repeated top-down and bottom-up
//! passes with fast normalized weighted fusion, depthwise separable
//! convolutions, and extra levels by max pooling.

use super::Neck;
use crate::net::{Act, Feature, Net, Pad};

/// BiFPN with `repeats` layers (EfficientDet-D0: 3 layers of 64 channels).
pub struct BiFpn {
    /// BiFPN layers.
    pub repeats: usize,
}

/// Swish, depthwise 3x3, pointwise 1x1 with bias, BN: EfficientDet's fusion conv.
fn fusion_conv(net: &mut Net, x: &Feature) -> Feature {
    let a = net.act(x, Act::Swish);
    let d = net.conv(&a, a.channels, 3, 1, a.channels, false, Pad::SameUpper);
    let p = net.conv(&d, a.channels, 1, 1, 1, true, Pad::Valid);
    net.bn(&p, 1.0)
}

fn down(net: &mut Net, x: &Feature) -> Feature {
    net.max_pool(x, 3, 2, Pad::SameUpper)
}

fn layer(net: &mut Net, p: &[Feature]) -> Vec<Feature> {
    let n = p.len();
    // Top-down: each level fused with the upsampled level above.
    let mut td = vec![p[n - 1].clone()];
    for i in (0..n - 1).rev() {
        let up = net.resize_like(&td[0], &p[i]);
        let fused = net.weighted_sum(&[&p[i], &up]);
        td.insert(0, fusion_conv(net, &fused));
    }
    // Bottom-up: input, top-down result and the downsampled level below.
    let mut out = vec![td[0].clone()];
    for i in 1..n {
        let below = down(net, out.last().expect("one level"));
        let fused = if i < n - 1 {
            net.weighted_sum(&[&p[i], &td[i], &below])
        } else {
            net.weighted_sum(&[&p[i], &below])
        };
        out.push(fusion_conv(net, &fused));
    }
    out
}

impl Neck for BiFpn {
    fn build(
        &self,
        net: &mut Net,
        taps: &[Feature; 3],
        channels: usize,
        levels: usize,
    ) -> Vec<Feature> {
        let mut p: Vec<Feature> = taps
            .iter()
            .map(|t| {
                let c = net.conv(t, channels, 1, 1, 1, true, Pad::Valid);
                net.bn(&c, 1.0)
            })
            .collect();
        // P6 from C5 by a 1x1 conv, BN and pooling; P7 and beyond by pooling.
        while p.len() < levels {
            let next = if p.len() == 3 {
                let c = net.conv(&taps[2], channels, 1, 1, 1, true, Pad::Valid);
                let b = net.bn(&c, 1.0);
                down(net, &b)
            } else {
                down(net, p.last().expect("one level"))
            };
            p.push(next);
        }
        for _ in 0..self.repeats {
            p = layer(net, &p);
        }
        p
    }
}
