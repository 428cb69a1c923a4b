//! `edge-bench`: how long a detector takes, measured where it runs.
//!
//! [`latency`] times the phases a frame goes through (preprocessing in Rust,
//! then inference in tract) over warm-up and measured runs, and reports
//! order statistics ([`stats::Summary`]) with the conditions of the run.

pub mod attribution;
pub mod latency;
pub mod machine;
pub mod stats;
