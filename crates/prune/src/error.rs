//! What can go wrong while pruning.

use thiserror::Error;

/// A pruning failure.
#[derive(Debug, Error)]
pub enum PruneError {
    /// A ratio list that does not parse.
    #[error(
        "bad --ratio `{text}`: {reason} (write `0.3` for every stage, or `backbone=0.3,neck=0.5,head=0`)"
    )]
    BadRatio {
        /// What was given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Recovery could not run the calibration inputs.
    #[error("recovery: {0}")]
    Calibration(String),
    /// A weight that cannot be read or sliced.
    #[error("cannot prune: {0}")]
    Internal(String),
}
