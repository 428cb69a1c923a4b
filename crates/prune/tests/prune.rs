//! Pruning keeps graphs valid and, where the removed channels carry nothing,
//! exact; it leaves what it cannot follow alone; every zoo detector prunes.

use edgewise_graph::analysis::tract_model;
use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::tensor::values;
use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{AttributeValue, InputShape, Model};
use edgewise_prune::{Criterion, Options, Ratios, prune, recover};
use edgewise_stages::{Overrides, Stage, StagedModel};
use edgewise_zoo::{Init, Spec, backbones, build, heads, necks};

fn run(model: &Model, shape: &[usize]) -> Vec<Tensor> {
    let inputs = vec![(model.graph.inputs[0].name.clone(), shape.to_vec())];
    let plan = tract_model(model, &inputs)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x: Tensor = tract_ndarray::Array4::from_shape_fn(
        (shape[0], shape[1], shape[2], shape[3]),
        |(_, c, y, x)| ((c * 7 + y * 3 + x) % 11) as f32 / 11.0 - 0.4,
    )
    .into();
    let out = plan.run(tvec!(x.into())).unwrap();
    edgewise_graph::simd::clear_upper_vector_state();
    out.into_iter().map(|t| t.into_tensor()).collect()
}

fn staged(model: Model, shape: &str) -> StagedModel {
    StagedModel::new(
        model,
        &[InputShape::parse(shape).unwrap()],
        &Overrides::default(),
    )
    .unwrap()
}

fn options(ratio: &str) -> Options {
    Options {
        ratios: Ratios::parse(ratio).unwrap(),
        criterion: Criterion::L1,
        round: 1,
    }
}

/// Zeroes output channels `channels` of the convolution writing `value`
/// (weights and bias).
fn zero_filters(model: &mut Model, value: &str, channels: std::ops::Range<usize>) {
    let node = model
        .graph
        .nodes
        .iter()
        .find(|n| n.outputs[0] == value)
        .unwrap()
        .clone();
    for input in node.inputs.iter().skip(1) {
        let init = model
            .graph
            .initializers
            .iter_mut()
            .find(|i| &i.name == input)
            .unwrap();
        let per = init.tensor.len() / init.tensor.shape()[0];
        let mut view = init.tensor.to_plain_array_view_mut::<f32>().unwrap();
        let data = view.as_slice_mut().unwrap();
        for c in channels.clone() {
            data[c * per..(c + 1) * per].fill(0.0);
        }
    }
}

/// conv -> relu -> depthwise -> relu -> (+ conv -> relu) residual -> concat
/// with a third branch -> split -> conv on one half -> GAP -> flatten -> gemm.
/// Returns the model and the outputs of the first conv, the depthwise conv,
/// the conv closing the residual and the side branch's conv.
fn little_net() -> (Model, [String; 4]) {
    let mut b = ModelBuilder::new(13);
    let x = b.input("x", &[1, 3, 16, 16]);
    let c1 = b.conv(&x, 3, 16, 3, 1, 1);
    let r1 = b.op("Relu", &[&c1], vec![]);
    let dw = b.conv(&r1, 16, 16, 3, 1, 16);
    let r2 = b.op("Relu", &[&dw], vec![]);
    let c2 = b.conv(&r2, 16, 16, 1, 1, 1);
    let r3 = b.op("Relu", &[&c2], vec![]);
    let add = b.op("Add", &[&r3, &r1], vec![]);
    let c3 = b.conv(&r1, 16, 8, 3, 1, 1);
    let r4 = b.op("Relu", &[&c3], vec![]);
    let cat = b.concat(&[&add, &r4]);
    let up = b.upsample2(&cat);
    let split_sizes = b.initializer("split", tensor1(&[12i64, 12]));
    let halves = b.node(
        "Split",
        &[&up, &split_sizes],
        vec![("axis", AttributeValue::Int(1))],
        2,
    );
    let c4 = b.conv(&halves[0], 12, 8, 3, 2, 1);
    let c5 = b.conv(&halves[1], 12, 8, 1, 2, 1);
    let sum = b.op("Add", &[&c4, &c5], vec![]);
    let gap = b.op("GlobalAveragePool", &[&sum], vec![]);
    let flat = b.op("Flatten", &[&gap], vec![]);
    let w = b.random(8 * 5, 0.5);
    let w = b.initializer("fc", Tensor::from_shape(&[5, 8], &w).unwrap());
    let bias = b.initializer("fcb", tensor1(&[0.1f32; 5]));
    let y = b.op(
        "Gemm",
        &[&flat, &w, &bias],
        vec![("transB", AttributeValue::Int(1))],
    );
    b.output(&y);
    b.output(&c5);
    (b.finish(), [c1, dw, c2, c3])
}

#[test]
fn pruning_channels_that_carry_nothing_changes_no_output() {
    let (mut model, [c1, dw, c2, c3]) = little_net();
    // The residual chain's channels 0..4 and the side branch's 0..2 are dead
    // (zero filters and biases): the least important, and removing them must
    // change nothing. `c5` is a graph output: its channels are fixed.
    zero_filters(&mut model, &c1, 0..4);
    zero_filters(&mut model, &dw, 0..4);
    zero_filters(&mut model, &c2, 0..4);
    zero_filters(&mut model, &c3, 0..2);
    let before = run(&model, &[1, 3, 16, 16]);
    let staged = staged(model, "1x3x16x16");
    let pruned = prune(&staged, &options("0.25"), None).unwrap();
    let after = run(&pruned.model, &[1, 3, 16, 16]);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (values::<f32>(a).unwrap(), values::<f32>(b).unwrap());
        let worst = a
            .iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "outputs moved by {worst}");
    }
    let kept: Vec<(usize, usize)> = pruned.groups.iter().map(|g| (g.channels, g.kept)).collect();
    // conv1 + depthwise + conv2 share 16 channels and lose 4; conv3 loses 2
    // of 8; c4 (tied to the fixed output c5 by the add), c5 and the Gemm
    // keep theirs.
    assert!(kept.contains(&(16, 12)), "{kept:?}");
    assert!(kept.contains(&(8, 6)), "{kept:?}");
    assert!(pruned.warnings.is_empty(), "{:?}", pruned.warnings);
    pruned.model.check().unwrap();
}

#[test]
fn an_operator_it_cannot_follow_leaves_its_channels_alone() {
    let mut b = ModelBuilder::new(13);
    let x = b.input("x", &[1, 3, 16, 16]);
    let c1 = b.conv_relu(&x, 3, 16, 3, 1);
    // LRN mixes neighbouring channels: removing one changes the others.
    let lrn = b.op("LRN", &[&c1], vec![("size", AttributeValue::Int(3))]);
    let c2 = b.conv_relu(&lrn, 16, 16, 3, 1);
    let c3 = b.conv_relu(&c2, 16, 16, 3, 1);
    let y = b.conv(&c3, 16, 4, 1, 1, 1);
    b.output(&y);
    let model = b.finish();
    let staged = staged(model, "1x3x16x16");
    let pruned = prune(&staged, &options("0.5"), None).unwrap();
    assert_eq!(pruned.warnings.len(), 1, "{:?}", pruned.warnings);
    assert!(pruned.warnings[0].contains("LRN"), "{}", pruned.warnings[0]);
    let by_channels: Vec<(usize, usize, bool)> = pruned
        .groups
        .iter()
        .map(|g| (g.channels, g.kept, g.fixed.is_some()))
        .collect();
    // The conv before the LRN keeps 16; the two after it go to 8; the
    // output layer keeps 4.
    assert_eq!(
        by_channels,
        vec![(16, 16, true), (16, 8, false), (16, 8, false), (4, 4, true)]
    );
    let out = run(&pruned.model, &[1, 3, 16, 16]);
    assert_eq!(out[0].shape(), &[1, 4, 16, 16]);
}

#[test]
fn ratios_parse_and_explain_their_mistakes() {
    let r = Ratios::parse("backbone=0.3,neck=0.5,head=0").unwrap();
    assert_eq!(r.of(Stage::Neck), 0.5);
    assert_eq!(r.of(Stage::Head), 0.0);
    assert_eq!(Ratios::parse("0.25").unwrap().of(Stage::Head), 0.25);
    for bad in ["1.5", "backbone=x", "trunk=0.3", "0.3,neck"] {
        let e = Ratios::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains("backbone=0.3"), "{e}");
    }
}

/// MACs of `stage`'s nodes.
fn macs(staged: &StagedModel, stage: Stage) -> u64 {
    staged
        .costs
        .iter()
        .zip(&staged.partition.stages)
        .filter(|(_, s)| **s == stage)
        .map(|(c, _)| c.macs)
        .sum()
}

/// `scripts/onnx_check.py --run` on `paths`: ONNX's full checker and one
/// onnxruntime run each. Returns the failures.
fn onnx_check_and_run(paths: &[std::path::PathBuf]) -> Vec<String> {
    use std::io::Write;
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/onnx_check.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg("--run")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs scripts/onnx_check.py");
    let mut stdin = child.stdin.take().unwrap();
    for p in paths {
        writeln!(stdin, "{}", p.display()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let oks = text.lines().filter(|l| l.starts_with("ok ")).count();
    let mut failures: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("ok "))
        .map(String::from)
        .collect();
    if oks != paths.len() && failures.is_empty() {
        failures.push(format!("{oks} of {} models checked: {text}", paths.len()));
    }
    failures
}

/// Zoo detectors covering every backbone, every neck, every head and every
/// neck-head pair (16 models; the whole matrix is 144 and would take minutes).
fn zoo_cover() -> Vec<String> {
    let pairs: Vec<(&str, &str)> = necks::NAMES
        .iter()
        .flat_map(|n| heads::NAMES.iter().map(move |h| (*n, *h)))
        .collect();
    pairs
        .iter()
        .enumerate()
        .map(|(j, (neck, head))| {
            format!(
                "{}+{neck}+{head}",
                backbones::NAMES[j % backbones::NAMES.len()]
            )
        })
        .collect()
}

#[test]
fn zoo_detectors_of_every_backbone_neck_and_head_prune() {
    let cover = zoo_cover();
    for name in backbones::NAMES {
        assert!(cover.iter().any(|c| c.starts_with(&format!("{name}+"))));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut written = vec![];
    let mut failures = vec![];
    for text in cover {
        let options_zoo = edgewise_zoo::Options {
            size: 64,
            classes: 3,
            neck_channels: 64,
            seed: 7,
            init: Init::Kaiming,
        };
        let d = build(&Spec::parse(&text).unwrap(), &options_zoo).unwrap();
        let before = staged(d.model, "1x3x64x64");
        let result = prune(
            &before,
            &Options {
                ratios: Ratios::parse("backbone=0.3,neck=0.3").unwrap(),
                criterion: Criterion::L2,
                round: 8,
            },
            None,
        )
        .map_err(|e| e.to_string())
        .and_then(|p| {
            p.model.check().map_err(|e| e.to_string())?;
            let after = StagedModel::new(
                p.model.clone(),
                &[InputShape::parse("1x3x64x64").unwrap()],
                &Overrides::default(),
            )
            .map_err(|e| e.to_string())?;
            let (b0, b1) = (
                macs(&before, Stage::Backbone),
                macs(&after, Stage::Backbone),
            );
            let (n0, n1) = (macs(&before, Stage::Neck), macs(&after, Stage::Neck));
            // Together, not per stage: a neck whose fusions tie its channels
            // to fixed ones (ShuffleNet's shuffled outputs into BiFPN) keeps
            // most of them.
            if (b1 + n1) as f64 > 0.8 * (b0 + n0) as f64 {
                return Err(format!(
                    "MACs barely fell: backbone {b0} -> {b1}, neck {n0} -> {n1}"
                ));
            }
            let (o0, o1) = (
                run(&before.model, &[1, 3, 64, 64]),
                run(&p.model, &[1, 3, 64, 64]),
            );
            let shapes = |o: &[Tensor]| o.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>();
            if shapes(&o0) != shapes(&o1) {
                return Err(format!(
                    "outputs {:?} became {:?}",
                    shapes(&o0),
                    shapes(&o1)
                ));
            }
            if std::env::var("PRUNE_WARNINGS").is_ok() {
                for w in &p.warnings {
                    eprintln!("  {w}");
                }
            }
            let file = dir.path().join(format!("{text}.onnx"));
            p.model.save(&file).map_err(|e| e.to_string())?;
            written.push(file);
            eprintln!(
                "{text}: backbone MACs {b0} -> {b1}, neck {n0} -> {n1}, {} warning(s)",
                p.warnings.len()
            );
            Ok(())
        });
        if let Err(e) = result {
            failures.push(format!("{text}: {e}"));
        }
    }
    failures.extend(onnx_check_and_run(&written));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Runs models on fixed pseudo-random inputs through tract, as
/// `edge-convert prune --calib` runs them on photos.
struct TractRuns {
    inputs: Vec<Tensor>,
    passes: usize,
}

impl TractRuns {
    fn new(count: usize, shape: [usize; 4]) -> TractRuns {
        let mut b = ModelBuilder::new(13);
        let inputs = (0..count)
            .map(|_| {
                let v = b.random(shape.iter().product(), 1.0);
                Tensor::from_shape(&shape, &v).unwrap()
            })
            .collect();
        TractRuns { inputs, passes: 0 }
    }
}

impl edgewise_prune::Calibration for TractRuns {
    fn len(&self) -> usize {
        self.inputs.len()
    }

    fn run(
        &mut self,
        model: &Model,
        values: &[String],
        sink: &mut edgewise_prune::calibration::Sink,
    ) -> Result<(), edgewise_prune::PruneError> {
        let model = model.with_outputs(values);
        let shape = self.inputs[0].shape().to_vec();
        let plan = tract_model(&model, &[(model.graph.inputs[0].name.clone(), shape)])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        for (j, x) in self.inputs.iter().enumerate() {
            let out = plan.run(tvec!(x.clone().into())).unwrap();
            edgewise_graph::simd::clear_upper_vector_state();
            let out: Vec<Tensor> = out.into_iter().map(|t| t.into_tensor()).collect();
            sink(j, &out)?;
        }
        self.passes += 1;
        Ok(())
    }
}

/// x -> conv (3 -> 8) -> relu -> conv (8 -> 4, `k`x`k`) -> output, with
/// filter 7 of the first conv replaced by `filter7(filter 6)`.
fn two_convs(k: usize, filter7: impl Fn(&[f32], f32) -> (Vec<f32>, f32)) -> Model {
    let mut b = ModelBuilder::new(13);
    let x = b.input("x", &[1, 3, 12, 12]);
    let c1 = b.conv(&x, 3, 8, 3, 1, 1);
    let r1 = b.op("Relu", &[&c1], vec![]);
    let c2 = b.conv(&r1, 8, 4, k, 1, 1);
    b.output(&c2);
    let mut model = b.finish();
    let conv = model
        .graph
        .nodes
        .iter()
        .find(|n| n.outputs[0] == c1)
        .unwrap()
        .clone();
    let bias6 = {
        let b = model
            .graph
            .initializers
            .iter()
            .find(|i| i.name == conv.inputs[2])
            .unwrap();
        values::<f32>(&b.tensor).unwrap()[6]
    };
    let w = model
        .graph
        .initializers
        .iter_mut()
        .find(|i| i.name == conv.inputs[1])
        .unwrap();
    let mut view = w.tensor.to_plain_array_view_mut::<f32>().unwrap();
    let data = view.as_slice_mut().unwrap();
    let (filter, bias7) = filter7(&data[6 * 27..7 * 27], bias6);
    data[7 * 27..8 * 27].copy_from_slice(&filter);
    let b = model
        .graph
        .initializers
        .iter_mut()
        .find(|i| i.name == conv.inputs[2])
        .unwrap();
    b.tensor
        .to_plain_array_view_mut::<f32>()
        .unwrap()
        .as_slice_mut()
        .unwrap()[7] = bias7;
    model
}

fn relative_error(reference: &[Tensor], candidate: &[Tensor]) -> f32 {
    let (a, b) = (
        values::<f32>(&reference[0]).unwrap(),
        values::<f32>(&candidate[0]).unwrap(),
    );
    let err: f32 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum();
    err / a.iter().map(|a| a * a).sum::<f32>()
}

/// Prunes one of the first conv's 8 channels and recovers with `method`:
/// returns the removed channel and the output's relative error.
fn prune_one(
    model: &Model,
    method: recover::Method,
    ridge: f64,
) -> (Vec<usize>, f32, recover::Recovery) {
    let shape = [1, 3, 12, 12];
    let before = run(model, &shape);
    let staged = staged(model.clone(), "1x3x12x12");
    let mut pruned = prune(&staged, &options("0.125"), None).unwrap();
    let kept = pruned.kept.values().next().unwrap().clone();
    let removed = (0..8).filter(|c| !kept.contains(c)).collect();
    let mut runs = TractRuns::new(3, shape);
    let report = recover::recover(
        &staged.model,
        &staged.facts,
        &mut pruned.model,
        &pruned.kept,
        &mut runs,
        &recover::Options {
            method,
            ridge,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(runs.passes, report.passes);
    pruned.model.check().unwrap();
    let after = run(&pruned.model, &shape);
    (removed, relative_error(&before, &after), report)
}

#[test]
fn least_squares_recovers_a_channel_its_neighbour_carries() {
    // Filter 7 is 0.3 times filter 6 (the least important), and so is its
    // channel after the ReLU: the next layer can take it over exactly.
    let model = two_convs(3, |f6, b6| (f6.iter().map(|v| v * 0.3).collect(), b6 * 0.3));
    let (removed, plain, _) = prune_one(&model, recover::Method::None, 0.0);
    assert_eq!(removed, vec![7]);
    let (_, refit, report) = prune_one(&model, recover::Method::LeastSquares, 1e-9);
    assert!(
        plain > 1e-3,
        "pruning alone moved the output by only {plain}"
    );
    assert!(
        refit < 1e-6,
        "least squares left a relative error of {refit} (plain {plain})"
    );
    let layer = &report.layers[0];
    assert_eq!(layer.inputs, (8, 7));
    assert_eq!(layer.wave, Some(1));
    let (before, after) = layer.error.unwrap();
    assert!(after < before * 1e-3, "{before} -> {after}");
}

#[test]
fn bias_compensation_takes_over_a_constant_channel() {
    // Filter 7 is zero and its bias positive: a constant channel, which a
    // 1x1 layer after it sees as part of its bias.
    let model = two_convs(1, |f6, _| (vec![0.0; f6.len()], 0.5));
    let (removed, plain, _) = prune_one(&model, recover::Method::None, 0.0);
    assert_eq!(removed, vec![7]);
    let (_, compensated, report) = prune_one(&model, recover::Method::Bias, 0.0);
    assert!(
        plain > 1e-3,
        "pruning alone moved the output by only {plain}"
    );
    assert!(
        compensated < 1e-8,
        "bias compensation left {compensated} (plain {plain})"
    );
    assert_eq!(report.passes, 1);
}
