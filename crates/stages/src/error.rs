//! Errors of the stage finder.

/// Why a partition could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A boundary tensor given by the user does not exist.
    #[error(
        "no value named `{0}` in the model; list the values with `edge-convert inspect --values`"
    )]
    UnknownValue(String),
    /// The user's boundaries contradict each other.
    #[error(
        "node `{node}` is both upstream of a given backbone output and downstream of a given head input; check --backbone-out and --head-in"
    )]
    OverlappingOverrides {
        /// A node in both.
        node: String,
    },
    /// Nothing in the graph has weights.
    #[error(
        "the graph has no layer with weights (Conv, Gemm, MatMul...), so it has no backbone, neck or head"
    )]
    NoLayers,
    /// The model itself could not be read or analysed.
    #[error(transparent)]
    Graph(#[from] edgewise_graph::GraphError),
}
