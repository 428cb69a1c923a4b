//! `F32Conv`: Edgewise's dense (group 1) float convolution, with its bias
//! and activation applied as it stores.
//!
//! tract runs a float convolution as a matrix product over an im2col of
//! its input, packed panel by panel, on a 16x12 AVX-512 tile that needs 13
//! loads per 12 FMAs. `F32Conv` reads the input with no im2col:
//!
//! - a band of output rows at a time, the input rows it reads are copied
//!   into a zero-padded image, split into `stride_h * stride_w` phases (the
//!   even and odd rows and columns of a stride-2 convolution), where every
//!   tap of every output pixel is a fixed offset and the pixels of a row run
//!   on into the next row ("flat" pixels, with a few columns of the padded
//!   width computed and dropped); a band is sized to stay in the second-
//!   level cache, and its channels are an odd number of cache lines apart.
//!   A 1x1 convolution with no stride or padding needs none of this: the
//!   tiles read its input's planes as they are;
//! - the tile loops (`tile.rs`) keep their sums in registers, fed by 2-4
//!   pixel loads and one broadcast weight per channel row: on AVX-512,
//!   12x32, 8x48 or 6x64 (channels x pixels), whichever pads the
//!   convolution's channels and pixels least and stores fastest
//!   ([`TileKernel::best_for`]); 6x16 on AVX2, 8x12 on NEON;
//! - 3x3 convolutions of stride 1 run as Winograd F(4x4, 3x3)
//!   (`winograd.rs`) where its cost model says it pays: 36 multiply-adds
//!   per input channel and 4x4 outputs instead of 144, the 36 products on
//!   the same tile loops, as 1x1 convolutions whose pixels are tiles;
//! - maps of a few dozen pixels (a detection head's 3x3 and 5x5 levels),
//!   whose flat tiles would be mostly padding columns and empty lanes, run
//!   the other way round, on the same tile loops: output channels in the
//!   lanes, each output pixel's input values gathered once per image and
//!   broadcast;
//! - the bias and the activation ([`Activation`]: ReLU, Clip, SiLU,
//!   sigmoid, hard-swish...), and a scale and offset after it, run on the
//!   tile while it is in cache, so the feature map is written once: a full
//!   tile whose pixels are all output pixels is summed straight into the
//!   output and finished there, any other finishes on its way from its
//!   tile of sums into the output;
//! - depthwise convolutions (`depthwise.rs`) go a channel at a time, every
//!   tap of a run of outputs summed in registers; on small maps, sixteen
//!   channels at a time in the vector lanes (`lanes.rs`).
//!
//! Threads split the bands, every thread running all output channels of
//! its rows; where the weights outweigh the input (deep layers on small
//! maps) they split the output channels instead. A band is a run of whole
//! tiles, not of whole rows, so that only the last tile of the map runs
//! past its pixels; a 1x1 convolution over many input channels sums them
//! in chunks that stay in the first-level cache while every block of
//! output channels reads them.

// On other CPUs (32-bit ARM) there is no vector loop: tract keeps the
// float convolutions, and the loops' scaffolding goes unused.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code, unused_imports, unused_macros, unused_mut)
)]

mod depthwise;
mod install;
mod lanes;
mod tile;
mod winograd;

use std::sync::Arc;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;

use self::depthwise::DepthwiseWay;
pub(crate) use self::install::activation_of;
pub use self::install::{ConvsInstalled, fuse_into_convs, install_convs};
pub use self::tile::{Finishing, TileArgs, TileKernel};
pub(crate) use self::tile::{split, split_position};
use super::activation::{Activation, Rows};
use crate::geometry::{Geometry, valid_range};
use crate::parallel::{self, DisjointWriter};
use crate::tensor::{new_tensor, numbers};

thread_local! {
    /// The padded, phase-split input rows of the band a thread convolves:
    /// one buffer per thread that grows to the largest band, instead of an
    /// allocation (and its page faults) per convolution.
    static IMAGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The input values of a small map's pixels, as the pixel-rows loop
    /// reads them.
    static PIXEL_VALUES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A dense float convolution on Edgewise's tile loops, bias and activation
/// fused.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Conv {
    /// Its shape.
    pub geo: Geometry,
    /// The tile loop it runs on.
    pub kernel: TileKernel,
    /// The weights packed for `kernel`: per block of `kernel.mr` output
    /// channels, `[in_c][taps][mr]`, zeros past the last channel; for a
    /// depthwise convolution, `[channels][taps]`.
    weights: Arc<Vec<f32>>,
    /// For one filter per channel (group = channels), how its channels
    /// are walked.
    depthwise: Option<DepthwiseWay>,
    /// One bias per output channel.
    bias: Arc<Vec<f32>>,
    /// What runs on each output after the bias.
    pub activation: Activation,
    /// A scale and an offset per output channel after the activation (a
    /// learnable affine block, a batch norm after the activation).
    post: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    layout: Layout,
    /// The output's shape: `[batch, out_c, out_h, out_w]`, or the shape of
    /// the node it replaced (tract drops a batch of one).
    shape: Vec<usize>,
    /// Input bytes a band copies at most ([`BAND_BYTES`]; less in tests).
    band_bytes: usize,
    /// Input bytes a chunk of input channels reads per tile at most
    /// ([`L1_INPUT_BYTES`]; less in tests).
    chunk_bytes: usize,
    /// The loop it runs on the other way round, for a small map
    /// ([`pixel_rows_loop`]), its weights packed in blocks of that loop's
    /// `nt` output channels.
    pixel_rows: Option<TileKernel>,
    /// Whether it runs as Winograd F(4x4, 3x3) (`winograd.rs`), its
    /// weights transformed and packed by [`winograd::transform_weights`].
    winograd: bool,
}

impl Eq for F32Conv {}

/// The input a band of output pixels reads, and where.
///
/// A band is a run of whole tiles of flat pixels, not of whole rows: rows
/// of a few dozen pixels would leave a part-empty tile at the end of every
/// band (a 26-column map in bands of 4 rows: 108 pixels in two 64-pixel
/// tiles, 16% of the products computed and dropped).
struct Band<'a> {
    /// Output row `r0`'s first flat pixel, in input channel 0.
    image: &'a [f32],
    /// Distance between two input channels in `image`.
    channel_stride: usize,
    /// Each tap's offset from an output pixel's flat position.
    taps: &'a [isize],
    /// The output row `image` starts at.
    r0: usize,
    /// The band's flat pixels, counted from row `r0`'s first.
    pixels: std::ops::Range<usize>,
}

/// Where a convolution's taps read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    /// Width of every row of the phase images, and of the flat output
    /// pixels: the output's width and the columns the widest tap reaches,
    /// less the zero columns a row's end shares with the next row's start.
    width: usize,
    /// Phase images: `stride_h * stride_w`.
    phases: usize,
    /// For each tap: its phase image, and its row and column in it from an
    /// output pixel's.
    cells: Vec<(usize, usize, usize)>,
    /// Phase rows a band of output rows reads beyond its own: the deepest
    /// tap's, and a spare row (a tile's last pixels run past the last row).
    halo: usize,
    /// For each column phase, the columns of its rows that land in the
    /// input, and the input column the first of them holds (the others
    /// follow `stride_w` apart).
    runs: Vec<(usize, usize, usize)>,
    /// Whether some tap reads each phase image ([`Geometry::phases_read`]):
    /// copying the three a 1x1 convolution of stride 2 never reads was most
    /// of its time.
    read: Vec<bool>,
}

impl Layout {
    fn of(g: &Geometry) -> Layout {
        let (sh, sw) = (g.stride_h, g.stride_w);
        let cells = g.tap_phases();
        let max_row = cells.iter().map(|c| c.1).max().unwrap_or(0);
        let max_col = cells.iter().map(|c| c.2).max().unwrap_or(0);
        // Rows run on into each other and share their zero columns
        // (`Geometry::shared_padding_columns`): one column of 42 fewer on a
        // 40-wide map under a 3x3 of stride 1 and padding 1, whose products
        // are computed and dropped.
        let full = g.out_w + max_col;
        let shared = g.shared_padding_columns(full);
        let width = full - shared;
        let runs = (0..sw)
            .map(|b| {
                let (lo, hi) = valid_range(b, g.pad_left, sw, g.in_w, width);
                let first = (lo * sw + b).saturating_sub(g.pad_left);
                (lo, hi, first)
            })
            .collect();
        Layout {
            width,
            phases: sh * sw,
            cells,
            halo: max_row + 1,
            runs,
            read: g.phases_read(),
        }
    }

    /// Distance between two channels of a band image of `rows` rows: the
    /// rows, rounded up to an odd number of 64-byte lines. A tile reads
    /// the same pixels of every channel at once; with a stride of many
    /// lines that shares a factor with the 64 sets of the first-level cache
    /// (104x104 floats: 676 lines, a factor 4; 160x160: 1600, a factor 64),
    /// they all land in a few sets and evict each other.
    fn channel_stride(&self, rows: usize) -> usize {
        let lines = (rows * self.width).div_ceil(16);
        (lines | 1) * 16
    }

    /// Each tap's offset from an output pixel's flat position, in an image
    /// of `rows` rows per phase and channel and `in_c` channels.
    fn taps(&self, in_c: usize, rows: usize) -> Vec<isize> {
        let plane = in_c * self.channel_stride(rows);
        self.cells
            .iter()
            .map(|&(phase, r, c)| (phase * plane + r * self.width + c) as isize)
            .collect()
    }
}

/// The input a tile's blocks read from the first-level cache, per chunk of
/// input channels: half of the smallest first-level data cache of the CPUs
/// Edgewise runs on (32 KiB), the rest left to the weights and sums.
const L1_INPUT_BYTES: usize = 16 << 10;

/// Input channels per chunk for a tile of `nt` flat pixels read at `taps`:
/// as many as keep `budget` bytes of cache lines, at least 4, all `in_c`
/// when they fit.
///
/// Only single-tap convolutions go in chunks: a 3x3 tile reads each line of
/// its input for three taps in a row, and chunks of its channels measured
/// no faster (3x3, stride 1 and 2, 48 to 192 channels).
fn chunk_channels(taps: &[isize], nt: usize, in_c: usize, budget: usize) -> usize {
    if taps.len() > 1 {
        return in_c;
    }
    // A channel's pixels, a line more for alignment.
    let channel_bytes = (nt.div_ceil(16) + 1) * 64;
    (budget / channel_bytes).max(4).min(in_c)
}

/// The bytes of input a band of output rows copies: about what a core's
/// second-level cache keeps next to the weights.
const BAND_BYTES: usize = 256 << 10;

/// The most bytes of input values the pixel-rows loop gathers for one
/// image (a row of `depth` values per output pixel): what stays in a
/// core's second-level cache.
const PIXEL_ROWS_BYTES: usize = 512 << 10;

/// What transposing and finishing the pixel-rows loop's sums costs per
/// output, in multiply-adds of the loop ([`TileKernel::store_cost`]'s
/// unit).
const PIXEL_ROWS_STORE_COST: usize = 24;

/// What gathering one input value for the pixel-rows loop costs, in
/// multiply-adds of the loop: it is paid once per image, not per block of
/// output channels, so it counts where the output channels are few.
const PIXEL_ROWS_GATHER_COST: usize = 48;

/// The tile loop to run `geo` on the other way round, if one wastes less
/// than `kernel`'s flat tiles: its broadcast rows output pixels and its
/// loaded lanes output channels, the packed weights read as its image and
/// each pixel's input values, gathered once per image, as its weights. On
/// maps of a few dozen pixels, whose flat tiles of 32 to 64 pixels are
/// mostly padding columns and empty lanes, and whose gathered values fit
/// [`PIXEL_ROWS_BYTES`].
fn pixel_rows_loop(geo: &Geometry, layout: &Layout, kernel: &TileKernel) -> Option<TileKernel> {
    let depth = geo.in_c * geo.kernel_h * geo.kernel_w;
    let plane = geo.out_h * geo.out_w;
    let flat = geo.out_c.next_multiple_of(kernel.mr)
        * (geo.out_h * layout.width).next_multiple_of(kernel.nt)
        * (depth + kernel.store_cost);
    let cost = |k: &TileKernel| {
        let pixels = plane.next_multiple_of(k.mr);
        (pixels * depth * std::mem::size_of::<f32>() <= PIXEL_ROWS_BYTES).then(|| {
            pixels
                * (geo.out_c.next_multiple_of(k.nt) * (depth + PIXEL_ROWS_STORE_COST)
                    + depth * PIXEL_ROWS_GATHER_COST)
        })
    };
    TileKernel::all_native()
        .into_iter()
        .filter(|k| k.features == kernel.features)
        .filter_map(|k| Some((cost(&k)?, k)))
        .min_by_key(|&(cost, _)| cost)
        // Well under: in a whole model the gathered values and the weights
        // come from further out in the caches than the count says (1x1
        // convolutions of 10x10 maps and a 5x5 head counted at 0.85 of
        // their flat tiles ran 10-30% slower as pixel rows in MobileNetV2).
        .filter(|&(cost, _)| cost * 5 < flat * 3)
        .map(|(_, k)| k)
}

impl F32Conv {
    /// The convolution of `geo` with `weights` (OIHW, as ONNX stores them)
    /// and `bias` (one per output channel) on `kernel`, its output of
    /// `shape` (as many values as `geo` makes, in NCHW order).
    pub fn new(
        geo: Geometry,
        kernel: TileKernel,
        weights: &[f32],
        bias: Vec<f32>,
        activation: Activation,
        shape: Vec<usize>,
    ) -> Result<F32Conv, String> {
        if shape.iter().product::<usize>() != geo.batch * geo.out_c * geo.out_h * geo.out_w {
            return Err(format!("an output of {shape:?} for {geo:?}"));
        }
        let taps = geo.kernel_h * geo.kernel_w;
        if weights.len() != geo.out_c * geo.in_c * taps {
            return Err(format!(
                "{} weights for {} x {} x {}x{}",
                weights.len(),
                geo.out_c,
                geo.in_c,
                geo.kernel_h,
                geo.kernel_w
            ));
        }
        if bias.len() != geo.out_c {
            return Err(format!(
                "{} biases for {} output channels",
                bias.len(),
                geo.out_c
            ));
        }
        let layout = Layout::of(&geo);
        let winograd = winograd::pays(&geo, kernel.mr, kernel.nt, geo.out_h * layout.width);
        let pixel_rows = (!winograd)
            .then(|| pixel_rows_loop(&geo, &layout, &kernel))
            .flatten();
        Ok(Self::packed(
            geo, kernel, weights, bias, activation, shape, pixel_rows, winograd,
        ))
    }

    /// [`Self::new`], checked, on the flat tiles, the pixel rows or
    /// Winograd's tiles.
    #[allow(clippy::too_many_arguments)]
    fn packed(
        geo: Geometry,
        kernel: TileKernel,
        weights: &[f32],
        bias: Vec<f32>,
        activation: Activation,
        shape: Vec<usize>,
        pixel_rows: Option<TileKernel>,
        winograd: bool,
    ) -> F32Conv {
        if winograd {
            return F32Conv {
                depthwise: None,
                layout: Layout::of(&geo),
                weights: Arc::new(winograd::transform_weights(&geo, weights, kernel.mr)),
                geo,
                kernel,
                bias: Arc::new(bias),
                activation,
                post: None,
                shape,
                band_bytes: BAND_BYTES,
                chunk_bytes: L1_INPUT_BYTES,
                pixel_rows: None,
                winograd: true,
            };
        }
        let taps = geo.kernel_h * geo.kernel_w;
        let mr = pixel_rows.map_or(kernel.mr, |rows| rows.nt);
        let blocks = geo.out_c.div_ceil(mr);
        let mut packed = vec![0f32; blocks * geo.in_c * taps * mr];
        for o in 0..geo.out_c {
            for c in 0..geo.in_c {
                for t in 0..taps {
                    packed[(((o / mr) * geo.in_c + c) * taps + t) * mr + o % mr] =
                        weights[(o * geo.in_c + c) * taps + t];
                }
            }
        }
        F32Conv {
            depthwise: None,
            layout: Layout::of(&geo),
            geo,
            kernel,
            weights: Arc::new(packed),
            bias: Arc::new(bias),
            activation,
            post: None,
            shape,
            band_bytes: BAND_BYTES,
            chunk_bytes: L1_INPUT_BYTES,
            pixel_rows,
            winograd: false,
        }
    }

    /// The tile loop of this CPU that wastes the least on `geo`
    /// ([`TileKernel::best_for`] its output channels, flat pixels and
    /// depth).
    pub fn best_kernel(geo: &Geometry) -> Option<TileKernel> {
        let pixels = geo.out_h * Layout::of(geo).width;
        TileKernel::best_for(geo.out_c, pixels, geo.in_c * geo.kernel_h * geo.kernel_w)
    }

    /// The depthwise convolution (one filter per channel: `geo.in_c ==
    /// geo.out_c` channels, `weights` `[channels][1][kh][kw]`) of `geo`,
    /// on `kernel`'s vector width.
    pub fn depthwise(
        geo: Geometry,
        kernel: TileKernel,
        weights: &[f32],
        bias: Vec<f32>,
        activation: Activation,
        shape: Vec<usize>,
    ) -> Result<F32Conv, String> {
        let taps = geo.kernel_h * geo.kernel_w;
        if geo.in_c != geo.out_c || weights.len() != geo.out_c * taps {
            return Err(format!(
                "{} weights for a depthwise {} -> {} x {}x{}",
                weights.len(),
                geo.in_c,
                geo.out_c,
                geo.kernel_h,
                geo.kernel_w
            ));
        }
        if bias.len() != geo.out_c {
            return Err(format!("{} biases for {} channels", bias.len(), geo.out_c));
        }
        if shape.iter().product::<usize>() != geo.batch * geo.out_c * geo.out_h * geo.out_w {
            return Err(format!("an output of {shape:?} for {geo:?}"));
        }
        let layout = Layout::of(&geo);
        Ok(F32Conv {
            depthwise: Some(DepthwiseWay::best(&geo, layout.width)),
            layout,
            geo,
            kernel,
            weights: Arc::new(weights.to_vec()),
            bias: Arc::new(bias),
            activation,
            post: None,
            shape,
            band_bytes: BAND_BYTES,
            chunk_bytes: L1_INPUT_BYTES,
            pixel_rows: None,
            winograd: false,
        })
    }

    /// The loop it runs on, for the kernel audit.
    pub fn kernel_name(&self) -> String {
        if self.depthwise.is_some() {
            format!("{}_depthwise", self.kernel.name)
        } else if let Some(rows) = self.pixel_rows {
            format!("{}_pixel_rows", rows.name)
        } else if self.winograd {
            format!("{}_winograd_f4x4_3x3", self.kernel.name)
        } else {
            self.kernel.name.to_string()
        }
    }

    /// Output channels per block of the packed weights.
    fn packed_mr(&self) -> usize {
        self.pixel_rows.map_or(self.kernel.mr, |rows| rows.nt)
    }

    /// Whether it is a depthwise convolution.
    pub fn is_depthwise(&self) -> bool {
        self.depthwise.is_some()
    }

    /// The output's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Folds `y * scale + offset` into the weights and bias, one
    /// `(scale, offset)` per output channel in order.
    ///
    /// Only before an activation: the activation runs after it.
    pub fn fold_affine(&mut self, per_channel: impl Iterator<Item = (f32, f32)>) {
        debug_assert!(self.activation.is_identity());
        if self.depthwise.is_some() {
            let taps = self.geo.kernel_h * self.geo.kernel_w;
            let weights = Arc::make_mut(&mut self.weights);
            let bias = Arc::make_mut(&mut self.bias);
            for (o, (scale, offset)) in per_channel.enumerate().take(self.geo.out_c) {
                bias[o] = bias[o] * scale + offset;
                weights[o * taps..][..taps]
                    .iter_mut()
                    .for_each(|w| *w *= scale);
            }
            return;
        }
        let mr = self.packed_mr();
        if self.winograd {
            let weights = Arc::make_mut(&mut self.weights);
            let bias = Arc::make_mut(&mut self.bias);
            for (o, (scale, offset)) in per_channel.enumerate().take(self.geo.out_c) {
                bias[o] = bias[o] * scale + offset;
                if scale != 1.0 {
                    winograd::scale_output_channel(weights, &self.geo, mr, o, scale);
                }
            }
            return;
        }
        let block_len = self.geo.in_c * self.geo.kernel_h * self.geo.kernel_w * mr;
        let weights = Arc::make_mut(&mut self.weights);
        let bias = Arc::make_mut(&mut self.bias);
        for (o, (scale, offset)) in per_channel.enumerate().take(self.geo.out_c) {
            bias[o] = bias[o] * scale + offset;
            if scale != 1.0 {
                let block = &mut weights[(o / mr) * block_len..][..block_len];
                block
                    .iter_mut()
                    .skip(o % mr)
                    .step_by(mr)
                    .for_each(|w| *w *= scale);
            }
        }
    }

    /// Folds `y * scale + offset` after the activation, one `(scale,
    /// offset)` per output channel in order.
    pub fn fold_post_affine(&mut self, per_channel: impl Iterator<Item = (f32, f32)>) {
        let channels = self.geo.out_c;
        let post = self
            .post
            .get_or_insert_with(|| Arc::new((vec![1.0; channels], vec![0.0; channels])));
        let (scales, offsets) = Arc::make_mut(post);
        for (o, (scale, offset)) in per_channel.enumerate().take(channels) {
            scales[o] *= scale;
            offsets[o] = offsets[o] * scale + offset;
        }
    }

    /// Whether anything runs after the activation.
    pub fn has_post_affine(&self) -> bool {
        self.post.is_some()
    }

    /// Copies phase rows `r0..r0 + rows` of one image into `image`: per
    /// phase and channel, `rows` rows of the layout's width, zero where the
    /// taps read padding. With a column stride, each phase row gathers its
    /// columns from the input row ([`TileKernel::gather`], vectorized).
    fn fill_band(
        &self,
        x: &[f32],
        image: &mut [f32],
        r0: usize,
        rows: usize,
        channels: std::ops::Range<usize>,
    ) {
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        let (sh, sw) = (g.stride_h, g.stride_w);
        let stride = l.channel_stride(rows);
        let count = channels.len();
        for (i, c) in channels.enumerate() {
            let src = &x[c * g.in_h * g.in_w..][..g.in_h * g.in_w];
            // Phase images no tap reads stay as they are.
            let read = (0..sh * sw).filter(|&p| l.read[p]);
            for (a, b) in read.map(|p| (p / sw, p % sw)) {
                let (lo, hi, first) = l.runs[b];
                let plane = ((a * sw + b) * count + i) * stride;
                for r in 0..rows {
                    let y = (sh * (r0 + r) + a) as isize - g.pad_top as isize;
                    let out = &mut image[plane + r * l.width..][..l.width];
                    if y < 0 || y as usize >= g.in_h || lo >= hi {
                        out.fill(0.0);
                        continue;
                    }
                    let row = &src[y as usize * g.in_w..][..g.in_w];
                    out[..lo].fill(0.0);
                    // SAFETY: the CPU has the kernel's features.
                    unsafe { (k.gather)(row, sw, first, &mut out[lo..hi]) };
                    out[hi..].fill(0.0);
                }
            }
        }
    }

    /// The convolution of one image `x` into `y` on the pixel-rows loop:
    /// the padded image filled once, each tile's input values gathered
    /// pixel by pixel (`[depth][pixels]`, [`PIXEL_ROWS_BYTES`] at most),
    /// then every block of output channels summed over them, its sums
    /// turned into rows of pixels per channel and finished into the output.
    /// The threads split the output channels, each gathering the (small)
    /// input itself.
    fn eval_pixel_rows(&self, rows_loop: TileKernel, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        // The loop's rows are pixels, its lanes output channels.
        let (block_c, px) = (rows_loop.nt, rows_loop.mr);
        let tap_count = g.kernel_h * g.kernel_w;
        let depth = g.in_c * tap_count;
        let plane = g.out_h * g.out_w;
        let tiles = plane.div_ceil(px);
        let blocks = g.out_c.div_ceil(block_c);
        let rows = g.out_h + l.halo;
        let stride = l.channel_stride(rows);
        let taps = l.taps(g.in_c, rows);
        let parts = parallel::parts(g.out_c * depth * plane, blocks);
        let writer = DisjointWriter::new(y);
        parallel::for_each_part(parts, |part| {
            IMAGE.with_borrow_mut(|buffer| {
                PIXEL_VALUES.with_borrow_mut(|values| {
                    let len = l.phases * g.in_c * stride;
                    if buffer.len() < len {
                        buffer.resize(len, 0.0);
                    }
                    let image = &mut buffer[..len];
                    self.fill_band(x, image, 0, rows, 0..g.in_c);
                    if values.len() < tiles * depth * px {
                        values.resize(tiles * depth * px, 0.0);
                    }
                    let mut flats = vec![0; px];
                    for (tile, tile_values) in
                        values.chunks_exact_mut(depth * px).take(tiles).enumerate()
                    {
                        let (p0, n) = (tile * px, px.min(plane - tile * px));
                        for (i, flat) in flats[..n].iter_mut().enumerate() {
                            let p = p0 + i;
                            *flat = (p / g.out_w) * l.width + p % g.out_w;
                        }
                        // A run of `px` values per input channel and tap,
                        // zero for the pixels past the map's last.
                        let mut runs = tile_values.chunks_exact_mut(px);
                        for c in 0..g.in_c {
                            for &tap in &taps {
                                let run = runs.next().expect("depth runs of a tile");
                                let at = &image[c * stride + tap as usize..];
                                for (v, &flat) in run.iter_mut().zip(&flats[..n]) {
                                    *v = at[flat];
                                }
                                run[n..].fill(0.0);
                            }
                        }
                    }
                    let mut sums = vec![0f32; px * block_c];
                    let mut channel_rows = vec![0f32; block_c * px];
                    let one_tap = [0isize];
                    for block in blocks * part / parts..blocks * (part + 1) / parts {
                        let channels = block_c.min(g.out_c - block * block_c);
                        let weights = &self.weights[block * depth * block_c..][..depth * block_c];
                        let biases = &self.bias[block * block_c..][..channels];
                        let post = self
                            .post
                            .as_ref()
                            .map(|p| (&p.0[block * block_c..], &p.1[block * block_c..]));
                        for tile in 0..tiles {
                            // The tile's values as the loop's weights (a
                            // row of `px` per depth step), the block's
                            // weights as its image (`block_c` lanes per step).
                            let args = TileArgs {
                                weights: values[tile * depth * px..][..depth * px].as_ptr(),
                                taps: one_tap.as_ptr(),
                                tap_count: 1,
                                image: weights.as_ptr(),
                                channel_stride: block_c as isize,
                                in_c: depth,
                                out: sums.as_mut_ptr(),
                                out_stride: block_c,
                                accumulate: false,
                                finishing: None,
                            };
                            // SAFETY: `depth x px` values, `depth x block_c`
                            // weights and `px x block_c` sums, as `TileKernel::run`
                            // asks with `mr` and `nt` swapped; the loop came
                            // from `TileKernel::native`'s, so the CPU has
                            // its features.
                            unsafe { (rows_loop.run)(&args) };
                            let (p0, n) = (tile * px, px.min(plane - tile * px));
                            for (r, row) in
                                channel_rows.chunks_exact_mut(px).take(channels).enumerate()
                            {
                                for (i, v) in row[..n].iter_mut().enumerate() {
                                    *v = sums[i * block_c + r];
                                }
                            }
                            let start = block * block_c * plane + p0;
                            let rows = Rows {
                                from: channel_rows.as_ptr(),
                                from_stride: px,
                                // SAFETY: this part owns these channels.
                                to: unsafe { writer.ptr(start, (channels - 1) * plane + n) },
                                to_stride: plane,
                                width: n,
                            };
                            // SAFETY: `channels` rows of `n` values into as
                            // many output pixels this part writes alone; the
                            // CPU has the kernel's features.
                            unsafe { (k.finish)(self.activation, rows, biases, post) };
                        }
                    }
                })
            });
            Ok(())
        })
    }

    /// The convolution of one image `x` into `y`.
    ///
    /// The output rows go in bands: each band's input rows are copied into
    /// the thread's image and convolved while they are in cache, and the
    /// threads split the bands. When the weights outweigh the whole image
    /// (deep layers on small maps), there is one band and the threads split
    /// the output channels instead, each reading its share of the weights
    /// once.
    fn eval_image(&self, x: &[f32], y: &mut [f32]) -> TractResult<()> {
        if let Some(way) = self.depthwise {
            return self.eval_depthwise(way, x, y);
        }
        if let Some(rows) = self.pixel_rows {
            return self.eval_pixel_rows(rows, x, y);
        }
        if self.winograd {
            return self.eval_winograd(x, y);
        }
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        let blocks = g.out_c.div_ceil(k.mr);
        let taps = g.kernel_h * g.kernel_w;
        let work = g.out_c * g.in_c * taps * g.out_h * l.width;
        let row_bytes = l.phases * g.in_c * l.width * std::mem::size_of::<f32>();
        let weight_bytes = self.weights.len() * std::mem::size_of::<f32>();
        let blocks_outer = weight_bytes > row_bytes * (g.out_h + l.halo);
        let bands = if blocks_outer {
            1
        } else {
            // A band of whole tiles starts and ends inside rows: one row
            // more than its own.
            let fits = (self.band_bytes / row_bytes)
                .saturating_sub(l.halo + 1)
                .clamp(1, g.out_h);
            // As many bands for every thread, the rows spread evenly over
            // them: 8 and 5 rows of a 13-row map, or 4-row bands of a
            // 26-row map (4 bands for one thread, 3 for the other) would
            // leave one thread waiting on the other.
            let threads = parallel::threads();
            g.out_h
                .div_ceil(fits)
                .next_multiple_of(threads)
                .min(g.out_h)
        };
        // Band `b`'s first flat pixel: the tiles spread evenly over the
        // bands. Its rows are those its pixels fall in.
        let total = g.out_h * l.width;
        let tiles = total.div_ceil(k.nt);
        let band_start = |b: usize| (tiles * b / bands * k.nt).min(total);
        let band_rows = |b: usize| {
            let (p0, p1) = (band_start(b), band_start(b + 1));
            let r0 = p0 / l.width;
            (
                r0,
                (p1 - 1) / l.width + 1 - r0,
                p0 - r0 * l.width..p1 - r0 * l.width,
            )
        };
        let parts = parallel::parts(work, if blocks_outer { blocks } else { bands });
        let writer = DisjointWriter::new(y);
        parallel::for_each_part(parts, |p| {
            let (my_blocks, my_bands) = if blocks_outer {
                (blocks * p / parts..blocks * (p + 1) / parts, 0..bands)
            } else {
                (0..blocks, bands * p / parts..bands * (p + 1) / parts)
            };
            if self.reads_input_directly() {
                // A 1x1 convolution with no stride or padding reads the
                // input's planes as they are: no band copy.
                let plane = g.in_h * g.in_w;
                for band in my_bands.filter(|&b| band_start(b) < band_start(b + 1)) {
                    let (r0, _, pixels) = band_rows(band);
                    let image = &x[r0 * g.in_w..];
                    let band = Band {
                        image,
                        channel_stride: plane,
                        taps: &[0],
                        r0,
                        pixels,
                    };
                    self.convolve_band(&band, my_blocks.clone(), blocks_outer, &writer);
                }
                return Ok(());
            }
            IMAGE.with_borrow_mut(|buffer| {
                for band in my_bands.filter(|&b| band_start(b) < band_start(b + 1)) {
                    let (r0, rows, pixels) = band_rows(band);
                    let image_rows = rows + l.halo;
                    let stride = l.channel_stride(image_rows);
                    let len = l.phases * g.in_c * stride;
                    if buffer.len() < len + k.nt {
                        buffer.resize(len + k.nt, 0.0);
                    }
                    let image = &mut buffer[..len];
                    self.fill_band(x, image, r0, image_rows, 0..g.in_c);
                    let taps = l.taps(g.in_c, image_rows);
                    let band = Band {
                        image: buffer,
                        channel_stride: stride,
                        taps: &taps,
                        r0,
                        pixels,
                    };
                    self.convolve_band(&band, my_blocks.clone(), blocks_outer, &writer);
                }
            });
            Ok(())
        })
    }

    /// Whether the tile loops read the input as it is, with no band copy:
    /// a 1x1 convolution with no stride and no padding, whose flat pixels
    /// are the input's own.
    fn reads_input_directly(&self) -> bool {
        let g = &self.geo;
        g.kernel_h * g.kernel_w == 1
            && g.stride_h * g.stride_w == 1
            && (g.out_h, g.out_w) == (g.in_h, g.in_w)
    }

    /// The flat pixels `band.pixels` of output channel blocks `blocks`.
    ///
    /// A tile of a full block whose pixels all land in the output (no
    /// padded columns, no pixels past the last: with padded rows, a tile
    /// inside one row's output columns) is summed straight into the output
    /// and finished in registers by the tile loop with its last chunk; the
    /// others go through a tile of their own, and only their output pixels
    /// are copied out and finished.
    ///
    /// With the blocks inner, every block of a tile reads the same input
    /// pixels: where those pixels of every input channel would not stay in
    /// the first-level cache (wide or deep inputs, nine taps, strides), the
    /// input channels go in chunks that do ([`L1_INPUT_BYTES`]), every
    /// block summing one chunk before the next, its sums kept in memory
    /// between chunks. Without chunks, the blocks fetched the whole tile's
    /// input from the second-level cache each, in a pattern (a jump per
    /// channel and tap) the prefetchers do not follow.
    fn convolve_band(
        &self,
        band: &Band,
        blocks: std::ops::Range<usize>,
        blocks_outer: bool,
        y: &DisjointWriter<f32>,
    ) {
        let (g, l, k) = (&self.geo, &self.layout, &self.kernel);
        let plane = g.out_h * g.out_w;
        let taps = band.taps.len();
        // The band's flat pixels.
        let (px0, end) = (band.pixels.start, band.pixels.end);
        let tiles = (end - px0).div_ceil(k.nt);
        let chunk = if blocks_outer {
            g.in_c
        } else {
            chunk_channels(band.taps, k.nt, g.in_c, self.chunk_bytes)
        };
        let chunks = g.in_c.div_ceil(chunk);
        // One tile of sums per block while the chunks run, else one.
        let kept = if chunks > 1 { blocks.len() } else { 1 };
        let mut sums = vec![0f32; kept * k.mr * k.nt];
        // Input channels of a tile whose reads would run past the image
        // (the last tile of an input read as it is), copied once per band.
        let mut short = vec![];
        let mut short_tile = None;
        let reach = (g.in_c - 1) * band.channel_stride
            + band.taps.iter().copied().max().unwrap_or(0) as usize;
        // Where tile `tile` of block `block` goes in the output, if it goes
        // straight there: a full tile of a full block, every pixel an output
        // pixel. The others go into their tile of sums.
        let direct = |block: usize, tile: usize| -> Option<*mut f32> {
            let first = px0 + tile * k.nt;
            let full = first + k.nt <= end && (block + 1) * k.mr <= g.out_c;
            // With padded rows, a tile inside the output columns of one row.
            let at = band.r0 * l.width + first;
            let (row, column) = (at / l.width, at % l.width);
            let inside = l.width == g.out_w || column + k.nt <= g.out_w;
            (full && inside).then(|| {
                let start = block * k.mr * plane + row * g.out_w + column;
                // SAFETY: this part owns these pixels of these channels.
                unsafe { y.ptr(start, (k.mr - 1) * plane + k.nt) }
            })
        };
        // A tile's first row of sums and the distance between its rows:
        // the output's, or those of its tile of sums, the `slot`th.
        let place = |to: Option<*mut f32>, slot: usize, sums: &mut [f32]| match to {
            Some(out) => (out, plane),
            None => (sums[slot * k.mr * k.nt..].as_mut_ptr(), k.nt),
        };
        // Finishes tile `tile` of block `block` on its way from its tile of
        // sums to its output pixels; a tile summed straight into the output
        // was finished in registers by its last chunk's loop.
        let finish = |block: usize, tile: usize, slot: usize, sums: &[f32]| {
            let first = px0 + tile * k.nt;
            let len = k.nt.min(end - first);
            let channels = k.mr.min(g.out_c - block * k.mr);
            let biases = &self.bias[block * k.mr..][..channels];
            let post = self
                .post
                .as_ref()
                .map(|p| (&p.0[block * k.mr..], &p.1[block * k.mr..]));
            let tile_sums = &sums[slot * k.mr * k.nt..][..k.mr * k.nt];
            self.for_each_output_run(band.r0 * l.width + first, len, |at, pixel, n| {
                let start = block * k.mr * plane + pixel;
                let rows = Rows {
                    from: tile_sums[at..].as_ptr(),
                    from_stride: k.nt,
                    // SAFETY: this part owns these pixels of these
                    // channels.
                    to: unsafe { y.ptr(start, (channels - 1) * plane + n) },
                    to_stride: plane,
                    width: n,
                };
                // SAFETY: `channels` rows of `n` sums of the tile, into
                // as many output pixels this part writes alone;
                // `kernel` came from `TileKernel::native`, so the CPU
                // has its features.
                unsafe { (k.finish)(self.activation, rows, biases, post) };
            });
        };
        // What the tile loop applies to a direct tile's sums with its last
        // chunk: a full block's `mr` biases, scales and offsets.
        let finishing = |block: usize| Finishing {
            activation: self.activation,
            biases: self.bias[block * k.mr..][..k.mr].as_ptr(),
            post: self.post.as_ref().map(|p| {
                let at = block * k.mr;
                (p.0[at..][..k.mr].as_ptr(), p.1[at..][..k.mr].as_ptr())
            }),
        };
        let items = if chunks > 1 {
            tiles
        } else {
            blocks.len() * tiles
        };
        // Where each block of the tile goes, found once per tile.
        let mut targets: Vec<Option<*mut f32>> = Vec::with_capacity(kept);
        for item in 0..items {
            let (tile, block_range) = if chunks > 1 {
                (item, blocks.clone())
            } else if blocks_outer {
                let b = blocks.start + item / tiles;
                (item % tiles, b..b + 1)
            } else {
                let b = blocks.start + item % blocks.len();
                (item / blocks.len(), b..b + 1)
            };
            let first = px0 + tile * k.nt;
            let len = k.nt.min(end - first);
            let (image, channel_stride) = if reach + first + k.nt <= band.image.len() {
                (&band.image[first..], band.channel_stride)
            } else {
                // Only an input read as it is (one tap, no slack) runs out.
                if short_tile != Some(tile) {
                    short.resize(g.in_c * k.nt, 0.0);
                    for (c, pixels) in short.chunks_exact_mut(k.nt).enumerate() {
                        let src = &band.image[c * band.channel_stride + first..][..len];
                        pixels[..len].copy_from_slice(src);
                    }
                    short_tile = Some(tile);
                }
                (&short[..], k.nt)
            };
            targets.clear();
            targets.extend(block_range.clone().map(|block| direct(block, tile)));
            for c0 in (0..g.in_c).step_by(chunk) {
                let in_c = chunk.min(g.in_c - c0);
                for (slot, (block, &to)) in block_range.clone().zip(&targets).enumerate() {
                    let (out, out_stride) = place(to, slot, &mut sums);
                    let args = TileArgs {
                        weights: self.weights[(block * g.in_c + c0) * taps * k.mr..].as_ptr(),
                        taps: band.taps.as_ptr(),
                        tap_count: taps,
                        image: image[c0 * channel_stride..].as_ptr(),
                        channel_stride: channel_stride as isize,
                        in_c,
                        out,
                        out_stride,
                        accumulate: c0 > 0,
                        finishing: to.filter(|_| c0 + in_c == g.in_c).map(|_| finishing(block)),
                    };
                    // SAFETY: the packed weights hold a block of `in_c *
                    // taps * mr`, a chunk's starting at `c0 * taps * mr`;
                    // the image holds every tap's `nt` pixels of every
                    // channel (the halo rows, the channel padding and the
                    // slack after the band, or the copy of a short tile's);
                    // `out` has `mr` rows of `nt` this part writes alone,
                    // holding the earlier chunks' sums after the first;
                    // `kernel` came from `TileKernel::native`, so the CPU
                    // has its features.
                    unsafe { (k.run)(&args) };
                }
            }
            for (slot, (block, &to)) in block_range.zip(&targets).enumerate() {
                if to.is_none() {
                    finish(block, tile, slot, &sums);
                }
            }
        }
    }

    /// Calls `run(at, pixel, n)` for each run of output pixels among flat
    /// pixels `first..first + len`, the padded width's extra columns left
    /// out: `n` values from the `at`th of them go to `pixel..pixel + n` of
    /// an output plane.
    #[inline]
    fn for_each_output_run(
        &self,
        first: usize,
        len: usize,
        mut run: impl FnMut(usize, usize, usize),
    ) {
        let (g, w) = (&self.geo, self.layout.width);
        if w == g.out_w {
            run(0, first, len);
            return;
        }
        let end = first + len;
        let mut j = first;
        while j < end {
            let (row, col) = (j / w, j % w);
            let next = ((row + 1) * w).min(end);
            if col < g.out_w {
                run(
                    j - first,
                    row * g.out_w + col,
                    (g.out_w - col).min(next - j),
                );
            }
            j = next;
        }
    }
}

impl Op for F32Conv {
    fn name(&self) -> StaticName {
        "F32Conv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        Ok(vec![format!(
            "{}x{} stride {}x{}, {} -> {} channels, {:?}, kernel {}",
            g.kernel_h,
            g.kernel_w,
            g.stride_h,
            g.stride_w,
            g.in_c,
            g.out_c,
            self.activation,
            self.kernel.name
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for F32Conv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = numbers::<f32>(&inputs[0])?;
        let g = &self.geo;
        let (in_len, out_len) = (g.in_c * g.in_h * g.in_w, g.out_c * g.out_h * g.out_w);
        if x.len() != g.batch * in_len {
            bail!("F32Conv: {} input values for {:?}", x.len(), g);
        }
        let y = new_tensor::<f32>(DatumType::F32, &self.shape, |y| {
            for b in 0..g.batch {
                self.eval_image(&x[b * in_len..][..in_len], &mut y[b * out_len..][..out_len])?;
            }
            Ok(())
        })?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for F32Conv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geo;
        let macs = g.batch * g.out_c * g.out_h * g.out_w * g.in_c * g.kernel_h * g.kernel_w;
        Ok(tvec!((Cost::FMA(DatumType::F32), macs.into())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use tract_linalg::multithread::{Executor, multithread_tract_scope};

    use super::*;
    use crate::geometry::geometry;

    /// The convolution by its definition, with an activation.
    fn reference(g: &Geometry, x: &[f32], w: &[f32], bias: &[f32], act: Activation) -> Vec<f32> {
        let mut y = vec![0f32; g.batch * g.out_c * g.out_h * g.out_w];
        for n in 0..g.batch {
            for o in 0..g.out_c {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut sum = 0f64;
                        for c in 0..g.in_c {
                            for ky in 0..g.kernel_h {
                                for kx in 0..g.kernel_w {
                                    let iy = (oy * g.stride_h + ky * g.dilation_h) as isize
                                        - g.pad_top as isize;
                                    let ix = (ox * g.stride_w + kx * g.dilation_w) as isize
                                        - g.pad_left as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= g.in_h
                                        || ix as usize >= g.in_w
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * g.in_c + c) * g.in_h + iy as usize) * g.in_w
                                        + ix as usize];
                                    let wv =
                                        w[((o * g.in_c + c) * g.kernel_h + ky) * g.kernel_w + kx];
                                    sum += (xv * wv) as f64;
                                }
                            }
                        }
                        let v = act.apply(sum as f32 + bias[o]);
                        y[((n * g.out_c + o) * g.out_h + oy) * g.out_w + ox] = v;
                    }
                }
            }
        }
        y
    }

    /// An input, weights (`per_output` each) and biases for `g`.
    fn operands(g: &Geometry, per_output: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..g.batch * g.in_c * g.in_h * g.in_w)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.02)
            .collect();
        let w = (0..g.out_c * per_output)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) * 0.01)
            .collect();
        let bias = (0..g.out_c).map(|o| o as f32 * 0.1 - 0.5).collect();
        (x, w, bias)
    }

    /// The largest difference between two outputs.
    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    }

    fn run(op: &F32Conv, x: &[f32]) -> Vec<f32> {
        let g = &op.geo;
        let x = Tensor::from_shape(&[g.batch, g.in_c, g.in_h, g.in_w], x).unwrap();
        let y = op
            .eval(&EvalContext::out_of_plan(), tvec!(x.into_tvalue()))
            .unwrap();
        numbers::<f32>(&y[0]).unwrap().to_vec()
    }

    #[test]
    fn every_geometry_matches_the_definition_on_every_kernel_and_thread_count() {
        let cases = [
            // A stem: 3 channels, 3x3 stride 2, odd sizes.
            geometry((1, 3, 37, 45), 16, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            // 3x3 stride 1, channel counts no tile divides, a batch of two.
            geometry((2, 13, 19, 23), 29, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            // Pointwise, a last tile of a few pixels.
            geometry((1, 17, 9, 11), 25, (1, 1), (1, 1), 1, (0, 0), (0, 0)),
            // Pointwise over many full tiles, read and stored in place;
            // pointwise with padding (copied, stored in place).
            geometry((1, 24, 30, 40), 48, (1, 1), (1, 1), 1, (0, 0), (0, 0)),
            geometry((1, 45, 7, 9), 30, (1, 1), (1, 1), 1, (0, 0), (0, 0)),
            geometry((1, 5, 12, 20), 24, (1, 1), (1, 1), 1, (1, 1), (1, 1)),
            // Pointwise with stride 2 (through the phases).
            geometry((1, 8, 10, 12), 8, (1, 1), (2, 2), 1, (0, 0), (0, 0)),
            // Column stride 3, padding on one side only, an odd width: runs
            // that start on every phase and end short of the row.
            geometry((1, 4, 13, 17), 5, (3, 3), (1, 3), 1, (1, 2), (1, 0)),
            // 5x5, asymmetric padding, rectangular stride.
            geometry((1, 6, 21, 18), 7, (5, 5), (2, 1), 1, (2, 1), (1, 3)),
            // Dilated 3x3, wide 7x1 and 1x7, a 2x2 stride-2 with no padding.
            geometry((1, 5, 16, 16), 9, (3, 3), (1, 1), 2, (2, 2), (2, 2)),
            geometry((1, 4, 15, 20), 6, (7, 1), (1, 1), 1, (3, 0), (3, 0)),
            geometry((1, 4, 15, 20), 6, (1, 7), (1, 1), 1, (0, 3), (0, 3)),
            geometry((1, 12, 14, 14), 12, (2, 2), (2, 2), 1, (0, 0), (0, 0)),
            // One output pixel; a tiny map with more padding than input.
            geometry((1, 3, 3, 3), 5, (3, 3), (1, 1), 1, (0, 0), (0, 0)),
            geometry((1, 2, 2, 1), 3, (3, 3), (1, 1), 1, (2, 2), (2, 2)),
        ];
        let activations = [
            Activation::IDENTITY,
            Activation::Silu,
            Activation::Clamp { lo: 0.0, hi: 6.0 },
            Activation::HardSwish {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
        ];
        for kernel in TileKernel::all_native() {
            for (i, g) in cases.iter().enumerate() {
                let act = activations[i % activations.len()];
                let (x, w, bias) = operands(g, g.in_c * g.kernel_h * g.kernel_w);
                let shape = vec![g.batch, g.out_c, g.out_h, g.out_w];
                let mut op =
                    F32Conv::new(g.clone(), kernel, &w, bias.clone(), act, shape.clone()).unwrap();
                let expected = reference(g, &x, &w, &bias, act);
                // One thread and two give the same bytes, close to the
                // definition.
                let checked = |op: &F32Conv, way: &str| {
                    let one = run(op, &x);
                    let two = multithread_tract_scope(Executor::multithread(2), || run(op, &x));
                    assert_eq!(
                        one, two,
                        "{} {way}, case {i}: two threads give the bytes one does",
                        kernel.name
                    );
                    let worst = worst(&expected, &one);
                    assert!(
                        worst < 2e-5,
                        "{} {way}, case {i} {g:?} {act:?}: off by {worst}",
                        kernel.name
                    );
                    one
                };
                let one = checked(&op, "flat");
                // Bands of a row or two, split over two threads.
                op.band_bytes = 1;
                let banded = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
                assert_eq!(
                    one, banded,
                    "{}, case {i}: bands give the bytes one image does",
                    kernel.name
                );
                op.band_bytes = BAND_BYTES;
                op.chunk_bytes = 1;
                let chunked = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
                assert_eq!(
                    one, chunked,
                    "{}, case {i}: input channels in chunks give the bytes all at once do",
                    kernel.name
                );
                // The same on the pixel rows, whatever the map's size.
                let rows = F32Conv::packed(
                    g.clone(),
                    kernel,
                    &w,
                    bias.clone(),
                    act,
                    shape,
                    Some(kernel),
                    false,
                );
                checked(&rows, "pixel rows");
            }
        }
    }

    /// Winograd F(4x4, 3x3) gives the definition to float rounding on maps
    /// no tile divides, every padding a 3x3 of stride 1 takes, a batch of
    /// two, channel counts no block divides; the same bytes on one thread
    /// and two, in one band or many, with the input channels in one chunk
    /// or many; with a scale and offset after the activation, and with an
    /// affine folded into its transformed weights.
    #[test]
    fn winograd_matches_the_definition() {
        let cases = [
            geometry((1, 13, 19, 23), 29, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((2, 8, 16, 16), 16, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 5, 11, 9), 7, (3, 3), (1, 1), 1, (0, 0), (0, 0)),
            geometry((1, 6, 10, 13), 9, (3, 3), (1, 1), 1, (2, 0), (0, 2)),
            geometry((1, 3, 3, 2), 4, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 40, 24, 30), 20, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            // Work enough for two threads at once: bands split between
            // them; and a map of fewer tile groups than threads, each band's
            // channels and blocks split between them.
            geometry((1, 64, 32, 32), 64, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 160, 8, 8), 160, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
        ];
        let activations = Activation::EVERY_KIND;
        for kernel in TileKernel::all_native() {
            for (i, g) in cases.iter().enumerate() {
                let act = activations[i % activations.len()];
                let (x, w, bias) = operands(g, g.in_c * 9);
                // The two largest cases do split between two threads.
                let work = 36 * g.out_c * g.in_c * g.out_h.div_ceil(4) * (g.out_w.div_ceil(4) + 1);
                assert!(i < 6 || work >= 2 * crate::parallel::MIN_WORK_PER_PART);
                let shape = vec![g.batch, g.out_c, g.out_h, g.out_w];
                let make = |act| {
                    F32Conv::packed(
                        g.clone(),
                        kernel,
                        &w,
                        bias.clone(),
                        act,
                        shape.clone(),
                        None,
                        true,
                    )
                };
                let mut op = make(act);
                assert!(op.kernel_name().contains("winograd"));
                let expected = reference(g, &x, &w, &bias, act);
                // Rounding grows with the terms summed: within 1e-6 of
                // their sum's scale.
                let scale: f32 = (g.in_c * 9) as f32;
                let one = run(&op, &x);
                let off = worst(&expected, &one);
                assert!(
                    off < 1e-6 * scale.max(10.0),
                    "{} case {i} {g:?} {act:?}: off by {off}",
                    kernel.name
                );
                let two = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
                assert_eq!(one, two, "{} case {i}: two threads", kernel.name);
                op.band_bytes = 1;
                op.chunk_bytes = 1;
                let banded = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
                assert_eq!(one, banded, "{} case {i}: bands and chunks", kernel.name);
                // A scale and offset after the activation.
                let post: Vec<(f32, f32)> = (0..g.out_c)
                    .map(|o| (0.5 + o as f32 / 40.0, o as f32 / 20.0 - 1.0))
                    .collect();
                op.fold_post_affine(post.iter().copied());
                let plane = g.out_h * g.out_w;
                let shifted: Vec<f32> = expected
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        v.mul_add(post[(j / plane) % g.out_c].0, post[(j / plane) % g.out_c].1)
                    })
                    .collect();
                let off = worst(&shifted, &run(&op, &x));
                assert!(
                    off < 2e-6 * scale.max(10.0),
                    "{} case {i} post: off by {off}",
                    kernel.name
                );
                // An affine folded into the weights before the activation.
                let mut folded = make(Activation::IDENTITY);
                folded.fold_affine((0..g.out_c).map(|o| (1.5 - o as f32 / 30.0, 0.25)));
                let scaled: Vec<f32> = (0..g.out_c)
                    .flat_map(|o| {
                        w[o * g.in_c * 9..][..g.in_c * 9]
                            .iter()
                            .map(move |&v| v * (1.5 - o as f32 / 30.0))
                    })
                    .collect();
                let shifted_bias: Vec<f32> = (0..g.out_c)
                    .map(|o| bias[o] * (1.5 - o as f32 / 30.0) + 0.25)
                    .collect();
                let expected = reference(g, &x, &scaled, &shifted_bias, Activation::IDENTITY);
                let off = worst(&expected, &run(&folded, &x));
                assert!(
                    off < 2e-6 * scale.max(10.0),
                    "{} case {i} folded: off by {off}",
                    kernel.name
                );
            }
        }
    }

    /// A pointwise convolution read as it is has its full tiles finished in
    /// registers by the tile loop (`Finishing`), the rest on their way out
    /// of a tile of sums (`TileKernel::finish`), as a depthwise one walked by
    /// rows has its rows: every activation, with and without a scale and
    /// offset after it, gives what the definition does.
    #[test]
    fn tiles_finished_in_registers_match_the_definition_for_every_activation() {
        // 30x40 pixels: full tiles on every kernel, and a last short one on
        // the 48- and 64-pixel tiles; 50 channels: a part block too. The
        // depthwise one: rows of 37, their last run overlapping the one
        // before.
        let pointwise = geometry((1, 24, 30, 40), 50, (1, 1), (1, 1), 1, (0, 0), (0, 0));
        let depthwise = geometry((1, 7, 9, 37), 7, (3, 3), (1, 1), 1, (1, 1), (1, 1));
        let activations = Activation::EVERY_KIND;
        for (kernel, g) in TileKernel::all_native()
            .into_iter()
            .flat_map(|k| [(k, &pointwise), (k, &depthwise)])
        {
            let is_depthwise = g.in_c == g.out_c && g.kernel_h == 3;
            let taps = g.kernel_h * g.kernel_w;
            let (x, w, bias) = operands(g, if is_depthwise { taps } else { g.in_c });
            // The depthwise filters as a dense convolution's, for the definition.
            let dense = if is_depthwise {
                let mut dense = vec![0f32; g.out_c * g.in_c * taps];
                for c in 0..g.out_c {
                    dense[(c * g.in_c + c) * taps..][..taps]
                        .copy_from_slice(&w[c * taps..][..taps]);
                }
                dense
            } else {
                w.clone()
            };
            let shape = vec![g.batch, g.out_c, g.out_h, g.out_w];
            let post: Vec<(f32, f32)> = (0..g.out_c)
                .map(|o| (0.5 + o as f32 / 40.0, o as f32 / 20.0 - 1.0))
                .collect();
            for act in activations {
                let g = g.clone();
                let expected = reference(&g, &x, &dense, &bias, act);
                let mut op = if is_depthwise {
                    let mut op =
                        F32Conv::depthwise(g.clone(), kernel, &w, bias.clone(), act, shape.clone())
                            .unwrap();
                    op.depthwise = Some(DepthwiseWay::Rows);
                    op
                } else {
                    let op = F32Conv::new(g.clone(), kernel, &w, bias.clone(), act, shape.clone())
                        .unwrap();
                    assert!(op.reads_input_directly());
                    op
                };
                let worst_plain = worst(&expected, &run(&op, &x));
                assert!(
                    worst_plain < 2e-5,
                    "{} {act:?}: off by {worst_plain}",
                    kernel.name
                );
                op.fold_post_affine(post.iter().copied());
                let plane = g.out_h * g.out_w;
                let expected: Vec<f32> = expected
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let (scale, offset) = post[i / plane];
                        v.mul_add(scale, offset)
                    })
                    .collect();
                let worst_post = worst(&expected, &run(&op, &x));
                assert!(
                    worst_post < 4e-5,
                    "{} {act:?} with a scale and offset: off by {worst_post}",
                    kernel.name
                );
            }
        }
    }

    #[test]
    fn depthwise_matches_the_definition_on_every_kernel_and_thread_count() {
        let cases = [
            geometry((1, 13, 19, 23), 13, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((2, 8, 20, 17), 8, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            geometry((1, 5, 16, 16), 5, (5, 5), (1, 1), 1, (2, 2), (2, 2)),
            geometry((1, 6, 15, 14), 6, (3, 3), (1, 1), 2, (2, 2), (2, 2)),
            geometry((1, 3, 2, 2), 3, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            geometry((1, 4, 11, 21), 4, (3, 5), (2, 3), 1, (0, 2), (1, 1)),
            geometry((1, 7, 9, 12), 7, (3, 3), (1, 2), 2, (2, 0), (2, 3)),
            geometry((1, 2, 6, 1), 2, (3, 1), (1, 1), 1, (1, 0), (1, 0)),
            // Planes copied whole and summed flat: rows a few runs of
            // vectors would overshoot.
            geometry((1, 3, 5, 70), 3, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 3, 6, 71), 3, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            geometry((1, 2, 7, 66), 2, (3, 3), (2, 2), 1, (0, 0), (1, 1)),
            geometry((1, 2, 8, 50), 2, (3, 3), (1, 1), 2, (2, 2), (2, 2)),
            geometry((1, 2, 8, 53), 2, (5, 5), (2, 2), 2, (4, 4), (4, 4)),
            geometry((1, 2, 5, 40), 2, (3, 3), (3, 3), 1, (1, 1), (1, 1)),
            geometry((1, 2, 4, 16), 2, (3, 3), (1, 1), 1, (1, 0), (1, 0)),
            geometry((1, 2, 4, 34), 2, (3, 3), (2, 2), 1, (1, 1), (0, 0)),
            // A padded row at a time: rows of whole runs, or nearly (the
            // last run overlapping the one before).
            geometry((1, 3, 5, 64), 3, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 2, 6, 128), 2, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            geometry((1, 2, 8, 48), 2, (3, 3), (1, 1), 2, (2, 2), (2, 2)),
            geometry((1, 2, 9, 125), 2, (5, 5), (2, 2), 2, (4, 4), (4, 4)),
            geometry((1, 2, 4, 64), 2, (3, 3), (1, 1), 1, (1, 1), (1, 0)),
            geometry((1, 2, 5, 96), 2, (3, 3), (3, 3), 1, (1, 1), (1, 1)),
            // Blocks of sixteen channels in the lanes, a last one short:
            // small maps, squares to transpose and edges, both strides.
            geometry((1, 37, 10, 10), 37, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
            geometry((1, 32, 20, 20), 32, (3, 3), (2, 2), 1, (1, 1), (1, 1)),
            geometry((1, 48, 7, 9), 48, (3, 3), (2, 2), 1, (0, 0), (1, 1)),
            geometry((1, 17, 5, 33), 17, (5, 5), (1, 1), 2, (4, 4), (4, 4)),
            geometry((1, 16, 1, 1), 16, (3, 3), (1, 1), 1, (1, 1), (1, 1)),
        ];
        let ways = [DepthwiseWay::Rows, DepthwiseWay::Flat, DepthwiseWay::Lanes];
        for (kernel, way) in TileKernel::all_native()
            .into_iter()
            .flat_map(|k| ways.map(|w| (k, w)))
        {
            for (i, g) in cases.iter().enumerate() {
                let taps = g.kernel_h * g.kernel_w;
                let (x, w, bias) = operands(g, taps);
                // The same convolution as a dense one, zero off the diagonal.
                let mut dense = vec![0f32; g.out_c * g.in_c * taps];
                for c in 0..g.out_c {
                    dense[(c * g.in_c + c) * taps..][..taps]
                        .copy_from_slice(&w[c * taps..][..taps]);
                }
                let act = Activation::HardSwish {
                    alpha: 1.0 / 6.0,
                    beta: 0.5,
                };
                let expected = reference(g, &x, &dense, &bias, act);
                let shape = vec![g.batch, g.out_c, g.out_h, g.out_w];
                let mut op =
                    F32Conv::depthwise(g.clone(), kernel, &w, bias.clone(), act, shape).unwrap();
                op.depthwise = Some(way);
                let one = run(&op, &x);
                let two = multithread_tract_scope(Executor::multithread(2), || run(&op, &x));
                assert_eq!(one, two, "{} {way:?}, case {i}: two threads", kernel.name);
                let worst = worst(&expected, &one);
                assert!(
                    worst < 2e-5,
                    "{} {way:?}, case {i} {g:?}: off by {worst}",
                    kernel.name
                );
            }
        }
    }

    #[test]
    fn wrong_weights_and_shapes_are_refused() {
        let Some(kernel) = TileKernel::native() else {
            return;
        };
        let g = geometry((1, 2, 4, 4), 3, (3, 3), (1, 1), 1, (1, 1), (1, 1));
        let shape = vec![1, 3, 4, 4];
        let err = F32Conv::new(
            g.clone(),
            kernel,
            &[0.0; 5],
            vec![0.0; 3],
            Activation::IDENTITY,
            shape.clone(),
        )
        .unwrap_err();
        assert!(err.contains("5 weights"), "{err}");
        let err = F32Conv::new(
            g.clone(),
            kernel,
            &[0.0; 54],
            vec![0.0; 2],
            Activation::IDENTITY,
            shape,
        )
        .unwrap_err();
        assert!(err.contains("2 biases"), "{err}");
        let err = F32Conv::new(
            g,
            kernel,
            &[0.0; 54],
            vec![0.0; 3],
            Activation::IDENTITY,
            vec![1, 3, 4, 5],
        )
        .unwrap_err();
        assert!(err.contains("an output of"), "{err}");
    }
}
