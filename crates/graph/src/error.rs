//! Errors raised while loading, checking, analysing and saving a model.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Each variant names the thing at
/// fault (file, node, value, input) and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The bytes are not a protobuf-encoded ONNX model (truncated, or another format).
    #[error(
        "{origin} is not a valid ONNX model: {reason}. Is the file complete (not truncated) and really ONNX?"
    )]
    NotOnnx {
        /// The file, or `<memory>`.
        origin: String,
        /// What the decoder found.
        reason: String,
    },

    /// A node reads a value that nothing produces.
    #[error(
        "node `{node}` ({op}) reads value `{value}`, which no node, initializer or graph input produces"
    )]
    DanglingInput {
        /// The reading node.
        node: String,
        /// Its operator.
        op: String,
        /// The missing value.
        value: String,
    },

    /// Two producers write the same value name.
    #[error(
        "value `{value}` is produced twice (by {first} and by {second}); ONNX values are single-assignment"
    )]
    DuplicateValue {
        /// The value written twice.
        value: String,
        /// First producer.
        first: String,
        /// Second producer.
        second: String,
    },

    /// The graph has a cycle, so it has no execution order.
    #[error("the graph has a cycle through node `{node}` ({op}); ONNX graphs must be acyclic")]
    Cycle {
        /// A node on the cycle.
        node: String,
        /// Its operator.
        op: String,
    },

    /// A graph output names a value that nothing produces.
    #[error("graph output `{0}` is not produced by any node, initializer or input")]
    DanglingOutput(String),

    /// An operator the engine (tract) does not implement.
    #[error(
        "operator `{op}`{domain} used by node `{node}` is not supported by the tract engine; replace it, or re-export the model with a different opset"
    )]
    UnsupportedOperator {
        /// The operator type.
        op: String,
        /// The node using it.
        node: String,
        /// ` (domain d)` when not the default domain, else empty.
        domain: String,
    },

    /// A tensor (initializer or constant) could not be decoded.
    #[error("tensor `{name}`: {reason}")]
    BadTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// External data is missing, or its path is unsafe.
    #[error("external data of tensor `{tensor}`: {reason}")]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },

    /// An attribute could not be decoded.
    #[error("attribute `{attribute}` of node `{node}`: {reason}")]
    BadAttribute {
        /// The node.
        node: String,
        /// The attribute.
        attribute: String,
        /// What is wrong.
        reason: String,
    },

    /// A `--input-shape` string could not be parsed.
    #[error(
        "cannot parse input shape `{text}`: {reason} (expected e.g. `1x3x640x640` or `images:1x3x640x640`)"
    )]
    BadShapeSpec {
        /// The text given.
        text: String,
        /// What is wrong.
        reason: String,
    },

    /// A given input shape does not fit the model's declared input.
    #[error("input `{input}` is declared as {declared}, but the shape given is {given}: {reason}")]
    InputShapeMismatch {
        /// The input.
        input: String,
        /// Its declared shape.
        declared: String,
        /// The shape given.
        given: String,
        /// Why they do not fit.
        reason: String,
    },

    /// An input has dynamic dimensions and no shape was given.
    #[error(
        "input `{input}` has dynamic shape {declared}; fix it with --input-shape (e.g. `{example}`)"
    )]
    DynamicInput {
        /// The input.
        input: String,
        /// Its declared shape.
        declared: String,
        /// A suggestion.
        example: String,
    },

    /// A name given by the user does not exist in the model.
    #[error("no input named `{0}` in the model")]
    UnknownInput(String),

    /// tract's analysis failed.
    #[error("shape analysis failed: {0}")]
    Analysis(String),

    /// The model could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
