//! The rewrite that puts Edgewise's integer operators into a typed model:
//! every quantized `Conv` tract would run through im2col becomes an
//! [`Int8Conv`], quantize and dequantize nodes become [`Quantize`](super::Quantize) and
//! [`Dequantize`](super::Dequantize), element-wise float graphs between them become [`Lut`](super::Lut)s,
//! and int8 `DepthToSpace` chains become [`PixelShuffle`](shuffle::PixelShuffle)s.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::ops::cnn::Conv;
use edgewise_graph::tract_onnx::tract_core::ops::nn::DataFormat;
use tract_linalg::MmmDispatch;
use tract_linalg::mmm::{Query, retain_best};

use super::conv::{Int8Conv, Kernel};
use super::dense::{DenseKernel, Matmul};
use super::depthwise::Grid;
use super::winograd::{self, Winograd};
use super::{lut, pack, pairs, quantize};
use crate::constant::{const_value, constant};
use crate::geometry::Geometry;
use crate::shuffle;
use crate::tensor::numbers;

/// What [`install`] replaced, and what it left to tract, with the reason.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Installed {
    /// Dense (group 1) convolutions now on [`Int8Conv`]'s matrix kernel or
    /// its Winograd F(2x2, 3x3).
    pub dense: usize,
    /// Depthwise convolutions now on its direct loop.
    pub depthwise: usize,
    /// Quantized convolutions left to tract: node and why.
    pub skipped: Vec<(String, String)>,
    /// tract's f32 `QuantizeLinear` nodes now [`Quantize`](super::Quantize).
    pub quantize: usize,
    /// tract's int8 `DequantizeLinear` nodes now [`Dequantize`](super::Dequantize).
    pub dequantize: usize,
    /// Element-wise float graphs from a dequantize to a quantize folded
    /// into a [`Lut`](super::Lut).
    pub tables: usize,
    /// Tables (tract's or ours) that map every int8 value to itself,
    /// removed: a dequantize and a quantize with the same parameters, as
    /// around a `DepthToSpace` whose reshapes tract moved to the int8 side.
    pub identities: usize,
    /// int8 `DepthToSpace`s now [`PixelShuffle`](shuffle::PixelShuffle).
    pub pixel_shuffles: usize,
    /// Tables (ours or tract's) folded into the [`Int8Conv`] they read,
    /// applied as it writes its outputs.
    pub tables_in_convs: usize,
}

/// Replaces every quantized convolution of `model` that [`Int8Conv`] can
/// run, declutters the model (which folds `DequantizeLinear -> element-wise
/// -> QuantizeLinear` chains into lookup tables), replaces the remaining
/// quantize and dequantize nodes by [`Quantize`](super::Quantize) and [`Dequantize`](super::Dequantize), and
/// folds the element-wise graphs between them into [`Lut`](super::Lut)s,
/// and those that read a convolution alone into the convolution.
pub fn install(model: &mut TypedModel) -> TractResult<Installed> {
    let mut report = Installed::default();
    let candidates: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_as::<Conv>().is_some_and(|c| c.q_params.is_some()))
        .map(|n| n.id)
        .collect();
    for id in candidates {
        let node = model.node(id);
        match build(model, node) {
            Ok(op) => {
                if op.is_depthwise() {
                    report.depthwise += 1;
                } else {
                    report.dense += 1;
                }
                let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
                patch.apply(model)?;
            }
            Err(reason) => report.skipped.push((node.name.clone(), reason)),
        }
    }
    *model = std::mem::take(model).into_decluttered()?;
    quantize::install_quantizers(model, &mut report)?;
    (report.tables, report.identities) = lut::fold_into_tables(model)?;
    report.tables_in_convs = lut::fold_into_convs(model)?;
    report.pixel_shuffles = shuffle::install_pixel_shuffles(model)?;
    Ok(report)
}

fn build(model: &TypedModel, node: &TypedNode) -> Result<Int8Conv, String> {
    let conv = node.op_as::<Conv>().expect("a Conv");
    let output_dt = model
        .outlet_fact(OutletId::new(node.id, 0))
        .map_err(|e| e.to_string())?
        .datum_type;
    if !matches!(output_dt.unquantized(), DatumType::I8 | DatumType::U8) {
        return Err(format!("its output is {output_dt:?}, not int8"));
    }
    if node.inputs.len() != 9 {
        return Err(format!("{} inputs, not 9", node.inputs.len()));
    }
    let x_fact = model
        .outlet_fact(node.inputs[0])
        .map_err(|e| e.to_string())?;
    let input_u8 = match x_fact.datum_type.unquantized() {
        DatumType::I8 => false,
        DatumType::U8 => true,
        dt => return Err(format!("its input is {dt:?}")),
    };
    if conv.pool_spec.data_format != DataFormat::NCHW {
        return Err("its layout is not NCHW".into());
    }
    let geo = Geometry::of_conv(conv, &x_fact.shape)?;
    let (in_c, out_c) = (geo.in_c, geo.out_c);

    let weights_tensor =
        const_value(model, node.inputs[1], 4).ok_or("its weights are not constant")?;
    let weights_u8 = match weights_tensor.datum_type().unquantized() {
        DatumType::I8 => false,
        DatumType::U8 => true,
        dt => return Err(format!("its weights are {dt:?}, not int8")),
    };
    let raw = numbers::<i8>(&weights_tensor).map_err(|e| e.to_string())?;
    // The kernels read i8: u8 weights move to i8 with their zero point.
    let weights: Vec<i8> = if weights_u8 {
        raw.iter().map(|&w| (w as u8 ^ 0x80) as i8).collect()
    } else {
        raw.to_vec()
    };
    let bias = constant::<i32>(model, node, 2)?;
    let x0 = scalar::<i32>(model, node, 3)?;
    let x_scale = scalar::<f32>(model, node, 4)?;
    let k0 = constant::<i32>(model, node, 5)?;
    let k_scale = constant::<f32>(model, node, 6)?;
    let y0 = scalar::<i32>(model, node, 7)?;
    let y_scale = scalar::<f32>(model, node, 8)?;
    let k0: Vec<i32> = per_channel(&k0, out_c, "weight zero points")?
        .into_iter()
        .map(|z| if weights_u8 { z - 128 } else { z })
        .collect();
    if let Some(z) = k0.iter().find(|z| !(-128..=127).contains(*z)) {
        return Err(format!("a weight zero point of {z} is outside its type"));
    }
    let k_scale = per_channel(&k_scale, out_c, "weight scales")?;
    let scales: Vec<f32> = k_scale.iter().map(|s| x_scale * s / y_scale).collect();
    let mut bias: Vec<i32> = match bias.len() {
        0 | 1 => vec![bias.first().copied().unwrap_or(0); out_c],
        n if n == out_c => bias,
        n => return Err(format!("{n} biases for {out_c} output channels")),
    };
    // The kernels read i8: a u8 input moves to i8 with its zero point.
    let x0 = if input_u8 { x0 - 128 } else { x0 };
    let taps = geo.kernel_h * geo.kernel_w;

    let mut weight_zero = None;
    let kernel = if conv.group == 1 {
        let k = in_c * taps;
        if weights.len() != out_c * k {
            return Err("its weights do not match its shape".into());
        }
        // Padding reads x0 and the kernel computes sum(w * x): take
        // x0 * sum(w) off the bias so that it computes sum(w * (x - x0)).
        for (b, filter) in bias.iter_mut().zip(weights.chunks(k)) {
            let sum: i32 = filter.iter().map(|&w| i32::from(w)).sum();
            *b -= x0 * sum;
        }
        let query = Query {
            weight: DatumType::I8.into(),
            activation: DatumType::I8,
            accumulators: tvec!(DatumType::I32),
            store: None,
            allow_extractor: false,
            m: Some(out_c),
            k: Some(k),
            n: Some(geo.out_h * geo.out_w),
        };
        let matmul = if pairs::preferred() {
            Matmul::Pairs
        } else {
            let (mmm, packing) = pick_kernel(&query)?;
            let b_format = &mmm.packings()[packing].1;
            let layout = pack::Layout::of(&**b_format)
                .ok_or_else(|| format!("no packer for {}'s input layout {b_format}", mmm.name()))?;
            Matmul::Tract(mmm, packing, layout)
        };
        // A weight zero point is taken off after the product, with each
        // pixel's input sum (`Int8Conv::weight_zero`).
        let symmetric = k0.iter().all(|&z| z == 0);
        if !symmetric {
            weight_zero = Some(k0);
        }
        if winograd::pays(&geo, symmetric) {
            Kernel::Winograd(Box::new(Winograd::new(&geo, &weights)?))
        } else {
            Kernel::Dense(DenseKernel::new(&geo, &weights, matmul)?)
        }
    } else if conv.group == in_c && out_c == in_c {
        if weights.len() != out_c * taps {
            return Err("its weights do not match its shape".into());
        }
        let weights: Vec<i16> = weights
            .chunks(taps)
            .zip(&k0)
            .flat_map(|(filter, &z)| filter.iter().map(move |&w| i16::from(w) - z as i16))
            .collect();
        let wide = weights.iter().any(|w| w.abs() > 128);
        let grid = Grid::new(&geo);
        Kernel::Depthwise {
            weights,
            wide,
            grid,
        }
    } else {
        return Err(format!("group {} is neither 1 nor depthwise", conv.group));
    };
    Ok(Int8Conv {
        geo,
        kernel,
        bias: Tensor::from_shape(&[out_c], &bias).map_err(|e| e.to_string())?,
        scales,
        x0,
        weight_zero,
        y0,
        input_u8,
        output_dt,
        table: None,
    })
}

/// The i8 matrix kernel for `query`: tract's pick, except that AMX tiles
/// are passed over for the widest VNNI (or other) kernel. On a Sapphire
/// Rapids VM, PP-OCRv4 det at 640 ran in 551 ms with
/// `avx512vnni_mmm_i32_16x16` against 768 ms with tract's pick,
/// `avx512amx_mmm_i32_8x8` (edge-bench, one thread, docs/benchmarks.md).
fn pick_kernel(query: &Query) -> Result<(Box<dyn tract_linalg::mmm::MatMatMul>, usize), String> {
    let dispatch = MmmDispatch::native();
    let mut suitable = dispatch.suitable(query);
    suitable.retain(|(mmm, _, extractor)| extractor.is_none() && !mmm.name().contains("amx"));
    // The best instruction set first (SDOT over SMLAL on aarch64), then the
    // widest tile.
    retain_best(&mut suitable);
    let widest = suitable
        .into_iter()
        .max_by_key(|(mmm, _, _)| mmm.mr() * mmm.nr());
    match widest {
        Some((mmm, packing, _)) => Ok((mmm, packing)),
        None => dispatch
            .pick(query)
            .map(|(mmm, packing, _)| (mmm, packing))
            .ok_or_else(|| "tract-linalg has no i8 matrix kernel here".into()),
    }
}

/// `v` for each of `out_c` channels: one value for all, or one per channel.
fn per_channel<T: Copy>(v: &[T], out_c: usize, what: &str) -> Result<Vec<T>, String> {
    match v.len() {
        1 => Ok(vec![v[0]; out_c]),
        n if n == out_c => Ok(v.to_vec()),
        n => Err(format!("{n} {what} for {out_c} output channels")),
    }
}

fn scalar<T: Datum + Copy>(model: &TypedModel, node: &TypedNode, ix: usize) -> Result<T, String> {
    match constant::<T>(model, node, ix)?[..] {
        [v] => Ok(v),
        ref v => Err(format!("input {ix} has {} values, not one", v.len())),
    }
}

#[cfg(test)]
mod tests {
    use edgewise_graph::analysis::tract_model;
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_graph::model::AttributeValue;

    use super::*;

    /// One convolution as `QuantizeLinear -> QLinearConv -> DequantizeLinear`.
    struct Case {
        input: [usize; 4],
        out_c: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pads: [i64; 4],
        group: usize,
        /// u8 activations (onnxruntime's default) rather than i8.
        unsigned: bool,
        /// The input's scale and zero point (in i8).
        input_scale: f32,
        input_zero: i32,
        /// The weights' zero point, in i8 (0: symmetric weights).
        weight_zero: i32,
        /// u8 weights rather than i8 (the same values moved by 128).
        unsigned_weights: bool,
        /// One weight scale and zero point for all channels, as onnxruntime
        /// writes weights it quantizes as activations.
        per_tensor: bool,
        /// A SiLU after the convolution, quantized again (YOLOX's pattern).
        silu: bool,
    }

    impl Case {
        fn model(&self) -> edgewise_graph::Model {
            let [n, c, h, w] = self.input;
            let mut b = ModelBuilder::new(17);
            let x = b.input("x", &[n as i64, c as i64, h as i64, w as i64]);
            let zero = |b: &mut ModelBuilder, z: i32, unsigned: bool| {
                if unsigned {
                    b.initializer("z", tensor0((z + 128) as u8))
                } else {
                    b.initializer("z", tensor0(z as i8))
                }
            };
            let sx = b.initializer("sx", tensor0(self.input_scale));
            let zx = zero(&mut b, self.input_zero, self.unsigned);
            let xq = b.op("QuantizeLinear", &[&x, &sx, &zx], vec![]);
            let per_group = c / self.group;
            let len = self.out_c * per_group * self.kernel * self.kernel;
            let weights: Vec<i8> = (0..len).map(|i| ((i * 37 + 11) % 255) as i8).collect();
            let shape = [self.out_c, per_group, self.kernel, self.kernel];
            // One zero point for all channels (a scalar), or one each.
            let zero_shape: &[usize] = if self.per_tensor { &[] } else { &[self.out_c] };
            let zeros = vec![self.weight_zero; zero_shape.iter().product()];
            let (wq, zw) = if self.unsigned_weights {
                let weights: Vec<u8> = weights.iter().map(|&w| (w as u8) ^ 0x80).collect();
                let zeros: Vec<u8> = zeros.iter().map(|&z| (z + 128) as u8).collect();
                (
                    Tensor::from_shape(&shape, &weights).unwrap(),
                    Tensor::from_shape(zero_shape, &zeros).unwrap(),
                )
            } else {
                let zeros: Vec<i8> = zeros.iter().map(|&z| z as i8).collect();
                (
                    Tensor::from_shape(&shape, &weights).unwrap(),
                    Tensor::from_shape(zero_shape, &zeros).unwrap(),
                )
            };
            let wq = b.initializer("w", wq);
            let zw = b.initializer("zw", zw);
            let scales: Vec<f32> = (0..self.out_c).map(|o| 0.001 + 0.0003 * o as f32).collect();
            let sw = if self.per_tensor {
                b.initializer("sw", tensor0(0.002f32))
            } else {
                b.initializer("sw", tensor1(&scales))
            };
            let sy = b.initializer("sy", tensor0(0.08f32));
            let zy = zero(&mut b, 3, self.unsigned);
            let bias: Vec<i32> = (0..self.out_c as i32).map(|o| o * 97 - 300).collect();
            let bias = b.initializer("b", tensor1(&bias));
            let k = self.kernel as i64;
            let attrs = vec![
                ("kernel_shape", AttributeValue::Ints(vec![k, k])),
                ("strides", AttributeValue::Ints(vec![self.stride as i64; 2])),
                (
                    "dilations",
                    AttributeValue::Ints(vec![self.dilation as i64; 2]),
                ),
                ("pads", AttributeValue::Ints(self.pads.to_vec())),
                ("group", AttributeValue::Int(self.group as i64)),
            ];
            let yq = b.op(
                "QLinearConv",
                &[&xq, &sx, &zx, &wq, &sw, &zw, &sy, &zy, &bias],
                attrs,
            );
            let mut y = b.op("DequantizeLinear", &[&yq, &sy, &zy], vec![]);
            if self.silu {
                let silu = b.silu(&y);
                let sz = b.initializer("sz", tensor0(0.05f32));
                let zz = zero(&mut b, -100, self.unsigned);
                let zq = b.op("QuantizeLinear", &[&silu, &sz, &zz], vec![]);
                y = b.op("DequantizeLinear", &[&zq, &sz, &zz], vec![]);
            }
            b.output(&y);
            b.finish()
        }

        /// The largest difference, in output steps, between [`Int8Conv`]
        /// and tract's own quantized convolution, and the share that differ.
        fn compare(&self) -> (f32, f32, Installed) {
            let (worst, differ, installed, _) = self.compare_kernels();
            (worst, differ, installed)
        }

        /// [`Self::compare`], and the kernel names of the installed
        /// [`Int8Conv`]s.
        fn compare_kernels(&self) -> (f32, f32, Installed, Vec<String>) {
            let model = self.model();
            let shapes = vec![("x".to_string(), self.input.to_vec())];
            let typed = tract_model(&model, &shapes).unwrap().into_typed().unwrap();
            let mut ours = typed.clone();
            let installed = install(&mut ours).unwrap();
            let kernels = ours
                .nodes()
                .iter()
                .filter_map(|n| n.op_as::<Int8Conv>())
                .map(Int8Conv::kernel_name)
                .collect();
            let len: usize = self.input.iter().product();
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 53 % 101) as f32 - 40.0) * 0.07)
                .collect();
            let x = Tensor::from_shape(&self.input, &x).unwrap();
            let run = |m: TypedModel| {
                let out = m
                    .into_optimized()
                    .unwrap()
                    .into_runnable()
                    .unwrap()
                    .run(tvec!(x.clone().into()))
                    .unwrap();
                out[0].clone().into_tensor()
            };
            let (a, b) = (run(ours), run(typed));
            assert_eq!(a.shape(), b.shape());
            let a = edgewise_graph::tensor::values::<f32>(&a).unwrap().to_vec();
            let b = edgewise_graph::tensor::values::<f32>(&b).unwrap().to_vec();
            let steps: Vec<f32> = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs() / 0.08)
                .collect();
            let worst = steps.iter().copied().fold(0.0, f32::max);
            let differ = steps.iter().filter(|s| **s > 0.01).count();
            (worst, differ as f32 / a.len() as f32, installed, kernels)
        }
    }

    const DENSE: Case = Case {
        input: [1, 5, 9, 11],
        out_c: 7,
        kernel: 3,
        stride: 1,
        dilation: 1,
        pads: [1, 1, 1, 1],
        group: 1,
        unsigned: false,
        input_scale: 0.05,
        input_zero: -7,
        weight_zero: 0,
        unsigned_weights: false,
        per_tensor: false,
        silu: false,
    };

    fn assert_matches_tract(case: Case, depthwise: bool) {
        let (worst, differ, installed) = case.compare();
        assert_eq!(
            (installed.dense, installed.depthwise),
            if depthwise { (0, 1) } else { (1, 0) },
            "{installed:?}"
        );
        // Both requantize in f32; they may round a tie differently.
        assert!(worst <= 1.01, "largest difference {worst} steps");
        assert!(differ <= 0.02, "{differ} of the outputs differ");
    }

    #[test]
    fn dense_convolutions_match_tract() {
        assert_matches_tract(DENSE, false);
        assert_matches_tract(
            Case {
                unsigned: true,
                ..DENSE
            },
            false,
        );
        assert_matches_tract(
            Case {
                stride: 2,
                pads: [0, 1, 2, 1],
                ..DENSE
            },
            false,
        );
        assert_matches_tract(
            Case {
                dilation: 2,
                pads: [2, 2, 2, 2],
                ..DENSE
            },
            false,
        );
        assert_matches_tract(
            Case {
                kernel: 1,
                pads: [0; 4],
                ..DENSE
            },
            false,
        );
        assert_matches_tract(
            Case {
                input: [2, 5, 9, 11],
                kernel: 5,
                pads: [2; 4],
                ..DENSE
            },
            false,
        );
        // One input channel into many: on a four-depth layout (VNNI, SDOT)
        // the shifted rows would compute four times the products, so im2col.
        assert_matches_tract(
            Case {
                input: [1, 1, 9, 11],
                out_c: 40,
                ..DENSE
            },
            false,
        );
        // Several chunks of output pixels, starting inside output rows, the
        // last one partial; strided, and pointwise.
        let large = Case {
            input: [1, 16, 64, 83],
            out_c: 20,
            ..DENSE
        };
        assert_matches_tract(Case { ..large }, false);
        assert_matches_tract(
            Case {
                stride: 2,
                pads: [1, 0, 1, 1],
                ..large
            },
            false,
        );
        assert_matches_tract(
            Case {
                input: [1, 64, 64, 83],
                kernel: 1,
                pads: [0; 4],
                ..large
            },
            false,
        );
    }

    /// The Winograd F(2x2, 3x3) path inside a whole [`Int8Conv`], where this
    /// CPU takes it (AVX2 without VNNI): u8 inputs with their zero point,
    /// a batch of two, uneven padding and a SiLU table folded in all give
    /// tract's outputs. Elsewhere the same cases check the kernels that CPU
    /// takes instead.
    #[test]
    fn winograd_convolutions_match_tract() {
        let large = Case {
            input: [1, 16, 30, 37],
            out_c: 20,
            input_zero: 5,
            ..DENSE
        };
        let takes_winograd =
            super::super::pairs::preferred() && std::env::var_os("EDGEWISE_NO_WINOGRAD").is_none();
        for case in [
            Case { ..large },
            Case {
                unsigned: true,
                input_zero: -90,
                ..large
            },
            Case {
                input: [2, 16, 30, 37],
                ..large
            },
            Case {
                pads: [0, 2, 1, 0],
                ..large
            },
            Case {
                silu: true,
                ..large
            },
        ] {
            let (worst, differ, installed, kernels) = case.compare_kernels();
            assert_eq!(installed.dense, 1, "{installed:?}");
            assert_eq!(
                kernels.iter().any(|k| k.contains("winograd")),
                takes_winograd,
                "{kernels:?}"
            );
            assert!(worst <= 1.01, "largest difference {worst} steps");
            assert!(differ <= 0.02, "{differ} of the outputs differ");
        }
    }

    /// A SiLU between the convolution and the next quantize becomes a table
    /// the convolution applies as it writes: the same outputs, one op.
    #[test]
    fn a_table_after_a_convolution_folds_into_it() {
        for (case, depthwise) in [
            (DENSE, false),
            (
                Case {
                    unsigned: true,
                    stride: 2,
                    ..DENSE
                },
                false,
            ),
            (
                Case {
                    input: [1, 6, 9, 11],
                    out_c: 6,
                    group: 6,
                    ..DENSE
                },
                true,
            ),
        ] {
            let case = Case { silu: true, ..case };
            let (worst, differ, installed) = case.compare();
            assert_eq!(installed.tables_in_convs, 1, "{installed:?}");
            assert_eq!(installed.depthwise, usize::from(depthwise));
            assert!(worst <= 1.01, "largest difference {worst} steps");
            assert!(differ <= 0.02, "{differ} of the outputs differ");
        }
    }

    /// Weights with a zero point, per tensor (onnxruntime's weights behind
    /// `Constant` nodes) or per channel, i8 or u8, in chunks and pointwise.
    #[test]
    fn weights_with_a_zero_point_match_tract() {
        let zero = Case {
            weight_zero: 9,
            ..DENSE
        };
        assert_matches_tract(Case { ..zero }, false);
        assert_matches_tract(
            Case {
                per_tensor: true,
                unsigned: true,
                stride: 2,
                pads: [0, 1, 2, 1],
                ..zero
            },
            false,
        );
        assert_matches_tract(
            Case {
                unsigned_weights: true,
                weight_zero: -20,
                ..zero
            },
            false,
        );
        assert_matches_tract(
            Case {
                unsigned_weights: true,
                weight_zero: 0,
                ..zero
            },
            false,
        );
        assert_matches_tract(
            Case {
                input: [1, 16, 64, 83],
                out_c: 20,
                per_tensor: true,
                ..zero
            },
            false,
        );
        assert_matches_tract(
            Case {
                input: [1, 64, 20, 23],
                out_c: 20,
                kernel: 1,
                pads: [0; 4],
                weight_zero: -3,
                ..zero
            },
            false,
        );
        // Depthwise: products past i16 (|x - x0| up to 255, |w - w0| up
        // to 227) take the wide loop.
        let dw = Case {
            out_c: 5,
            group: 5,
            ..zero
        };
        assert_matches_tract(Case { ..dw }, true);
        assert_matches_tract(
            Case {
                input_scale: 0.01,
                input_zero: -128,
                weight_zero: -100,
                ..dw
            },
            true,
        );
        assert_matches_tract(
            Case {
                per_tensor: true,
                unsigned: true,
                unsigned_weights: true,
                stride: 2,
                kernel: 5,
                pads: [2, 1, 2, 3],
                weight_zero: -7,
                ..dw
            },
            true,
        );
    }

    #[test]
    fn depthwise_convolutions_match_tract() {
        let dw = Case {
            out_c: 5,
            group: 5,
            ..DENSE
        };
        assert_matches_tract(Case { ..dw }, true);
        assert_matches_tract(Case { stride: 2, ..dw }, true);
        assert_matches_tract(
            Case {
                unsigned: true,
                kernel: 5,
                pads: [2, 1, 2, 3],
                ..dw
            },
            true,
        );
        assert_matches_tract(
            Case {
                dilation: 2,
                pads: [2; 4],
                input: [2, 5, 9, 11],
                ..dw
            },
            true,
        );
        // Wide rows, with padding on either side, strided and not.
        let wide = Case {
            input: [1, 5, 9, 45],
            ..dw
        };
        assert_matches_tract(Case { ..wide }, true);
        assert_matches_tract(
            Case {
                stride: 2,
                kernel: 5,
                pads: [2, 1, 2, 3],
                input: [1, 5, 9, 77],
                ..wide
            },
            true,
        );
        // Three column phases, and a 5-wide filter reading across them.
        assert_matches_tract(
            Case {
                stride: 3,
                kernel: 5,
                pads: [1, 2, 2, 1],
                input: [1, 5, 13, 14],
                ..dw
            },
            true,
        );
    }

    /// Split over two threads (dense by pixels, depthwise by channels), a
    /// convolution gives the same bytes as on one: the parts are the same
    /// sums, written to different places.
    #[test]
    fn two_threads_give_the_same_outputs_as_one() {
        use tract_linalg::multithread::{Executor, multithread_tract_scope};
        let dense = Case {
            input: [1, 32, 48, 40],
            out_c: 24,
            weight_zero: 3,
            ..DENSE
        };
        let depthwise = Case {
            input: [1, 64, 64, 64],
            out_c: 64,
            group: 64,
            unsigned: true,
            ..DENSE
        };
        for case in [dense, depthwise] {
            let g = [
                case.out_c,
                case.input[1] / case.group * 9,
                case.input[2] * case.input[3],
            ];
            assert!(
                g.iter().product::<usize>() >= 2 * crate::parallel::MIN_WORK_PER_PART,
                "the case must be worth two parts"
            );
            let model = case.model();
            let shapes = vec![("x".to_string(), case.input.to_vec())];
            let mut typed = tract_model(&model, &shapes).unwrap().into_typed().unwrap();
            install(&mut typed).unwrap();
            let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
            let len: usize = case.input.iter().product();
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 97) as f32 - 45.0) * 0.05)
                .collect();
            let x = Tensor::from_shape(&case.input, &x).unwrap();
            let run = || {
                plan.run(tvec!(x.clone().into())).unwrap()[0]
                    .clone()
                    .into_tensor()
            };
            let one = run();
            let two = multithread_tract_scope(Executor::multithread(2), run);
            assert_eq!(one, two);
        }
    }

    #[test]
    fn grouped_convolutions_are_left_to_tract() {
        let (_, _, installed) = Case {
            input: [1, 4, 6, 6],
            out_c: 4,
            group: 2,
            ..DENSE
        }
        .compare();
        assert_eq!((installed.dense, installed.depthwise), (0, 0));
        assert_eq!(installed.skipped.len(), 1, "{installed:?}");
        assert!(installed.skipped[0].1.contains("group 2"), "{installed:?}");
    }
}
