//! Building models in code: inputs, initializers and nodes, with unique value
//! names. Used by tests, and by anything that writes ONNX from scratch.

use tract_onnx::prelude::{Tensor, tensor1};

use crate::model::{
    Attribute, AttributeValue, Dim, Graph, Initializer, Model, Node, Opset, ValueInfo,
};

/// Element type code of float32 in ONNX.
pub const FLOAT: i32 = 1;

/// Builds a [`Model`] node by node.
pub struct ModelBuilder {
    model: Model,
    next: usize,
    seed: u64,
}

impl ModelBuilder {
    /// An empty model at the given standard opset.
    pub fn new(opset: i64) -> ModelBuilder {
        let model = Model {
            ir_version: 8,
            opsets: vec![Opset {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "edgewise".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 0,
            doc_string: String::new(),
            metadata: vec![],
            graph: Graph {
                name: "main".into(),
                ..Default::default()
            },
            functions: vec![],
            training_info: vec![],
            source_dir: None,
        };
        ModelBuilder {
            model,
            next: 0,
            seed: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// A fresh value name with a readable prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}", self.next)
    }

    /// Declares a float32 graph input of a fixed shape.
    pub fn input(&mut self, name: &str, shape: &[i64]) -> String {
        self.model.graph.inputs.push(ValueInfo {
            name: name.into(),
            elem_type: FLOAT,
            shape: Some(shape.iter().map(|&d| Dim::Fixed(d)).collect()),
            doc_string: String::new(),
        });
        name.into()
    }

    /// Declares a graph output (type and shape left to analysis).
    pub fn output(&mut self, value: &str) {
        self.model.graph.outputs.push(ValueInfo {
            name: value.into(),
            elem_type: FLOAT,
            shape: None,
            doc_string: String::new(),
        });
    }

    /// Adds an initializer and returns its name.
    pub fn initializer(&mut self, prefix: &str, tensor: Tensor) -> String {
        let name = self.fresh(prefix);
        self.model.graph.initializers.push(Initializer {
            name: name.clone(),
            tensor,
        });
        name
    }

    /// Adds a node; returns its output names.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<(&str, AttributeValue)>,
        outputs: usize,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op.to_lowercase()))
            .collect();
        let name = self.fresh(op);
        self.model.graph.nodes.push(Node {
            name,
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outs.clone(),
            attributes: attributes
                .into_iter()
                .map(|(n, value)| Attribute {
                    name: n.into(),
                    value,
                })
                .collect(),
            doc_string: String::new(),
        });
        outs
    }

    /// Adds a single-output node.
    pub fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<(&str, AttributeValue)>,
    ) -> String {
        self.node(op, inputs, attributes, 1).remove(0)
    }

    /// Deterministic pseudo-random values in [-bound, bound] (xorshift).
    pub fn random(&mut self, len: usize, bound: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                ((self.seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound
            })
            .collect()
    }

    /// A 2-D convolution with bias: `k`x`k` kernel, `stride`, `group`, same padding.
    pub fn conv(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        group: usize,
    ) -> String {
        let fan_in = (cin / group * k * k) as f32;
        let w = self.random(cout * cin / group * k * k, (6.0 / fan_in).sqrt());
        let w = Tensor::from_shape(&[cout, cin / group, k, k], &w).expect("consistent shape");
        let w = self.initializer("w", w);
        let b = self.random(cout, 0.1);
        let b = self.initializer("b", tensor1(&b));
        let pad = (k / 2) as i64;
        self.op(
            "Conv",
            &[x, &w, &b],
            vec![
                (
                    "kernel_shape",
                    AttributeValue::Ints(vec![k as i64, k as i64]),
                ),
                (
                    "strides",
                    AttributeValue::Ints(vec![stride as i64, stride as i64]),
                ),
                ("pads", AttributeValue::Ints(vec![pad, pad, pad, pad])),
                ("group", AttributeValue::Int(group as i64)),
            ],
        )
    }

    /// Convolution followed by ReLU.
    pub fn conv_relu(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> String {
        let c = self.conv(x, cin, cout, k, stride, 1);
        self.op("Relu", &[&c], vec![])
    }

    /// SiLU as exporters write it: `x * Sigmoid(x)`.
    pub fn silu(&mut self, x: &str) -> String {
        let s = self.op("Sigmoid", &[x], vec![]);
        self.op("Mul", &[x, &s], vec![])
    }

    /// Nearest-neighbour upsampling by 2 (opset 11+ `Resize`).
    pub fn upsample2(&mut self, x: &str) -> String {
        let roi = self.initializer("roi", tensor1(&[0f32; 0]));
        let scales = self.initializer("scales", tensor1(&[1f32, 1.0, 2.0, 2.0]));
        self.op(
            "Resize",
            &[x, &roi, &scales],
            vec![("mode", AttributeValue::String(b"nearest".to_vec()))],
        )
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, xs: &[&str]) -> String {
        self.op("Concat", xs, vec![("axis", AttributeValue::Int(1))])
    }

    /// The model built so far.
    pub fn finish(self) -> Model {
        self.model
    }
}
