//! Backbone, neck and head: which part of a detector each ONNX node belongs to.
//!
//! The partition is structural: it reads strides from the shapes and finds
//! where feature maps of different scales are fused, so it works on exports
//! whose nodes are named `Conv_12`. Names are never used. Users can override
//! the boundaries with explicit tensors ([`Overrides`]).
//!
//! ```text
//! input ─ pre ─ backbone ──taps──▶ neck (cross-scale fusion) ──▶ head ─ post ─ outputs
//! ```

mod blocks;
mod context;
pub mod error;
mod head;
pub mod partition;
pub mod stage;
pub mod staged;
pub mod summary;

pub use error::StageError;
pub use partition::{Overrides, partition};
pub use stage::{Boundary, Method, Partition, Stage};
pub use staged::StagedModel;
pub use summary::{StageSummary, summarize};
