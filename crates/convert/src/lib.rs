//! `edge-convert`: reads ONNX detectors, finds their backbone, neck and head,
//! and reports what each stage costs; builds detectors from the zoo.

pub mod inspect;
pub mod zoo;
