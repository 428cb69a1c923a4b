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

/// A feature extractor. Its name is its [`REGISTRY`] entry's.
pub trait Backbone {
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

/// A registered backbone.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The name specs use (`mobilenet_v2`).
    pub name: &'static str,
    /// Whether the family has a width multiplier; the others exist at 1.0 only.
    pub width_multiplied: bool,
    /// Builds it at a width multiplier; `None` for a width the family lacks.
    /// [`by_name`] passes widths other than 1.0 only if `width_multiplied`.
    pub make: fn(f32) -> Option<Box<dyn Backbone>>,
}

/// Every backbone, in the order tables list them: the one list to extend.
/// [`NAMES`], [`WIDTH_MULTIPLIED`] and [`by_name`] read it.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "mobilenet_v2",
        width_multiplied: true,
        make: |width| Some(Box::new(mobilenet_v2::MobileNetV2 { width })),
    },
    Entry {
        name: "mobilenet_v3_small",
        width_multiplied: true,
        make: |width| Some(Box::new(mobilenet_v3::MobileNetV3::small(width))),
    },
    Entry {
        name: "mobilenet_v3_large",
        width_multiplied: true,
        make: |width| Some(Box::new(mobilenet_v3::MobileNetV3::large(width))),
    },
    Entry {
        name: "efficientnet_lite0",
        width_multiplied: false,
        make: |_| Some(Box::new(efficientnet_lite::EfficientNetLite0)),
    },
    Entry {
        name: "shufflenet_v2",
        width_multiplied: true,
        make: |width| Some(Box::new(shufflenet_v2::ShuffleNetV2::new(width)?)),
    },
    Entry {
        name: "resnet18",
        width_multiplied: false,
        make: |_| Some(Box::new(resnet::ResNet::resnet18())),
    },
    Entry {
        name: "resnet50",
        width_multiplied: false,
        make: |_| Some(Box::new(resnet::ResNet::resnet50())),
    },
    Entry {
        name: "vgg16",
        width_multiplied: false,
        make: |_| Some(Box::new(vgg::Vgg16)),
    },
    Entry {
        name: "xception",
        width_multiplied: false,
        make: |_| Some(Box::new(xception::Xception)),
    },
];

/// Registry names, in the order tables list them.
pub const NAMES: [&str; REGISTRY.len()] = crate::registry_names!(REGISTRY);

/// Families with a width multiplier.
pub const WIDTH_MULTIPLIED: [&str; width_multiplied_count()] = {
    let mut names = [""; width_multiplied_count()];
    let (mut i, mut n) = (0, 0);
    while i < REGISTRY.len() {
        if REGISTRY[i].width_multiplied {
            names[n] = REGISTRY[i].name;
            n += 1;
        }
        i += 1;
    }
    names
};

/// How many entries take a width multiplier: the length of [`WIDTH_MULTIPLIED`].
const fn width_multiplied_count() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < REGISTRY.len() {
        if REGISTRY[i].width_multiplied {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The backbone `name` at width multiplier `width` (1.0 is the published
/// model); `None` for an unknown name or a width the family lacks.
pub fn by_name(name: &str, width: f32) -> Option<Box<dyn Backbone>> {
    let entry = REGISTRY.iter().find(|e| e.name == name)?;
    let plain = (width - 1.0).abs() < 1e-6;
    if !plain && !entry.width_multiplied {
        return None;
    }
    (entry.make)(width)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_under_a_unique_name() {
        let registered: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        crate::check_registry(&registered, &NAMES, |name| by_name(name, 1.0).is_some());
        for entry in REGISTRY {
            // 0.5 is a published width of every multiplied family.
            assert_eq!(
                by_name(entry.name, 0.5).is_some(),
                entry.width_multiplied,
                "{} at width 0.5",
                entry.name
            );
        }
        let multiplied: Vec<&str> = REGISTRY
            .iter()
            .filter(|e| e.width_multiplied)
            .map(|e| e.name)
            .collect();
        assert_eq!(WIDTH_MULTIPLIED.to_vec(), multiplied);
    }
}
