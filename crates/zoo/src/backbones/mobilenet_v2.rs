//! MobileNetV2 (Sandler et al., 2018), as torchvision builds it.

use super::{Backbone, make_divisible};
use crate::net::{Act, Feature, Net, Pad};

/// MobileNetV2 at a width multiplier.
pub struct MobileNetV2 {
    /// Width multiplier (1.0: 3.5 M parameters).
    pub width: f32,
}

/// `(expansion t, channels c, repeats n, first stride s)` per stage.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection.
fn inverted_residual(net: &mut Net, x: &Feature, out: usize, stride: usize, t: usize) -> Feature {
    let hidden = x.channels * t;
    let mut y = x.clone();
    if t != 1 {
        y = net.conv_bn_act(&y, hidden, 1, 1, 1, Act::Relu6);
    }
    y = net.conv_bn_act(&y, hidden, 3, stride, hidden, Act::Relu6);
    let residual = stride == 1 && x.channels == out;
    let p = net.conv(&y, out, 1, 1, 1, false, Pad::Symmetric);
    // Trained residual branches end with small BN scales; so do these.
    let p = net.bn(&p, if residual { 0.3 } else { 1.0 });
    if residual { net.add(x, &p) } else { p }
}

impl Backbone for MobileNetV2 {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let w = self.width;
        let mut x = net.conv_bn_act(image, make_divisible(32.0 * w, 8), 3, 2, 1, Act::Relu6);
        let mut taps = vec![];
        for (i, &(t, c, n, s)) in STAGES.iter().enumerate() {
            let out = make_divisible(c as f32 * w, 8);
            for j in 0..n {
                x = inverted_residual(net, &x, out, if j == 0 { s } else { 1 }, t);
            }
            // Stage ends at strides 4 (24 ch), 8 (32 ch), 16 (96 ch).
            if matches!(i, 1 | 2 | 4) {
                taps.push(x.clone());
            }
        }
        let last = make_divisible(1280.0 * w.max(1.0), 8);
        let x = net.conv_bn_act(&x, last, 1, 1, 1, Act::Relu6);
        [taps[0].clone(), taps[1].clone(), taps[2].clone(), x]
    }
}
