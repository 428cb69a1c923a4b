//! edge-bench as a user runs it, and its HTML report in Chromium.
//! (One test binary: every file links tract, and each binary costs CI a link.)

mod cli;
mod html_in_chromium;
