//! The inner loops of [`super::F32Conv`]: one tile of `mr` output channels
//! by `nt` output pixels, summed over every input channel and kernel tap.
//!
//! The input is read straight from the (padded, phase-split) image: for
//! stride 1, the `nt` pixels a tap reads for a tile are `nt` consecutive
//! floats, so no im2col buffer is built or packed. The weights are packed
//! once at load, `mr` output channels side by side per (input channel, tap).
//! Each kernel keeps `mr x nt` sums in registers, loads its pixel vectors
//! once per tap and broadcasts each weight: XNNPACK's and onnxruntime's
//! register blocking, on NCHW.

use crate::fp32::activation::Activation;

/// Where one tile reads and writes.
pub struct TileArgs {
    /// Packed weights of this tile's output channels: `[in_c][taps][mr]`.
    pub weights: *const f32,
    /// Offset of each tap in the image, in floats, from the tile's first pixel.
    pub taps: *const isize,
    /// Number of taps.
    pub tap_count: usize,
    /// The tile's first pixel in input channel 0.
    pub image: *const f32,
    /// Distance between two input channels in the image, in floats.
    pub channel_stride: isize,
    /// Input channels.
    pub in_c: usize,
    /// `mr x nt` sums, row-major.
    pub out: *mut f32,
}

/// A per-row scale and offset after the activation.
pub type PostAffine<'a> = Option<(&'a [f32], &'a [f32])>;

/// [`TileKernel::finish`]: the activation, then the scale and offset, on a
/// tile of rows `width` long, one bias per row.
pub type Finish = unsafe fn(Activation, &mut [f32], usize, &[f32], PostAffine);

/// A tile loop and its shape.
#[derive(Clone, Copy)]
pub struct TileKernel {
    /// The loop's name, for the kernel audit.
    pub name: &'static str,
    /// Output channels per tile.
    pub mr: usize,
    /// Output pixels per tile.
    pub nt: usize,
    /// The loop.
    ///
    /// # Safety
    /// `weights` holds `in_c * tap_count * mr` floats, `taps` holds
    /// `tap_count` offsets, and for every input channel `c` and tap `t`,
    /// `nt` floats from `image + c * channel_stride + taps[t]` are readable;
    /// `out` has room for `mr * nt` floats. The CPU has the loop's features.
    pub run: unsafe fn(&TileArgs),
    /// [`Activation::apply_tile`] on a tile of `mr` rows of `nt`, vectorized
    /// for the same CPU.
    ///
    /// # Safety
    /// The CPU has the loop's features.
    pub finish: Finish,
    /// `acc[i] += x[i] * w` over the two slices, vectorized for the same
    /// CPU: a depthwise convolution's tap.
    ///
    /// # Safety
    /// The CPU has the loop's features.
    pub axpy: unsafe fn(&mut [f32], &[f32], f32),
}

/// `acc[i] += x[i] * w`: one fused multiply-add per value.
#[inline(always)]
fn axpy(acc: &mut [f32], x: &[f32], w: f32) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = v.mul_add(w, *a);
    }
}

impl std::fmt::Debug for TileKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for TileKernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TileKernel {}

impl TileKernel {
    /// The best tile loop for this CPU, if Edgewise has one for it; else the
    /// convolution stays tract's.
    pub fn native() -> Option<TileKernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(x86::AVX512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(x86::AVX2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Some(arm64::NEON);
        }
        #[allow(unreachable_code)]
        None
    }

    /// Every tile loop this CPU can run, the best first (for tests).
    pub fn all_native() -> Vec<TileKernel> {
        let mut kernels = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(x86::AVX512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(x86::AVX2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        kernels.push(arm64::NEON);
        kernels
    }
}

/// [`TileKernel::finish`] and [`TileKernel::axpy`] compiled for one
/// instruction set's `$feature`s: the same plain loops, vectorized as wide
/// as it allows.
macro_rules! vector_loops {
    ($feature:literal, $finish:ident, $axpy:ident) => {
        #[target_feature(enable = $feature)]
        unsafe fn $finish(
            activation: Activation,
            tile: &mut [f32],
            width: usize,
            biases: &[f32],
            post: PostAffine,
        ) {
            activation.apply_tile(tile, width, biases, post);
        }

        #[target_feature(enable = $feature)]
        unsafe fn $axpy(acc: &mut [f32], x: &[f32], w: f32) {
            super::axpy(acc, x, w);
        }
    };
}

/// The tile loop of one instruction set, written once: `$mr` channels by
/// `$nv` vectors of `$lanes` pixels, with the instruction set's `$load`,
/// `$splat` (a weight to every lane), `$fma` and `$store`.
macro_rules! tile_loop {
    ($name:ident, $feature:literal, $vec:ty, $mr:expr, $nv:expr, $lanes:expr,
     $zero:expr, $load:path, $splat:path, $fma:path, $store:path) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(a: &TileArgs) {
            // SAFETY: the caller's contract (`TileKernel::run`) makes every
            // read and write below in bounds.
            unsafe {
                let mut acc: [[$vec; $nv]; $mr] = [[$zero; $nv]; $mr];
                let mut w = a.weights;
                let taps = std::slice::from_raw_parts(a.taps, a.tap_count);
                for c in 0..a.in_c {
                    let channel = a.image.offset(c as isize * a.channel_stride);
                    for &tap in taps {
                        let p = channel.offset(tap);
                        let mut b: [$vec; $nv] = [$zero; $nv];
                        for v in 0..$nv {
                            b[v] = $load(p.add(v * $lanes));
                        }
                        for r in 0..$mr {
                            let wr = $splat(*w.add(r));
                            for v in 0..$nv {
                                acc[r][v] = $fma(wr, b[v], acc[r][v]);
                            }
                        }
                        w = w.add($mr);
                    }
                }
                for r in 0..$mr {
                    for v in 0..$nv {
                        $store(a.out.add(r * $nv * $lanes + v * $lanes), acc[r][v]);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Activation, PostAffine, TileArgs, TileKernel};

    /// 12 channels by 32 pixels: 24 of the 32 vector registers hold sums;
    /// per tap, 2 pixel loads and 12 weight broadcasts feed 24 FMAs.
    pub const AVX512: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx512_12x32",
        mr: 12,
        nt: 32,
        run: avx512_12x32,
        finish: finish_avx512,
        axpy: axpy_avx512,
    };

    /// 6 channels by 16 pixels: 12 of the 16 registers hold sums.
    pub const AVX2: TileKernel = TileKernel {
        name: "edgewise_f32_conv_avx2_6x16",
        mr: 6,
        nt: 16,
        run: avx2_6x16,
        finish: finish_avx2,
        axpy: axpy_avx2,
    };

    vector_loops!("avx512f", finish_avx512, axpy_avx512);
    vector_loops!("avx2,fma", finish_avx2, axpy_avx2);

    tile_loop!(
        avx512_12x32,
        "avx512f",
        __m512,
        12,
        2,
        16,
        _mm512_setzero_ps(),
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps
    );
    tile_loop!(
        avx2_6x16,
        "avx2,fma",
        __m256,
        6,
        2,
        8,
        _mm256_setzero_ps(),
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );
}

#[cfg(target_arch = "aarch64")]
mod arm64 {
    use std::arch::aarch64::*;

    use super::{Activation, PostAffine, TileArgs, TileKernel};

    /// 8 channels by 12 pixels: 24 of the 32 vector registers hold sums;
    /// per tap, 3 pixel loads and 8 weight broadcasts feed 24 FMAs.
    pub const NEON: TileKernel = TileKernel {
        name: "edgewise_f32_conv_neon_8x12",
        mr: 8,
        nt: 12,
        run: neon_8x12,
        finish: finish_neon,
        axpy: axpy_neon,
    };

    vector_loops!("neon", finish_neon, axpy_neon);

    /// `acc + w * b`, in the argument order of the x86 intrinsics.
    #[target_feature(enable = "neon")]
    fn fma(w: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, w, b)
    }
    tile_loop!(
        neon_8x12,
        "neon",
        float32x4_t,
        8,
        3,
        4,
        vdupq_n_f32(0.0),
        vld1q_f32,
        vdupq_n_f32,
        fma,
        vst1q_f32
    );
}
