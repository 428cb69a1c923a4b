//! A detector on a live source or a video for a while: the figures of
//! `edge-run --source` (frames captured, processed and dropped, fps,
//! latency from capture to detections), for `edge-bench --source`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgewise_graph::analysis::resolve_input_shapes;
use edgewise_manifest::Manifest;
use edgewise_runtime::ModelSource;
use edgewise_stream::{Event, Options, Policy, Source};
use serde::{Deserialize, Serialize};

use crate::measure::{Budget, Target, detector_at};

/// How a stream was measured, and what came out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRun {
    /// The source, as given.
    pub source: String,
    /// Whether it delivers frames in real time (a camera, RTSP, a live
    /// pipeline) rather than as fast as they are read (a file).
    pub live: bool,
    /// `latest` (stale frames dropped) or `every frame`.
    pub policy: String,
    /// The time asked for; a file may end sooner.
    pub seconds_asked: f64,
    /// The stream's figures over the whole run.
    pub report: edgewise_stream::Report,
}

impl StreamRun {
    /// The share of the run the inference thread was busy: 100% when pre-
    /// and post-processing hide entirely behind inference.
    pub fn inference_busy_pct(&self) -> f64 {
        100.0 * self.report.fps * self.report.infer.median_ms / 1e3
    }
}

/// Refuses a run length that measures nothing (`--seconds`).
pub fn check_seconds(seconds: f64) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be a positive number of seconds, not {seconds}");
    }
    Ok(())
}

/// The manifest a stream needs to turn frames into model input.
pub fn manifest_of(model: &ModelSource) -> Result<&Manifest> {
    model.manifest.as_ref().with_context(|| {
        format!(
            "--source needs a manifest to turn frames into model input: give models/<name>.toml (or a manifest beside it) instead of {}",
            model.onnx.display()
        )
    })
}

/// Runs `target`'s detector on `source` for `seconds` (or until a file
/// ends), at the input size the per-stage measurement used and with the
/// same engine settings; `progress` gets the seconds elapsed after each
/// frame.
pub fn measure_stream(
    target: &Target,
    budget: Budget,
    source: &str,
    seconds: f64,
    progress: &mut dyn FnMut(f64),
) -> Result<StreamRun> {
    check_seconds(seconds)?;
    let manifest = manifest_of(&target.source)?;
    let model = target.staged.model.clone();
    let inputs = resolve_input_shapes(&model, &target.shapes)?;
    let dims = &inputs.first().context("the model has no input")?.1;
    let mut detector = detector_at(model, manifest, dims, &budget.engine_options())?;
    let parsed = Source::parse(source)?;
    let mut capture = edgewise_stream::open(&parsed, None)?;
    let live = capture.is_live();
    let options = Options {
        policy: if live {
            Policy::Latest
        } else {
            Policy::EveryFrame
        },
        stride: 1,
        max_fps: None,
        report_every: None,
    };
    let stop = AtomicBool::new(false);
    let limit = Duration::try_from_secs_f64(seconds)?;
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let ended = std::thread::scope(|scope| {
        // The clock ends the run even while no frame comes.
        let timer = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) && started.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let ended = edgewise_runtime::stream::detect_stream(
            &mut detector,
            capture.as_mut(),
            &options,
            &stop,
            |event| {
                if let Event::Frame(_) = event {
                    progress(started.elapsed().as_secs_f64());
                }
                true
            },
        );
        done.store(true, Ordering::Relaxed);
        timer.join().expect("the timer does not panic");
        ended
    })?;
    if let Some(error) = ended.error {
        return Err(error).context("the stream failed");
    }
    if ended.report.processed == 0 {
        bail!("no frame of {source} was processed within {seconds} s");
    }
    Ok(StreamRun {
        source: source.to_string(),
        live,
        policy: match options.policy {
            Policy::Latest => "latest",
            Policy::EveryFrame => "every frame",
        }
        .to_string(),
        seconds_asked: seconds,
        report: ended.report,
    })
}
