//! Load and save an untouched model: tract must give the same outputs, bit for
//! bit, on a real photo.

use edgewise_graph::Model;
use edgewise_graph::tract_onnx::{self, prelude::*};
use edgewise_runtime::{load_image, preprocess};
use edgewise_tests::{manifest, model_path, photo};

fn run_in_tract(path: &std::path::Path, input: &Tensor) -> Vec<Tensor> {
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact(input.shape()).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    plan.run(tvec!(input.clone().into()))
        .unwrap()
        .into_iter()
        .map(|t| t.into_tensor())
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .map(|f| f.to_bits())
        .collect()
}

#[test]
fn ppocr_det_round_trip_is_bit_identical_in_tract() {
    let original = model_path("ppocr_v4_det");
    let m = manifest("ppocr_v4_det");
    let image = load_image(photo("coffee.png")).unwrap();
    let input = preprocess(&image, &m.input, Some([640, 640]))
        .unwrap()
        .tensor;
    assert_eq!(input.shape(), &[1, 3, 640, 640]);

    let model = Model::load(&original).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.onnx");
    model.save(&saved).unwrap();

    let before = run_in_tract(&original, &input);
    let after = run_in_tract(&saved, &input);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].shape(), &[1, 1, 640, 640]);
    let (b, a) = (bits(&before[0]), bits(&after[0]));
    assert!(
        b.iter().any(|&x| f32::from_bits(x) > 0.5),
        "the photo has text: some pixels are confident"
    );
    assert!(b == a, "outputs differ after a load/save round trip");

    // And the saved file reads back as the same editable model.
    let mut reloaded = Model::load(&saved).unwrap();
    reloaded.source_dir = model.source_dir.clone();
    assert!(
        reloaded == model,
        "reloaded model differs from the one saved"
    );
}

#[test]
fn saving_never_leaves_a_partial_file() {
    let model = Model::load(model_path("ppocr_v4_det")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing-folder").join("out.onnx");
    let err = model.save(&target).unwrap_err().to_string();
    assert!(err.contains("cannot write"), "{err}");
    assert!(!target.exists());
    // Overwriting keeps a complete file at every moment: the old one or the new one.
    let target = dir.path().join("out.onnx");
    std::fs::write(&target, b"old").unwrap();
    model.save(&target).unwrap();
    assert!(Model::load(&target).is_ok());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}
