//! edge-convert as a user runs it: zoo, inspect, quantize, prune, compare.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod cli;
mod quantize;
