//! `edge-bench`: where a detector's time goes, stage by stage, measured on
//! the machine it runs on.
//!
//! [`measure`] runs whole frames (preprocessing in Rust, the model in tract,
//! decoding and NMS in Rust) plain and with every plan node timed;
//! [`attribution`] maps plan nodes back to ONNX nodes and so to backbone,
//! neck and head; [`report`] is the versioned result, and [`render`] turns it
//! into a terminal table, Markdown, CSV or an HTML page with charts.
//! [`study`] builds zoo detectors that differ in one part (backbone, neck or
//! head) and lays their measurements out as one swap table.

pub mod attribution;
pub mod board;
pub mod machine;
pub mod measure;
pub mod render;
pub mod report;
pub mod stats;
pub mod study;
