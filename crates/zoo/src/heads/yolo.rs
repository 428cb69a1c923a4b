//! The anchor-free decoupled head of YOLOv8 (Ultralytics): per level a box
//! branch predicting 4 × 16 distance bins and a class branch; in the graph,
//! distribution focal loss decoding (softmax over bins, expectation) and
//! distances to boxes, giving `[1, 4 + C, N]` (centre x, centre y, width,
//! height in input pixels, then class probabilities).

use edgewise_graph::model::AttributeValue;

use super::{CLASS_PRIOR_BIAS, Head, HeadOutput, concat_names};
use crate::net::{Act, Feature, Net, Pad};

/// YOLOv8 head.
pub struct Yolo;

/// Distance bins per box side (Ultralytics' `reg_max`).
const BINS: usize = 16;

/// Channels `from..to` of `x` (axis 1).
fn channels(net: &mut Net, x: &str, from: usize, to: usize) -> String {
    let starts = net.int64s("starts", &[from as i64]);
    let ends = net.int64s("ends", &[to as i64]);
    let axes = net.int64s("axes", &[1]);
    net.raw("Slice", &[x, &starts, &ends, &axes], vec![])
}

/// Two 3x3 conv-BN-SiLU layers, then a 1x1 predictor whose biases are
/// `bias` (Ultralytics: 1.0 for the box bins, a low prior for the classes).
fn branch(net: &mut Net, x: &Feature, hidden: usize, out: usize, bias: f32) -> Feature {
    let a = net.conv_bn_act(x, hidden, 3, 1, 1, Act::Swish);
    let b = net.conv_bn_act(&a, hidden, 3, 1, 1, Act::Swish);
    net.prediction_layers(bias, |net| net.conv(&b, out, 1, 1, 1, true, Pad::Valid))
}

impl Head for Yolo {
    fn levels(&self) -> usize {
        3
    }

    fn build(&self, net: &mut Net, maps: &[Feature], classes: usize, _width: usize) -> HeadOutput {
        let c = maps[0].channels;
        let box_hidden = (c / 4).max(16).max(4 * BINS);
        let cls_hidden = c.max(classes.min(100));
        let mut per_level = vec![];
        let mut anchors = [vec![], vec![]];
        let mut strides = vec![];
        for m in maps {
            let b = branch(net, m, box_hidden, 4 * BINS, 1.0);
            let k = branch(net, m, cls_hidden, classes, CLASS_PRIOR_BIAS);
            let joined = net.concat(&[&b, &k]);
            let shape = net.int64s("shape", &[1, (4 * BINS + classes) as i64, -1]);
            per_level.push(net.raw("Reshape", &[&joined.name, &shape], vec![]));
            for y in 0..m.height {
                for x in 0..m.width {
                    anchors[0].push(x as f32 + 0.5);
                    anchors[1].push(y as f32 + 0.5);
                    strides.push(m.stride as f32);
                }
            }
        }
        let all = concat_names(net, &per_level, 2);
        let n = strides.len();
        let dist = channels(net, &all, 0, 4 * BINS);
        let scores = channels(net, &all, 4 * BINS, 4 * BINS + classes);
        // DFL: [1, 64, N] -> [1, 4, 16, N] -> softmax over bins -> Σ p·i.
        let shape = net.int64s("shape", &[1, 4, BINS as i64, n as i64]);
        let r = net.raw("Reshape", &[&dist, &shape], vec![]);
        let p = net.raw("Softmax", &[&r], vec![("axis", AttributeValue::Int(2))]);
        let bins: Vec<f32> = (0..BINS).map(|i| i as f32).collect();
        let bins = net.floats("bins", &[1, 1, BINS, 1], &bins);
        let weighted = net.raw("Mul", &[&p, &bins], vec![]);
        let axes = net.int64s("axes", &[2]);
        let d = net.raw(
            "ReduceSum",
            &[&weighted, &axes],
            vec![("keepdims", AttributeValue::Int(0))],
        );
        // Distances (left, top, right, bottom) to a box around each anchor.
        let lt = channels(net, &d, 0, 2);
        let rb = channels(net, &d, 2, 4);
        let mut grid = anchors[0].clone();
        grid.extend(&anchors[1]);
        let grid = net.floats("anchors", &[1, 2, n], &grid);
        let x1y1 = net.raw("Sub", &[&grid, &lt], vec![]);
        let x2y2 = net.raw("Add", &[&grid, &rb], vec![]);
        let sum = net.raw("Add", &[&x1y1, &x2y2], vec![]);
        let half = net.floats("half", &[], &[0.5]);
        let centre = net.raw("Mul", &[&sum, &half], vec![]);
        let wh = net.raw("Sub", &[&x2y2, &x1y1], vec![]);
        let xywh = concat_names(net, &[centre, wh], 1);
        let stride = net.floats("strides", &[1, 1, n], &strides);
        let boxes = net.raw("Mul", &[&xywh, &stride], vec![]);
        let probs = net.raw("Sigmoid", &[&scores], vec![]);
        let out = concat_names(net, &[boxes, probs], 1);
        HeadOutput {
            outputs: vec![out],
            decoder: "yolov8",
            // Boxes leave the graph decoded: the decoder needs no strides.
            params: vec![],
        }
    }
}
