//! INT8 convolutions tract runs slowly, swapped for [`Int8Conv`] in the
//! typed model before tract optimizes it.
//!
//! tract 0.23.9 turns a quantized convolution into im2col, an i32 matrix
//! product, and then separate full-tensor passes for the zero-point sums
//! and the per-channel requantization (`docs/benchmarks.md`: 5x the FP32
//! time on PP-OCRv4 det). [`install`] replaces each quantized `Conv` whose
//! quantization parameters are constants by one op that folds the zero-point correction into the bias, runs
//! tract-linalg's integer kernel (or a direct loop for depthwise filters)
//! and requantizes in the same pass.

mod conv;
mod dense;
mod depthwise;
mod install;
mod lookup;
mod lut;
mod pack;
mod pairs;
mod quantize;
mod shifted;
mod winograd;

pub use conv::Int8Conv;
pub use install::{Installed, install};
pub use lut::Lut;
pub use quantize::{Dequantize, Quantize};
