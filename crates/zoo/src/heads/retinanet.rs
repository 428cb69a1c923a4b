//! RetinaNet's head (Lin et al., 2017), as torchvision builds it: a class
//! subnet and a box subnet of four 3x3 convolutions with ReLU, shared across
//! levels, predicting 9 anchors per location.

use super::{CLASS_PRIOR_BIAS, Head, HeadOutput, anchor_outputs};
use crate::net::{Act, Feature, Net, Pad};

/// RetinaNet head.
pub struct RetinaNet;

/// Anchors per location: 3 scales by 3 aspect ratios.
const ANCHORS: usize = 9;

/// `depth` 3x3 conv + ReLU layers of `hidden` channels, then a 3x3
/// predictor of `out` channels whose biases are `bias`, shared across
/// levels. Maps of another width (no neck: the backbone's own) get a first
/// layer of their own to `hidden`.
pub(crate) fn subnet(
    net: &mut Net,
    maps: &[Feature],
    hidden: usize,
    out: usize,
    depth: usize,
    bias: f32,
) -> Vec<Feature> {
    let first_shared = maps
        .iter()
        .all(|m| m.channels == hidden)
        .then(|| net.shared_conv(hidden, hidden, 3, 1, true));
    let rest: Vec<_> = (1..depth)
        .map(|_| net.shared_conv(hidden, hidden, 3, 1, true))
        .collect();
    let predictor = net.prediction_layers(bias, |net| net.shared_conv(hidden, out, 3, 1, true));
    maps.iter()
        .map(|m| {
            let y = match &first_shared {
                Some(w) => net.conv_shared(m, w),
                None => net.conv(m, hidden, 3, 1, 1, true, Pad::Symmetric),
            };
            let mut x = net.act(&y, Act::Relu);
            for layer in &rest {
                let y = net.conv_shared(&x, layer);
                x = net.act(&y, Act::Relu);
            }
            net.conv_shared(&x, &predictor)
        })
        .collect()
}

impl Head for RetinaNet {
    fn levels(&self) -> usize {
        5
    }

    fn build(&self, net: &mut Net, maps: &[Feature], classes: usize, width: usize) -> HeadOutput {
        let cls = subnet(net, maps, width, ANCHORS * classes, 4, CLASS_PRIOR_BIAS);
        let reg = subnet(net, maps, width, ANCHORS * 4, 4, 0.0);
        anchor_outputs(net, maps, &cls, &reg, classes)
    }
}
