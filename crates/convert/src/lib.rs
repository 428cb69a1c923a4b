//! `edge-convert`: reads ONNX detectors, finds their backbone, neck and head,
//! and reports what each stage costs; builds detectors from the zoo;
//! quantizes them to INT8 and measures what that cost in fidelity.

pub mod fidelity;
pub mod inspect;
pub mod map;
pub mod photos;
pub mod quantize;
pub mod zoo;
