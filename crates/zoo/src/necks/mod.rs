//! Necks: cross-scale fusion of the backbone's maps at strides 8, 16 and 32
//! into maps of one width that the head reads.

mod bifpn;
mod fpn;
mod pan;

use crate::net::{Feature, Net};

/// A neck.
pub trait Neck {
    /// The registry name (`fpn`).
    fn name(&self) -> &'static str;

    /// Fuses `taps` (strides 8, 16, 32) into maps of `channels` channels at
    /// strides 8, 16, 32. A neck that fuses deeper levels too (BiFPN) makes
    /// all `levels` of them; the others leave the levels beyond 32 to the
    /// head's [`extra_level`](crate::heads::Head::extra_level).
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

/// No fusion: the backbone's taps as they are.
pub struct NoNeck;

impl Neck for NoNeck {
    fn name(&self) -> &'static str {
        "none"
    }

    fn build(&self, _: &mut Net, taps: &[Feature; 3], _: usize, _: usize) -> Vec<Feature> {
        taps.to_vec()
    }
}
