//! What a convolution reads at sampled output pixels, and what it should
//! write there.
//!
//! Learned rounding needs the layer's inputs as the int8 model computes
//! them and the float model's outputs, at the same pixels. A whole feature
//! map per photo per step would make each step a full convolution; a few
//! thousand pixels drawn across the photos carry the same statistics, and
//! make the convolution a matrix product of their patches.

pub use edgewise_graph::conv::ConvGeometry;
use edgewise_graph::rng::Rng;

use crate::ReconstructError;

/// One photo's feature map, `[channels, height, width]`.
#[derive(Clone, Copy, Debug)]
pub struct Map<'a> {
    /// Channels.
    pub channels: usize,
    /// Height and width.
    pub hw: [usize; 2],
    /// The values, channel by channel.
    pub values: &'a [f32],
}

impl<'a> Map<'a> {
    /// A map of `shape` (`[1, C, H, W]`, or `[C, H, W]`) over `values`.
    pub fn new(shape: &[usize], values: &'a [f32]) -> Result<Map<'a>, ReconstructError> {
        let dims = match shape {
            [1, c, h, w] | [c, h, w] => [*c, *h, *w],
            _ => {
                return Err(ReconstructError::Shape(format!(
                    "a feature map of shape {shape:?}: one photo's [1, C, H, W] expected"
                )));
            }
        };
        if dims.iter().product::<usize>() != values.len() {
            return Err(ReconstructError::Shape(format!(
                "{} values for a map of shape {shape:?}",
                values.len()
            )));
        }
        Ok(Map {
            channels: dims[0],
            hw: [dims[1], dims[2]],
            values,
        })
    }
}

/// Output pixels `(y, x)` to sample on one photo: `count` of them (or all,
/// if the map has fewer), drawn without replacement.
pub fn draw_pixels(output_hw: [usize; 2], count: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let total = output_hw[0] * output_hw[1];
    let mut order: Vec<usize> = (0..total).collect();
    let take = count.min(total);
    // A partial Fisher-Yates shuffle: the first `take` are the sample.
    for i in 0..take {
        let j = i + rng.below(total - i);
        order.swap(i, j);
    }
    order[..take]
        .iter()
        .map(|&p| (p / output_hw[1], p % output_hw[1]))
        .collect()
}

/// Patches and the outputs they should give, row by row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// Values per patch: input channels times kernel taps, channel-major.
    pub patch_len: usize,
    /// Output channels per target.
    pub outputs: usize,
    /// `rows x patch_len` patches.
    pub patches: Vec<f32>,
    /// `rows x outputs` target outputs.
    pub targets: Vec<f32>,
}

impl Samples {
    /// No samples yet, for patches of `patch_len` values and `outputs`
    /// output channels.
    pub fn new(patch_len: usize, outputs: usize) -> Samples {
        Samples {
            patch_len,
            outputs,
            ..Samples::default()
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.targets.len() / self.outputs.max(1)
    }

    /// Appends, for every pixel of `pixels`, the patch `geometry` reads
    /// from `input` (zero outside it) and the target channels of `target`
    /// there.
    pub fn push(
        &mut self,
        geometry: &ConvGeometry,
        input: &Map,
        target: &Map,
        pixels: &[(usize, usize)],
    ) -> Result<(), ReconstructError> {
        self.push_patches(geometry, input, pixels)?;
        self.push_targets(target, pixels)
    }

    /// Appends the patch `geometry` reads from `input` (zero outside it) at
    /// every pixel of `pixels`.
    pub fn push_patches(
        &mut self,
        geometry: &ConvGeometry,
        input: &Map,
        pixels: &[(usize, usize)],
    ) -> Result<(), ReconstructError> {
        if geometry.patch_len(input.channels) != self.patch_len {
            return Err(ReconstructError::Shape(format!(
                "a map of {} input channels for patches of {} values",
                input.channels, self.patch_len
            )));
        }
        let [h, w] = input.hw;
        let g = geometry;
        for &(oy, ox) in pixels {
            for c in 0..input.channels {
                let plane = &input.values[c * h * w..(c + 1) * h * w];
                for ky in 0..g.kernel[0] {
                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad[0] as isize;
                    for kx in 0..g.kernel[1] {
                        let ix =
                            (ox * g.stride[1] + kx * g.dilation[1]) as isize - g.pad[1] as isize;
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        self.patches.push(if inside {
                            plane[iy as usize * w + ix as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends the channels of `target` at every pixel of `pixels`.
    pub fn push_targets(
        &mut self,
        target: &Map,
        pixels: &[(usize, usize)],
    ) -> Result<(), ReconstructError> {
        if target.channels != self.outputs {
            return Err(ReconstructError::Shape(format!(
                "a map of {} output channels for targets of {}",
                target.channels, self.outputs
            )));
        }
        let [oh, ow] = target.hw;
        for &(oy, ox) in pixels {
            if oy >= oh || ox >= ow {
                return Err(ReconstructError::Shape(format!(
                    "pixel ({oy}, {ox}) outside the {oh}x{ow} output"
                )));
            }
            for c in 0..target.channels {
                self.targets.push(target.values[(c * oh + oy) * ow + ox]);
            }
        }
        Ok(())
    }

    /// Splits off every `k`th row (from the first) as held-out samples.
    pub fn split_every(self, k: usize) -> (Samples, Samples) {
        self.split(|r| r % k.max(1) == 0)
    }

    /// Splits off the rows `held` picks as held-out samples.
    pub fn split(self, held: impl Fn(usize) -> bool) -> (Samples, Samples) {
        let mut fit = Samples::new(self.patch_len, self.outputs);
        let mut out = Samples::new(self.patch_len, self.outputs);
        for r in 0..self.rows() {
            let to = if held(r) { &mut out } else { &mut fit };
            to.patches
                .extend_from_slice(&self.patches[r * self.patch_len..(r + 1) * self.patch_len]);
            to.targets
                .extend_from_slice(&self.targets[r * self.outputs..(r + 1) * self.outputs]);
        }
        (fit, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_read_the_taps_a_strided_padded_convolution_reads() {
        // A 1-channel 4x4 input holding its own index; 3x3 kernel, stride 2,
        // padding 1: output 2x2.
        let input: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let target = [10.0, 11.0, 12.0, 13.0];
        let g = ConvGeometry {
            kernel: [3, 3],
            stride: [2, 2],
            dilation: [1, 1],
            pad: [1, 1],
            groups: 1,
        };
        let mut s = Samples::new(9, 1);
        s.push(
            &g,
            &Map::new(&[1, 1, 4, 4], &input).unwrap(),
            &Map::new(&[1, 1, 2, 2], &target).unwrap(),
            &[(0, 0), (1, 1)],
        )
        .unwrap();
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0,  0.0, 0.0, 1.0,  0.0, 4.0, 5.0,
            5.0, 6.0, 7.0,  9.0, 10.0, 11.0,  13.0, 14.0, 15.0,
        ];
        assert_eq!(s.patches, expected);
        assert_eq!(s.targets, [10.0, 13.0]);
        let (fit, held) = s.split_every(2);
        assert_eq!((fit.rows(), held.rows()), (1, 1));
        assert_eq!(held.targets, [10.0]);
    }

    #[test]
    fn pixels_are_distinct_and_inside() {
        let mut rng = Rng::new(3);
        let p = draw_pixels([5, 7], 20, &mut rng);
        assert_eq!(p.len(), 20);
        let mut seen = std::collections::HashSet::new();
        assert!(
            p.iter()
                .all(|&(y, x)| y < 5 && x < 7 && seen.insert((y, x)))
        );
        assert_eq!(draw_pixels([2, 2], 9, &mut rng).len(), 4);
    }

    #[test]
    fn a_wrong_shape_is_refused() {
        assert!(Map::new(&[2, 1, 2, 2], &[0.0; 8]).is_err());
        assert!(Map::new(&[1, 1, 2, 2], &[0.0; 5]).is_err());
    }
}
