//! The shape of a 2-D convolution (NCHW) and the output ranges each kernel
//! tap reads inside the input: what every convolution loop, integer or
//! float, is written against.

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
