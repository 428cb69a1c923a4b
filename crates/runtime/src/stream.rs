//! A detector on a stream: its preprocessing, inference and decoding as the
//! stages of [`edgewise_stream::pipeline`], each on its own thread.

use std::sync::atomic::AtomicBool;

use edgewise_decode::Detection;
use edgewise_stream::pipeline::{self, Ended, Event, Options, Stages};
use edgewise_stream::{Capture, Captured, Report, StreamError};
use image::DynamicImage;

use crate::detector::Detector;

/// Runs `detector` on `capture` until the stream ends, `stop` is set or
/// `sink` returns `false` (see [`pipeline::run`]); an error only when the
/// stream could not start.
///
/// The model's engine for the stream's frame size is built, and run once on
/// a black frame, before the stream starts: its first frame is timed from
/// then, and the figures start then too (frames a live source dropped
/// while the engine was built are not counted).
pub fn detect_stream(
    detector: &mut Detector,
    capture: &mut dyn Capture,
    options: &Options,
    stop: &AtomicBool,
    sink: impl FnMut(Event<Vec<Detection>>) -> bool,
) -> Result<Ended, StreamError> {
    let Some(mut first) = capture.next_frame(stop)? else {
        return Ok(Ended {
            report: Report::default(),
            error: None,
        });
    };
    let preparer = detector.preparer();
    let finisher = detector
        .finisher()
        .map_err(|e| stage_failed("decoder", e))?;
    let black = DynamicImage::new_rgb8(first.image.width(), first.image.height());
    preparer
        .prepare(&black)
        .and_then(|p| detector.infer(p))
        .map_err(|e| stage_failed("model", e))?;
    first.at = std::time::Instant::now();
    let mut replay = Replay {
        first: Some(first),
        rest: capture,
    };
    let stages = Stages {
        prepare: Box::new(move |image: &DynamicImage| Ok(preparer.prepare(image)?)),
        infer: Box::new(|prepared| Ok(detector.infer(prepared)?)),
        finish: Box::new(move |inferred| Ok(finisher.finish(inferred)?)),
    };
    Ok(pipeline::run(&mut replay, stages, options, stop, sink))
}

fn stage_failed(what: &'static str, e: crate::RuntimeError) -> StreamError {
    StreamError::FirstFrame {
        what,
        message: e.to_string(),
    }
}

/// A capture whose first frame was read ahead.
struct Replay<'a> {
    first: Option<Captured>,
    rest: &'a mut dyn Capture,
}

impl Capture for Replay<'_> {
    fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<Captured>, StreamError> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.rest.next_frame(stop),
        }
    }

    fn is_live(&self) -> bool {
        self.rest.is_live()
    }

    fn lost(&self) -> u64 {
        self.rest.lost()
    }
}
