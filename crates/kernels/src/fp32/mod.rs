//! Float operators of Edgewise's own, swapped for tract's in the typed
//! model where tract's are slow: [`F32Conv`], dense convolutions that read
//! their input in place with bias and activation fused ([`conv`],
//! [`activation`]); [`AxisSoftmax`], a softmax over an axis that is not the
//! last (a YOLOv8 head's distribution) or over short rows of the last
//! (RetinaFace's two-class scores); and [`PixelShuffle`] for
//! `DepthToSpace` (DBNet's upsampling head once its deconvolution is a
//! convolution); [`MaxPool2d`]; [`AxisMove`] for transposes and
//! [`NearestUpsample2d`] for nearest upsamples; [`Binary`] and [`Unary`] for
//! large element-wise work on every thread. [`install`] puts them in.

pub mod activation;
pub mod conv;
pub mod elementwise;
mod pool;
mod reorder;
mod softmax;
pub mod transpose;

pub use activation::Activation;
pub use conv::{ConvsInstalled, F32Conv, install_convs};
pub use elementwise::{Binary, ElementWiseInstalled, Unary};
pub use pool::MaxPool2d;
pub use reorder::{AxisMove, NearestUpsample2d, ReordersInstalled};
pub use softmax::AxisSoftmax;

pub use crate::shuffle::PixelShuffle;
use crate::shuffle::install_pixel_shuffles;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// What [`install`] replaced.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Installed {
    /// Dense float convolutions now [`F32Conv`], and those left to tract.
    pub convs: ConvsInstalled,
    /// Softmaxes over an axis that is not the last, or over short rows of
    /// the last, now [`AxisSoftmax`].
    pub axis_softmaxes: usize,
    /// Float `DepthToSpace`s now [`PixelShuffle`].
    pub pixel_shuffles: usize,
    /// Float max pools now [`MaxPool2d`].
    pub max_pools: usize,
    /// Float transposes and nearest upsamples now [`AxisMove`] and
    /// [`NearestUpsample2d`].
    pub reorders: ReordersInstalled,
    /// Large float binary operations and activations now [`Binary`] and
    /// [`Unary`].
    pub elementwise: ElementWiseInstalled,
    /// Strided slices and concatenations (of any 1, 2 or 4-byte values)
    /// now [`StridedCopy`](crate::copy::StridedCopy) and
    /// [`Concat`](crate::copy::Concat).
    pub copies: crate::copy::CopiesInstalled,
}

/// Declutters `model` (tract's expansion of `DepthToSpace` takes its final
/// form there, `Silu` is found); with `convs`, what
/// [`conv::install_convs`] did before, folds what follows each [`F32Conv`]
/// into it ([`conv::fuse_into_convs`]); then replaces every f32 softmax
/// over one axis that is not the last (or the last, of at most 16
/// values), on a fixed shape, by an [`AxisSoftmax`], and every CRD
/// `DepthToSpace` by a [`PixelShuffle`].
pub fn install(model: &mut TypedModel, convs: Option<ConvsInstalled>) -> TractResult<Installed> {
    *model = std::mem::take(model).into_decluttered()?;
    let mut report = Installed::default();
    if let Some(mut convs) = convs {
        conv::fuse_into_convs(model, &mut convs)?;
        report.convs = convs;
    }
    report.pixel_shuffles = install_pixel_shuffles(model)?;
    report.max_pools = pool::install_max_pools(model)?;
    report.reorders = reorder::install_reorders(model)?;
    report.elementwise = elementwise::install_elementwise(model)?;
    report.copies = crate::copy::install_copies(model)?;
    let candidates: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Softmax>())
        .map(|n| n.id)
        .collect();
    for id in candidates {
        let node = model.node(id);
        let softmax = node.op_as::<Softmax>().expect("a Softmax");
        let fact = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = fact.shape.as_concrete() else {
            continue;
        };
        let [axis] = softmax.axes[..] else {
            continue;
        };
        if softmax.kind != SoftmaxKind::Softmax
            || softmax.quant_output_dt.is_some()
            || fact.datum_type != f32::datum_type()
            || (axis + 1 >= shape.len() && shape[axis] > softmax::SHORT_ROW)
        {
            continue;
        }
        let op = AxisSoftmax {
            shape: shape.into(),
            axis,
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
        report.axis_softmaxes += 1;
    }
    Ok(report)
}
