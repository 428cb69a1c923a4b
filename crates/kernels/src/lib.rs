//! Edgewise's own operators for tract: what runs on the board.
//!
//! tract optimizes a model into a plan of its own operators; where one of
//! them is slow for a detector's layers, Edgewise swaps in its own before
//! the plan is built, the way tract's own crates add operators:
//!
//! - [`int8`]: [`Int8Conv`] (quantized convolutions: dense ones on
//!   tract-linalg's integer matrix kernels with the weights packed once,
//!   depthwise ones on a direct loop, zero points and requantization folded
//!   into one pass), [`int8::Quantize`] and [`int8::Dequantize`], 256-entry
//!   tables for element-wise chains ([`int8::Lut`]) and
//!   [`shuffle::PixelShuffle`] (any element size). [`int8::install`] puts them into a typed model.
//! - [`fp32`]: float operators where tract's are slow: [`fp32::F32Conv`],
//!   [`fp32::AxisSoftmax`] (a softmax over an axis that is not the last),
//!   [`fp32::Binary`] and [`fp32::Unary`] (element-wise work on every
//!   thread); [`fp32::install`].
//! - [`copy`]: operators that only move values, on every thread:
//!   [`copy::StridedCopy`] (a strided slice) and [`copy::Concat`].
//! - [`qdq`]: a model in the portable QDQ form (`DequantizeLinear -> Conv ->
//!   QuantizeLinear`, as quantizers write it) rewritten so that its
//!   convolutions reach tract as `QLinearConv`, which [`int8::install`] then
//!   takes. [`float`] is the other way to run a QDQ model: every activation
//!   quantize/dequantize pair becomes a clip, at FP32 speed.
//! - [`audit`]: after tract has optimized a model, the kernel every
//!   convolution and matrix product got, integer or float.
//!
//! Under them: [`geometry`] (the shape of a convolution and the input
//! ranges its taps read), [`unfold`] (im2col, a chunk of pixels at a
//! time), [`constant`] (constant inputs of typed-model nodes), [`round`] (vectorizable float-to-int conversions),
//! [`parallel`] (an operator's work split over the plan's threads) and
//! [`tensor`] (tensors written and read as plain number slices, where
//! the unchecked access lives). Speed figures are in `docs/benchmarks.md`.

pub mod audit;
pub mod constant;
pub mod copy;
pub mod float;
pub mod fp32;
pub mod geometry;
pub mod int8;
pub mod parallel;
pub mod qdq;
pub mod round;
pub mod shuffle;
pub mod tensor;
pub mod unfold;
mod vectorize;

pub use audit::{KernelUse, Precision, audit};
pub use float::{Dequantized, dequantize_activations};
pub use int8::{Installed, Int8Conv};
pub use qdq::{Fusion, fuse_qdq_convs};
