//! Tensors the operators write and read as plain number slices: the one
//! place the kernels touch tract's unchecked tensor access.
//!
//! An operator's output is written once, element by element, so it is
//! allocated without zeroing it first (a memset of every feature map is a
//! full extra pass over memory). And the int8 operators read i8 and u8
//! tensors, quantized or not, through one byte type, which tract's checked
//! access refuses (`QI8` is not `u8`). Both are sound for numbers only: any
//! bit pattern of the right size is a valid value. [`new_tensor`] and
//! [`numbers`] check that and keep the `unsafe` here.

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::tract_onnx::tract_core::internal::bail;

/// Refuses viewing `dt` as `T` unless both are numbers of the same size.
fn check_access<T: Datum>(dt: DatumType) -> TractResult<()> {
    let t = T::datum_type();
    if !(dt.is_number() && t.is_number() && dt.size_of() == t.size_of()) {
        bail!("a {dt:?} tensor cannot be viewed as {t:?}: sizes or kinds differ");
    }
    Ok(())
}

/// A new tensor of type `dt` and `shape` whose elements `fill` writes,
/// seen as `T` (`i8` or `u8` for `QI8` and `QU8`, `f32` for `F32`...).
///
/// `fill` gets the elements uninitialized: it must write every one before
/// it reads any. Fails if `T` and `dt` are not numbers of one size.
pub fn new_tensor<T: Datum + Copy>(
    dt: DatumType,
    shape: &[usize],
    fill: impl FnOnce(&mut [T]) -> TractResult<()>,
) -> TractResult<Tensor> {
    check_access::<T>(dt)?;
    // SAFETY: `dt` is a number type (checked above): every bit pattern of its
    // size is a value, and `fill` writes every element before the tensor
    // leaves this function (its contract above).
    let mut tensor = unsafe { Tensor::uninitialized_dt(dt, shape)? };
    {
        let mut view = tensor.try_as_plain_ram_mut()?;
        // SAFETY: `T` and `dt` are numbers of the same size (checked above),
        // so the bytes of the tensor are `len` valid, aligned `T`s (tract
        // aligns its buffers to the vector size).
        fill(unsafe { view.as_slice_mut_unchecked::<T>() })?;
    }
    Ok(tensor)
}

/// The elements of `tensor` as `T`, a number type of the same size as its
/// datum type (`u8` for an `I8`, `QI8` or `QU8` tensor, `i8` for `QI8`...).
pub fn numbers<T: Datum>(tensor: &Tensor) -> TractResult<&[T]> {
    check_access::<T>(tensor.datum_type())?;
    // SAFETY: `T` and the tensor's type are numbers of the same size (checked
    // above): every element is a valid `T`.
    Ok(unsafe { tensor.try_as_plain_ram()?.as_slice_unchecked::<T>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_int8_through_one_byte_type() {
        let dt = i8::datum_type().quantize(QParams::ZpScale {
            zero_point: 3,
            scale: 0.5,
        });
        let t = new_tensor::<u8>(dt, &[2, 3], |out| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = 250 + i as u8;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(t.datum_type(), dt);
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(numbers::<i8>(&t).unwrap(), &[-6, -5, -4, -3, -2, -1]);
    }

    #[test]
    fn refuses_other_sizes_and_kinds() {
        let t = tensor1(&[1.0f32, 2.0]);
        assert!(numbers::<u8>(&t).is_err());
        assert!(numbers::<i32>(&t).is_ok());
        let flags = tensor1(&[true, false]);
        assert!(numbers::<u8>(&flags).is_err());
        assert!(new_tensor::<u8>(DatumType::Bool, &[2], |_| Ok(())).is_err());
    }
}
