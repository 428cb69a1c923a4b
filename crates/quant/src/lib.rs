//! Post-training INT8 quantization, the offline half of INT8 (used by
//! `edge-convert quantize`; the board never links it).
//!
//! [`calib`] picks each activation's range from histograms of real images
//! (min/max, percentile, entropy or least squared error, judged through the
//! activation that follows, [`follow`]); [`ptq`] prepares a float model (graph
//! passes from `edgewise_graph::passes`), chooses the convolutions to
//! quantize and writes the model in the portable QDQ form that onnxruntime
//! and TensorRT read. Running such a model as integer is the job of
//! `edgewise-kernels`.

pub mod calib;
pub mod follow;
pub mod ptq;

pub use calib::{Extremes, Histogram, Method};
pub use ptq::{FixedWeights, Plan, Prepared, QuantError, Quantized};
