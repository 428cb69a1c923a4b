//! Backbones: the feature extractors. Each builds its trunk on an image and
//! returns its maps at strides 4, 8, 16 and 32 (the taps necks and heads
//! read), and knows the classification top its published parameter count
//! includes.

mod efficientnet_lite;
mod mobilenet_v2;
mod mobilenet_v3;
mod resnet;
mod shufflenet_v2;
mod vgg;
mod xception;

use crate::net::{Feature, Net};

/// A feature extractor.
pub trait Backbone {
    /// The registry name (`mobilenet_v2`).
    fn name(&self) -> &'static str;

    /// Builds the trunk on `image`; returns the maps at strides 4, 8, 16 and 32.
    fn build(&self, net: &mut Net, image: &Feature) -> [Feature; 4];

    /// The classification top its published counts include: global average
    /// pooling and one linear layer, unless the family has more.
    fn classifier(&self, net: &mut Net, last: &Feature, classes: usize) -> Feature {
        let pooled = net.global_avg_pool(last);
        net.linear(&pooled, classes)
    }

    /// The input size the family was published at.
    fn native_size(&self) -> usize {
        224
    }
}

/// Registry names, in the order tables list them.
pub const NAMES: [&str; 9] = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_lite0",
    "shufflenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
    "xception",
];

/// Families with a width multiplier.
pub const WIDTH_MULTIPLIED: [&str; 4] = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "shufflenet_v2",
];

/// The backbone `name` at width multiplier `width` (1.0 is the published
/// model); `None` for an unknown name or a width the family lacks.
pub fn by_name(name: &str, width: f32) -> Option<Box<dyn Backbone>> {
    let plain = (width - 1.0).abs() < 1e-6;
    Some(match name {
        "mobilenet_v2" => Box::new(mobilenet_v2::MobileNetV2 { width }),
        "mobilenet_v3_small" => Box::new(mobilenet_v3::MobileNetV3::small(width)),
        "mobilenet_v3_large" => Box::new(mobilenet_v3::MobileNetV3::large(width)),
        "shufflenet_v2" => Box::new(shufflenet_v2::ShuffleNetV2::new(width)?),
        "efficientnet_lite0" if plain => Box::new(efficientnet_lite::EfficientNetLite0),
        "resnet18" if plain => Box::new(resnet::ResNet::resnet18()),
        "resnet50" if plain => Box::new(resnet::ResNet::resnet50()),
        "vgg16" if plain => Box::new(vgg::Vgg16),
        "xception" if plain => Box::new(xception::Xception),
        _ => return None,
    })
}

/// torchvision's `_make_divisible`: `v` rounded to a multiple of `divisor`,
/// never more than 10% below `v`.
pub fn make_divisible(v: f32, divisor: usize) -> usize {
    let d = divisor as f32;
    let rounded = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (rounded as f32) < 0.9 * v {
        rounded + divisor
    } else {
        rounded
    }
}
