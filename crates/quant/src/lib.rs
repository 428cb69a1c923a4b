//! INT8 on tract.
//!
//! tract runs an ONNX `QLinearConv` as an i8 x i8 -> i32 matrix product, but
//! the portable QDQ form that quantizers write (`DequantizeLinear -> Conv ->
//! QuantizeLinear`, onnxruntime's `quantize_static`, Ultralytics' INT8
//! export) in float: it folds the weights' `DequantizeLinear` into f32
//! constants. [`qdq`] rewrites those convolutions into `QLinearConv` before
//! tract reads the model; [`audit`] lists, after tract has optimized a model,
//! the kernel every convolution and matrix product got, integer or float.

pub mod audit;
pub mod qdq;

pub use audit::{KernelUse, Precision, audit};
pub use qdq::{Fusion, fuse_qdq_convs};
