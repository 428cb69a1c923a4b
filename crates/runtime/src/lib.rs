//! Running detectors: decode and preprocess an image as the model's manifest
//! says ([`preprocess`]), then run the model through tract ([`Engine`]).

pub mod actions;
pub mod detector;
pub mod draw;
pub mod engine;
pub mod error;
pub mod memory;
pub mod preprocess;
pub mod resize;
pub mod selftest;
pub mod source;
pub mod stream;

pub use detector::{Detector, Finisher, Inferred, Preparer, Timing};
pub use engine::{
    Engine, EngineOptions, FloatConv, FloatPrecision, HalfPrecision, QdqMode, QdqRewrite,
};
pub use error::RuntimeError;
pub use preprocess::{Letterbox, Prepared, load_image, preprocess};
pub use source::ModelSource;
