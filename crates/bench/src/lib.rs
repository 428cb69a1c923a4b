//! `edge-bench`: where a detector's time goes, stage by stage, measured on
//! the machine it runs on.
//!
//! The measuring is `edgewise-measure` (frames timed plain and profiled,
//! plan nodes attributed to stages, statistics, the versioned report); this
//! crate is the command around it: [`render`] turns a report into a
//! terminal table, Markdown, CSV or an HTML page with charts, and [`study`]
//! builds zoo detectors that differ in one part (backbone, neck or head) and
//! lays their measurements out as one swap table.

pub mod render;
pub mod study;
