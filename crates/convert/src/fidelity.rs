//! How closely a converted model (quantized, pruned) follows the original, on
//! held-back photos: the agreement of the tensors on every stage boundary and
//! output (cosine, signal-to-noise ratio), and of the detections (precision,
//! recall and F1 at IoU 0.5, and COCO's mAP@0.5 and mAP@0.5:0.95, taking the
//! original's detections as the truth).

use std::path::PathBuf;

use anyhow::{Context, Result};
use edgewise_decode::Detection;
use edgewise_graph::model::ValueInfo;
use edgewise_graph::tract_onnx::prelude::Tensor;
use edgewise_graph::{InputShape, Model};
use edgewise_manifest::{Input, Layout, Manifest};
use edgewise_runtime::{Detector, Engine, Finisher, Prepared, QdqMode, load_image, preprocess};

use crate::labels::Truth;
use crate::map::{Image, MeanAp, mean_ap};
use crate::spread::{Interval, PerPhoto, bootstrap};
use serde::Serialize;

/// IoU at which two detections are the same object.
pub const MATCH_IOU: f32 = 0.5;

/// A tensor compared between the two models.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    /// The value's name (the same in both models).
    pub value: String,
    /// Where it is: `backbone -> neck`, `-> head`, `output`.
    pub role: String,
}

/// Agreement on one tensor, over all photos.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorAgreement {
    /// The probe.
    #[serde(flatten)]
    pub probe: Probe,
    /// Cosine similarity of the two tensors (all photos as one vector).
    pub cosine: f64,
    /// Signal-to-noise ratio in dB: reference energy over difference energy.
    pub snr_db: f64,
}

/// Agreement of detections, the reference's taken as the truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DetectionAgreement {
    /// Detections of the reference model.
    pub reference: usize,
    /// Detections of the compared model.
    pub candidate: usize,
    /// Candidate detections matching a reference one (same class, IoU ≥ 0.5).
    pub matched: usize,
    /// `matched / candidate` (1 when both found nothing).
    pub precision: f64,
    /// `matched / reference` (1 when both found nothing).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// COCO mAP with the reference's detections as ground truth (`None`
    /// when the reference found nothing).
    pub map: Option<MeanAp>,
    /// F1's 95% bootstrap interval over the photos ([`Self::finish`]).
    pub f1_interval: Option<Interval>,
    /// The F1 of each photo alone: smallest, median, largest.
    pub f1_per_photo: Option<PerPhoto>,
    /// mAP@0.5:0.95's 95% bootstrap interval over the photos.
    pub map50_95_interval: Option<Interval>,
    /// Per photo: reference detections, candidate detections, matches.
    #[serde(skip)]
    photos: Vec<[usize; 3]>,
}

/// Precision, recall and F1 of `matched` matches among `reference` and
/// `candidate` detections; with none on either side, the two agree
/// completely.
fn scores(reference: usize, candidate: usize, matched: usize) -> (f64, f64, f64) {
    if reference == 0 && candidate == 0 {
        return (1.0, 1.0, 1.0);
    }
    // Nothing found on one side: no match is wrong (1) on the empty side.
    let ratio = |n: usize, d: usize| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    let (p, r) = (ratio(matched, candidate), ratio(matched, reference));
    let f1 = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f1)
}

impl DetectionAgreement {
    /// Counts matches between the detections of one photo, and adds them.
    pub fn add(&mut self, reference: &[Detection], candidate: &[Detection]) {
        let matched = match_count(reference, candidate, MATCH_IOU);
        self.photos
            .push([reference.len(), candidate.len(), matched]);
        self.reference += reference.len();
        self.candidate += candidate.len();
        self.matched += matched;
        (self.precision, self.recall, self.f1) =
            scores(self.reference, self.candidate, self.matched);
    }

    /// Once every photo is added (`images` holding each one's detections,
    /// in the same order): the mAP, and how far F1 and mAP would move on
    /// other photos.
    pub fn finish(&mut self, images: &[Image]) {
        debug_assert_eq!(images.len(), self.photos.len());
        self.map = mean_ap(images);
        let f1_of = |sample: &[usize]| {
            let [r, c, m] = sample.iter().fold([0; 3], |[r, c, m], &i| {
                let [pr, pc, pm] = self.photos[i];
                [r + pr, c + pc, m + pm]
            });
            Some(scores(r, c, m).2)
        };
        self.f1_interval = bootstrap(self.photos.len(), f1_of);
        let each: Vec<f64> = self
            .photos
            .iter()
            .map(|&[r, c, m]| scores(r, c, m).2)
            .collect();
        self.f1_per_photo = PerPhoto::of(&each);
        self.map50_95_interval = bootstrap(images.len(), |sample| {
            let resampled: Vec<Image> = sample.iter().map(|&i| images[i].clone()).collect();
            mean_ap(&resampled).map(|m| m.map50_95)
        });
    }
}

/// Greedy matching, highest score first: each candidate takes the unmatched
/// reference detection of its class with the highest IoU, if at least `iou`.
pub fn match_count(reference: &[Detection], candidate: &[Detection], iou: f32) -> usize {
    let mut order: Vec<&Detection> = candidate.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; reference.len()];
    let mut matched = 0;
    for c in order {
        let best = reference
            .iter()
            .enumerate()
            .filter(|(i, r)| !taken[*i] && r.class_id == c.class_id)
            .map(|(i, r)| (i, r.bbox.iou(&c.bbox)))
            .filter(|(_, v)| *v >= iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            taken[i] = true;
            matched += 1;
        }
    }
    matched
}

/// The fidelity of one model against another, run one way.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fidelity {
    /// How the compared model ran (for QDQ models).
    pub qdq: Option<QdqMode>,
    /// Whether this is the noise floor ([`Comparison::noise_floor`]): the
    /// original against itself on inputs moved by up to one gray level.
    pub gray_level_noise: bool,
    /// Photos compared.
    pub photos: usize,
    /// Per probed tensor.
    pub tensors: Vec<TensorAgreement>,
    /// Probed tensors whose sizes differ (a pruned model's boundaries with
    /// fewer channels): not compared, since their channels do not line up.
    pub not_compared: Vec<Probe>,
    /// Detections.
    pub detections: DetectionAgreement,
    /// Both models against the photos' labels, where they have some that
    /// fit the model.
    pub labels: Option<LabelScore>,
}

/// Both models scored against the photos' true boxes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelScore {
    /// The model's classes that have labels.
    pub classes: Vec<String>,
    /// True boxes.
    pub boxes: usize,
    /// The original's mAP (`None` when no photo has a box).
    pub reference: Option<MeanAp>,
    /// The converted model's.
    pub candidate: Option<MeanAp>,
    /// The original's mAP@0.5:0.95, 95% bootstrap interval over the photos.
    pub reference_interval: Option<Interval>,
    /// The converted model's.
    pub candidate_interval: Option<Interval>,
    /// The converted model's mAP@0.5:0.95 less the original's, on the same
    /// resamples: the conversion's cost, with its own interval (narrower
    /// than the two above, which move together from photo to photo).
    pub change_interval: Option<Interval>,
}

impl LabelScore {
    /// Scores `reference` and `candidate` (each photo's detections) against
    /// `truth`.
    fn of(truth: &Truth, reference: &[Vec<Detection>], candidate: &[Vec<Detection>]) -> LabelScore {
        // What counts of each photo's detections, once, not per resample.
        let scored = |found: &[Vec<Detection>]| -> Vec<Vec<Detection>> {
            found
                .iter()
                .enumerate()
                .map(|(i, f)| truth.scored(i, f))
                .collect()
        };
        let (reference, candidate) = (&scored(reference)[..], &scored(candidate)[..]);
        let images = |found: &[Vec<Detection>], sample: &[usize]| -> Vec<Image> {
            sample
                .iter()
                .map(|&i| Image {
                    truth: truth.per_photo[i].clone(),
                    found: found[i].clone(),
                })
                .collect()
        };
        let map = |found: &[Vec<Detection>], sample: &[usize]| {
            mean_ap(&images(found, sample)).map(|m| m.map50_95)
        };
        let all: Vec<usize> = (0..truth.per_photo.len()).collect();
        let photos = all.len();
        LabelScore {
            classes: truth.classes.clone(),
            boxes: truth.boxes,
            reference: mean_ap(&images(reference, &all)),
            candidate: mean_ap(&images(candidate, &all)),
            reference_interval: bootstrap(photos, |s| map(reference, s)),
            candidate_interval: bootstrap(photos, |s| map(candidate, s)),
            change_interval: bootstrap(photos, |s| Some(map(candidate, s)? - map(reference, s)?)),
        }
    }
}

#[derive(Default)]
struct Sums {
    /// The two tensors differed in size on some photo.
    sizes_differ: bool,
    dot: f64,
    reference: f64,
    candidate: f64,
    error: f64,
}

impl Sums {
    fn add(&mut self, a: &[f32], b: &[f32]) {
        if a.len() != b.len() {
            self.sizes_differ = true;
            return;
        }
        for (&a, &b) in a.iter().zip(b) {
            let (a, b) = (a as f64, b as f64);
            self.dot += a * b;
            self.reference += a * a;
            self.candidate += b * b;
            self.error += (a - b) * (a - b);
        }
    }

    fn cosine(&self) -> f64 {
        let norms = (self.reference * self.candidate).sqrt();
        if norms == 0.0 {
            if self.error == 0.0 { 1.0 } else { 0.0 }
        } else {
            self.dot / norms
        }
    }

    fn snr_db(&self) -> f64 {
        if self.error == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.reference / self.error).log10()
        }
    }
}

/// `model` with `probes` added to its outputs (values already outputs stay once).
fn probing(model: &Model, probes: &[Probe]) -> Model {
    let mut m = model.clone();
    for p in probes {
        if !m.graph.outputs.iter().any(|o| o.name == p.value) {
            m.graph.outputs.push(ValueInfo {
                name: p.value.clone(),
                elem_type: 1,
                shape: None,
                doc_string: String::new(),
            });
        }
    }
    m
}

fn values_of(engine: &Engine, outputs: &[Tensor], name: &str) -> Result<Vec<f32>> {
    let ix = engine
        .output_names()
        .iter()
        .position(|n| n == name)
        .with_context(|| format!("value {name} is not an output of the probed model"))?;
    let t = outputs[ix].cast_to::<f32>()?;
    edgewise_graph::tensor::values::<f32>(&t)
        .map(<[f32]>::to_vec)
        .with_context(|| format!("value {name} is not readable as f32"))
}

/// What to compare and on what.
pub struct Comparison<'a> {
    /// The original model.
    pub reference: &'a Model,
    /// The converted model.
    pub candidate: &'a Model,
    /// Their manifest (preprocessing, decoding).
    pub manifest: &'a Manifest,
    /// The input shape both run at.
    pub shape: &'a InputShape,
    /// The tensors to compare.
    pub probes: &'a [Probe],
    /// The photos.
    pub photos: &'a [PathBuf],
    /// Threads for tract.
    pub threads: usize,
    /// The photos' true boxes, when they are labeled.
    pub truth: Option<&'a Truth>,
}

/// One model as compared: its probed engine and its detector.
struct Side {
    engine: Engine,
    detector: Detector,
    finisher: Finisher,
}

impl Side {
    fn new(model: &Model, c: &Comparison, hw: [usize; 2], qdq: QdqMode) -> Result<Side> {
        let shapes = std::slice::from_ref(c.shape);
        let engine = Engine::with_qdq_mode(&probing(model, c.probes), shapes, c.threads, qdq)?;
        let detector = Detector::new(model.clone(), c.manifest.clone(), Some(hw), c.threads)?
            .with_qdq_mode(qdq);
        let finisher = detector.finisher()?;
        Ok(Side {
            engine,
            detector,
            finisher,
        })
    }

    /// The probed values and the detections of one preprocessed photo.
    fn run(
        &mut self,
        probes: &[Probe],
        prepared: Prepared,
    ) -> Result<(Vec<Vec<f32>>, Vec<Detection>)> {
        let outputs = self.engine.run(vec![prepared.tensor.clone()])?;
        let values = probes
            .iter()
            .map(|p| values_of(&self.engine, &outputs, &p.value))
            .collect::<Result<_>>()?;
        let detections = self.finisher.finish(self.detector.infer(prepared)?)?;
        Ok((values, detections))
    }
}

/// Moves every value of `prepared`'s input tensor by -1, 0 or +1 gray
/// level of `input`'s normalization (`scale / std` of its channel), kept
/// within gray levels 0 to 255: the smallest change an 8-bit photo can
/// take (the letterbox padding takes it too). The same `seed` gives the
/// same change.
pub fn with_gray_level_noise(prepared: &mut Prepared, input: &Input, seed: u64) -> Result<()> {
    let shape = prepared.tensor.shape().to_vec();
    let channel_axis = match input.layout {
        Layout::Nchw => 1,
        Layout::Nhwc => shape.len().saturating_sub(1),
    };
    let channels = *shape
        .get(channel_axis)
        .context("the input tensor has no channel axis")?;
    let inner: usize = shape[channel_axis + 1..].iter().product();
    // Per channel: one gray level, and the values of gray levels 0 and 255,
    // which the noise does not leave (a white page stays white).
    let of_gray = |c: usize, gray: f32| {
        let std = input.std.get(c).copied().unwrap_or(1.0);
        (gray * input.scale - input.mean.get(c).copied().unwrap_or(0.0)) / std
    };
    let step: Vec<f32> = (0..channels)
        .map(|c| of_gray(c, 1.0) - of_gray(c, 0.0))
        .collect();
    let bounds: Vec<(f32, f32)> = (0..channels)
        .map(|c| {
            let (a, b) = (of_gray(c, 0.0), of_gray(c, 255.0));
            (a.min(b), a.max(b))
        })
        .collect();
    let mut view = prepared
        .tensor
        .to_plain_array_view_mut::<f32>()
        .context("the input tensor is not f32")?;
    let values = view
        .as_slice_mut()
        .context("the input tensor is not contiguous")?;
    let mut state = seed;
    for (i, v) in values.iter_mut().enumerate() {
        // SplitMix64: a fixed, well-mixed stream without a dependency.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let level = (z % 3) as f32 - 1.0;
        let c = (i / inner) % channels;
        let (low, high) = bounds[c];
        // A value already outside the pixels' range (padding of another
        // normalization) keeps its noise rather than being clamped in.
        let moved = *v + level * step[c];
        *v = if (low..=high).contains(v) {
            moved.clamp(low, high)
        } else {
            moved
        };
    }
    Ok(())
}

impl Comparison<'_> {
    /// Runs both models on every photo and measures their agreement, the
    /// candidate run in `qdq` mode.
    pub fn run(&self, qdq: QdqMode) -> Result<Fidelity> {
        let hw = self.hw()?;
        let mut reference = Side::new(self.reference, self, hw, QdqMode::default())?;
        let mut candidate = Side::new(self.candidate, self, hw, qdq)?;
        let is_qdq = self
            .candidate
            .graph
            .nodes
            .iter()
            .any(|n| n.op_type == "DequantizeLinear");
        let mut fidelity = self.measure(hw, |prepared, _| {
            Ok((
                reference.run(self.probes, prepared.clone())?,
                candidate.run(self.probes, prepared)?,
            ))
        })?;
        fidelity.qdq = is_qdq.then_some(qdq);
        Ok(fidelity)
    }

    /// The noise floor: the original against itself, its input moved by up
    /// to one gray level per value ([`with_gray_level_noise`]). How far a
    /// model's detections move for the smallest change a photo can take:
    /// the scale to read a converted model's F1 and mAP on. A model whose
    /// detections sit at its thresholds (PP-OCRv4 on handwriting) moves
    /// far; no conversion can be expected to keep such detections better.
    pub fn noise_floor(&self) -> Result<Fidelity> {
        let hw = self.hw()?;
        let mut reference = Side::new(self.reference, self, hw, QdqMode::default())?;
        let mut fidelity = self.measure(hw, |prepared, photo| {
            let mut noisy = prepared.clone();
            with_gray_level_noise(&mut noisy, &self.manifest.input, photo as u64)?;
            Ok((
                reference.run(self.probes, prepared)?,
                reference.run(self.probes, noisy)?,
            ))
        })?;
        fidelity.gray_level_noise = true;
        Ok(fidelity)
    }

    fn hw(&self) -> Result<[usize; 2]> {
        self.manifest
            .input
            .hw_of(&self.shape.dims)
            .context("the input shape has no height and width")
    }

    /// Agreement over every photo of what `run_both` gives for it (given
    /// the photo preprocessed to `hw` and its index): the reference's probed values
    /// and detections, then the candidate's.
    fn measure(
        &self,
        hw: [usize; 2],
        mut run_both: impl FnMut(Prepared, usize) -> Result<Compared>,
    ) -> Result<Fidelity> {
        let mut sums: Vec<Sums> = self.probes.iter().map(|_| Sums::default()).collect();
        let mut detections = DetectionAgreement::default();
        let mut images = vec![];
        let (mut found_ref, mut found_cand) = (vec![], vec![]);
        for (ix, photo) in self.photos.iter().enumerate() {
            let image = load_image(photo)?;
            let prepared = preprocess(&image, &self.manifest.input, Some(hw))?;
            let ((va, r), (vb, c)) = run_both(prepared, ix)?;
            for ((sum, a), b) in sums.iter_mut().zip(&va).zip(&vb) {
                sum.add(a, b);
            }
            detections.add(&r, &c);
            if self.truth.is_some() {
                found_ref.push(r.clone());
                found_cand.push(c.clone());
            }
            images.push(Image { truth: r, found: c });
        }
        detections.finish(&images);
        let labels = self
            .truth
            .map(|truth| LabelScore::of(truth, &found_ref, &found_cand));
        Ok(Fidelity {
            qdq: None,
            gray_level_noise: false,
            photos: self.photos.len(),
            not_compared: self
                .probes
                .iter()
                .zip(&sums)
                .filter(|(_, s)| s.sizes_differ)
                .map(|(p, _)| p.clone())
                .collect(),
            tensors: self
                .probes
                .iter()
                .zip(&sums)
                .filter(|(_, s)| !s.sizes_differ)
                .map(|(p, s)| TensorAgreement {
                    probe: p.clone(),
                    cosine: s.cosine(),
                    snr_db: s.snr_db(),
                })
                .collect(),
            detections,
            labels,
        })
    }
}

/// One photo through both sides: each one's probed values and detections.
type Compared = (
    (Vec<Vec<f32>>, Vec<Detection>),
    (Vec<Vec<f32>>, Vec<Detection>),
);

/// The text report of one comparison.
pub fn render(f: &Fidelity) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let how = match f.qdq {
        Some(QdqMode::Float) => " (run with --qdq float)",
        Some(QdqMode::Integer) => " (run with --qdq integer)",
        Some(QdqMode::IntegerTract) => " (run with --qdq integer-tract)",
        Some(QdqMode::Auto) => " (run with --qdq auto)",
        None => "",
    };
    let d = &f.detections;
    let interval = |i: Option<Interval>| {
        i.map(|i| format!(" [{:.3}, {:.3}]", i.low, i.high))
            .unwrap_or_default()
    };
    let compared = if f.gray_level_noise {
        "with noise"
    } else {
        "converted"
    };
    let what = if f.gray_level_noise {
        "noise floor, the original against itself with each input value moved by -1, 0 or +1 gray level at random (what the smallest change of a photo does),"
    } else {
        "fidelity"
    };
    let _ = writeln!(
        s,
        "{what} on {} held-back photos{how}: detections F1 {:.3}{} (precision {:.3}, recall {:.3}; {} matched of {} original, {} {compared}, IoU >= {MATCH_IOU})",
        f.photos,
        d.f1,
        interval(d.f1_interval),
        d.precision,
        d.recall,
        d.matched,
        d.reference,
        d.candidate
    );
    if let Some(m) = d.map {
        let _ = writeln!(
            s,
            "  mAP@0.5 {:.3}, mAP@0.5:0.95 {:.3}{} (the original's detections as ground truth)",
            m.map50,
            m.map50_95,
            interval(d.map50_95_interval)
        );
    }
    if let (Some(_), Some(p)) = (d.f1_interval, d.f1_per_photo) {
        let _ = writeln!(
            s,
            "  [low, high]: 95% of the figure over {} resamples of the photos; F1 per photo: min {:.3}, median {:.3}, max {:.3}",
            crate::spread::RESAMPLES,
            p.min,
            p.median,
            p.max
        );
    }
    if let Some(l) = &f.labels {
        let map = |m: Option<MeanAp>, i: Option<Interval>| match m {
            Some(m) => format!(
                "mAP@0.5 {:.3}, mAP@0.5:0.95 {:.3}{}",
                m.map50,
                m.map50_95,
                interval(i)
            ),
            None => "no mAP".into(),
        };
        let _ = writeln!(
            s,
            "  against the labels ({} boxes of {}): original {}; {} {}; change {}",
            l.boxes,
            l.classes.join(", "),
            map(l.reference, l.reference_interval),
            compared,
            map(l.candidate, l.candidate_interval),
            match (l.reference, l.candidate) {
                (Some(r), Some(c)) => format!(
                    "{:+.3}{}",
                    c.map50_95 - r.map50_95,
                    interval(l.change_interval)
                ),
                _ => "-".into(),
            }
        );
    }
    for t in &f.tensors {
        let _ = writeln!(
            s,
            "  {:<13} {:<40} cosine {:.5}  SNR {:>6.1} dB",
            t.probe.role, t.probe.value, t.cosine, t.snr_db
        );
    }
    for p in &f.not_compared {
        let _ = writeln!(
            s,
            "  {:<13} {:<40} not compared: its size differs (pruned channels do not line up)",
            p.role, p.value
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use edgewise_decode::BBox;

    use super::*;

    /// `layout` with per-channel std 0.5, 1 and 2 on pixels scaled by 1/255
    /// and centred: a zero tensor is mid-gray.
    fn input(layout: &str) -> Input {
        toml::from_str(&format!(
            "layout = \"{layout}\"\nsize = [2, 3]\ncolor = \"rgb\"\nresize = \"stretch\"\n\
             scale = 0.00392156862745098\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 1.0, 2.0]"
        ))
        .unwrap()
    }

    fn noisy(shape: &[usize], input: &Input, seed: u64) -> Vec<f32> {
        let mut prepared = Prepared {
            tensor: Tensor::zero::<f32>(shape).unwrap(),
            letterbox: edgewise_runtime::Letterbox {
                scale_x: 1.0,
                scale_y: 1.0,
                pad_x: 0.0,
                pad_y: 0.0,
                original: (3, 2),
            },
        };
        with_gray_level_noise(&mut prepared, input, seed).unwrap();
        edgewise_graph::tensor::values::<f32>(&prepared.tensor)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn gray_level_noise_moves_each_value_by_one_step_of_its_channel_at_most() {
        let steps = [2.0 / 255.0, 1.0 / 255.0, 0.5 / 255.0];
        for (layout, shape, channel_of) in [
            (
                "nchw",
                [1, 3, 20, 30],
                (|i: usize| i / 600) as fn(usize) -> usize,
            ),
            ("nhwc", [1, 20, 30, 3], |i: usize| i % 3),
        ] {
            let input = input(layout);
            let values = noisy(&shape, &input, 7);
            let mut seen = [[false; 3]; 3];
            for (i, v) in values.iter().enumerate() {
                let c = channel_of(i);
                let level = v / steps[c];
                assert!(
                    (level - level.round()).abs() < 1e-4 && level.abs() < 1.5,
                    "{layout}: value {i} moved by {v}, not a whole step of {}",
                    steps[c]
                );
                seen[c][(level.round() + 1.0) as usize] = true;
            }
            // Every channel takes all three levels, and the same seed the
            // same noise; another seed another.
            assert_eq!(seen, [[true; 3]; 3], "{layout}");
            assert_eq!(values, noisy(&shape, &input, 7));
            assert_ne!(values, noisy(&shape, &input, 8));
        }
        // White stays within white.
        let input = input("nchw");
        let white = [1.0f32, 1.0, 0.5, 0.5, 0.25, 0.25];
        let mut prepared = Prepared {
            tensor: Tensor::from_shape(&[1, 3, 1, 2], &white).unwrap(),
            letterbox: edgewise_runtime::Letterbox {
                scale_x: 1.0,
                scale_y: 1.0,
                pad_x: 0.0,
                pad_y: 0.0,
                original: (2, 1),
            },
        };
        for seed in 0..8 {
            with_gray_level_noise(&mut prepared, &input, seed).unwrap();
        }
        let values = edgewise_graph::tensor::values::<f32>(&prepared.tensor).unwrap();
        for (i, (v, top)) in values.iter().zip(white).enumerate() {
            assert!(*v <= top + 1e-6, "value {i}: {v} above white ({top})");
        }
        assert!(
            values.iter().zip(white).any(|(v, top)| *v < top),
            "{values:?}"
        );
    }

    fn det(class: usize, score: f32, x: f32) -> Detection {
        Detection::new(
            class,
            score,
            BBox {
                x1: x,
                y1: 0.0,
                x2: x + 10.0,
                y2: 10.0,
            },
        )
    }

    #[test]
    fn matching_needs_the_class_and_half_overlap() {
        let reference = [det(0, 0.9, 0.0), det(1, 0.8, 50.0)];
        // Same place, same class; same place, other class; shifted by 4 (IoU 0.43).
        let candidate = [det(0, 0.9, 0.0), det(0, 0.7, 50.0), det(1, 0.6, 54.0)];
        assert_eq!(match_count(&reference, &candidate, 0.5), 1);
        let mut a = DetectionAgreement::default();
        a.add(&reference, &candidate);
        assert_eq!((a.matched, a.reference, a.candidate), (1, 2, 3));
        assert!((a.precision - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.recall - 0.5).abs() < 1e-9);
        assert!((a.f1 - 0.4).abs() < 1e-9);
    }

    #[test]
    fn one_reference_box_is_matched_once() {
        let reference = [det(0, 0.9, 0.0)];
        let candidate = [det(0, 0.5, 0.0), det(0, 0.9, 1.0)];
        assert_eq!(match_count(&reference, &candidate, 0.5), 1);
    }

    #[test]
    fn no_detections_on_either_side_is_full_agreement() {
        let mut a = DetectionAgreement::default();
        a.add(&[], &[]);
        assert_eq!((a.precision, a.recall, a.f1), (1.0, 1.0, 1.0));
        a.add(&[det(0, 0.9, 0.0)], &[]);
        assert_eq!((a.recall, a.f1), (0.0, 0.0));
        // None found: none of them wrong.
        assert_eq!(a.precision, 1.0);
    }

    #[test]
    fn finishing_bounds_f1_and_map_over_the_photos() {
        let mut a = DetectionAgreement::default();
        let mut images = vec![];
        // Four photos found alike, one where the candidate misses both.
        for miss in [false, false, true, false, false] {
            let reference = vec![det(0, 0.9, 0.0), det(0, 0.8, 50.0)];
            let candidate = if miss { vec![] } else { reference.clone() };
            a.add(&reference, &candidate);
            images.push(Image {
                truth: reference,
                found: candidate,
            });
        }
        a.finish(&images);
        assert!((a.f1 - 8.0 / 9.0).abs() < 1e-9, "{}", a.f1);
        let f1 = a.f1_interval.unwrap();
        assert!(f1.low < a.f1 && a.f1 <= f1.high && f1.high == 1.0, "{f1:?}");
        let p = a.f1_per_photo.unwrap();
        assert_eq!((p.min, p.median, p.max), (0.0, 1.0, 1.0));
        let map = a.map50_95_interval.unwrap();
        assert!(
            map.low < a.map.unwrap().map50_95 && map.high == 1.0,
            "{map:?}"
        );
        assert!(
            render(&Fidelity {
                qdq: None,
                gray_level_noise: false,
                photos: 5,
                tensors: vec![],
                not_compared: vec![],
                detections: a,
                labels: None,
            })
            .contains("F1 per photo: min 0.000, median 1.000, max 1.000")
        );
    }

    #[test]
    fn label_scores_bound_each_model_and_the_change() {
        // Six photos of two objects; the original finds both on each, the
        // converted one misses one object on two photos.
        let truth = Truth {
            per_photo: vec![vec![det(0, 1.0, 0.0), det(0, 1.0, 50.0)]; 6],
            ignore: vec![vec![]; 6],
            classes: vec!["person".into()],
            boxes: 12,
        };
        let original: Vec<Vec<Detection>> = truth.per_photo.clone();
        let converted: Vec<Vec<Detection>> = (0..6)
            .map(|i| truth.per_photo[i][..if i < 2 { 1 } else { 2 }].to_vec())
            .collect();
        let l = LabelScore::of(&truth, &original, &converted);
        assert_eq!(l.reference.unwrap().map50_95, 1.0);
        let c = l.candidate.unwrap().map50_95;
        assert!(c < 1.0, "{c}");
        let change = l.change_interval.unwrap();
        assert!(change.low < c - 1.0 && change.high <= 0.0, "{change:?}");
        assert_eq!(
            l.reference_interval.map(|i| (i.low, i.high)),
            Some((1.0, 1.0))
        );
    }

    #[test]
    fn sums_give_cosine_and_snr() {
        let mut s = Sums::default();
        s.add(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!(s.cosine(), 1.0);
        assert_eq!(s.snr_db(), f64::INFINITY);
        let mut s = Sums::default();
        s.add(&[10.0, 0.0], &[9.0, 0.0]);
        // Energy 100 over error 1: 20 dB.
        assert!((s.snr_db() - 20.0).abs() < 1e-9);
    }
}
