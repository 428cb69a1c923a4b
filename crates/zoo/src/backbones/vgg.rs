//! VGG-16 (Simonyan and Zisserman, 2015), configuration D without batch
//! norm, as torchvision builds it.

use super::Backbone;
use crate::net::{Act, Feature, Net, Pad};

/// VGG-16.
pub struct Vgg16;

/// Convolution widths per stage; each stage ends with a 2x2 max pool.
const STAGES: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

impl Backbone for Vgg16 {
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4] {
        let mut x = image.clone();
        let mut taps = vec![];
        for widths in STAGES {
            for &w in widths {
                let c = net.conv(&x, w, 3, 1, 1, true, Pad::Symmetric);
                x = net.act(&c, Act::Relu);
            }
            x = net.max_pool(&x, 2, 2, Pad::Valid);
            if x.stride >= 4 {
                taps.push(x.clone());
            }
        }
        [
            taps[0].clone(),
            taps[1].clone(),
            taps[2].clone(),
            taps[3].clone(),
        ]
    }

    /// torchvision's classifier: the 7x7x512 map flattened, two 4096-wide
    /// layers with ReLU, then the classes (adaptive pooling to 7x7 is the
    /// identity at 224).
    fn classifier(&self, net: &mut Net, last: &Feature, classes: usize) -> Feature {
        let h = net.linear(last, 4096);
        let h = net.act(&h, Act::Relu);
        let h = net.linear(&h, 4096);
        let h = net.act(&h, Act::Relu);
        net.linear(&h, classes)
    }
}
