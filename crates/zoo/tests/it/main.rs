//! The zoo's tests: published backbone counts, every detector built and run, stage boundaries found.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod backbones;
mod detectors;
mod stage_truth;
