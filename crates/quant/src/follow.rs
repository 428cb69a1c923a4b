//! What the readers of an activation compute of it, element by element:
//! the function a calibration range should be judged through.
//!
//! A convolution's output is quantized before its activation (the portable
//! QDQ form, which onnxruntime runs in integer): YOLOX and YOLOv8 apply
//! SiLU to it (`x * Sigmoid(x)`), PP-OCRv4 a learnable affine and a
//! hard-swish. The error that matters is the one left after that function:
//! SiLU maps every value below -6 to about zero, so spending int8 levels to
//! tell -20 from -6 buys nothing and costs resolution where the function is
//! steep. [`following`] finds that function when all of it is element-wise
//! on one value and scalar constants, ending in one value.

use std::collections::{HashMap, HashSet};

use edgewise_graph::Model;
use edgewise_graph::model::{AttributeValue, Node};
use edgewise_graph::tensor::f32s;

/// An element-wise function of one value, as a little program of the graph's
/// operators (slot 0 is the input; step `i` writes slot `i + 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Following {
    steps: Vec<Step>,
    /// The operators in graph order, for reports.
    pub ops: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct Step {
    op: Op,
    inputs: Vec<Operand>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Operand {
    Slot(usize),
    Constant(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Sigmoid,
    Tanh,
    Relu,
    Neg,
    LeakyRelu { alpha: f64 },
    HardSigmoid { alpha: f64, beta: f64 },
    HardSwish,
    Clip { lo: f64, hi: f64 },
}

impl Following {
    /// The function's value at `x`.
    pub fn apply(&self, x: f64) -> f64 {
        // On the stack for the usual few steps: reconstruction calls this
        // for every output of every step.
        let mut stack = [0f64; 16];
        let mut heap = vec![];
        let slots: &mut [f64] = if self.steps.len() < stack.len() {
            &mut stack
        } else {
            heap.resize(self.steps.len() + 1, 0.0);
            &mut heap
        };
        slots[0] = x;
        for (k, step) in self.steps.iter().enumerate() {
            let arg = |i: usize| match step.inputs[i] {
                Operand::Slot(s) => slots[s],
                Operand::Constant(c) => c,
            };
            let v = match step.op {
                Op::Add => arg(0) + arg(1),
                Op::Sub => arg(0) - arg(1),
                Op::Mul => arg(0) * arg(1),
                Op::Div => arg(0) / arg(1),
                Op::Sigmoid => 1.0 / (1.0 + (-arg(0)).exp()),
                Op::Tanh => arg(0).tanh(),
                Op::Relu => arg(0).max(0.0),
                Op::Neg => -arg(0),
                Op::LeakyRelu { alpha } => {
                    let v = arg(0);
                    if v < 0.0 { alpha * v } else { v }
                }
                Op::HardSigmoid { alpha, beta } => (alpha * arg(0) + beta).clamp(0.0, 1.0),
                Op::HardSwish => {
                    let v = arg(0);
                    v * (v / 6.0 + 0.5).clamp(0.0, 1.0)
                }
                Op::Clip { lo, hi } => arg(0).clamp(lo, hi),
            };
            slots[k + 1] = v;
        }
        slots[self.steps.len()]
    }
}

/// The element-wise function that the readers of `value` compute of it, if
/// they compute exactly one: every node reached from `value` through
/// element-wise operators whose other inputs are scalar constants, ending in
/// one value that something else reads. `None` when `value` (or any value
/// inside) is also read by anything else, is a graph output, or when no
/// operator follows.
pub fn following(model: &Model, value: &str) -> Option<Following> {
    let g = &model.graph;
    let readers = g.readers();
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    // Values inside the function, and their slots.
    let mut slots: HashMap<String, usize> = HashMap::from([(value.to_string(), 0)]);
    let mut steps = vec![];
    let mut ops = vec![];
    let mut done: HashSet<usize> = HashSet::new();
    // Grows the function by any reader whose inputs are all known, until
    // no reader is left or one reads something unknown.
    loop {
        let mut grew = false;
        // In graph order, so that a node's inputs come before it.
        let mut frontier: Vec<usize> = slots
            .keys()
            .flat_map(|v| readers.get(v).into_iter().flatten().copied())
            .filter(|ix| !done.contains(ix))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        frontier.sort_unstable();
        for ix in frontier {
            let node = &g.nodes[ix];
            let Some(inputs) = operands(model, node, &slots) else {
                continue;
            };
            let Some(op) = op_of(model, node) else {
                continue;
            };
            if node.outputs.len() != 1 || inputs.len() != arity(op) {
                continue;
            }
            steps.push(Step { op, inputs });
            ops.push(node.op_type.clone());
            slots.insert(node.outputs[0].clone(), slots.len());
            done.insert(ix);
            grew = true;
        }
        if !grew {
            break;
        }
    }
    if steps.is_empty() {
        return None;
    }
    // Exactly one value may leave: the last computed; every other value is
    // read only inside, and none is a graph output.
    let last = slots
        .iter()
        .max_by_key(|&(_, &s)| s)
        .map(|(v, _)| v.clone())?;
    for v in slots.keys() {
        let outside = readers
            .get(v)
            .into_iter()
            .flatten()
            .any(|ix| !done.contains(ix));
        if *v != last && (outside || outputs.contains(v.as_str())) {
            return None;
        }
    }
    Some(Following { steps, ops })
}

fn arity(op: Op) -> usize {
    match op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => 2,
        _ => 1,
    }
}

/// `node`'s inputs as operands when each is a known value or a scalar
/// constant and at least one is known; `None` otherwise.
fn operands(model: &Model, node: &Node, slots: &HashMap<String, usize>) -> Option<Vec<Operand>> {
    let mut known = false;
    let mut out = vec![];
    // Clip's bounds are inputs 1 and 2 (opset 11): read in `op_of`.
    let count = if node.op_type == "Clip" {
        1
    } else {
        node.inputs.len()
    };
    for name in node.inputs.iter().take(count) {
        if let Some(&s) = slots.get(name) {
            known = true;
            out.push(Operand::Slot(s));
        } else {
            out.push(Operand::Constant(scalar(model, name)?));
        }
    }
    known.then_some(out)
}

/// The value of a constant holding one number.
fn scalar(model: &Model, name: &str) -> Option<f64> {
    let t = model.graph.constant(name)?;
    let v = f32s(&t)?;
    (v.len() == 1).then(|| v[0] as f64)
}

fn float_attr(node: &Node, name: &str, default: f64) -> f64 {
    match node.attribute(name) {
        Some(AttributeValue::Float(v)) => *v as f64,
        _ => default,
    }
}

fn op_of(model: &Model, node: &Node) -> Option<Op> {
    if !node.domain.is_empty() {
        return None;
    }
    Some(match node.op_type.as_str() {
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        "Sigmoid" => Op::Sigmoid,
        "Tanh" => Op::Tanh,
        "Relu" => Op::Relu,
        "Neg" => Op::Neg,
        "LeakyRelu" => Op::LeakyRelu {
            alpha: float_attr(node, "alpha", 0.01),
        },
        "HardSigmoid" => Op::HardSigmoid {
            alpha: float_attr(node, "alpha", 0.2),
            beta: float_attr(node, "beta", 0.5),
        },
        "HardSwish" => Op::HardSwish,
        "Clip" => {
            let bound = |slot: usize, attr: &str, default: f64| match node.inputs.get(slot) {
                Some(name) if !name.is_empty() => scalar(model, name),
                _ => Some(float_attr(node, attr, default)),
            };
            Op::Clip {
                lo: bound(1, "min", f64::NEG_INFINITY)?,
                hi: bound(2, "max", f64::INFINITY)?,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_graph::builder::ModelBuilder;
    use edgewise_graph::tract_onnx::prelude::tensor0;

    fn scalar(b: &mut ModelBuilder, v: f32) -> String {
        b.initializer("c", tensor0(v))
    }

    #[test]
    fn silu_after_an_affine_is_one_function() {
        let mut b = ModelBuilder::new(13);
        let input = b.input("x", &[1, 4, 8, 8]);
        let x = b.conv(&input, 4, 4, 3, 1, 1);
        let (two, minus_one) = (scalar(&mut b, 2.0), scalar(&mut b, -1.0));
        let a = b.op("Mul", &[&x, &two], vec![]);
        let a = b.op("Add", &[&minus_one, &a], vec![]);
        let y = b.silu(&a);
        let z = b.conv(&y, 4, 4, 1, 1, 1);
        b.output(&z);
        let model = b.finish();
        let f = following(&model, &x).expect("a function");
        assert_eq!(f.ops, ["Mul", "Add", "Sigmoid", "Mul"]);
        for v in [-8.0, -1.0, 0.0, 0.3, 5.0] {
            let a: f64 = 2.0 * v - 1.0;
            let silu = a / (1.0 + (-a).exp());
            assert!((f.apply(v) - silu).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn a_value_read_by_a_convolution_too_has_no_function() {
        let mut b = ModelBuilder::new(13);
        let input = b.input("x", &[1, 4, 8, 8]);
        let x = b.conv(&input, 4, 4, 3, 1, 1);
        let y = b.silu(&x);
        let z = b.conv(&x, 4, 4, 1, 1, 1);
        let s = b.op("Add", &[&y, &z], vec![]);
        b.output(&s);
        let model = b.finish();
        assert_eq!(following(&model, &x), None);
        // Nor has a value read by an `Add` of two computed values.
        assert_eq!(following(&model, &z), None);
    }

    #[test]
    fn hard_swish_and_clip_read_their_attributes_and_bounds() {
        let mut b = ModelBuilder::new(13);
        let input = b.input("x", &[1, 4, 8, 8]);
        let x = b.conv(&input, 4, 4, 3, 1, 1);
        let y = b.op("HardSwish", &[&x], vec![]);
        let (lo, hi) = (scalar(&mut b, 0.0), scalar(&mut b, 2.0));
        let y = b.op("Clip", &[&y, &lo, &hi], vec![]);
        let h = b.op(
            "HardSigmoid",
            &[&y],
            vec![("alpha", AttributeValue::Float(0.25))],
        );
        let z = b.conv(&h, 4, 4, 1, 1, 1);
        b.output(&z);
        let model = b.finish();
        let f = following(&model, &x).expect("a function");
        assert_eq!(f.ops, ["HardSwish", "Clip", "HardSigmoid"]);
        assert_eq!(f.apply(-4.0), 0.5);
        let at_one = 1.0 * (1.0 / 6.0 + 0.5);
        assert!((f.apply(1.0) - (0.25 * at_one + 0.5)).abs() < 1e-12);
        assert_eq!(f.apply(10.0), 1.0);
    }
}
