//! EfficientDet's head (Tan et al., 2020): class and box nets of three
//! depthwise separable convolutions shared across levels, with a batch norm
//! of their own on every level, swish, and a separable predictor; 9 anchors
//! per location, read like RetinaNet's.

use super::{CLASS_PRIOR_BIAS, Head, HeadOutput, anchor_outputs};
use crate::net::{Act, Feature, Net, SharedConv};

/// EfficientDet head (D0: 3 layers).
pub struct EfficientDet;

const ANCHORS: usize = 9;
const DEPTH: usize = 3;

/// A separable convolution's two shared parts: depthwise 3x3, pointwise 1x1 with bias.
fn separable(net: &mut Net, c: usize, out: usize) -> (SharedConv, SharedConv) {
    (
        net.shared_conv(c, c, 3, c, false),
        net.shared_conv(c, out, 1, 1, true),
    )
}

/// `DEPTH` separable layers of `hidden` channels shared across levels (a BN
/// per level), then a separable predictor whose biases are `bias`. Maps of
/// another width (no neck) get a first layer of their own to `hidden`.
fn net_on_levels(
    net: &mut Net,
    maps: &[Feature],
    hidden: usize,
    out: usize,
    bias: f32,
) -> Vec<Feature> {
    let first_shared = maps
        .iter()
        .all(|m| m.channels == hidden)
        .then(|| separable(net, hidden, hidden));
    let rest: Vec<_> = (1..DEPTH).map(|_| separable(net, hidden, hidden)).collect();
    let dw = net.shared_conv(hidden, hidden, 3, hidden, false);
    let pw = net.prediction_layers(bias, |net| net.shared_conv(hidden, out, 1, 1, true));
    maps.iter()
        .map(|m| {
            let first = match &first_shared {
                Some(w) => w.clone(),
                None => separable(net, m.channels, hidden),
            };
            let mut x = m.clone();
            for (d, p) in std::iter::once(&first).chain(&rest) {
                let y = net.conv_shared(&x, d);
                let y = net.conv_shared(&y, p);
                let y = net.bn(&y, 1.0);
                x = net.act(&y, Act::Swish);
            }
            let y = net.conv_shared(&x, &dw);
            net.conv_shared(&y, &pw)
        })
        .collect()
}

impl Head for EfficientDet {
    fn levels(&self) -> usize {
        5
    }

    fn build(&self, net: &mut Net, maps: &[Feature], classes: usize, width: usize) -> HeadOutput {
        let cls = net_on_levels(net, maps, width, ANCHORS * classes, CLASS_PRIOR_BIAS);
        let reg = net_on_levels(net, maps, width, ANCHORS * 4, 0.0);
        anchor_outputs(net, maps, &cls, &reg, classes)
    }
}
