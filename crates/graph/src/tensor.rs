//! Conversion between ONNX `TensorProto`s and typed tract tensors.
//!
//! Decoding checks every length against the declared shape, so a corrupt file
//! gives an error instead of a panic. Encoding always writes `raw_data` in
//! little-endian order (what ONNX specifies), except strings.

use std::path::{Component, Path};

use tract_onnx::pb::{self, tensor_proto::DataType};
use tract_onnx::prelude::{Datum, DatumType, Tensor, f16};

use crate::error::{GraphError, Result};

/// Maps an ONNX element type code to tract's datum type.
pub fn datum_type_of(code: i32) -> Option<DatumType> {
    Some(match DataType::try_from(code).ok()? {
        DataType::Bool => DatumType::Bool,
        DataType::Uint8 => DatumType::U8,
        DataType::Uint16 => DatumType::U16,
        DataType::Uint32 => DatumType::U32,
        DataType::Uint64 => DatumType::U64,
        DataType::Int8 => DatumType::I8,
        DataType::Int16 => DatumType::I16,
        DataType::Int32 => DatumType::I32,
        DataType::Int64 => DatumType::I64,
        DataType::Float16 => DatumType::F16,
        DataType::Float => DatumType::F32,
        DataType::Double => DatumType::F64,
        DataType::String => DatumType::String,
        _ => return None,
    })
}

/// Maps tract's datum type to the ONNX element type code.
pub fn onnx_code_of(dt: DatumType) -> Option<i32> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F16 => DataType::Float16,
        DatumType::F32 => DataType::Float,
        DatumType::F64 => DataType::Double,
        DatumType::String => DataType::String,
        _ => return None,
    } as i32)
}

/// Human name of an ONNX element type code, for messages.
pub fn onnx_type_name(code: i32) -> String {
    DataType::try_from(code)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type#{code}"))
}

fn bad(name: &str, reason: impl Into<String>) -> GraphError {
    GraphError::BadTensor {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Decodes a `TensorProto`. `model_dir` is where external data is looked up;
/// `None` refuses external data.
pub fn decode(proto: &pb::TensorProto, model_dir: Option<&Path>) -> Result<Tensor> {
    let name = proto.name.as_str();
    let dt = datum_type_of(proto.data_type).ok_or_else(|| {
        bad(
            name,
            format!(
                "element type {} is not supported",
                onnx_type_name(proto.data_type)
            ),
        )
    })?;
    let shape = proto
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(name, format!("negative dimension {d}"))))
        .collect::<Result<Vec<usize>>>()?;
    let len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let len = len.ok_or_else(|| bad(name, "shape overflows"))?;

    let external = proto.data_location == Some(pb::tensor_proto::DataLocation::External as i32);
    if external {
        let bytes = read_external(proto, model_dir)?;
        return from_raw(name, dt, &shape, len, &bytes);
    }
    if !proto.raw_data.is_empty() {
        return from_raw(name, dt, &shape, len, &proto.raw_data);
    }
    let check = |found: usize| -> Result<()> {
        if found == len {
            Ok(())
        } else {
            Err(bad(
                name,
                format!("shape {shape:?} needs {len} elements, the file has {found}"),
            ))
        }
    };
    let i32s = &proto.int32_data;
    let tensor = match dt {
        DatumType::F32 => {
            check(proto.float_data.len())?;
            Tensor::from_shape(&shape, &proto.float_data)
        }
        DatumType::F64 => {
            check(proto.double_data.len())?;
            Tensor::from_shape(&shape, &proto.double_data)
        }
        DatumType::I64 => {
            check(proto.int64_data.len())?;
            Tensor::from_shape(&shape, &proto.int64_data)
        }
        DatumType::U64 => {
            check(proto.uint64_data.len())?;
            Tensor::from_shape(&shape, &proto.uint64_data)
        }
        DatumType::U32 => {
            check(proto.uint64_data.len())?;
            let v: Vec<u32> = proto.uint64_data.iter().map(|&x| x as u32).collect();
            Tensor::from_shape(&shape, &v)
        }
        DatumType::I32 => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, i32s)
        }
        DatumType::I16 => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, &i32s.iter().map(|&x| x as i16).collect::<Vec<_>>())
        }
        DatumType::I8 => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, &i32s.iter().map(|&x| x as i8).collect::<Vec<_>>())
        }
        DatumType::U16 => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, &i32s.iter().map(|&x| x as u16).collect::<Vec<_>>())
        }
        DatumType::U8 => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, &i32s.iter().map(|&x| x as u8).collect::<Vec<_>>())
        }
        DatumType::Bool => {
            check(i32s.len())?;
            Tensor::from_shape(&shape, &i32s.iter().map(|&x| x != 0).collect::<Vec<_>>())
        }
        DatumType::F16 => {
            check(i32s.len())?;
            let v: Vec<f16> = i32s.iter().map(|&x| f16::from_bits(x as u16)).collect();
            Tensor::from_shape(&shape, &v)
        }
        DatumType::String => {
            check(proto.string_data.len())?;
            let strings = proto
                .string_data
                .iter()
                .map(|s| String::from_utf8(s.clone()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad(name, "string element is not UTF-8"))?;
            tract_onnx::prelude::tract_ndarray::Array::from_shape_vec(shape.clone(), strings)
                .map(Tensor::from)
                .map_err(|e| e.into())
        }
        other => {
            return Err(bad(
                name,
                format!("element type {other:?} is not supported"),
            ));
        }
    };
    tensor.map_err(|e| bad(name, e.to_string()))
}

fn from_raw(
    name: &str,
    dt: DatumType,
    shape: &[usize],
    len: usize,
    bytes: &[u8],
) -> Result<Tensor> {
    if dt == DatumType::String {
        return Err(bad(name, "string tensors cannot be stored as raw data"));
    }
    let expected = len * dt.size_of();
    if bytes.len() != expected {
        return Err(bad(
            name,
            format!(
                "shape {shape:?} of {dt:?} needs {expected} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    if dt == DatumType::Bool {
        let v: Vec<bool> = bytes.iter().map(|&b| b != 0).collect();
        return Tensor::from_shape(shape, &v).map_err(|e| bad(name, e.to_string()));
    }
    // SAFETY: the length was checked against shape and element size above, and
    // every bit pattern is a valid value of these plain numeric types.
    unsafe { Tensor::from_raw_dt(dt, shape, bytes) }.map_err(|e| bad(name, e.to_string()))
}

fn read_external(proto: &pb::TensorProto, model_dir: Option<&Path>) -> Result<Vec<u8>> {
    let err = |reason: String| GraphError::ExternalData {
        tensor: proto.name.clone(),
        reason,
    };
    let field = |key: &str| {
        proto
            .external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location = field("location").ok_or_else(|| err("no `location` entry".into()))?;
    let number = |key: &str| -> Result<Option<u64>> {
        field(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| err(format!("`{key}` is not a number: {v:?}")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let dir = model_dir.ok_or_else(|| {
        err("the model was loaded from memory, so external files cannot be located".into())
    })?;
    let rel = Path::new(location);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err(format!(
            "location {location:?} leaves the model's folder; only relative paths inside it are allowed"
        )));
    }
    let dir_canon = dir.canonicalize().map_err(|e| {
        err(format!(
            "cannot resolve model folder {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(rel);
    let canon = path
        .canonicalize()
        .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    if !canon.starts_with(&dir_canon) {
        return Err(err(format!(
            "location {location:?} resolves to {}, outside the model's folder",
            canon.display()
        )));
    }
    let data =
        std::fs::read(&canon).map_err(|e| err(format!("cannot read {}: {e}", canon.display())))?;
    let start = usize::try_from(offset).map_err(|_| err("offset too large".into()))?;
    let end = match length {
        Some(l) => start
            .checked_add(l as usize)
            .ok_or_else(|| err("length too large".into()))?,
        None => data.len(),
    };
    if start > data.len() || end > data.len() {
        return Err(err(format!(
            "range {start}..{end} is past the end of {} ({} bytes)",
            canon.display(),
            data.len()
        )));
    }
    Ok(data[start..end].to_vec())
}

/// The elements of a plain in-memory tensor of type `T`, or `None` when the
/// tensor holds another type.
pub fn values<T: Datum>(tensor: &Tensor) -> Option<&[T]> {
    tensor.as_plain_ram()?.as_slice::<T>().ok()
}

/// The elements of `tensor` converted to f32, or `None` when they do not
/// convert.
pub fn f32s(tensor: &Tensor) -> Option<Vec<f32>> {
    let t = tensor.cast_to::<f32>().ok()?;
    values::<f32>(&t).map(<[f32]>::to_vec)
}

/// Encodes a tensor as a `TensorProto` named `name`, with its data inline.
pub fn encode(name: &str, tensor: &Tensor) -> Result<pb::TensorProto> {
    let dt = tensor.datum_type();
    let data_type = onnx_code_of(dt)
        .ok_or_else(|| bad(name, format!("element type {dt:?} has no ONNX equivalent")))?;
    let mut proto = pb::TensorProto {
        name: name.to_string(),
        data_type,
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        ..Default::default()
    };
    if dt == DatumType::String {
        let strings =
            values::<String>(tensor).ok_or_else(|| bad(name, "unreadable string tensor"))?;
        proto.string_data = strings.iter().map(|s| s.as_bytes().to_vec()).collect();
    } else {
        // ONNX raw data is little-endian, the byte order of every target we build for.
        proto.raw_data = tensor.as_bytes().to_vec();
    }
    Ok(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_keeps_bits() {
        let t = Tensor::from_shape(&[2, 2], &[1.5f32, -0.0, f32::MIN_POSITIVE, 3.25]).unwrap();
        let back = decode(&encode("w", &t).unwrap(), None).unwrap();
        assert_eq!(t, back);
        let bits: Vec<u32> = values::<f32>(&back)
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect();
        assert_eq!(bits[1], (-0.0f32).to_bits());
    }

    #[test]
    fn typed_fields_are_decoded() {
        let proto = pb::TensorProto {
            name: "axes".into(),
            data_type: DataType::Int64 as i32,
            dims: vec![3],
            int64_data: vec![0, 2, 3],
            ..Default::default()
        };
        let t = decode(&proto, None).unwrap();
        assert_eq!(values::<i64>(&t).unwrap(), &[0, 2, 3]);
    }

    #[test]
    fn short_raw_data_is_an_error_not_a_panic() {
        let proto = pb::TensorProto {
            name: "w".into(),
            data_type: DataType::Float as i32,
            dims: vec![4],
            raw_data: vec![0; 12],
            ..Default::default()
        };
        let err = decode(&proto, None).unwrap_err().to_string();
        assert!(err.contains("needs 16 bytes, the file has 12"), "{err}");
    }

    #[test]
    fn external_data_outside_the_model_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("model");
        std::fs::create_dir(&model_dir).unwrap();
        std::fs::write(dir.path().join("secret.bin"), [0u8; 16]).unwrap();
        std::fs::write(model_dir.join("ok.bin"), 7.0f32.to_le_bytes()).unwrap();
        let mut proto = pb::TensorProto {
            name: "w".into(),
            data_type: DataType::Float as i32,
            dims: vec![1],
            data_location: Some(pb::tensor_proto::DataLocation::External as i32),
            ..Default::default()
        };
        let entry = |k: &str, v: &str| pb::StringStringEntryProto {
            key: k.into(),
            value: v.into(),
        };
        proto.external_data = vec![entry("location", "ok.bin")];
        let t = decode(&proto, Some(&model_dir)).unwrap();
        assert_eq!(values::<f32>(&t).unwrap(), &[7.0]);

        for escape in ["../secret.bin", "/etc/passwd"] {
            proto.external_data = vec![entry("location", escape)];
            let err = decode(&proto, Some(&model_dir)).unwrap_err().to_string();
            assert!(err.contains("leaves the model's folder"), "{escape}: {err}");
        }
        std::os::unix::fs::symlink(dir.path().join("secret.bin"), model_dir.join("link.bin"))
            .unwrap();
        proto.external_data = vec![entry("location", "link.bin")];
        let err = decode(&proto, Some(&model_dir)).unwrap_err().to_string();
        assert!(err.contains("outside the model's folder"), "{err}");
    }
}
