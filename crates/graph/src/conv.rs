//! A 2-D convolution's geometry from its ONNX node: what pruning's recovery
//! and learned rounding need to gather the patches it reads.

use crate::model::{AttributeValue, Node};

/// The geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides along height and width.
    pub stride: [usize; 2],
    /// Dilations along height and width.
    pub dilation: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
    /// Groups (the channel count for a depthwise convolution).
    pub groups: usize,
}

impl ConvGeometry {
    /// The geometry of ONNX `Conv` node `node` whose weight has shape
    /// `weight` (`[out, in / groups, kh, kw]`), reading a map of `input`
    /// height and width and writing one of `output`'s (which `SAME`
    /// padding needs); `None` unless it is 2-D.
    pub fn of(
        node: &Node,
        weight: &[usize],
        input: [usize; 2],
        output: [usize; 2],
    ) -> Option<ConvGeometry> {
        if weight.len() != 4 {
            return None;
        }
        let pair = |name: &str| -> [usize; 2] {
            match node.ints_attr(name) {
                Some(v) if v.len() >= 2 => [v[0] as usize, v[1] as usize],
                _ => [1, 1],
            }
        };
        let kernel = [weight[2], weight[3]];
        let stride = pair("strides");
        let dilation = pair("dilations");
        let auto_pad = match node.attribute("auto_pad") {
            Some(AttributeValue::String(s)) => String::from_utf8_lossy(s).into_owned(),
            _ => "NOTSET".into(),
        };
        let pad = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = [0; 2];
                for a in 0..2 {
                    let span =
                        (output[a].max(1) - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1;
                    let total = span.saturating_sub(input[a]);
                    p[a] = if auto_pad == "SAME_UPPER" {
                        total / 2
                    } else {
                        total - total / 2
                    };
                }
                p
            }
            "VALID" => [0, 0],
            _ => match node.ints_attr("pads") {
                Some(v) if v.len() == 4 => [v[0] as usize, v[1] as usize],
                _ => [0, 0],
            },
        };
        let groups = match node.attribute("group") {
            Some(AttributeValue::Int(g)) if *g > 0 => *g as usize,
            _ => 1,
        };
        Some(ConvGeometry {
            kernel,
            stride,
            dilation,
            pad,
            groups,
        })
    }

    /// Values of one patch: input channels times kernel taps.
    pub fn patch_len(&self, input_channels: usize) -> usize {
        input_channels * self.kernel[0] * self.kernel[1]
    }
}
