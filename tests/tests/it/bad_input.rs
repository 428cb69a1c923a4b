//! Bad input gets a clear error naming the problem, never a panic.

use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::{GraphError, InputShape, Model, analyze};
use edgewise_tests::{model_path, photo};

fn small_model() -> (Model, String) {
    let mut b = ModelBuilder::new(13);
    let x = b.input("x", &[1, 3, 16, 16]);
    let c = b.conv_relu(&x, 3, 4, 3, 1);
    let y = b.op("Sigmoid", &[&c], vec![]);
    b.output(&y);
    (b.finish(), y)
}

fn reload(model: &Model) -> Result<Model, GraphError> {
    Model::from_bytes(&model.to_bytes().unwrap(), "test.onnx", None)
}

#[test]
fn truncated_files_are_refused() {
    let bytes = std::fs::read(model_path("ppocr_v4_det")).unwrap();
    for fraction in [0.001, 0.1, 0.5, 0.9, 0.999] {
        let cut = (bytes.len() as f64 * fraction) as usize;
        let err = Model::from_bytes(&bytes[..cut], "cut.onnx", None).unwrap_err();
        assert!(
            matches!(err, GraphError::NotOnnx { .. }),
            "{fraction}: {err}"
        );
        assert!(
            err.to_string()
                .contains("cut.onnx is not a valid ONNX model"),
            "{err}"
        );
    }
}

#[test]
fn files_that_are_not_onnx_are_refused() {
    let err = Model::load(photo("coffee.png")).unwrap_err();
    assert!(matches!(err, GraphError::NotOnnx { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("empty.onnx", &b""[..]),
        ("text.onnx", b"name = \"not a model\"\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = Model::load(&path).unwrap_err().to_string();
        assert!(err.contains("is not a valid ONNX model"), "{name}: {err}");
    }
    let err = Model::load(dir.path().join("absent.onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read") && err.contains("absent.onnx"),
        "{err}"
    );
}

#[test]
fn a_cycle_is_named() {
    let (mut model, y) = small_model();
    // Feed the sigmoid's output back into the conv: conv -> relu -> sigmoid -> conv.
    let conv = model
        .graph
        .nodes
        .iter_mut()
        .find(|n| n.op_type == "Conv")
        .unwrap();
    conv.inputs[0] = y.clone();
    let err = reload(&model).unwrap_err();
    assert!(matches!(err, GraphError::Cycle { .. }), "{err}");
    assert!(
        err.to_string().contains("has a cycle through node"),
        "{err}"
    );
}

#[test]
fn an_input_never_produced_is_named_with_its_node() {
    let (mut model, _) = small_model();
    let sigmoid = model
        .graph
        .nodes
        .iter_mut()
        .find(|n| n.op_type == "Sigmoid")
        .unwrap();
    sigmoid.inputs[0] = "ghost".into();
    let name = sigmoid.name.clone();
    let err = reload(&model).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "node `{name}` (Sigmoid) reads value `ghost`, which no node, initializer or graph input produces"
        )
    );
}

#[test]
fn an_unknown_operator_is_named_with_its_node() {
    let (mut model, _) = small_model();
    let sigmoid = model
        .graph
        .nodes
        .iter_mut()
        .find(|n| n.op_type == "Sigmoid")
        .unwrap();
    sigmoid.op_type = "FancySigmoid".into();
    let name = sigmoid.name.clone();
    let model = reload(&model).expect("an unknown operator is still a well-formed graph");
    let err = analyze(&model, &[]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("operator `FancySigmoid` used by node `{name}`")),
        "{err}"
    );
}

#[test]
fn an_input_shape_of_the_wrong_rank_is_refused() {
    let model = Model::load(model_path("ppocr_v4_det")).unwrap();
    let err = analyze(&model, &[InputShape::parse("1x3x640").unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input `x`") && err.contains("expects rank 4") && err.contains("rank 3"),
        "{err}"
    );
    let err = analyze(&model, &[InputShape::parse("1x4x640x640").unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("axis 1 is fixed to 3"), "{err}");
    let err = analyze(&model, &[]).unwrap_err().to_string();
    assert!(
        err.contains("dynamic shape") && err.contains("--input-shape 1x3x640x640"),
        "{err}"
    );
    let err = InputShape::parse("1x3xbig").unwrap_err().to_string();
    assert!(err.contains("`big` is not a size"), "{err}");
}
