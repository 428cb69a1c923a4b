//! Photo folders, and photos turned into model inputs for other tools.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgewise_graph::InputShape;
use edgewise_graph::model::write_atomically;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_manifest::Manifest;
use edgewise_runtime::{load_image, preprocess};
use image::DynamicImage;

/// Image file extensions read from photo folders.
const PHOTO_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp"];

/// The photos in `dir` (not recursive), sorted by name.
pub fn photos_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read photo folder {}", dir.display()))?;
    let mut photos: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    photos.sort();
    if photos.is_empty() {
        bail!(
            "no photos ({}) in {}",
            PHOTO_EXTENSIONS.join(", "),
            dir.display()
        );
    }
    Ok(photos)
}

/// Every photo preprocessed as `manifest` says, at `shape`: the model's
/// input tensors.
pub fn input_tensors(
    manifest: &Manifest,
    shape: &InputShape,
    photos: &[PathBuf],
) -> Result<Vec<Tensor>> {
    let hw = input_hw(manifest, shape)?;
    photos
        .iter()
        .map(|p| Ok(preprocess(&load_image(p)?, &manifest.input, Some(hw))?.tensor))
        .collect()
}

/// [`input_tensors`] of photos already decoded.
pub fn tensors_of(
    manifest: &Manifest,
    shape: &InputShape,
    images: &[DynamicImage],
) -> Result<Vec<Tensor>> {
    let hw = input_hw(manifest, shape)?;
    images
        .iter()
        .map(|image| Ok(preprocess(image, &manifest.input, Some(hw))?.tensor))
        .collect()
}

/// The height and width `shape` gives the manifest's input.
fn input_hw(manifest: &Manifest, shape: &InputShape) -> Result<[usize; 2]> {
    manifest
        .input
        .hw_of(&shape.dims)
        .with_context(|| format!("input shape {:?} has no height and width", shape.dims))
}

/// Preprocesses every photo as `manifest` says, at `shape`, and writes the
/// tensors one after the other to `out`: for each, its rank and dimensions as
/// little-endian u32, then its values as little-endian f32 (the format of
/// `tests/fixtures/ort_quantize.py --calib-tensors`).
pub fn write_inputs(
    manifest: &Manifest,
    shape: &InputShape,
    photos: &[PathBuf],
    out: &Path,
) -> Result<()> {
    let mut bytes = vec![];
    for tensor in input_tensors(manifest, shape, photos)? {
        bytes.extend((tensor.rank() as u32).to_le_bytes());
        for &d in tensor.shape() {
            bytes.extend((d as u32).to_le_bytes());
        }
        let values = edgewise_graph::tensor::values::<f32>(&tensor).context("input is not f32")?;
        for v in values {
            bytes.extend(v.to_le_bytes());
        }
    }
    write_atomically(out, &bytes)?;
    Ok(())
}
