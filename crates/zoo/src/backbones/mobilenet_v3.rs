//! MobileNetV3 Small and Large (Howard et al., 2019), as torchvision builds
//! them: squeeze-excitation with hard-sigmoid gates, hard-swish activations.

use super::{Backbone, make_divisible};
use crate::net::{Act, Feature, Net, Pad};

/// One bottleneck: kernel, expanded channels, output channels, SE, activation, stride.
type Block = (usize, usize, usize, bool, Act, usize);

const RE: Act = Act::Relu;
const HS: Act = Act::HardSwish;

const LARGE: [Block; 15] = [
    (3, 16, 16, false, RE, 1),
    (3, 64, 24, false, RE, 2),
    (3, 72, 24, false, RE, 1),
    (5, 72, 40, true, RE, 2),
    (5, 120, 40, true, RE, 1),
    (5, 120, 40, true, RE, 1),
    (3, 240, 80, false, HS, 2),
    (3, 200, 80, false, HS, 1),
    (3, 184, 80, false, HS, 1),
    (3, 184, 80, false, HS, 1),
    (3, 480, 112, true, HS, 1),
    (3, 672, 112, true, HS, 1),
    (5, 672, 160, true, HS, 2),
    (5, 960, 160, true, HS, 1),
    (5, 960, 160, true, HS, 1),
];

const SMALL: [Block; 11] = [
    (3, 16, 16, true, RE, 2),
    (3, 72, 24, false, RE, 2),
    (3, 88, 24, false, RE, 1),
    (5, 96, 40, true, HS, 2),
    (5, 240, 40, true, HS, 1),
    (5, 240, 40, true, HS, 1),
    (5, 120, 48, true, HS, 1),
    (5, 144, 48, true, HS, 1),
    (5, 288, 96, true, HS, 2),
    (5, 576, 96, true, HS, 1),
    (5, 576, 96, true, HS, 1),
];

/// MobileNetV3 Small or Large at a width multiplier.
pub struct MobileNetV3 {
    blocks: &'static [Block],
    /// Channels of the classifier's hidden layer.
    hidden: usize,
    width: f32,
}

impl MobileNetV3 {
    /// MobileNetV3-Large (5.5 M parameters at width 1).
    pub fn large(width: f32) -> MobileNetV3 {
        MobileNetV3 {
            blocks: &LARGE,
            hidden: 1280,
            width,
        }
    }

    /// MobileNetV3-Small (2.5 M parameters at width 1).
    pub fn small(width: f32) -> MobileNetV3 {
        MobileNetV3 {
            blocks: &SMALL,
            hidden: 1024,
            width,
        }
    }

    fn channels(&self, c: usize) -> usize {
        make_divisible(c as f32 * self.width, 8)
    }
}

fn bottleneck(net: &mut Net, x: &Feature, b: Block, expanded: usize, out: usize) -> Feature {
    let (k, _, _, se, act, stride) = b;
    let mut y = x.clone();
    if expanded != x.channels {
        y = net.conv_bn_act(&y, expanded, 1, 1, 1, act);
    }
    y = net.conv_bn_act(&y, expanded, k, stride, expanded, act);
    if se {
        let squeeze = make_divisible(expanded as f32 / 4.0, 8);
        y = net.squeeze_excite(&y, squeeze, Act::Relu, Act::HardSigmoid);
    }
    let residual = stride == 1 && x.channels == out;
    let p = net.conv(&y, out, 1, 1, 1, false, Pad::Symmetric);
    let p = net.bn(&p, if residual { 0.3 } else { 1.0 });
    if residual { net.add(x, &p) } else { p }
}

impl Backbone for MobileNetV3 {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let mut x = net.conv_bn_act(image, self.channels(16), 3, 2, 1, Act::HardSwish);
        let mut taps: Vec<Feature> = vec![];
        for (i, &b) in self.blocks.iter().enumerate() {
            let (_, exp, out, ..) = b;
            x = bottleneck(net, &x, b, self.channels(exp), self.channels(out));
            // The last map of each stride (the next block downsamples).
            let next_stride = self.blocks.get(i + 1).map_or(2, |n| n.5);
            if next_stride == 2 && (4..=16).contains(&x.stride) {
                taps.push(x.clone());
            }
        }
        let last = 6 * self.channels(self.blocks[self.blocks.len() - 1].2);
        let x = net.conv_bn_act(&x, last, 1, 1, 1, Act::HardSwish);
        [taps[0].clone(), taps[1].clone(), taps[2].clone(), x]
    }

    /// Pooling, a hidden linear layer with hard-swish, then the classes.
    fn classifier(&self, net: &mut Net, last: &Feature, classes: usize) -> Feature {
        let pooled = net.global_avg_pool(last);
        let h = net.linear(&pooled, self.channels(self.hidden));
        let h = net.act(&h, Act::HardSwish);
        net.linear(&h, classes)
    }
}
