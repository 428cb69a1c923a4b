//! ShuffleNetV2 (Ma et al., 2018), as torchvision builds it: channel split,
//! two branches, concatenation and channel shuffle.

use super::Backbone;
use crate::net::{Act, Feature, Net, Pad};

/// ShuffleNetV2 at one of its published widths.
pub struct ShuffleNetV2 {
    /// Output channels of the stem, the three stages and the last conv.
    channels: [usize; 5],
}

impl ShuffleNetV2 {
    /// Widths 0.5, 1.0, 1.5 and 2.0 (the published channel tables); `None` otherwise.
    pub fn new(width: f32) -> Option<ShuffleNetV2> {
        let channels = match (width * 10.0).round() as u32 {
            5 => [24, 48, 96, 192, 1024],
            10 => [24, 116, 232, 464, 1024],
            15 => [24, 176, 352, 704, 1024],
            20 => [24, 244, 488, 976, 2048],
            _ => return None,
        };
        Some(ShuffleNetV2 { channels })
    }
}

const REPEATS: [usize; 3] = [4, 8, 4];

fn conv_bn(
    net: &mut Net,
    x: &Feature,
    out: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> Feature {
    let c = net.conv(x, out, k, stride, groups, false, Pad::Symmetric);
    net.bn(&c, 1.0)
}

/// 1x1 conv, BN, ReLU; 3x3 depthwise (stride), BN; 1x1 conv, BN, ReLU.
fn branch(net: &mut Net, x: &Feature, out: usize, stride: usize) -> Feature {
    let a = net.conv_bn_act(x, out, 1, 1, 1, Act::Relu);
    let b = conv_bn(net, &a, out, 3, stride, out);
    net.conv_bn_act(&b, out, 1, 1, 1, Act::Relu)
}

fn unit(net: &mut Net, x: &Feature, out: usize, stride: usize) -> Feature {
    let half = out / 2;
    let joined = if stride == 1 {
        let (keep, work) = net.split_channels(x);
        let worked = branch(net, &work, half, 1);
        net.concat(&[&keep, &worked])
    } else {
        let d = conv_bn(net, x, x.channels, 3, stride, x.channels);
        let left = net.conv_bn_act(&d, half, 1, 1, 1, Act::Relu);
        let right = branch(net, x, half, stride);
        net.concat(&[&left, &right])
    };
    net.channel_shuffle(&joined, 2)
}

impl Backbone for ShuffleNetV2 {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let c = self.channels;
        let stem = net.conv_bn_act(image, c[0], 3, 2, 1, Act::Relu);
        let mut x = net.max_pool(&stem, 3, 2, Pad::Symmetric);
        let s4 = x.clone();
        let mut taps = vec![];
        for (i, &n) in REPEATS.iter().enumerate() {
            for j in 0..n {
                x = unit(net, &x, c[i + 1], if j == 0 { 2 } else { 1 });
            }
            taps.push(x.clone());
        }
        let last = net.conv_bn_act(&x, c[4], 1, 1, 1, Act::Relu);
        [s4, taps[0].clone(), taps[1].clone(), last]
    }
}
