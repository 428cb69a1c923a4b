//! An editable ONNX model for Edgewise.
//!
//! - [`Model`]: nodes, values, initializers (typed tensors), attributes, opsets
//!   and metadata; loaded with clear errors ([`GraphError`]) and saved back
//!   atomically.
//! - [`Topology`]: producers, consumers and an execution order.
//! - [`Edit`]: drops, replacements, insertions and rewirings of nodes,
//!   applied at once; [`Names`] for new names that clash with none.
//! - [`passes`]: rewrites that keep a model's values (BatchNorm and bias
//!   folding, deconvolutions as convolutions), shared by pruning and
//!   quantization.
//! - [`analysis`]: the type and shape of every value at a fixed input shape,
//!   computed by tract itself.
//! - [`cost`]: parameters, multiply-accumulates and output bytes per node.
//! - [`simd`]: clearing the x86 vector state that tract's kernels leave behind.

pub mod analysis;
pub mod builder;
pub mod conv;
pub mod cost;
pub mod edit;
pub mod error;
pub mod model;
pub mod passes;
pub mod rng;
pub mod simd;
pub mod tensor;
pub mod topology;
pub mod units;

pub use analysis::{Facts, InputShape, ValueFact, analyze};
pub use cost::NodeCost;
pub use edit::{Edit, Names};
pub use error::{GraphError, Result};
pub use model::{
    Attribute, AttributeValue, Dim, Graph, Initializer, Model, Node, Opset, ValueInfo,
};
pub use topology::{Producer, Topology};

/// The tract crates this crate builds on, re-exported so that every crate of the
/// workspace uses the same version.
pub use tract_onnx;
