//! The shape of a 2-D convolution (NCHW) and the output ranges each kernel
//! tap reads inside the input: what every convolution loop, integer or
//! float, is written against.

use edgewise_graph::tract_onnx::prelude::ShapeFact;
use edgewise_graph::tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use edgewise_graph::tract_onnx::tract_core::ops::nn::DataFormat;

/// The shape of one convolution, NCHW.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_c: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Rows of zero padding above the input.
    pub pad_top: usize,
    /// Columns of zero padding left of the input.
    pub pad_left: usize,
}

impl Geometry {
    /// The geometry of tract's convolution `conv` on an input of `shape`:
    /// 2-D, NCHW (or CHW, as tract writes a batch of one once decluttered)
    /// with OIHW weights, of fixed shape; otherwise why not.
    pub fn of_conv(conv: &Conv, shape: &ShapeFact) -> Result<Geometry, String> {
        let spec = &conv.pool_spec;
        let batched = match spec.data_format {
            DataFormat::NCHW => true,
            DataFormat::CHW => false,
            _ => return Err("its layout is not NCHW or CHW".into()),
        };
        if conv.kernel_fmt != KernelFormat::OIHW {
            return Err("its weights are not OIHW".into());
        }
        if spec.kernel_shape.len() != 2 {
            return Err("it is not 2-D".into());
        }
        let mut shape = shape
            .as_concrete()
            .ok_or("its input shape is not fixed")?
            .to_vec();
        if !batched {
            shape.insert(0, 1);
        }
        let [batch, in_c, in_h, in_w] = shape[..] else {
            return Err(format!("its input has rank {}", shape.len()));
        };
        let padding = spec.computed_padding(&[in_h, in_w]);
        let (strides, dilations) = (spec.strides(), spec.dilations());
        Ok(Geometry {
            batch,
            in_c,
            in_h,
            in_w,
            out_c: spec.output_channels,
            out_h: padding[0].convoluted,
            out_w: padding[1].convoluted,
            kernel_h: spec.kernel_shape[0],
            kernel_w: spec.kernel_shape[1],
            stride_h: strides[0],
            stride_w: strides[1],
            dilation_h: dilations[0],
            dilation_w: dilations[1],
            pad_top: padding[0].pad_before,
            pad_left: padding[1].pad_before,
        })
    }

    /// The output rows that kernel row `ky` reads inside the input.
    pub fn valid_rows(&self, ky: usize) -> (usize, usize) {
        valid_range(
            ky * self.dilation_h,
            self.pad_top,
            self.stride_h,
            self.in_h,
            self.out_h,
        )
    }

    /// For each kernel column, the output columns it reads inside the input.
    pub fn valid_columns(&self) -> Vec<(usize, usize)> {
        (0..self.kernel_w)
            .map(|kx| {
                valid_range(
                    kx * self.dilation_w,
                    self.pad_left,
                    self.stride_w,
                    self.in_w,
                    self.out_w,
                )
            })
            .collect()
    }

    /// Where each tap `(ky, kx)`, row-major, reads once the padded input is
    /// split into `stride_h * stride_w` phase images (every `stride`-th row
    /// and column from each offset): its phase image, and its row and
    /// column there from an output pixel's. Tap `(ky, kx)` of output
    /// `(y, x)` reads padded row `s * y + ky * d`: phase row `(ky * d) % s`,
    /// row `y + (ky * d) / s` of that phase.
    pub fn tap_phases(&self) -> Vec<(usize, usize, usize)> {
        let (sh, sw) = (self.stride_h, self.stride_w);
        (0..self.kernel_h)
            .flat_map(|ky| (0..self.kernel_w).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| {
                let (dy, dx) = (ky * self.dilation_h, kx * self.dilation_w);
                ((dy % sh) * sw + dx % sw, dy / sh, dx / sw)
            })
            .collect()
    }

    /// Whether some tap reads each phase image of [`Geometry::tap_phases`]:
    /// a 1x1 convolution of stride 2 reads one of four, which is all a copy
    /// of its input into phases needs to fill.
    pub fn phases_read(&self) -> Vec<bool> {
        let mut read = vec![false; self.stride_h * self.stride_w];
        for (phase, _, _) in self.tap_phases() {
            read[phase] = true;
        }
        read
    }

    /// Columns a phase row of `full` columns (`out_w` and the widest tap's
    /// column) can drop when rows run on into each other: a tap past a
    /// row's end then reads the next row's leading padding, which stands
    /// for its own trailing padding as long as every column phase read has
    /// that many padding columns on both sides (1 for a 3x3 of stride 1
    /// and padding 1). At most the widest tap's column, so a row still
    /// holds the output's width.
    pub fn shared_padding_columns(&self, full: usize) -> usize {
        let (sh, sw) = (self.stride_h, self.stride_w);
        let read = self.phases_read();
        let widest = self.tap_phases().iter().map(|t| t.2).max().unwrap_or(0);
        (0..sw)
            .filter(|&b| (0..sh).any(|a| read[a * sw + b]))
            .map(|b| {
                let (lo, hi) = valid_range(b, self.pad_left, sw, self.in_w, full);
                lo.min(full - hi)
            })
            .min()
            .unwrap_or(0)
            .min(widest)
    }

    /// A 1x1 convolution with stride 1 and no padding: a plain matrix product.
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }
}

/// The output positions `o` in `0..out_len` whose input position
/// `o * stride + offset - pad` falls inside `0..in_len`.
pub fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    in_len: usize,
    out_len: usize,
) -> (usize, usize) {
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = if in_len + pad > offset {
        ((in_len - 1 + pad - offset) / stride + 1).min(out_len)
    } else {
        0
    };
    (lo.min(hi), hi)
}

#[cfg(test)]
/// A geometry for tests: `(batch, in_c, in_h, in_w)`, `out_c`, kernel,
/// stride, dilation, `(pad_top, pad_left)`, `(pad_bottom, pad_right)`;
/// the bottom and right padding make the output size below.
#[allow(clippy::too_many_arguments)]
pub(crate) fn geometry(
    (batch, in_c, in_h, in_w): (usize, usize, usize, usize),
    out_c: usize,
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    dilation: usize,
    (pad_top, pad_left): (usize, usize),
    (pad_bottom, pad_right): (usize, usize),
) -> Geometry {
    let out = |len: usize, k: usize, s: usize, before: usize, after: usize| {
        (len + before + after - dilation * (k - 1) - 1) / s + 1
    };
    Geometry {
        batch,
        in_c,
        in_h,
        in_w,
        out_c,
        out_h: out(in_h, kernel_h, stride_h, pad_top, pad_bottom),
        out_w: out(in_w, kernel_w, stride_w, pad_left, pad_right),
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        dilation_h: dilation,
        dilation_w: dilation,
        pad_top,
        pad_left,
    }
}
