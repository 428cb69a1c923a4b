//! Where a detector's time goes, stage by stage, measured on the machine it
//! runs on: the measuring half of `edge-bench`, which `edge-convert` also
//! uses to time the variants it makes.
//!
//! [`measure`] runs whole frames (preprocessing in Rust, the model in tract,
//! decoding and NMS in Rust) plain and with every plan node timed, several
//! models side by side; [`attribution`] maps plan nodes back to ONNX nodes
//! and so to backbone, neck and head; [`stats`] summarizes the samples;
//! [`machine`] records the conditions (CPU, governor, load, throttling);
//! [`board`] checks the machine against a board profile; [`stream`] runs a detector on a
//! live source or a video; [`report`] is the
//! versioned result (`edgewise.bench/1`). Rendering lives in `edgewise-bench`.

pub mod attribution;
pub mod board;
pub mod machine;
pub mod measure;
pub mod report;
pub mod stats;
pub mod stream;
