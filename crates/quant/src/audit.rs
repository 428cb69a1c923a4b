//! "Is it really INT8?": after tract has optimized a model, the kernel each
//! convolution and matrix product got.
//!
//! Every integer convolution or matrix product ends as an `OptMatMul` whose
//! kernels accumulate in i32 (`avx512vnni_mmm_i32_8x8`,
//! `arm64simd_mmm_i32_8x8_dot`...); float ones as an `OptMatMul` with f32
//! kernels or as one of tract's direct convolutions (depthwise, blocked,
//! spatial), which exist in float only. Our own [`Int8Conv`] is integer
//! by construction.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;

use crate::kernels::Int8Conv;

/// The arithmetic a kernel runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 8-bit operands, 32-bit accumulation.
    Integer,
    /// Floating point.
    Float,
}

/// One convolution or matrix product of an optimized plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelUse {
    /// The plan node's name (its ONNX node's name, plus tract's suffixes).
    pub node: String,
    /// tract's operator.
    pub op: String,
    /// Integer or float.
    pub precision: Precision,
    /// The matrix kernels it may pick from (empty for direct convolutions).
    pub kernels: Vec<String>,
}

/// tract's convolutions that run without a matrix kernel: float only.
const DIRECT_CONVS: &[&str] = &[
    "DepthWiseConv",
    "DirectSpatialConv",
    "BlockedConv",
    "conv_nhwc",
    "DeconvSum",
    "DepthwiseDeconv",
];

/// Every convolution and matrix product of `plan` with its precision.
pub fn audit(plan: &TypedModel) -> Vec<KernelUse> {
    let mut uses = vec![];
    for node in plan.nodes() {
        if let Some(op) = node.op_as::<OptMatMul>() {
            let integer = op.mmm.iter().any(|k| k.internal_type() == DatumType::I32);
            uses.push(KernelUse {
                node: node.name.clone(),
                op: "OptMatMul".into(),
                precision: if integer {
                    Precision::Integer
                } else {
                    Precision::Float
                },
                kernels: op.mmm.iter().map(|k| k.name().to_string()).collect(),
            });
        } else if let Some(op) = node.op_as::<Int8Conv>() {
            uses.push(KernelUse {
                node: node.name.clone(),
                op: "Int8Conv".into(),
                precision: Precision::Integer,
                kernels: vec![op.kernel_name()],
            });
        } else if DIRECT_CONVS.contains(&node.op.name().as_ref()) {
            uses.push(KernelUse {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                precision: Precision::Float,
                kernels: vec![],
            });
        }
    }
    uses
}
