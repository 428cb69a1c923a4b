//! Errors of the runtime.

use std::path::PathBuf;

/// What can go wrong running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model could not be read or analysed.
    #[error(transparent)]
    Graph(#[from] edgewise_graph::GraphError),
    /// The outputs do not fit the decoder.
    #[error(transparent)]
    Decode(#[from] edgewise_decode::DecodeError),
    /// The manifest could not be used.
    #[error(transparent)]
    Manifest(#[from] edgewise_manifest::ManifestError),
    /// The model file named on the command line does not exist.
    #[error("model file {} does not exist (give an .onnx file or a manifest from models/)", .0.display())]
    MissingModel(PathBuf),
    /// tract refused or failed the model.
    #[error("tract could not {action}: {message}")]
    Engine {
        /// What was being done (`optimize the model`, `run the model`).
        action: &'static str,
        /// tract's message.
        message: String,
    },
    /// A fixed-shape detector was asked for an engine after it released
    /// its model.
    #[error(
        "no engine for input shape {shape:?}: this fixed-shape detector released its model once it built its engine; set its options (with_qdq_mode, with_precision, with_float_conv) before its first frame, and give it images brought to its fixed size"
    )]
    ModelReleased {
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// The input given has the wrong shape.
    #[error("input {index} has shape {given:?}, but the engine was built for {expected:?}")]
    InputShape {
        /// Which input.
        index: usize,
        /// Shape given.
        given: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// Wrong number of inputs.
    #[error("the model takes {expected} input(s), {given} given")]
    InputCount {
        /// Given.
        given: usize,
        /// Expected.
        expected: usize,
    },
    /// The image file could not be read or decoded.
    #[error("cannot read image {path}: {reason}")]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The image cannot be fed to the model (too small, for instance).
    #[error("image {what}: {reason}")]
    Preprocess {
        /// Which image.
        what: String,
        /// Why.
        reason: String,
    },
}
