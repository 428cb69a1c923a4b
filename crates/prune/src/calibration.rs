//! Running models on calibration inputs: what the data-driven importance
//! and recovery read.

use edgewise_graph::Model;
use edgewise_graph::tract_onnx::prelude::*;

use crate::error::PruneError;

/// Receives one calibration input's values: its index and the tensors.
pub type Sink<'a> = dyn FnMut(usize, &[Tensor]) -> Result<(), PruneError> + 'a;

/// Runs models on the calibration inputs.
pub trait Calibration {
    /// Number of calibration inputs.
    fn len(&self) -> usize;

    /// Whether there are no calibration inputs.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Told once how many times [`Calibration::run`] will be called (for a
    /// progress bar).
    fn expect_passes(&mut self, _passes: usize) {}

    /// Runs `model` with its outputs replaced by `values`
    /// ([`Model::with_outputs`]) on every calibration input, and hands those
    /// values, in that order, to `sink` with the input's index.
    fn run(&mut self, model: &Model, values: &[String], sink: &mut Sink) -> Result<(), PruneError>;
}

/// The f32 values of an activation.
pub(crate) fn f32s(t: &Tensor) -> Result<&[f32], PruneError> {
    edgewise_graph::tensor::values::<f32>(t).ok_or_else(|| {
        PruneError::Calibration(format!("an activation is {:?}, not f32", t.datum_type()))
    })
}
