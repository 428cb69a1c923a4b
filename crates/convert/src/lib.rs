//! `edge-convert`: reads ONNX detectors, finds their backbone, neck and head,
//! and reports what each stage costs; builds detectors from the zoo;
//! quantizes them to INT8, prunes them by stage, and measures what that cost
//! in fidelity; searches both for the fastest variant within a budget.

pub mod bias;
pub mod fidelity;
pub mod inspect;
pub mod labels;
pub mod map;
pub mod mixed;
pub mod optimize;
pub mod photos;
pub mod prune;
pub mod quantize;
pub mod reconstruct;
pub mod spread;
pub mod zoo;
