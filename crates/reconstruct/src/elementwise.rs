//! Any element-wise function of one value as a differentiable candle op.
//!
//! The loss is measured after the activation that follows a convolution
//! (AdaRound's choice: an error SiLU flattens to zero costs nothing). The
//! graph gives that activation as a scalar function of the model's own
//! operators (SiLU, a learnable affine and a hard-swish, a clip...), not as
//! candle operators; its derivative is taken by central differences, which
//! at f64 is exact to far below what an f32 gradient can tell.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// An element-wise function.
pub type Scalar = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// Applies `f` to every value of `x`, with its gradient for backpropagation.
pub fn apply(x: &Tensor, f: &Scalar) -> candle_core::Result<Tensor> {
    x.apply_op1(Function(f.clone()))
}

/// `f` itself.
struct Function(Scalar);

/// Its derivative.
struct Derivative(Scalar);

fn map(
    storage: &CpuStorage,
    layout: &Layout,
    g: impl Fn(f64) -> f64,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("an element-wise activation of values that are not f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("an element-wise activation of a non-contiguous tensor");
    };
    let out = values[start..end]
        .iter()
        .map(|&v| g(v as f64) as f32)
        .collect();
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

impl CustomOp1 for Function {
    fn name(&self) -> &'static str {
        "elementwise"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        map(s, l, |v| (self.0)(v))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let slope = arg
            .contiguous()?
            .apply_op1_no_bwd(&Derivative(self.0.clone()))?;
        Ok(Some(grad.mul(&slope)?))
    }
}

impl CustomOp1 for Derivative {
    fn name(&self) -> &'static str {
        "elementwise-derivative"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        map(s, l, |v| {
            let h = 1e-4 * v.abs().max(1.0);
            ((self.0)(v + h) - (self.0)(v - h)) / (2.0 * h)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn silu_and_its_gradient() {
        let silu: Scalar = Arc::new(|x| x / (1.0 + (-x).exp()));
        let x = Var::from_vec(vec![-3f32, 0.0, 0.5, 4.0], 4, &Device::Cpu).unwrap();
        let y = apply(x.as_tensor(), &silu).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for (i, &v) in [-3f64, 0.0, 0.5, 4.0].iter().enumerate() {
            let s = 1.0 / (1.0 + (-v).exp());
            let slope = s * (1.0 + v * (1.0 - s));
            assert!(
                (g[i] as f64 - slope).abs() < 1e-4,
                "{v}: {} against {slope}",
                g[i]
            );
        }
        let values = y.to_vec1::<f32>().unwrap();
        assert!((values[3] as f64 - silu(4.0)).abs() < 1e-6);
    }
}
