//! Graph rewrites that keep a model's values and make it simpler to
//! optimize, prune or quantize: reshapes of constants folded into the
//! constant, BatchNormalization and constant bias `Add`s folded into the
//! convolution before them, and deconvolutions whose kernel
//! equals their stride turned into a pointwise `Conv` and a `DepthToSpace`.
//! (`Constant` nodes to initializers is [`Model::constants_to_initializers`].)
//!
//! Each pass returns how many places it changed and leaves the nodes in
//! topological order.

mod batch_norm;
mod bias_add;
mod deconv;
mod opset13;
mod reshaped_constant;

pub use batch_norm::fold_batch_norms;
pub use bias_add::fold_bias_adds;
pub use deconv::deconvs_to_convs;
pub use opset13::raise_opset_to_13;
pub use reshaped_constant::fold_reshaped_initializers;

use crate::error::GraphError;
#[cfg(doc)]
use crate::model::Model;
use crate::model::{AttributeValue, Graph};

pub(crate) use crate::tensor::f32s;

/// A rewritten tensor that tract refused to build.
fn bad_tensor(name: &str, reason: impl std::fmt::Display) -> GraphError {
    GraphError::BadTensor {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Whether node `ix` is a `Relu` or a `Clip` with a lower bound of zero.
pub fn starts_at_zero(g: &Graph, ix: usize) -> bool {
    let node = &g.nodes[ix];
    match node.op_type.as_str() {
        "Relu" => true,
        "Clip" => {
            let min = match node.attribute("min") {
                Some(AttributeValue::Float(m)) => Some(*m),
                _ => node
                    .inputs
                    .get(1)
                    .filter(|m| !m.is_empty())
                    .and_then(|m| g.constant(m))
                    .and_then(|t| f32s(&t))
                    .and_then(|v| v.first().copied()),
            };
            min == Some(0.0)
        }
        _ => false,
    }
}
