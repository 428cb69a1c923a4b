//! Necks: cross-scale fusion of the backbone's maps at strides 8, 16 and 32
//! into maps of one width that the head reads.

mod bifpn;
mod fpn;
mod pan;

use crate::net::{Feature, Net};

/// A neck. Its name is its [`REGISTRY`] entry's.
pub trait Neck {
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

/// A registered neck.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The name specs use (`fpn`).
    pub name: &'static str,
    /// Builds it.
    pub make: fn() -> Box<dyn Neck>,
}

/// Every neck, in the order tables list them: the one list to extend.
/// [`NAMES`] and [`by_name`] read it.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "none",
        make: || Box::new(NoNeck),
    },
    Entry {
        name: "fpn",
        make: || Box::new(fpn::Fpn),
    },
    Entry {
        name: "pan",
        make: || Box::new(pan::Pan),
    },
    Entry {
        name: "bifpn",
        make: || Box::new(bifpn::BiFpn { repeats: 3 }),
    },
];

/// Registry names.
pub const NAMES: [&str; REGISTRY.len()] = crate::registry_names!(REGISTRY);

/// The neck `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Neck>> {
    REGISTRY.iter().find(|e| e.name == name).map(|e| (e.make)())
}

/// No fusion: the backbone's taps as they are.
pub struct NoNeck;

impl Neck for NoNeck {
    fn build(&self, _: &mut Net, taps: &[Feature; 3], _: usize, _: usize) -> Vec<Feature> {
        taps.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_under_a_unique_name() {
        let registered: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        crate::check_registry(&registered, &NAMES, |name| by_name(name).is_some());
    }
}
