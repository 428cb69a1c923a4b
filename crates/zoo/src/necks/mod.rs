//! Necks: cross-scale fusion of the backbone's maps at strides 8, 16 and 32
//! into maps of one width that the head reads.

mod bifpn;
mod fpn;
mod pan;

use crate::net::{Act, Feature, Net};

/// A neck.
pub trait Neck {
    /// The registry name (`fpn`).
    fn name(&self) -> &'static str;

    /// Fuses `taps` (strides 8, 16, 32) into `levels` maps at strides 8,
    /// 16, 32, 64... of `channels` channels (levels beyond the taps are made
    /// by strided convolutions on the deepest one).
    fn build(
        &self,
        net: &mut Net,
        taps: &[Feature; 3],
        channels: usize,
        levels: usize,
    ) -> Vec<Feature>;
}

/// Registry names.
pub const NAMES: [&str; 4] = ["none", "fpn", "pan", "bifpn"];

/// The neck `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Neck>> {
    Some(match name {
        "none" => Box::new(NoNeck),
        "fpn" => Box::new(fpn::Fpn),
        "pan" => Box::new(pan::Pan),
        "bifpn" => Box::new(bifpn::BiFpn { repeats: 3 }),
        _ => return None,
    })
}

/// No fusion: the taps as they are, and extra levels from the deepest.
pub struct NoNeck;

impl Neck for NoNeck {
    fn name(&self) -> &'static str {
        "none"
    }

    fn build(
        &self,
        net: &mut Net,
        taps: &[Feature; 3],
        channels: usize,
        levels: usize,
    ) -> Vec<Feature> {
        let mut out = taps.to_vec();
        extra_levels(net, &mut out, channels, levels);
        out
    }
}

/// Appends stride-2 3x3 convolutions (ReLU between them, as RetinaNet's P6
/// and P7) on the last map until there are `levels` maps.
pub(crate) fn extra_levels(net: &mut Net, maps: &mut Vec<Feature>, channels: usize, levels: usize) {
    while maps.len() < levels {
        let last = maps.last().expect("at least one map");
        let input = if maps.len() > 3 {
            net.act(last, Act::Relu)
        } else {
            last.clone()
        };
        let next = net.conv(&input, channels, 3, 2, 1, true, crate::net::Pad::Symmetric);
        maps.push(next);
    }
}
