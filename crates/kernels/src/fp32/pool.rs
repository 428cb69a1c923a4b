//! `MaxPool2d`: a float max pool as two one-dimensional passes (rows, then
//! columns), split over the threads by channel.
//!
//! tract's max pool visits every tap of every window, `kh * kw` reads per
//! output, on one thread: YOLOX's SPP block (5, 9 and 13 wide on 192
//! channels) cost 2.5 ms there. A max over a rectangle is a max over the
//! maxima of its rows, so two passes of `kw` and `kh` reads suffice, and the
//! column pass is a row-by-row maximum that vectorizes.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::cnn::MaxPool;
use edgewise_graph::tract_onnx::tract_core::ops::nn::DataFormat;

use crate::fp32::conv::{split, split_position};
use crate::geometry::valid_range;
use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

/// A 2-D max pool over `planes` planes (batch times channels), NCHW or CHW.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaxPool2d {
    /// Planes: images times channels.
    pub planes: usize,
    /// Input height and width.
    pub input: (usize, usize),
    /// Output height and width.
    pub output: (usize, usize),
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal strides.
    pub stride: (usize, usize),
    /// Rows above and columns left of the input the windows start in.
    pub pad: (usize, usize),
    /// The output's shape (the node's: with or without the batch axis).
    pub shape: Vec<usize>,
}

impl MaxPool2d {
    /// The pool tract's `pool` is on an input of `shape`, if it is one of
    /// these: 2-D, no index output, no dilation, a fixed shape.
    pub fn of(pool: &MaxPool, shape: &[usize]) -> Option<MaxPool2d> {
        let spec = &pool.pool_spec;
        if pool.with_index_outputs.is_some()
            || spec.kernel_shape.len() != 2
            || spec.dilations().iter().any(|&d| d != 1)
        {
            return None;
        }
        let (planes, h, w) = match (spec.data_format, shape) {
            (DataFormat::NCHW, &[n, c, h, w]) => (n * c, h, w),
            (DataFormat::CHW, &[c, h, w]) => (c, h, w),
            _ => return None,
        };
        let padding = spec.computed_padding(&[h, w]);
        let strides = spec.strides();
        let output = (padding[0].convoluted, padding[1].convoluted);
        let mut out_shape = shape.to_vec();
        let rank = out_shape.len();
        out_shape[rank - 2] = output.0;
        out_shape[rank - 1] = output.1;
        Some(MaxPool2d {
            planes,
            input: (h, w),
            output,
            kernel: (spec.kernel_shape[0], spec.kernel_shape[1]),
            stride: (strides[0], strides[1]),
            pad: (padding[0].pad_before, padding[1].pad_before),
            shape: out_shape,
        })
    }

    /// Each tap column's output columns `lo..hi` that land in the input, and
    /// where the input run they read starts in a row split into its phases
    /// (the row itself with no stride).
    fn tap_columns(&self) -> Vec<(usize, usize, usize)> {
        let (w, ow, kw, sw, pl) = (
            self.input.1,
            self.output.1,
            self.kernel.1,
            self.stride.1,
            self.pad.1,
        );
        (0..kw)
            .map(|kx| {
                let (lo, hi) = valid_range(kx, pl, sw, w, ow);
                let first = (lo * sw + kx).saturating_sub(pl);
                (lo, hi, split_position(first, sw, w))
            })
            .filter(|&(lo, hi, _)| lo < hi)
            .collect()
    }

    /// One plane: `x` is `input`, `y` is `output`, `columns` the
    /// [`MaxPool2d::tap_columns`], `rows` a scratch of `input.0 *
    /// output.1`, `phases` one of an input row rounded up to whole strides.
    fn plane(
        &self,
        x: &[f32],
        y: &mut [f32],
        columns: &[(usize, usize, usize)],
        rows: &mut [f32],
        phases: &mut [f32],
    ) {
        let ((h, w), ow) = (self.input, self.output.1);
        let (kh, (sh, sw), pt) = (self.kernel.0, self.stride, self.pad.0);
        // Rows: rows[r][ox] = max of x[r][ox*sw + kx - pl] over the taps in
        // range. With a stride, each input row is split into its phases
        // first, so that every tap reads a run of consecutive values (a
        // vector max) instead of every sw-th one.
        rows.fill(f32::NEG_INFINITY);
        for (src, dst) in x.chunks_exact(w).zip(rows.chunks_exact_mut(ow)) {
            let src = if sw == 1 {
                src
            } else {
                split(src, sw, phases);
                &phases[..]
            };
            for &(lo, hi, start) in columns {
                for (d, &v) in dst[lo..hi].iter_mut().zip(&src[start..]) {
                    *d = max(*d, v);
                }
            }
        }
        // Columns: y[oy] = max of rows[oy*sh + ky - pt] over the rows in range.
        for (oy, out) in y.chunks_exact_mut(ow).enumerate() {
            out.fill(f32::NEG_INFINITY);
            for ky in 0..kh {
                let r = (oy * sh + ky) as isize - pt as isize;
                if r < 0 || r as usize >= h {
                    continue;
                }
                for (o, &v) in out.iter_mut().zip(&rows[r as usize * ow..][..ow]) {
                    *o = max(*o, v);
                }
            }
        }
    }
}

/// The larger of `a` and `b`: one vector instruction.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "MaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}x{} stride {}x{}, {} planes",
            self.kernel.0, self.kernel.1, self.stride.0, self.stride.1, self.planes
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2d {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = numbers::<f32>(&inputs[0])?;
        let ((h, w), (oh, ow)) = (self.input, self.output);
        if x.len() != self.planes * h * w {
            bail!("MaxPool2d: {} input values for {self:?}", x.len());
        }
        let y = new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
            // Every tap an element visit, weighed as element-wise passes are.
            let taps = h * ow * self.kernel.1 + oh * ow * self.kernel.0;
            let work = self.planes * taps * parallel::ELEMENT_WORK;
            let parts = parallel::parts(work, self.planes);
            let columns = self.tap_columns();
            let writer = DisjointWriter::new(y);
            parallel::for_each_part(parts, |p| {
                let mut rows = vec![0f32; h * ow];
                let mut phases = vec![0f32; w.next_multiple_of(self.stride.1)];
                for plane in self.planes * p / parts..self.planes * (p + 1) / parts {
                    // SAFETY: each part writes its own planes.
                    let out = unsafe { writer.range(plane * oh * ow, oh * ow) };
                    let x = &x[plane * h * w..][..h * w];
                    self.plane(x, out, &columns, &mut rows, &mut phases);
                }
                Ok(())
            })
        })?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for MaxPool2d {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

/// Replaces every f32 max pool of `model` that [`MaxPool2d`] runs; returns
/// how many.
pub fn install_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    let candidates: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<MaxPool>())
        .map(|n| n.id)
        .collect();
    let mut count = 0;
    for id in candidates {
        let node = model.node(id);
        let fact = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = fact.shape.as_concrete() else {
            continue;
        };
        if fact.datum_type != f32::datum_type() {
            continue;
        }
        let pool = node.op_as::<MaxPool>().expect("a MaxPool");
        let Some(op) = MaxPool2d::of(pool, shape) else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use edgewise_graph::tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;

    #[test]
    fn matches_tract_on_same_valid_and_strided_pools() {
        let (c, h, w) = (5, 13, 17);
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let x = Tensor::from_shape(&[1, c, h, w], &x).unwrap();
        let cases = [
            (5, 1, PaddingSpec::Explicit(tvec![2, 2], tvec![2, 2])),
            (13, 1, PaddingSpec::Explicit(tvec![6, 6], tvec![6, 6])),
            (3, 2, PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1])),
            (2, 2, PaddingSpec::Valid),
            (3, 2, PaddingSpec::SameUpper),
            (3, 3, PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1])),
            (4, 3, PaddingSpec::Valid),
        ];
        for (k, s, padding) in cases {
            let pool = MaxPool {
                pool_spec: PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec![k, k],
                    padding,
                    dilations: None,
                    strides: Some(tvec![s, s]),
                    input_channels: c,
                    output_channels: c,
                },
                with_index_outputs: None,
            };
            let theirs = pool
                .eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue()))
                .unwrap()
                .remove(0);
            let ours = MaxPool2d::of(&pool, &[1, c, h, w]).unwrap();
            assert_eq!(ours.shape, theirs.shape(), "k {k} s {s}");
            let run = || {
                ours.eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue()))
                    .unwrap()
            };
            let one = run().remove(0);
            let two = multithread_tract_scope(Executor::multithread(2), run).remove(0);
            assert_eq!(
                numbers::<f32>(&one).unwrap(),
                numbers::<f32>(&theirs).unwrap(),
                "k {k} s {s}"
            );
            assert_eq!(numbers::<f32>(&one).unwrap(), numbers::<f32>(&two).unwrap());
        }
    }
}
