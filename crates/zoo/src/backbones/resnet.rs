//! ResNet-18 and ResNet-50 (He et al., 2016), as torchvision builds them
//! (v1.5: the bottleneck's stride on its 3x3 convolution).

use super::Backbone;
use crate::net::{Act, Feature, Net, Pad};

/// A ResNet.
pub struct ResNet {
    /// Blocks per stage.
    layers: [usize; 4],
    /// Bottleneck blocks (expansion 4) rather than basic ones.
    bottleneck: bool,
}

impl ResNet {
    /// ResNet-18: basic blocks, [2, 2, 2, 2].
    pub fn resnet18() -> ResNet {
        ResNet {
            layers: [2, 2, 2, 2],
            bottleneck: false,
        }
    }

    /// ResNet-50: bottlenecks, [3, 4, 6, 3].
    pub fn resnet50() -> ResNet {
        ResNet {
            layers: [3, 4, 6, 3],
            bottleneck: true,
        }
    }
}

fn conv_bn(net: &mut Net, x: &Feature, out: usize, k: usize, stride: usize, gamma: f32) -> Feature {
    let c = net.conv(x, out, k, stride, 1, false, Pad::Symmetric);
    net.bn(&c, gamma)
}

fn block(net: &mut Net, x: &Feature, planes: usize, stride: usize, bottleneck: bool) -> Feature {
    let out = if bottleneck { planes * 4 } else { planes };
    let shortcut = if stride != 1 || x.channels != out {
        conv_bn(net, x, out, 1, stride, 1.0)
    } else {
        x.clone()
    };
    let y = if bottleneck {
        let a = conv_bn(net, x, planes, 1, 1, 1.0);
        let a = net.act(&a, Act::Relu);
        let b = conv_bn(net, &a, planes, 3, stride, 1.0);
        let b = net.act(&b, Act::Relu);
        conv_bn(net, &b, out, 1, 1, 0.3)
    } else {
        let a = conv_bn(net, x, planes, 3, stride, 1.0);
        let a = net.act(&a, Act::Relu);
        conv_bn(net, &a, out, 3, 1, 0.3)
    };
    let sum = net.add(&y, &shortcut);
    net.act(&sum, Act::Relu)
}

impl Backbone for ResNet {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let x = conv_bn(net, image, 64, 7, 2, 1.0);
        let x = net.act(&x, Act::Relu);
        let mut x = net.max_pool(&x, 3, 2, Pad::Symmetric);
        let mut taps = vec![];
        for (i, &n) in self.layers.iter().enumerate() {
            let planes = 64 << i;
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                x = block(net, &x, planes, stride, self.bottleneck);
            }
            taps.push(x.clone());
        }
        [
            taps[0].clone(),
            taps[1].clone(),
            taps[2].clone(),
            taps[3].clone(),
        ]
    }
}
