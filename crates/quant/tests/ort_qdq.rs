//! A standard QDQ model, made by onnxruntime's `quantize_static` from a zoo
//! detector, runs in tract as integer after the rewrite: every convolution the
//! quantizer covered becomes a `QLinearConv` on i32-accumulating kernels, and
//! the outputs agree with onnxruntime's on the same input.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_graph::Model;
use edgewise_graph::analysis::tract_model;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_quant::{Precision, audit, fuse_qdq_convs};
use edgewise_zoo::{Init, Options, Spec, build};

const SIZE: usize = 128;

/// Reads the tensors `ort_quantize.py` wrote: rank, dims, then f32 values.
fn read_tensors(path: &Path) -> Vec<Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let u32_at = |at: &mut usize| {
        let v = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap()) as usize;
        *at += 4;
        v
    };
    let mut tensors = vec![];
    while at < bytes.len() {
        let rank = u32_at(&mut at);
        let dims: Vec<usize> = (0..rank).map(|_| u32_at(&mut at)).collect();
        let len: usize = dims.iter().product();
        let values: Vec<f32> = bytes[at..at + 4 * len]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        at += 4 * len;
        tensors.push(Tensor::from_shape(&dims, &values).unwrap());
    }
    tensors
}

fn quantize_with_onnxruntime(spec: &str, dir: &Path) -> (PathBuf, Vec<Tensor>) {
    let options = Options {
        size: SIZE,
        classes: 3,
        neck_channels: 32,
        seed: 3,
        init: Init::Kaiming,
    };
    let detector = build(&Spec::parse(spec).unwrap(), &options).unwrap();
    let float = dir.join("float.onnx");
    detector.model.save(&float).unwrap();
    let qdq = dir.join("qdq.onnx");
    let reference = dir.join("reference.bin");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ort_quantize.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&float, &qdq, &reference])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "ort_quantize.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (qdq, read_tensors(&reference))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

#[test]
fn onnxruntime_qdq_detector_runs_integer_convolutions_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let (qdq, reference) =
        quantize_with_onnxruntime("mobilenet_v3_small+fpn+retinanet", dir.path());
    let mut model = Model::load(&qdq).unwrap();
    let convs = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Conv")
        .count();
    let fusion = fuse_qdq_convs(&mut model);
    eprintln!(
        "{convs} Conv, fused {}, skipped {:?}",
        fusion.fused, fusion.skipped
    );
    assert!(fusion.fused > 0 && fusion.fused == convs, "{fusion:?}");
    assert!(model.graph.nodes.iter().all(|n| n.op_type != "Conv"));

    let inputs = vec![(model.graph.inputs[0].name.clone(), vec![1, 3, SIZE, SIZE])];
    let plan = tract_model(&model, &inputs)
        .unwrap()
        .into_optimized()
        .unwrap();
    let uses = audit(&plan);
    let quantized: Vec<&str> = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "QLinearConv")
        .map(|n| n.name.as_str())
        .collect();
    for name in &quantized {
        let mine: Vec<_> = uses
            .iter()
            .filter(|u| u.node == *name || u.node.starts_with(&format!("{name}.")))
            .collect();
        assert!(!mine.is_empty(), "`{name}` has no convolution in the plan");
        assert!(
            mine.iter().all(|u| u.precision == Precision::Integer),
            "`{name}` runs in float: {mine:?}"
        );
    }

    let runnable = plan.into_runnable().unwrap();
    let outputs = runnable.run(tvec!(reference[0].clone().into())).unwrap();
    assert_eq!(outputs.len(), reference.len() - 1);
    for (ours, theirs) in outputs.iter().zip(&reference[1..]) {
        let ours = ours.cast_to::<f32>().unwrap();
        let a = edgewise_graph::tensor::values::<f32>(&ours).unwrap();
        let b = edgewise_graph::tensor::values::<f32>(theirs).unwrap();
        assert_eq!(a.len(), b.len());
        let c = cosine(a, b);
        eprintln!("cosine to onnxruntime: {c:.5}");
        assert!(c > 0.99, "cosine {c}");
    }
}
