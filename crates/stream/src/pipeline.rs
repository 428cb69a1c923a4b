//! Capture, preprocess, inference, decode and output as stages on their
//! own threads, joined by bounded queues: while the model runs on frame
//! `n`, frame `n + 1` is being preprocessed and frame `n - 1` decoded.
//!
//! Between capture and preprocessing the [`Policy`] decides what happens
//! when inference is slower than the source: every frame waits its turn
//! (the source is held back: files), or only the newest waits and older
//! ones are dropped (live sources: results stay current instead of falling
//! further behind).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use image::DynamicImage;

use crate::capture::{Capture, Captured};
use crate::error::StreamError;
use crate::latest::{Latest, Taken};
use crate::stats::{Counters, FrameTimes, Recorder, Report};

/// What a stage returns when it fails on a frame.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// What to do with frames that arrive while inference is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Process every frame; the source waits (files' default).
    EveryFrame,
    /// Keep only the newest frame; drop stale ones (live sources' default).
    Latest,
}

/// How to run a stream.
#[derive(Clone, Debug)]
pub struct Options {
    /// Every frame, or the latest.
    pub policy: Policy,
    /// Process one captured frame in `stride` (1: all).
    pub stride: u64,
    /// Process at most this many frames per second of the source's time.
    pub max_fps: Option<f64>,
    /// Emit an [`Event::Report`] this often.
    pub report_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: Policy::EveryFrame,
            stride: 1,
            max_fps: None,
            report_every: None,
        }
    }
}

/// A stage's work on one frame.
pub type Stage<'a, A, B> = Box<dyn FnMut(A) -> Result<B, StageError> + Send + 'a>;

/// Preprocessing: a frame's picture to model input.
pub type Prepare<'a, P> = Box<dyn FnMut(&DynamicImage) -> Result<P, StageError> + Send + 'a>;

/// The work done on every frame, in three stages on three threads.
pub struct Stages<'a, P, I, R> {
    /// Image to model input (resize, normalize, layout).
    pub prepare: Prepare<'a, P>,
    /// Model input to model output.
    pub infer: Stage<'a, P, I>,
    /// Model output to detections (decoding, NMS, mapping back).
    pub finish: Stage<'a, I, R>,
}

/// A frame as it came from the source.
pub struct Frame {
    /// Its position in the source, counting every frame captured from 0.
    pub index: u64,
    /// The source's timestamp, when it gives one.
    pub timestamp: Option<Duration>,
    /// When it was captured (see [`Captured::at`]).
    pub at: Instant,
    /// The picture.
    pub image: DynamicImage,
}

/// A frame through the pipeline: its result, or the error a stage met.
pub struct Processed<R> {
    /// The frame.
    pub frame: Frame,
    /// What the stages made of it.
    pub result: Result<R, StageError>,
    /// How long it took.
    pub times: FrameTimes,
}

/// What [`run`] hands to its sink.
pub enum Event<R> {
    /// A frame is done.
    Frame(Processed<R>),
    /// The figures since the last report ([`Options::report_every`]).
    Report(Report),
}

/// A frame between stages, with the times spent on it so far (the
/// latency is filled in at the end).
struct Job<T> {
    frame: Frame,
    value: Result<T, StageError>,
    times: FrameTimes,
}

impl<T> Job<T> {
    /// Runs `stage` on the value (a failed frame stays failed), its time
    /// going to the field `spent` picks.
    fn then<U>(
        self,
        stage: impl FnOnce(T) -> Result<U, StageError>,
        spent: fn(&mut FrameTimes) -> &mut Duration,
    ) -> Job<U> {
        let t = Instant::now();
        let value = self.value.and_then(stage);
        let mut times = self.times;
        *spent(&mut times) = t.elapsed();
        Job {
            frame: self.frame,
            value,
            times,
        }
    }
}

/// A middle stage's thread: every job from `jobs` through `stage`, on to
/// `next`, until either side closes.
fn relay<A, B>(
    jobs: Receiver<Job<A>>,
    next: SyncSender<Job<B>>,
    mut stage: Stage<'_, A, B>,
    spent: fn(&mut FrameTimes) -> &mut Duration,
) {
    for job in jobs {
        if next.send(job.then(&mut stage, spent)).is_err() {
            break;
        }
    }
}

/// How the capture stage hands frames to preprocessing.
enum Handoff {
    Queue(SyncSender<Frame>),
    Latest(std::sync::Arc<Latest<Frame>>),
}

/// Whether a captured frame should be processed (`--stride`, `--max-fps`).
struct Selector {
    stride: u64,
    interval: Option<Duration>,
    next_due: Option<Duration>,
    start: Instant,
}

impl Selector {
    fn new(options: &Options) -> Selector {
        Selector {
            stride: options.stride.max(1),
            interval: options
                .max_fps
                .filter(|f| *f > 0.0)
                .map(|f| Duration::from_secs_f64(1.0 / f)),
            next_due: None,
            start: Instant::now(),
        }
    }

    fn wants(&mut self, index: u64, captured: &Captured) -> bool {
        if !index.is_multiple_of(self.stride) {
            return false;
        }
        let Some(interval) = self.interval else {
            return true;
        };
        // The source's clock when it has one: a file read faster than real
        // time is thinned by its own frame times, not by how fast it is read.
        let t = captured
            .timestamp
            .unwrap_or_else(|| captured.at.saturating_duration_since(self.start));
        match self.next_due {
            // A clock that went back (a network stream reconnected starts
            // its own again) starts the count again too.
            Some(due) if t + interval < due => {
                self.next_due = Some(t + interval);
                true
            }
            Some(due) if t < due => false,
            // Behind by more than a frame: start counting again from now
            // rather than taking a burst of frames to catch up.
            Some(due) if t < due + interval => {
                self.next_due = Some(due + interval);
                true
            }
            _ => {
                self.next_due = Some(t + interval);
                true
            }
        }
    }
}

/// How a stream ended: its figures, and the error that ended it, if one
/// did (a camera unplugged, a stage that panicked).
#[derive(Debug)]
pub struct Ended {
    /// The figures of the whole run, up to the end.
    pub report: Report,
    /// Why it ended, when not because the source ended, `stop` was set or
    /// the sink asked.
    pub error: Option<StreamError>,
}

/// Runs `capture` through `stages` until the source ends, `stop` is set
/// (a signal handler), or `sink` returns `false`; `sink` gets every
/// processed frame in order and the periodic reports until it returns
/// `false` (frames still on their way are then counted, not handed over).
pub fn run<'a, P: Send, I: Send, R: Send>(
    capture: &mut dyn Capture,
    stages: Stages<'a, P, I, R>,
    options: &Options,
    stop: &AtomicBool,
    mut sink: impl FnMut(Event<R>) -> bool,
) -> Ended {
    let counters = Counters::default();
    let halt = AtomicBool::new(false);
    let Stages {
        mut prepare,
        infer,
        finish,
    } = stages;
    // Latest: a rendezvous between preprocessing and inference, so the frame
    // preprocessed next is taken from the source when inference starts on
    // the one before, never earlier. Every frame: a queue of one at each step.
    type FromCapture = Box<dyn FnMut() -> Option<Frame> + Send>;
    let (handoff, from_capture, infer_queue): (Handoff, FromCapture, usize) = match options.policy {
        Policy::EveryFrame => {
            let (tx, rx) = mpsc::sync_channel::<Frame>(1);
            (Handoff::Queue(tx), Box::new(move || rx.recv().ok()), 1)
        }
        Policy::Latest => {
            let slot = std::sync::Arc::new(Latest::default());
            let reader = slot.clone();
            (
                Handoff::Latest(slot),
                Box::new(move || {
                    loop {
                        match reader.take(Duration::from_millis(100)) {
                            Taken::Item(frame) => return Some(frame),
                            Taken::Closed => return None,
                            Taken::Empty => {}
                        }
                    }
                }),
                0,
            )
        }
    };
    let (to_infer, infer_rx) = mpsc::sync_channel::<Job<P>>(infer_queue);
    let (to_finish, finish_rx) = mpsc::sync_channel::<Job<I>>(1);
    let (to_sink, sink_rx) = mpsc::sync_channel::<Job<R>>(1);
    let mut recorder = Recorder::new(&counters);
    let mut selector = Selector::new(options);
    let mut from_capture = from_capture;

    std::thread::scope(|scope| {
        let counters = &counters;
        let halt = &halt;
        let capturing = scope.spawn(move || -> Result<(), StreamError> {
            let mut index = 0u64;
            // The source's losses before the stream started (while the
            // model was loaded) are not the stream's.
            let mut lost_before = capture.lost();
            let result = loop {
                if halt.load(Ordering::Relaxed) {
                    break Ok(());
                }
                let next = capture.next_frame(halt);
                // Frames the source's own queue dropped while we were busy
                // were captured and dropped all the same.
                let lost_now = capture.lost();
                let lost = lost_now.saturating_sub(lost_before);
                lost_before = lost_now;
                counters.captured.fetch_add(lost, Ordering::Relaxed);
                counters.dropped.fetch_add(lost, Ordering::Relaxed);
                let captured = match next {
                    Ok(Some(c)) => c,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                counters.captured.fetch_add(1, Ordering::Relaxed);
                let wanted = selector.wants(index, &captured);
                let frame = Frame {
                    index,
                    timestamp: captured.timestamp,
                    at: captured.at,
                    image: captured.image,
                };
                index += 1;
                if !wanted {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match &handoff {
                    Handoff::Queue(tx) => {
                        if tx.send(frame).is_err() {
                            break Ok(());
                        }
                    }
                    Handoff::Latest(slot) => {
                        if slot.put(frame).is_some() {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            };
            if let Handoff::Latest(slot) = &handoff {
                slot.close();
            }
            result
        });
        let preparing = scope.spawn(move || {
            while let Some(frame) = from_capture() {
                let t = Instant::now();
                let value = prepare(&frame.image);
                let times = FrameTimes {
                    pre: t.elapsed(),
                    ..FrameTimes::default()
                };
                if to_infer
                    .send(Job {
                        frame,
                        value,
                        times,
                    })
                    .is_err()
                {
                    break;
                }
            }
            // Downstream gone: the capture stage must not wait for a reader.
            halt.store(true, Ordering::Relaxed);
        });
        let inferring = scope.spawn(move || relay(infer_rx, to_finish, infer, |t| &mut t.infer));
        let finishing = scope.spawn(move || relay(finish_rx, to_sink, finish, |t| &mut t.post));

        // Should the sink panic, the capture stage must still stop, or the
        // scope would wait for it forever.
        let halt_on_unwind = HaltOnDrop(halt);
        consume(
            &sink_rx,
            options.report_every,
            stop,
            halt,
            counters,
            &mut recorder,
            &mut sink,
        );
        drop(halt_on_unwind);
        drop(sink_rx);

        let mut error = match capturing.join() {
            Ok(result) => result.err(),
            Err(_) => Some(StreamError::Panicked("capture")),
        };
        for (name, handle) in [
            ("preprocess", preparing),
            ("inference", inferring),
            ("decode", finishing),
        ] {
            if handle.join().is_err() {
                error.get_or_insert(StreamError::Panicked(name));
            }
        }
        Ended {
            report: recorder.total(counters),
            error,
        }
    })
}

/// Sets the flag when dropped, unwinding included.
struct HaltOnDrop<'a>(&'a AtomicBool);

impl Drop for HaltOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The output stage, on the caller's thread: hands results to `sink` in
/// order, and reports every `report_every`.
fn consume<R>(
    results: &Receiver<Job<R>>,
    report_every: Option<Duration>,
    stop: &AtomicBool,
    halt: &AtomicBool,
    counters: &Counters,
    recorder: &mut Recorder,
    sink: &mut impl FnMut(Event<R>) -> bool,
) {
    let poll = Duration::from_millis(100);
    let mut next_report = report_every.map(|every| Instant::now() + every);
    // Once the sink says stop, what is still on its way is counted only.
    let mut sinking = true;
    let mut sink = |event| {
        if sinking && !sink(event) {
            sinking = false;
            halt.store(true, Ordering::Relaxed);
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            halt.store(true, Ordering::Relaxed);
        }
        let wait = next_report.map_or(poll, |at| {
            at.saturating_duration_since(Instant::now()).min(poll)
        });
        match results.recv_timeout(wait) {
            Ok(job) => {
                let times = FrameTimes {
                    latency: job.frame.at.elapsed(),
                    ..job.times
                };
                match &job.value {
                    Ok(_) => recorder.processed(times),
                    Err(_) => recorder.failed(),
                }
                let processed = Processed {
                    frame: job.frame,
                    result: job.value,
                    times,
                };
                sink(Event::Frame(processed));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let (Some(at), Some(every)) = (next_report, report_every)
            && Instant::now() >= at
        {
            next_report = Some(at + every);
            sink(Event::Report(recorder.recent(counters)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Frames of 4x4 pixels whose first pixel holds their number, either
    /// all at once (a file) or one every `period` in real time (a camera).
    struct Frames {
        count: u64,
        sent: u64,
        period: Option<Duration>,
        started: Option<Instant>,
    }

    impl Frames {
        fn file(count: u64) -> Frames {
            Frames {
                count,
                sent: 0,
                period: None,
                started: None,
            }
        }

        fn camera(count: u64, period: Duration) -> Frames {
            Frames {
                period: Some(period),
                ..Frames::file(count)
            }
        }
    }

    impl Capture for Frames {
        fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<Captured>, StreamError> {
            if self.sent == self.count || stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(period) = self.period {
                let start = *self.started.get_or_insert_with(Instant::now);
                let due = start + period * self.sent as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            let mut image = image::RgbImage::new(4, 4);
            image.put_pixel(0, 0, image::Rgb([self.sent as u8, 0, 0]));
            let timestamp = Duration::from_millis(self.sent * 1000 / 30);
            self.sent += 1;
            Ok(Some(Captured {
                image: DynamicImage::ImageRgb8(image),
                timestamp: Some(timestamp),
                at: Instant::now(),
            }))
        }

        fn is_live(&self) -> bool {
            self.period.is_some()
        }
    }

    /// Stages that read the frame number back, the inference taking `infer`.
    fn stages<'a>(infer: Duration, fail_on: Option<u8>) -> Stages<'a, u8, u8, u8> {
        Stages {
            prepare: Box::new(move |image: &DynamicImage| {
                let n = image.to_rgb8().get_pixel(0, 0)[0];
                if Some(n) == fail_on {
                    return Err(format!("frame {n} is bad").into());
                }
                Ok(n)
            }),
            infer: Box::new(move |n| {
                std::thread::sleep(infer);
                Ok(n)
            }),
            finish: Box::new(Ok),
        }
    }

    /// A frame's index and what the stages made of it.
    type Outcome = (u64, Result<u8, String>);

    /// Runs and collects the outcomes in the order the sink got them.
    fn collect(
        capture: &mut dyn Capture,
        stages: Stages<u8, u8, u8>,
        options: &Options,
    ) -> (Vec<Outcome>, Report) {
        let mut got = Vec::new();
        let stop = AtomicBool::new(false);
        let ended = run(capture, stages, options, &stop, |event| {
            if let Event::Frame(p) = event {
                got.push((p.frame.index, p.result.map_err(|e| e.to_string())));
            }
            true
        });
        assert!(ended.error.is_none(), "{:?}", ended.error);
        let r = &ended.report;
        // Every frame captured is accounted for, once.
        assert_eq!(
            r.captured,
            r.skipped + r.dropped + r.processed + r.failed,
            "{r:?}"
        );
        (got, ended.report)
    }

    #[test]
    fn every_frame_comes_out_in_order() {
        let (got, report) = collect(
            &mut Frames::file(20),
            stages(Duration::from_millis(2), None),
            &Options::default(),
        );
        let expected: Vec<Outcome> = (0..20).map(|i| (i, Ok(i as u8))).collect();
        assert_eq!(got, expected);
        assert_eq!(
            (report.captured, report.processed, report.dropped),
            (20, 20, 0)
        );
    }

    #[test]
    fn latest_drops_stale_frames_when_inference_is_slower_than_the_camera() {
        // 200 frames per second, inference at 25: most frames must go.
        let options = Options {
            policy: Policy::Latest,
            ..Options::default()
        };
        let (got, report) = collect(
            &mut Frames::camera(60, Duration::from_millis(5)),
            stages(Duration::from_millis(40), None),
            &options,
        );
        assert_eq!(report.captured, 60);
        assert!(report.dropped > 0, "{report:?}");
        assert_eq!(report.processed + report.dropped, 60, "{report:?}");
        assert_eq!(report.processed as usize, got.len());
        // Always forward: results never go back in time.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
        // The last frame is never dropped: the slot is drained at the end.
        assert_eq!(got.last().map(|g| g.0), Some(59));
    }

    #[test]
    fn stride_and_max_fps_skip_frames_by_the_source_clock() {
        let strided = Options {
            stride: 3,
            ..Options::default()
        };
        let (got, report) = collect(
            &mut Frames::file(30),
            stages(Duration::ZERO, None),
            &strided,
        );
        let indices: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(indices, (0..30).step_by(3).collect::<Vec<u64>>());
        assert_eq!((report.skipped, report.processed), (20, 10));
        // A 30 fps file thinned to 10 fps by its timestamps, read as fast as
        // it comes.
        let thinned = Options {
            max_fps: Some(10.0),
            ..Options::default()
        };
        let (got, _) = collect(
            &mut Frames::file(30),
            stages(Duration::ZERO, None),
            &thinned,
        );
        let indices: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(indices, (0..30).step_by(3).collect::<Vec<u64>>());
    }

    #[test]
    fn a_failed_frame_is_reported_and_the_stream_goes_on() {
        let (got, report) = collect(
            &mut Frames::file(5),
            stages(Duration::ZERO, Some(2)),
            &Options::default(),
        );
        assert_eq!(got[2], (2, Err("frame 2 is bad".to_string())));
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, g)| i == 2 || g.1 == Ok(i as u8))
        );
        assert_eq!((report.processed, report.failed), (4, 1));
    }

    #[test]
    fn the_sink_and_the_stop_flag_end_an_endless_source() {
        let seen = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let ended = run(
            &mut Frames::camera(u64::MAX, Duration::from_millis(1)),
            stages(Duration::ZERO, None),
            &Options::default(),
            &stop,
            |event| {
                if let Event::Frame(_) = event {
                    seen.fetch_add(1, Ordering::Relaxed) < 9
                } else {
                    true
                }
            },
        );
        // The sink said stop at its tenth frame and got no more after it.
        assert_eq!(seen.load(Ordering::Relaxed), 10);
        assert!(ended.report.processed >= 10 && ended.error.is_none());
        // The stop flag (a signal handler's), set at the first report.
        let stop = AtomicBool::new(false);
        let options = Options {
            policy: Policy::Latest,
            report_every: Some(Duration::from_millis(10)),
            ..Options::default()
        };
        let mut reports = 0;
        let ended = run(
            &mut Frames::camera(u64::MAX, Duration::from_millis(1)),
            stages(Duration::from_millis(5), None),
            &options,
            &stop,
            |event| {
                if let Event::Report(_) = event {
                    reports += 1;
                    stop.store(true, Ordering::Relaxed);
                }
                true
            },
        );
        assert!(reports >= 1 && ended.error.is_none());
        let r = &ended.report;
        assert_eq!(
            r.captured,
            r.skipped + r.dropped + r.processed + r.failed,
            "{r:?}"
        );
    }
}
