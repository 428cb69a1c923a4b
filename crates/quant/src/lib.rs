//! INT8 on tract.
//!
//! [`ptq`] quantizes a float model after training: [`calib`] picks each
//! activation's range from histograms of real images, and the model is
//! written in the portable QDQ form that onnxruntime and TensorRT read.
//!
//! tract runs an ONNX `QLinearConv` as an i8 x i8 -> i32 matrix product, but
//! the portable QDQ form that quantizers write (`DequantizeLinear -> Conv ->
//! QuantizeLinear`, onnxruntime's `quantize_static`, Ultralytics' INT8
//! export) in float: it folds the weights' `DequantizeLinear` into f32
//! constants. [`qdq`] rewrites those convolutions into `QLinearConv` before
//! tract reads the model, and [`kernels`] then replaces tract's quantized
//! convolution (im2col and separate zero-point and requantization passes) by
//! [`Int8Conv`]; [`audit`] lists, after tract has optimized a model, the
//! kernel every convolution and matrix product got, integer or float.
//! [`float`] is the other way to run a QDQ model: every activation
//! quantize/dequantize pair becomes a clip, and the model runs at FP32 speed
//! (still faster than the integer path; `docs/benchmarks.md`).

pub mod audit;
pub mod calib;
pub mod float;
pub mod kernels;
pub mod ptq;
pub mod qdq;

pub use audit::{KernelUse, Precision, audit};
pub use calib::{Extremes, Histogram, Method};
pub use float::{Dequantized, dequantize_activations};
pub use kernels::{Installed, Int8Conv};
pub use ptq::{Plan, Prepared, QuantError, Quantized};
pub use qdq::{Fusion, fuse_qdq_convs};
