//! "Is it really INT8?": after tract has optimized a model, the kernel each
//! convolution and matrix product got.
//!
//! Every integer convolution or matrix product ends as an `OptMatMul` whose
//! kernels accumulate in i32 (`avx512vnni_mmm_i32_8x8`,
//! `arm64simd_mmm_i32_8x8_dot`...); float ones as an `OptMatMul` with f32
//! kernels or as one of tract's direct convolutions (depthwise, blocked,
//! spatial), which exist in float only. Our own [`Int8Conv`] is integer
//! by construction, our [`F32Conv`] float.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;

use crate::fp32::F32Conv;
use crate::int8::Int8Conv;

/// The arithmetic a kernel runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 8-bit operands, 32-bit accumulation.
    Integer,
    /// Floating point, 32-bit.
    Float,
    /// Floating point, 16-bit (`--precision f16`).
    Half,
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
            // On x86 tract multiplies f16 tensors with f32 kernels (it
            // widens them as it packs): the node is still f16 work.
            let half = node.outputs[0].fact.datum_type == DatumType::F16;
            let precision = match op.mmm.iter().map(|k| k.internal_type()).next() {
                Some(DatumType::I32) => Precision::Integer,
                Some(DatumType::F16) => Precision::Half,
                _ if half => Precision::Half,
                _ => Precision::Float,
            };
            uses.push(KernelUse {
                node: node.name.clone(),
                op: "OptMatMul".into(),
                precision,
                kernels: op.mmm.iter().map(|k| k.name().to_string()).collect(),
            });
        } else if let Some(op) = node.op_as::<Int8Conv>() {
            uses.push(KernelUse {
                node: node.name.clone(),
                op: "Int8Conv".into(),
                precision: Precision::Integer,
                kernels: vec![op.kernel_name()],
            });
        } else if let Some(op) = node.op_as::<F32Conv>() {
            uses.push(KernelUse {
                node: node.name.clone(),
                op: "F32Conv".into(),
                precision: Precision::Float,
                kernels: vec![op.kernel_name()],
            });
        } else if DIRECT_CONVS.contains(&node.op.name().as_ref()) {
            let half = node.outputs[0].fact.datum_type == DatumType::F16;
            uses.push(KernelUse {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                precision: if half {
                    Precision::Half
                } else {
                    Precision::Float
                },
                kernels: vec![],
            });
        }
    }
    uses
}
