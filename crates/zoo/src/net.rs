//! Layers for building networks in ONNX: convolution, batch norm,
//! activations, pooling, squeeze-excitation and the rest, with weights from
//! a seeded generator, and the counts (parameters, MACs) the model will have.
//!
//! Every value carries its shape and an estimate of its second moment
//! `E[x²]`, so that batch-norm running statistics can be set to what the
//! layer would see on real data: activations then stay in a realistic range
//! through any depth, and folding BN into convolutions is exercised with
//! non-trivial statistics.

use edgewise_graph::Model;
use edgewise_graph::builder::ModelBuilder;
use edgewise_graph::model::AttributeValue;
use edgewise_graph::tract_onnx::prelude::{Tensor, tensor1};

use crate::rng::Rng;

/// ONNX opset the zoo writes (HardSwish needs 14).
pub const OPSET: i64 = 17;

/// A feature map of the network being built.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    /// Value name in the graph.
    pub name: String,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Input height over this height (1 for the input).
    pub stride: usize,
    /// Estimated `E[x²]` on real inputs.
    pub moment: f32,
}

/// An activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None.
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `x * sigmoid(x)` (SiLU).
    Swish,
}

/// How convolution and linear weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// He normal, fan-in: std `sqrt(2 / fan_in)`.
    Kaiming,
    /// Glorot uniform: bound `sqrt(6 / (fan_in + fan_out))`.
    Xavier,
    /// Normal with std 0.01 (as torchvision's classifiers).
    Normal,
}

impl Init {
    /// Parses `kaiming`, `xavier` or `normal`.
    pub fn parse(text: &str) -> Option<Init> {
        match text {
            "kaiming" => Some(Init::Kaiming),
            "xavier" => Some(Init::Xavier),
            "normal" => Some(Init::Normal),
            _ => None,
        }
    }

    /// The name [`Init::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Init::Kaiming => "kaiming",
            Init::Xavier => "xavier",
            Init::Normal => "normal",
        }
    }
}

/// [`Init::parse`], saying what is known when the name is not: what
/// command lines parse `--init` with.
impl std::str::FromStr for Init {
    type Err = String;

    fn from_str(text: &str) -> Result<Init, String> {
        Init::parse(text)
            .ok_or_else(|| format!("unknown init `{text}`; use kaiming, xavier or normal"))
    }
}

/// Padding of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad {
    /// `(k - 1) / 2` on every side (PyTorch's usual choice).
    Symmetric,
    /// None.
    Valid,
    /// TensorFlow's `SAME`: output `ceil(in / stride)`, the extra pixel at the end.
    SameUpper,
}

impl Pad {
    /// `(begin, end)` padding and the output size along one axis.
    fn along(self, size: usize, k: usize, stride: usize) -> (usize, usize, usize) {
        let (begin, end) = match self {
            Pad::Symmetric => ((k - 1) / 2, (k - 1) / 2),
            Pad::Valid => (0, 0),
            Pad::SameUpper => {
                let out = size.div_ceil(stride);
                let total = ((out - 1) * stride + k).saturating_sub(size);
                (total / 2, total - total / 2)
            }
        };
        (begin, end, (size + begin + end - k) / stride + 1)
    }
}

/// Totals of what was built, counted as the frameworks publish them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Trainable parameters: weights, biases, BN scale and shift
    /// (torchvision's `sum(p.numel() for p in model.parameters())`).
    pub trainable: u64,
    /// BN running means and variances (Keras counts these in its totals).
    pub buffers: u64,
    /// Multiply-accumulates of convolutions and linear layers.
    pub macs: u64,
}

/// Convolution weights created once and applied to several maps (heads that
/// share their layers across pyramid levels).
#[derive(Clone, Debug)]
pub struct SharedConv {
    weight: String,
    bias: Option<String>,
    cin: usize,
    cout: usize,
    k: usize,
    groups: usize,
    /// `Σ w²` per output channel, for the moment estimate.
    gain: f32,
}

/// A network under construction.
pub struct Net {
    builder: ModelBuilder,
    rng: Rng,
    init: Init,
    counts: Counts,
    metadata: Vec<(String, String)>,
    /// Inside [`Net::prediction_layers`]: the value of every bias.
    bias: Option<f32>,
}

fn ints(v: &[usize]) -> AttributeValue {
    AttributeValue::Ints(v.iter().map(|&x| x as i64).collect())
}

impl Net {
    /// An empty network whose weights come from `seed` drawn as `init`.
    pub fn new(seed: u64, init: Init) -> Net {
        Net {
            builder: ModelBuilder::new(OPSET),
            rng: Rng::new(seed),
            init,
            counts: Counts::default(),
            metadata: vec![],
            bias: None,
        }
    }

    /// Runs `build` with the initialisation detectors give their last
    /// (prediction) layers: weights normal with std 0.01 and every bias
    /// `bias`. With a class prior `p`, `bias = -ln((1 - p) / p)` makes every
    /// score start near `p` (RetinaNet's focal-loss prior, also Ultralytics'
    /// and EfficientDet's), rather than saturating at 0 or 1.
    pub fn prediction_layers<T>(&mut self, bias: f32, build: impl FnOnce(&mut Net) -> T) -> T {
        let saved = (self.init, self.bias);
        self.init = Init::Normal;
        self.bias = Some(bias);
        let out = build(self);
        (self.init, self.bias) = saved;
        out
    }

    /// `cout` biases: the prediction bias when set, else small normal values.
    fn biases(&mut self, cout: usize) -> Vec<f32> {
        match self.bias {
            Some(b) => vec![b; cout],
            None => (0..cout).map(|_| self.rng.normal(0.01)).collect(),
        }
    }

    /// What has been built so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The image input, `[1, channels, height, width]`, values of unit variance.
    pub fn input(&mut self, name: &str, channels: usize, height: usize, width: usize) -> Feature {
        let name = self
            .builder
            .input(name, &[1, channels as i64, height as i64, width as i64]);
        Feature {
            name,
            channels,
            height,
            width,
            stride: 1,
            moment: 1.0,
        }
    }

    /// Declares `x` a graph output.
    pub fn output(&mut self, x: &Feature) {
        self.builder.output(&x.name);
    }

    /// The model, with the metadata set.
    pub fn finish(self) -> Model {
        let mut model = self.builder.finish();
        for (key, value) in self.metadata {
            model.set_metadata(&key, value);
        }
        model
    }

    fn weights(&mut self, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        match self.init {
            Init::Kaiming => {
                let std = (2.0 / fan_in as f32).sqrt();
                (0..len).map(|_| self.rng.normal(std)).collect()
            }
            Init::Xavier => {
                let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
                (0..len).map(|_| self.rng.uniform(-bound, bound)).collect()
            }
            Init::Normal => (0..len).map(|_| self.rng.normal(0.01)).collect(),
        }
    }

    /// A float constant of shape `dims`; returns its name.
    pub fn floats(&mut self, prefix: &str, dims: &[usize], data: &[f32]) -> String {
        let tensor = Tensor::from_shape(dims, data).expect("consistent shape");
        self.builder.initializer(prefix, tensor)
    }

    /// An int64 constant of shape `[len]`; returns its name.
    pub fn int64s(&mut self, prefix: &str, data: &[i64]) -> String {
        self.builder.initializer(prefix, tensor1(data))
    }

    /// A `k`x`k` convolution to `cout` channels. Without `bias` a batch norm
    /// is expected to follow.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &Feature,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bias: bool,
        pad: Pad,
    ) -> Feature {
        let cin = x.channels;
        assert!(
            cin.is_multiple_of(groups) && cout.is_multiple_of(groups),
            "{cin} -> {cout} channels in {groups} groups"
        );
        let per_group = cin / groups;
        let fan_in = per_group * k * k;
        let w = self.weights(cout * fan_in, fan_in, cout / groups * k * k);
        // E[y²] = Σ w² E[x²] per output channel, averaged over channels.
        let moment = w.iter().map(|v| v * v).sum::<f32>() / cout as f32 * x.moment;
        let w = self.floats("w", &[cout, per_group, k, k], &w);
        let mut inputs = vec![x.name.clone(), w];
        if bias {
            let b = self.biases(cout);
            inputs.push(self.floats("b", &[cout], &b));
            self.counts.trainable += cout as u64;
        }
        let (top, bottom, height) = pad.along(x.height, k, stride);
        let (left, right, width) = pad.along(x.width, k, stride);
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let name = self.builder.op(
            "Conv",
            &refs,
            vec![
                ("kernel_shape", ints(&[k, k])),
                ("strides", ints(&[stride, stride])),
                ("pads", ints(&[top, left, bottom, right])),
                ("group", AttributeValue::Int(groups as i64)),
            ],
        );
        self.counts.trainable += (cout * fan_in) as u64;
        self.counts.macs += (cout * fan_in * height * width) as u64;
        Feature {
            name,
            channels: cout,
            height,
            width,
            stride: x.stride * stride,
            moment,
        }
    }

    /// Weights for a `k`x`k` convolution from `cin` to `cout` channels, to be
    /// applied with [`Net::conv_shared`]; parameters are counted once.
    pub fn shared_conv(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        groups: usize,
        bias: bool,
    ) -> SharedConv {
        let fan_in = cin / groups * k * k;
        let w = self.weights(cout * fan_in, fan_in, cout / groups * k * k);
        let gain = w.iter().map(|v| v * v).sum::<f32>() / cout as f32;
        let weight = self.floats("w", &[cout, cin / groups, k, k], &w);
        let bias = bias.then(|| {
            let b = self.biases(cout);
            self.floats("b", &[cout], &b)
        });
        self.counts.trainable += (cout * fan_in + if bias.is_some() { cout } else { 0 }) as u64;
        SharedConv {
            weight,
            bias,
            cin,
            cout,
            k,
            groups,
            gain,
        }
    }

    /// Applies shared weights to `x` at stride 1 with symmetric padding.
    pub fn conv_shared(&mut self, x: &Feature, conv: &SharedConv) -> Feature {
        assert_eq!(
            x.channels, conv.cin,
            "shared conv applied to the wrong width"
        );
        let p = (conv.k - 1) / 2;
        let mut inputs = vec![x.name.as_str(), conv.weight.as_str()];
        if let Some(b) = &conv.bias {
            inputs.push(b);
        }
        let name = self.builder.op(
            "Conv",
            &inputs,
            vec![
                ("kernel_shape", ints(&[conv.k, conv.k])),
                ("strides", ints(&[1, 1])),
                ("pads", ints(&[p, p, p, p])),
                ("group", AttributeValue::Int(conv.groups as i64)),
            ],
        );
        self.counts.macs +=
            (conv.cout * conv.cin / conv.groups * conv.k * conv.k * x.height * x.width) as u64;
        Feature {
            name,
            channels: conv.cout,
            moment: conv.gain * x.moment,
            ..x.clone()
        }
    }

    /// A node with one output, for the reshapes and decoding that heads do;
    /// returns the output name.
    pub fn raw(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<(&str, AttributeValue)>,
    ) -> String {
        self.builder.op(op, inputs, attributes)
    }

    /// Declares a graph output by value name.
    pub fn output_named(&mut self, name: &str) {
        self.builder.output(name);
    }

    /// Sets a metadata entry of the model.
    pub fn set_metadata(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.push((key.to_string(), value.into()));
    }

    /// Batch normalization with running statistics close to what the input
    /// carries (so the output has roughly unit scale) and scale `gamma`
    /// drawn around `gamma_mean`.
    pub fn bn(&mut self, x: &Feature, gamma_mean: f32) -> Feature {
        let c = x.channels;
        let spread = 0.2 * gamma_mean;
        let gamma: Vec<f32> = (0..c)
            .map(|_| self.rng.uniform(gamma_mean - spread, gamma_mean + spread))
            .collect();
        let beta: Vec<f32> = (0..c).map(|_| self.rng.normal(0.1)).collect();
        let var_scale = x.moment.max(1e-6);
        let mean: Vec<f32> = (0..c)
            .map(|_| self.rng.normal(0.1 * var_scale.sqrt()))
            .collect();
        let var: Vec<f32> = (0..c)
            .map(|_| var_scale * self.rng.uniform(0.8, 1.25))
            .collect();
        let moment = gamma.iter().map(|g| g * g).sum::<f32>() / c as f32
            + beta.iter().map(|b| b * b).sum::<f32>() / c as f32;
        let names: Vec<String> = [
            ("gamma", &gamma),
            ("beta", &beta),
            ("mean", &mean),
            ("var", &var),
        ]
        .into_iter()
        .map(|(p, v)| self.floats(p, &[c], v))
        .collect();
        let name = self.builder.op(
            "BatchNormalization",
            &[&x.name, &names[0], &names[1], &names[2], &names[3]],
            vec![("epsilon", AttributeValue::Float(1e-5))],
        );
        self.counts.trainable += 2 * c as u64;
        self.counts.buffers += 2 * c as u64;
        Feature {
            name,
            moment,
            ..x.clone()
        }
    }

    /// Applies `act`.
    pub fn act(&mut self, x: &Feature, act: Act) -> Feature {
        // Second moments after each function for a zero-mean input of
        // moment m (exact for ReLU, close for the rest at m ≈ 1).
        let m = x.moment;
        let (name, moment) = match act {
            Act::Linear => return x.clone(),
            Act::Relu => (self.builder.op("Relu", &[&x.name], vec![]), m / 2.0),
            Act::Relu6 => {
                let lo = self.floats("zero", &[], &[0.0]);
                let hi = self.floats("six", &[], &[6.0]);
                (
                    self.builder.op("Clip", &[&x.name, &lo, &hi], vec![]),
                    m.min(36.0) / 2.0,
                )
            }
            Act::HardSwish => (self.builder.op("HardSwish", &[&x.name], vec![]), m * 0.4),
            Act::HardSigmoid => (
                self.builder.op(
                    "HardSigmoid",
                    &[&x.name],
                    vec![("alpha", AttributeValue::Float(1.0 / 6.0))],
                ),
                0.3,
            ),
            Act::Sigmoid => (self.builder.op("Sigmoid", &[&x.name], vec![]), 0.3),
            Act::Swish => (self.builder.silu(&x.name), m * 0.4),
        };
        Feature {
            name,
            moment,
            ..x.clone()
        }
    }

    /// Convolution without bias, batch norm, activation: the usual block.
    pub fn conv_bn_act(
        &mut self,
        x: &Feature,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        act: Act,
    ) -> Feature {
        let c = self.conv(x, cout, k, stride, groups, false, Pad::Symmetric);
        let b = self.bn(&c, 1.0);
        self.act(&b, act)
    }

    /// Element-wise sum of two maps of one shape.
    pub fn add(&mut self, a: &Feature, b: &Feature) -> Feature {
        assert_eq!(
            (a.channels, a.height, a.width),
            (b.channels, b.height, b.width),
            "adding maps of different shapes"
        );
        let name = self.builder.op("Add", &[&a.name, &b.name], vec![]);
        Feature {
            name,
            moment: a.moment + b.moment,
            ..a.clone()
        }
    }

    /// `x` scaled by `gate` (`[1, C, 1, 1]` or `x`'s shape).
    pub fn mul(&mut self, x: &Feature, gate: &Feature) -> Feature {
        let name = self.builder.op("Mul", &[&x.name, &gate.name], vec![]);
        Feature {
            name,
            moment: x.moment * gate.moment,
            ..x.clone()
        }
    }

    /// Concatenation along channels of maps of one size.
    pub fn concat(&mut self, xs: &[&Feature]) -> Feature {
        let first = xs[0];
        assert!(
            xs.iter()
                .all(|x| (x.height, x.width) == (first.height, first.width)),
            "concatenating maps of different sizes"
        );
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        let name = self
            .builder
            .op("Concat", &names, vec![("axis", AttributeValue::Int(1))]);
        let channels: usize = xs.iter().map(|x| x.channels).sum();
        Feature {
            name,
            channels,
            moment: xs.iter().map(|x| x.moment * x.channels as f32).sum::<f32>() / channels as f32,
            ..first.clone()
        }
    }

    /// Max pooling over `k`x`k` windows.
    pub fn max_pool(&mut self, x: &Feature, k: usize, stride: usize, pad: Pad) -> Feature {
        let (top, bottom, height) = pad.along(x.height, k, stride);
        let (left, right, width) = pad.along(x.width, k, stride);
        let name = self.builder.op(
            "MaxPool",
            &[&x.name],
            vec![
                ("kernel_shape", ints(&[k, k])),
                ("strides", ints(&[stride, stride])),
                ("pads", ints(&[top, left, bottom, right])),
            ],
        );
        Feature {
            name,
            height,
            width,
            stride: x.stride * stride,
            // The largest of k² samples is well above the typical one.
            moment: x.moment * 2.0,
            ..x.clone()
        }
    }

    /// Global average pooling to `[1, C, 1, 1]`.
    pub fn global_avg_pool(&mut self, x: &Feature) -> Feature {
        let name = self.builder.op("GlobalAveragePool", &[&x.name], vec![]);
        Feature {
            name,
            height: 1,
            width: 1,
            ..x.clone()
        }
    }

    /// A fully connected layer on a `[1, C, 1, 1]` (or any) map: Flatten then Gemm.
    pub fn linear(&mut self, x: &Feature, cout: usize) -> Feature {
        let cin = x.channels * x.height * x.width;
        let flat = self.builder.op(
            "Flatten",
            &[&x.name],
            vec![("axis", AttributeValue::Int(1))],
        );
        let w = self.weights(cout * cin, cin, cout);
        let moment = w.iter().map(|v| v * v).sum::<f32>() / cout as f32 * x.moment;
        let w = self.floats("fc_w", &[cout, cin], &w);
        let b = self.biases(cout);
        let b = self.floats("fc_b", &[cout], &b);
        let name = self.builder.op(
            "Gemm",
            &[&flat, &w, &b],
            vec![("transB", AttributeValue::Int(1))],
        );
        self.counts.trainable += (cout * cin + cout) as u64;
        self.counts.macs += (cout * cin) as u64;
        Feature {
            name,
            channels: cout,
            height: 1,
            width: 1,
            stride: x.stride,
            moment,
        }
    }

    /// Squeeze-and-excitation: global pool, 1x1 conv to `squeeze` channels,
    /// `inner`, 1x1 conv back, `gate`, and the input scaled by the result.
    pub fn squeeze_excite(
        &mut self,
        x: &Feature,
        squeeze: usize,
        inner: Act,
        gate: Act,
    ) -> Feature {
        let pooled = self.global_avg_pool(x);
        let s = self.conv(&pooled, squeeze, 1, 1, 1, true, Pad::Valid);
        let s = self.act(&s, inner);
        let e = self.conv(&s, x.channels, 1, 1, 1, true, Pad::Valid);
        // The 1x1 convs ran on a 1x1 map; their MACs are counted by conv().
        let g = self.act(&e, gate);
        self.mul(x, &g)
    }

    /// EfficientDet's fast normalized fusion: `Σ relu(wᵢ) xᵢ / (Σ relu(wⱼ) + ε)`
    /// with one learnable scalar per input, computed in the graph from the
    /// weights (runtimes fold it to constants).
    pub fn weighted_sum(&mut self, xs: &[&Feature]) -> Feature {
        let relus: Vec<String> = xs
            .iter()
            .map(|_| {
                let w = self.rng.uniform(0.5, 1.5);
                let w = self.floats("fuse_w", &[1], &[w]);
                self.builder.op("Relu", &[&w], vec![])
            })
            .collect();
        let refs: Vec<&str> = relus.iter().map(String::as_str).collect();
        let total = self.builder.op("Sum", &refs, vec![]);
        let eps = self.floats("eps", &[1], &[1e-4]);
        let denominator = self.builder.op("Add", &[&total, &eps], vec![]);
        let terms: Vec<String> = xs
            .iter()
            .zip(&relus)
            .map(|(x, r)| {
                let n = self.builder.op("Div", &[r, &denominator], vec![]);
                self.builder.op("Mul", &[&x.name, &n], vec![])
            })
            .collect();
        let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
        let name = self.builder.op("Sum", &refs, vec![]);
        self.counts.trainable += xs.len() as u64;
        let first = xs[0];
        Feature {
            name,
            moment: xs.iter().map(|x| x.moment).sum::<f32>() / xs.len() as f32,
            ..first.clone()
        }
    }

    /// Splits channels into two equal halves.
    pub fn split_channels(&mut self, x: &Feature) -> (Feature, Feature) {
        let half = x.channels / 2;
        let sizes = self.int64s("split", &[half as i64, (x.channels - half) as i64]);
        let outs = self.builder.node(
            "Split",
            &[&x.name, &sizes],
            vec![("axis", AttributeValue::Int(1))],
            2,
        );
        let part = |name: &String, channels| Feature {
            name: name.clone(),
            channels,
            ..x.clone()
        };
        (part(&outs[0], half), part(&outs[1], x.channels - half))
    }

    /// ShuffleNet's channel shuffle: `[C] -> [g, C/g] -> transpose -> [C]`.
    pub fn channel_shuffle(&mut self, x: &Feature, groups: usize) -> Feature {
        let (c, h, w) = (x.channels as i64, x.height as i64, x.width as i64);
        let g = groups as i64;
        let split = self.int64s("shape", &[1, g, c / g, h, w]);
        let r = self.builder.op("Reshape", &[&x.name, &split], vec![]);
        let t = self
            .builder
            .op("Transpose", &[&r], vec![("perm", ints(&[0, 2, 1, 3, 4]))]);
        let back = self.int64s("shape", &[1, c, h, w]);
        let name = self.builder.op("Reshape", &[&t, &back], vec![]);
        Feature { name, ..x.clone() }
    }

    /// Nearest-neighbour resize of `x` to the size of `like`.
    pub fn resize_like(&mut self, x: &Feature, like: &Feature) -> Feature {
        let roi = self.floats("roi", &[0], &[]);
        let scales = self.floats("scales", &[0], &[]);
        let sizes = self.int64s(
            "sizes",
            &[1, x.channels as i64, like.height as i64, like.width as i64],
        );
        let name = self.builder.op(
            "Resize",
            &[&x.name, &roi, &scales, &sizes],
            vec![
                ("mode", AttributeValue::String(b"nearest".to_vec())),
                (
                    "coordinate_transformation_mode",
                    AttributeValue::String(b"asymmetric".to_vec()),
                ),
                ("nearest_mode", AttributeValue::String(b"floor".to_vec())),
            ],
        );
        Feature {
            name,
            height: like.height,
            width: like.width,
            stride: like.stride,
            ..x.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_gives_the_frameworks_output_sizes() {
        // PyTorch: 3x3, pad 1, stride 2 on 224 -> 112; 7x7 pad 3 -> 112.
        assert_eq!(Pad::Symmetric.along(224, 3, 2), (1, 1, 112));
        assert_eq!(Pad::Symmetric.along(224, 7, 2), (3, 3, 112));
        assert_eq!(Pad::Symmetric.along(7, 3, 2), (1, 1, 4));
        // Keras Xception: valid 3x3 stride 2 on 299 -> 149, then 147.
        assert_eq!(Pad::Valid.along(299, 3, 2).2, 149);
        assert_eq!(Pad::Valid.along(149, 3, 1).2, 147);
        // TF SAME: ceil(in / stride), the odd pixel of padding at the end.
        assert_eq!(Pad::SameUpper.along(147, 3, 2), (1, 1, 74));
        assert_eq!(Pad::SameUpper.along(74, 3, 2), (0, 1, 37));
        assert_eq!(Pad::SameUpper.along(37, 3, 1), (1, 1, 37));
    }

    #[test]
    fn conv_and_linear_are_counted() {
        let mut net = Net::new(1, Init::Kaiming);
        let x = net.input("x", 3, 32, 32);
        let c = net.conv_bn_act(&x, 16, 3, 2, 1, Act::Relu);
        assert_eq!((c.channels, c.height, c.width, c.stride), (16, 16, 16, 2));
        let d = net.conv_bn_act(&c, 16, 3, 1, 16, Act::Relu6);
        let p = net.global_avg_pool(&d);
        let y = net.linear(&p, 10);
        net.output(&y);
        let counts = net.counts();
        assert_eq!(
            counts.trainable,
            (16 * 27 + 32) + (16 * 9 + 32) + (160 + 10)
        );
        assert_eq!(counts.buffers, 64);
        assert_eq!(counts.macs, 16 * 27 * 256 + 16 * 9 * 256 + 160);
    }
}
