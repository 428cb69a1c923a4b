//! A standard QDQ model, made by onnxruntime's `quantize_static` from a zoo
//! detector, runs in tract as integer after the rewrite: every convolution the
//! quantizer covered becomes a `QLinearConv` on i32-accumulating kernels, run
//! by tract's quantized convolution or by Edgewise's `Int8Conv`, and both
//! agree with onnxruntime's outputs on the same input. Weights stored as
//! initializers and weights stored as `Constant` nodes (as paddle2onnx writes
//! them, which onnxruntime's quantizer then quantizes at run time, per tensor
//! with a zero point) both fuse, and both run on `Int8Conv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_graph::Model;
use edgewise_graph::analysis::tract_model;
use edgewise_graph::model::{Attribute, AttributeValue, Node};
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_kernels::{Precision, audit, dequantize_activations, fuse_qdq_convs, int8};
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

/// Where the float model keeps its weights.
#[derive(Clone, Copy)]
enum Weights {
    Initializers,
    ConstantNodes,
}

fn quantize_with_onnxruntime(spec: &str, dir: &Path, weights: Weights) -> (PathBuf, Vec<Tensor>) {
    let options = Options {
        size: SIZE,
        classes: 3,
        neck_channels: 32,
        seed: 3,
        init: Init::Kaiming,
    };
    let mut model = build(&Spec::parse(spec).unwrap(), &options).unwrap().model;
    if let Weights::ConstantNodes = weights {
        let constants = std::mem::take(&mut model.graph.initializers);
        let nodes = constants.into_iter().map(|init| Node {
            name: format!("{}.constant", init.name),
            op_type: "Constant".into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec![init.name],
            attributes: vec![Attribute {
                name: "value".into(),
                value: AttributeValue::Tensor(init.tensor),
            }],
            doc_string: String::new(),
        });
        model.graph.nodes.splice(0..0, nodes);
    }
    let float = dir.join("float.onnx");
    model.save(&float).unwrap();
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
    check_integer_and_faithful(Weights::Initializers);
}

#[test]
fn weights_quantized_at_run_time_are_folded_to_int8() {
    check_integer_and_faithful(Weights::ConstantNodes);
}

fn check_integer_and_faithful(weights: Weights) {
    let dir = tempfile::tempdir().unwrap();
    let (qdq, reference) =
        quantize_with_onnxruntime("mobilenet_v3_small+fpn+retinanet", dir.path(), weights);
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
    for conv in model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "QLinearConv")
    {
        let weight = model.graph.constant(&conv.inputs[3]);
        assert!(
            weight.is_some_and(|w| w.datum_type() == DatumType::I8),
            "`{}` reads a weight computed at run time",
            conv.name
        );
    }

    let inputs = vec![(model.graph.inputs[0].name.clone(), vec![1, 3, SIZE, SIZE])];
    let typed = tract_model(&model, &inputs).unwrap().into_typed().unwrap();
    let quantized: Vec<&str> = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "QLinearConv")
        .map(|n| n.name.as_str())
        .collect();
    // tract's own quantized convolution, then Edgewise's in its place.
    let mut ours = typed.clone();
    let installed = int8::install(&mut ours).unwrap();
    eprintln!("Int8Conv: {installed:?}");
    let left_to_tract: Vec<&str> = installed.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        installed.dense + installed.depthwise + left_to_tract.len(),
        quantized.len(),
        "{installed:?}"
    );
    // Symmetric per-channel weights, and the per-tensor weights with a
    // zero point that onnxruntime makes of weights behind `Constant` nodes
    // (it quantizes them as activations): every convolution moves.
    assert!(left_to_tract.is_empty(), "{installed:?}");
    assert!(
        installed.depthwise > 0,
        "MobileNetV3 has depthwise convolutions"
    );
    if let Weights::ConstantNodes = weights {
        let asymmetric = model
            .graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "QLinearConv")
            .filter(|n| {
                let zero = model.graph.constant(&n.inputs[5]);
                let zero = zero.and_then(|z| z.cast_to::<i32>().ok().map(|z| z.into_owned()));
                zero.is_some_and(|z| {
                    edgewise_graph::tensor::values::<i32>(&z)
                        .is_some_and(|v| v.iter().any(|&v| v != 0))
                })
            })
            .count();
        assert!(asymmetric > 0, "no weights with a zero point to test");
    }
    let plans = [
        (typed, quantized.clone(), "OptMatMul"),
        (
            ours,
            quantized
                .iter()
                .copied()
                .filter(|q| !left_to_tract.contains(q))
                .collect(),
            "Int8Conv",
        ),
    ];
    for (plan, moved, op) in plans {
        let plan = plan.into_optimized().unwrap();
        assert_all_integer(&plan, &quantized, &moved, op);
        assert_agrees(plan, &reference, 0.99);
    }
}

/// Every convolution in `quantized` has integer kernels in `plan`, those in
/// `on_op` on `op`.
fn assert_all_integer(plan: &TypedModel, quantized: &[&str], on_op: &[&str], op: &str) {
    let uses = audit(plan);
    for name in quantized {
        let mine: Vec<_> = uses
            .iter()
            .filter(|u| u.node == *name || u.node.starts_with(&format!("{name}.")))
            .collect();
        assert!(!mine.is_empty(), "`{name}` has no convolution in the plan");
        assert!(
            mine.iter().all(|u| u.precision == Precision::Integer
                && (u.op == op || !on_op.contains(name))),
            "`{name}` runs in float or not on {op}: {mine:?}"
        );
    }
}

/// Runs `plan` on the reference input and compares each output with
/// onnxruntime's.
fn assert_agrees(plan: TypedModel, reference: &[Tensor], min_cosine: f64) {
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
        assert!(c > min_cosine, "cosine {c}");
    }
}

/// The float way: every activation pair goes, none is left, no quantize
/// step reaches the plan, and the outputs still agree with onnxruntime's
/// INT8 run (less closely: float keeps what INT8 rounds away).
#[test]
fn onnxruntime_qdq_detector_runs_in_float_without_its_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let (qdq, reference) = quantize_with_onnxruntime(
        "mobilenet_v3_small+fpn+retinanet",
        dir.path(),
        Weights::Initializers,
    );
    let mut model = Model::load(&qdq).unwrap();
    let done = dequantize_activations(&mut model);
    eprintln!("{} pairs, {} clips", done.pairs, done.clips);
    assert!(done.pairs > 100 && done.kept.is_empty(), "{done:?}");
    assert!(
        !model
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "QuantizeLinear" && model.graph.constant(&n.inputs[0]).is_none()),
        "an activation is still quantized"
    );
    let inputs = vec![(model.graph.inputs[0].name.clone(), vec![1, 3, SIZE, SIZE])];
    let plan = tract_model(&model, &inputs)
        .unwrap()
        .into_optimized()
        .unwrap();
    assert!(
        plan.nodes()
            .iter()
            .all(|n| !n.op.name().contains("Quantize")),
        "a quantize step is left in the plan"
    );
    assert_agrees(plan, &reference, 0.98);
}
