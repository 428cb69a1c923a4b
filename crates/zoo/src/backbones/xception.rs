//! Xception (Chollet, 2017), as Keras Applications builds it: valid-padded
//! stem, separable convolutions (depthwise then pointwise, no bias), 1x1
//! strided shortcuts, eight middle-flow blocks; native input 299.

use super::Backbone;
use crate::net::{Act, Feature, Net, Pad};

/// Xception.
pub struct Xception;

fn separable_bn(net: &mut Net, x: &Feature, out: usize, gamma: f32) -> Feature {
    let d = net.conv(x, x.channels, 3, 1, x.channels, false, Pad::SameUpper);
    let p = net.conv(&d, out, 1, 1, 1, false, Pad::Valid);
    net.bn(&p, gamma)
}

/// Entry/exit block: [relu] sep, BN, relu, sep, BN, max pool /2, plus a 1x1 /2 shortcut.
fn down_block(net: &mut Net, x: &Feature, mid: usize, out: usize, relu_first: bool) -> Feature {
    let s = net.conv(x, out, 1, 2, 1, false, Pad::SameUpper);
    let shortcut = net.bn(&s, 1.0);
    let mut y = x.clone();
    if relu_first {
        y = net.act(&y, Act::Relu);
    }
    let y = separable_bn(net, &y, mid, 1.0);
    let y = net.act(&y, Act::Relu);
    let y = separable_bn(net, &y, out, 1.0);
    let y = net.max_pool(&y, 3, 2, Pad::SameUpper);
    net.add(&y, &shortcut)
}

impl Backbone for Xception {
    fn native_size(&self) -> usize {
        299
    }

    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let x = net.conv(image, 32, 3, 2, 1, false, Pad::Valid);
        let x = net.bn(&x, 1.0);
        let x = net.act(&x, Act::Relu);
        let x = net.conv(&x, 64, 3, 1, 1, false, Pad::Valid);
        let x = net.bn(&x, 1.0);
        let x = net.act(&x, Act::Relu);
        let s4 = down_block(net, &x, 128, 128, false);
        let s8 = down_block(net, &s4, 256, 256, true);
        let mut x = down_block(net, &s8, 728, 728, true);
        for _ in 0..8 {
            let mut y = x.clone();
            for i in 0..3 {
                y = net.act(&y, Act::Relu);
                y = separable_bn(net, &y, 728, if i == 2 { 0.3 } else { 1.0 });
            }
            x = net.add(&y, &x);
        }
        let s16 = x.clone();
        let x = down_block(net, &x, 728, 1024, true);
        let x = separable_bn(net, &x, 1536, 1.0);
        let x = net.act(&x, Act::Relu);
        let x = separable_bn(net, &x, 2048, 1.0);
        let s32 = net.act(&x, Act::Relu);
        [s4, s8, s16, s32]
    }
}
