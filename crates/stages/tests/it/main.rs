//! The stage finder on small detectors built in code (one test binary: each
//! links tract, and each binary costs CI a link).

mod common;
mod synthetic;
mod upstream_rules;
