//! `edge-convert`: reads ONNX detectors, finds their backbone, neck and head,
//! and reports what each stage costs.

pub mod inspect;
