//! EfficientNet-Lite0 (Google's TPU/edge variant of EfficientNet-B0, 2020):
//! no squeeze-excitation, ReLU6 instead of swish, stem and head kept at 32
//! and 1280 channels. Reference: tensorflow/tpu `efficientnet/lite`, and
//! timm's `tf_efficientnet_lite0` (4.65 M parameters, 0.39 G MACs at 224).

use super::Backbone;
use crate::net::{Act, Feature, Net, Pad};

/// EfficientNet-Lite0.
pub struct EfficientNetLite0;

/// `(repeats, kernel, first stride, expansion, output channels)` per stage.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

fn mbconv(net: &mut Net, x: &Feature, k: usize, stride: usize, e: usize, out: usize) -> Feature {
    let hidden = x.channels * e;
    let mut y = x.clone();
    if e != 1 {
        y = net.conv_bn_act(&y, hidden, 1, 1, 1, Act::Relu6);
    }
    let d = net.conv(&y, hidden, k, stride, hidden, false, Pad::SameUpper);
    let d = net.bn(&d, 1.0);
    y = net.act(&d, Act::Relu6);
    let residual = stride == 1 && x.channels == out;
    let p = net.conv(&y, out, 1, 1, 1, false, Pad::Valid);
    let p = net.bn(&p, if residual { 0.3 } else { 1.0 });
    if residual { net.add(x, &p) } else { p }
}

impl Backbone for EfficientNetLite0 {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let stem = net.conv(image, 32, 3, 2, 1, false, Pad::SameUpper);
        let stem = net.bn(&stem, 1.0);
        let mut x = net.act(&stem, Act::Relu6);
        let mut taps = vec![];
        for (i, &(n, k, s, e, out)) in STAGES.iter().enumerate() {
            for j in 0..n {
                x = mbconv(net, &x, k, if j == 0 { s } else { 1 }, e, out);
            }
            // Stage ends at strides 4 (24), 8 (40), 16 (112).
            if matches!(i, 1 | 2 | 4) {
                taps.push(x.clone());
            }
        }
        let x = net.conv_bn_act(&x, 1280, 1, 1, 1, Act::Relu6);
        [taps[0].clone(), taps[1].clone(), taps[2].clone(), x]
    }
}
