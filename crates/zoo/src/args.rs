//! The build options as command-line flags, shared by `edge-convert zoo`
//! and `edge-bench study` (feature `cli`: the library needs no clap).

use crate::{Init, Options, ZooError};

/// `--input`, `--classes`, `--neck-channels`, `--seed` and `--init`.
#[derive(Clone, Debug, clap::Args)]
pub struct BuildArgs {
    /// Square input size (a multiple of 32, at least 64).
    #[arg(long, default_value_t = 320)]
    pub input: usize,
    /// Object classes.
    #[arg(long, default_value_t = 80)]
    pub classes: usize,
    /// Channels of the neck's maps and the head's hidden layers.
    #[arg(long, default_value_t = 64)]
    pub neck_channels: usize,
    /// Weight seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight initialisation: kaiming, xavier or normal.
    #[arg(long, default_value = "kaiming")]
    pub init: Init,
}

impl BuildArgs {
    /// The options, refusing zero classes or channels (the input size is
    /// checked when building, after the spec).
    pub fn options(&self) -> Result<Options, ZooError> {
        let options = Options {
            size: self.input,
            classes: self.classes,
            neck_channels: self.neck_channels,
            seed: self.seed,
            init: self.init,
        };
        options.check_counts()?;
        Ok(options)
    }
}
