//! SSDLite (Sandler et al., 2018) after torchvision's
//! `ssdlite320_mobilenet_v3_large`: extra blocks (1x1, 3x3 depthwise stride
//! 2, 1x1, with BN and ReLU6) after the deepest map, and on each of the six
//! maps a depthwise 3x3 + BN + ReLU6 then 1x1 predictor for 6 prior boxes
//! per location; scores are softmax logits with class 0 the background.
//! torchvision reads strides 16 and 32 and adds four blocks; here the
//! head reads every map the neck gives (strides 8, 16, 32) and three extra
//! blocks (strides 64, 128, 256), so that no neck output is left unused.

use super::{Head, HeadOutput, concat_names, flatten_level, toml_list};
use crate::net::{Act, Feature, Net, Pad};

/// SSDLite head.
pub struct SsdLite;

/// Priors per location: two squares and two aspect ratios (2, 3) both ways.
const PRIORS: usize = 6;

/// Output channels of the extra blocks.
const EXTRAS: [usize; 3] = [512, 256, 256];

/// Depthwise 3x3 + BN + ReLU6, then a 1x1 predictor (small weights, zero
/// biases: every class, background included, starts equally likely).
fn predictor(net: &mut Net, x: &Feature, out: usize) -> Feature {
    let d = net.conv_bn_act(x, x.channels, 3, 1, x.channels, Act::Relu6);
    net.prediction_layers(0.0, |net| net.conv(&d, out, 1, 1, 1, true, Pad::Valid))
}

impl Head for SsdLite {
    fn levels(&self) -> usize {
        3 + EXTRAS.len()
    }

    /// An extra block: 1x1 to half the width, depthwise 3x3 stride 2, 1x1.
    fn extra_level(&self, net: &mut Net, maps: &[Feature], _channels: usize) -> Feature {
        let out = EXTRAS[maps.len().saturating_sub(3).min(EXTRAS.len() - 1)];
        let last = maps.last().expect("at least one map");
        let a = net.conv_bn_act(last, out / 2, 1, 1, 1, Act::Relu6);
        let b = net.conv_bn_act(&a, out / 2, 3, 2, out / 2, Act::Relu6);
        net.conv_bn_act(&b, out, 1, 1, 1, Act::Relu6)
    }

    fn build(&self, net: &mut Net, maps: &[Feature], classes: usize, _width: usize) -> HeadOutput {
        let levels = maps;
        let with_background = classes + 1;
        let mut boxes = vec![];
        let mut scores = vec![];
        for level in levels {
            let r = predictor(net, level, PRIORS * 4);
            boxes.push(flatten_level(net, &r, 4));
            let c = predictor(net, level, PRIORS * with_background);
            scores.push(flatten_level(net, &c, with_background));
        }
        let boxes = concat_names(net, &boxes, 1);
        let scores = concat_names(net, &scores, 1);
        let strides: Vec<usize> = levels.iter().map(|l| l.stride).collect();
        HeadOutput {
            outputs: vec![boxes, scores],
            decoder: "ssd",
            params: vec![
                format!("strides = {}", toml_list(&strides)),
                format!(
                    "aspect_ratios = {}",
                    toml_list(&vec!["[2.0, 3.0]"; strides.len()])
                ),
            ],
        }
    }
}
