//! `QuantizeLinear` and `DequantizeLinear` between float and int8
//! activations, in loops that vectorize.
//!
//! tract 0.23.9 quantizes one element at a time through a rounding call
//! (`QuantizeLinearI8`/`U8`): 62.65 of 314 ms in an INT8 frame of PP-OCRv4
//! det (`docs/benchmarks.md`). [`Quantize`] rounds with the FPU's default
//! mode instead ([`round_half_even`]) and [`Dequantize`] is a plain
//! multiply; both are built a second time for AVX2 on x86-64.
//! [`super::install`] swaps them in after tract has folded
//! `DequantizeLinear -> element-wise -> QuantizeLinear` chains into lookup
//! tables, so that folding is kept.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::*;
use edgewise_graph::tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use edgewise_graph::tract_onnx::tract_core::ops::quant::{
    DequantizeLinearF32, QuantizeLinearI8, QuantizeLinearU8,
};

use crate::parallel;
use crate::round::{round_half_even, to_int};
use crate::tensor::{new_tensor, numbers};

/// f32 to int8: `clamp(round_half_even(x * inv_scale) + zero_point)`, as
/// tract's `QuantizeLinearI8`/`U8` compute it.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    /// `1 / scale`, as tract keeps it.
    pub inv_scale: f32,
    /// In the output's own type (0..=255 for u8).
    pub zero_point: i32,
    /// I8 or U8, maybe with quantization parameters attached.
    pub output_dt: DatumType,
}

impl Eq for Quantize {}

/// int8 to f32: `(x - zero_point) * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dequantize {
    pub scale: f32,
    pub zero_point: i32,
}

impl Eq for Dequantize {}

/// Replaces tract's f32 `QuantizeLinear` and i8/u8 `DequantizeLinear` nodes
/// of a decluttered model by [`Quantize`] and [`Dequantize`], counting them
/// in `report`.
pub(crate) fn install_quantizers(
    model: &mut TypedModel,
    report: &mut super::install::Installed,
) -> TractResult<()> {
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.inputs.is_empty() {
            continue;
        }
        let input_dt = model.outlet_fact(node.inputs[0])?.datum_type;
        let output_dt = model.outlet_fact(OutletId::new(id, 0))?.datum_type;
        let op: Option<Box<dyn TypedOp>> = if let Some(ew) = node.op_as::<ElementWiseOp>() {
            let q = if let Some(q) = ew.0.downcast_ref::<QuantizeLinearI8>() {
                Some((q.scale, q.zero_point as i32))
            } else {
                ew.0.downcast_ref::<QuantizeLinearU8>()
                    .map(|q| (q.scale, q.zero_point as i32))
            };
            q.filter(|_| input_dt == DatumType::F32)
                .map(|(inv_scale, zero_point)| {
                    Box::new(Quantize {
                        inv_scale,
                        zero_point,
                        output_dt,
                    }) as _
                })
        } else if let Some(dq) = node.op_as::<DequantizeLinearF32>() {
            matches!(input_dt.unquantized(), DatumType::I8 | DatumType::U8).then(|| {
                Box::new(Dequantize {
                    scale: dq.scale,
                    zero_point: dq.zero_point,
                }) as _
            })
        } else {
            None
        };
        let Some(op) = op else { continue };
        if op.is::<Quantize>() {
            report.quantize += 1;
        } else {
            report.dequantize += 1;
        }
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
    }
    Ok(())
}

impl Op for Quantize {
    fn name(&self) -> StaticName {
        "Quantize".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale {} zero point {} to {:?}",
            self.inv_scale.recip(),
            self.zero_point,
            self.output_dt
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Quantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let xs = input.try_as_plain_ram()?.as_slice::<f32>()?;
        // i8 and u8 are the same bytes: compute in the i8 domain with the
        // zero point moved by 128, then flip the top bit for u8.
        let unsigned = self.output_dt.unquantized() == DatumType::U8;
        let z = if unsigned {
            self.zero_point - 128
        } else {
            self.zero_point
        };
        let output = new_tensor(self.output_dt, input.shape(), |ys: &mut [i8]| {
            parallel::for_each_chunk(ys, |first, ys| {
                quantize(&xs[first..first + ys.len()], self.inv_scale, z as f32, ys);
                if unsigned {
                    for y in ys.iter_mut() {
                        *y = (*y as u8 ^ 0x80) as i8;
                    }
                }
            })
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Quantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_dt.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

impl Op for Dequantize {
    fn name(&self) -> StaticName {
        "Dequantize".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale {} zero point {}",
            self.scale, self.zero_point
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Dequantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let unsigned = input.datum_type().unquantized() == DatumType::U8;
        let xs = numbers::<i8>(input)?;
        let output = new_tensor(DatumType::F32, input.shape(), |ys: &mut [f32]| {
            parallel::for_each_chunk(ys, |first, ys| {
                let xs = &xs[first..first + ys.len()];
                if unsigned {
                    // u8 bytes read as i8 are x - 128 once their top bit
                    // flips: move the zero point by the same.
                    flip_and_dequantize(xs, self.zero_point - 128, self.scale, ys);
                } else {
                    dequantize(xs, self.zero_point as f32, self.scale, ys);
                }
            })
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Dequantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `ys = clamp(round_half_even(x * inv_scale) + z, -128, 127)`.
fn quantize(xs: &[f32], inv_scale: f32, z: f32, ys: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512BW, checked just above.
        unsafe { quantize_avx512(xs, inv_scale, z, ys) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { quantize_avx2(xs, inv_scale, z, ys) };
        return;
    }
    quantize_loop(xs, inv_scale, z, ys);
}

/// The portable loop, compiled for AVX-512BW.
///
/// # Safety
/// The CPU must have AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn quantize_avx512(xs: &[f32], inv_scale: f32, z: f32, ys: &mut [i8]) {
    quantize_loop(xs, inv_scale, z, ys);
}

/// The portable loop, compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(xs: &[f32], inv_scale: f32, z: f32, ys: &mut [i8]) {
    quantize_loop(xs, inv_scale, z, ys);
}

#[inline(always)]
fn quantize_loop(xs: &[f32], inv_scale: f32, z: f32, ys: &mut [i8]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = to_int(round_half_even(x * inv_scale) + z, -128.0, 127.0) as i8;
    }
}

/// `ys = (x - z) * scale`.
fn dequantize(xs: &[i8], z: f32, scale: f32, ys: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512BW, checked just above.
        unsafe { dequantize_avx512(xs, z, scale, ys) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { dequantize_avx2(xs, z, scale, ys) };
        return;
    }
    dequantize_loop(xs, z, scale, ys);
}

/// The portable loop, compiled for AVX-512BW.
///
/// # Safety
/// The CPU must have AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn dequantize_avx512(xs: &[i8], z: f32, scale: f32, ys: &mut [f32]) {
    dequantize_loop(xs, z, scale, ys);
}

/// The portable loop, compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_avx2(xs: &[i8], z: f32, scale: f32, ys: &mut [f32]) {
    dequantize_loop(xs, z, scale, ys);
}

#[inline(always)]
fn dequantize_loop(xs: &[i8], z: f32, scale: f32, ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (f32::from(x) - z) * scale;
    }
}

/// [`dequantize`] of u8 bytes given as i8, zero point `z` already moved
/// into the i8 domain.
fn flip_and_dequantize(xs: &[i8], z: i32, scale: f32, ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (f32::from((x as u8 ^ 0x80) as i8) - z as f32) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_graph::tract_onnx::tract_core::ops::quant::{
        quantize_linear_f32_i8, quantize_linear_f32_u8,
    };

    /// Every value tract's scalar quantizer produces, ties included. (Far
    /// outside the int8 range, beyond i32 once scaled, tract's sum with the
    /// zero point wraps around; ours saturates.)
    #[test]
    fn quantize_matches_tract() {
        let xs: Vec<f32> = (-3000..3000)
            .map(|i| i as f32 * 0.0125)
            .chain([1e7, -1e7, 0.5, -0.5, 1.5, 2.5, -2.5])
            .collect();
        for (inv_scale, z) in [(10.0f32, 0i32), (4.0, -7), (40.0, 3), (1.0, 127)] {
            let mut ys = vec![0i8; xs.len()];
            quantize(&xs, inv_scale, z as f32, &mut ys);
            for (x, y) in xs.iter().zip(&ys) {
                assert_eq!(
                    *y,
                    quantize_linear_f32_i8(*x, inv_scale, z),
                    "x {x} scale {inv_scale}"
                );
            }
        }
        // u8 through the op, as the graph runs it.
        let op = Quantize {
            inv_scale: 20.0,
            zero_point: 131,
            output_dt: DatumType::U8,
        };
        let input = Tensor::from_shape(&[xs.len()], &xs).unwrap();
        let out = op
            .eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
            .unwrap();
        let out = out[0].try_as_plain_ram().unwrap();
        let out = out.as_slice::<u8>().unwrap();
        for (x, y) in xs.iter().zip(out) {
            assert_eq!(*y, quantize_linear_f32_u8(*x, 20.0, 131), "x {x}");
        }
    }

    #[test]
    fn dequantize_matches_the_definition() {
        let bytes: Vec<u8> = (0..=255).collect();
        let op = Dequantize {
            scale: 0.05,
            zero_point: 130,
        };
        let input = Tensor::from_shape(&[256], &bytes).unwrap();
        let out = op
            .eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
            .unwrap();
        let out = out[0].try_as_plain_ram().unwrap();
        for (x, y) in bytes.iter().zip(out.as_slice::<f32>().unwrap()) {
            assert_eq!(*y, (*x as i32 - 130) as f32 * 0.05);
        }
        let signed: Vec<i8> = (-128..=127).collect();
        let op = Dequantize {
            scale: 0.1,
            zero_point: -3,
        };
        let input = Tensor::from_shape(&[256], &signed).unwrap();
        let out = op
            .eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
            .unwrap();
        let out = out[0].try_as_plain_ram().unwrap();
        for (x, y) in signed.iter().zip(out.as_slice::<f32>().unwrap()) {
            assert_eq!(*y, (*x as i32 + 3) as f32 * 0.1);
        }
    }
}
