//! Reconstruction on unlabeled photos: the float model is the teacher, and
//! each int8 convolution is refitted to reproduce its outputs.
//!
//! Runs on the host inside `edge-convert quantize --reconstruct-seconds`,
//! never on a board. [`patches`] samples what a convolution reads and should
//! write at a few thousand pixels; [`adaround`] learns its weights' rounding
//! with candle's automatic differentiation and Adam; [`elementwise`] lets
//! the loss go through whatever activation the graph applies next.

pub mod adaround;
pub mod elementwise;
pub mod patches;

pub use adaround::{Layer, Learned, Settings, learn_rounding};
pub use patches::{ConvGeometry, Map, Samples, draw_pixels};

/// Why a reconstruction could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconstructError {
    /// Shapes that do not fit together.
    #[error("reconstruction: {0}")]
    Shape(String),
    /// An error of candle's.
    #[error("reconstruction (candle): {0}")]
    Candle(#[from] candle_core::Error),
}
