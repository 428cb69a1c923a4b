//! What a stream did: frames captured, skipped, dropped and processed, the
//! processing rate, and latency from capture to result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Counters the capture stage keeps, read by whoever reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames read from the source.
    pub captured: AtomicU64,
    /// Frames passed over on purpose (`--stride`, `--max-fps`).
    pub skipped: AtomicU64,
    /// Frames replaced by a newer one before anyone read them (`--latest`).
    pub dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 3] {
        [
            self.captured.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        ]
    }
}

/// Milliseconds: median, 90th percentile and maximum of some durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The median.
    pub median_ms: f64,
    /// The 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// The largest.
    pub max_ms: f64,
}

impl Latency {
    /// Of `samples` (milliseconds); zeros when there are none.
    pub fn of(samples: &[f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank =
            |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Latency {
            median_ms: rank(0.5),
            p90_ms: rank(0.9),
            max_ms: sorted[sorted.len() - 1],
        }
    }
}

/// A stream's figures over some span of time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The span, in seconds.
    pub seconds: f64,
    /// Frames read from the source.
    pub captured: u64,
    /// Frames passed over on purpose (`--stride`, `--max-fps`).
    pub skipped: u64,
    /// Stale frames dropped for newer ones (`--latest`).
    pub dropped: u64,
    /// Frames whose detections came out.
    pub processed: u64,
    /// Frames a stage failed on (the error was reported with the frame).
    pub failed: u64,
    /// Processed frames per second.
    pub fps: f64,
    /// From capture to detections out.
    pub latency: Latency,
    /// Preprocessing per frame.
    pub pre: Latency,
    /// Inference per frame.
    pub infer: Latency,
    /// Decoding and NMS per frame.
    pub post: Latency,
}

impl Report {
    /// One line for a terminal.
    pub fn line(&self) -> String {
        format!(
            "{} captured, {} processed ({:.1} fps), {} dropped, {} skipped, {} failed; latency median {:.1} ms, p90 {:.1}, max {:.1}; infer median {:.1} ms",
            self.captured,
            self.processed,
            self.fps,
            self.dropped,
            self.skipped,
            self.failed,
            self.latency.median_ms,
            self.latency.p90_ms,
            self.latency.max_ms,
            self.infer.median_ms
        )
    }
}

/// Durations of one processed frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameTimes {
    /// Capture to result.
    pub latency: Duration,
    /// Preprocessing.
    pub pre: Duration,
    /// Inference.
    pub infer: Duration,
    /// Decoding.
    pub post: Duration,
}

/// Frame times kept per span: enough for stable percentiles, bounded so
/// that a board streaming for weeks does not grow.
const SAMPLES: usize = 4096;

/// Samples since some instant.
#[derive(Debug)]
struct Window {
    since: Instant,
    counters_at_start: [u64; 3],
    failed: u64,
    processed: u64,
    /// A uniform sample of the processed frames' times (reservoir
    /// sampling, Vitter's algorithm R): all of them up to [`SAMPLES`].
    times: Vec<FrameTimes>,
    /// The exact maxima, field by field.
    max: FrameTimes,
    /// xorshift state for the reservoir's choices.
    random: u64,
}

impl Window {
    fn new(counters: &Counters) -> Window {
        Window {
            since: Instant::now(),
            counters_at_start: counters.snapshot(),
            failed: 0,
            processed: 0,
            times: Vec::new(),
            max: FrameTimes::default(),
            random: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn push(&mut self, t: FrameTimes) {
        self.processed += 1;
        self.max = FrameTimes {
            latency: self.max.latency.max(t.latency),
            pre: self.max.pre.max(t.pre),
            infer: self.max.infer.max(t.infer),
            post: self.max.post.max(t.post),
        };
        if self.times.len() < SAMPLES {
            self.times.push(t);
            return;
        }
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let slot = (self.random % self.processed) as usize;
        if slot < SAMPLES {
            self.times[slot] = t;
        }
    }

    fn report(&self, counters: &Counters) -> Report {
        let now = counters.snapshot();
        let [captured, skipped, dropped] =
            std::array::from_fn(|i| now[i] - self.counters_at_start[i]);
        let seconds = self.since.elapsed().as_secs_f64();
        let of = |f: fn(&FrameTimes) -> Duration| -> Latency {
            let ms: Vec<f64> = self
                .times
                .iter()
                .map(|t| f(t).as_secs_f64() * 1e3)
                .collect();
            Latency {
                max_ms: f(&self.max).as_secs_f64() * 1e3,
                ..Latency::of(&ms)
            }
        };
        Report {
            seconds,
            captured,
            skipped,
            dropped,
            processed: self.processed,
            failed: self.failed,
            fps: if seconds > 0.0 {
                self.processed as f64 / seconds
            } else {
                0.0
            },
            latency: of(|t| t.latency),
            pre: of(|t| t.pre),
            infer: of(|t| t.infer),
            post: of(|t| t.post),
        }
    }
}

/// Keeps the figures of a whole run and of the span since the last report.
#[derive(Debug)]
pub struct Recorder {
    total: Window,
    recent: Window,
}

impl Recorder {
    /// Starts counting now.
    pub fn new(counters: &Counters) -> Recorder {
        Recorder {
            total: Window::new(counters),
            recent: Window::new(counters),
        }
    }

    /// A frame processed.
    pub fn processed(&mut self, times: FrameTimes) {
        self.total.push(times);
        self.recent.push(times);
    }

    /// A frame a stage failed on.
    pub fn failed(&mut self) {
        self.total.failed += 1;
        self.recent.failed += 1;
    }

    /// The figures since the last call (or the start), and a new span.
    pub fn recent(&mut self, counters: &Counters) -> Report {
        let report = self.recent.report(counters);
        self.recent = Window::new(counters);
        report
    }

    /// The figures of the whole run.
    pub fn total(&self, counters: &Counters) -> Report {
        self.total.report(counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        let l = Latency::of(&samples);
        assert_eq!((l.median_ms, l.p90_ms, l.max_ms), (5.0, 9.0, 10.0));
        assert_eq!(Latency::of(&[]), Latency::default());
        assert_eq!(Latency::of(&[3.0]).p90_ms, 3.0);
    }

    #[test]
    fn a_long_run_keeps_a_bounded_sample_and_exact_maxima() {
        let counters = Counters::default();
        let mut recorder = Recorder::new(&counters);
        // 0..20000 ms once each, shuffled by a stride coprime to the count.
        for i in 0..20_000u64 {
            let ms = (i * 7919) % 20_000;
            recorder.processed(FrameTimes {
                latency: Duration::from_millis(ms),
                ..FrameTimes::default()
            });
        }
        let total = recorder.total(&counters);
        assert_eq!(total.processed, 20_000);
        assert_eq!(recorder.total.times.len(), SAMPLES);
        assert_eq!(total.latency.max_ms, 19_999.0);
        // The sample's median is the run's within a few percent.
        assert!(
            (total.latency.median_ms - 10_000.0).abs() < 600.0,
            "{total:?}"
        );
    }

    #[test]
    fn recent_reports_start_afresh() {
        let counters = Counters::default();
        let mut recorder = Recorder::new(&counters);
        counters.captured.fetch_add(3, Ordering::Relaxed);
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        recorder.processed(FrameTimes {
            latency: Duration::from_millis(40),
            ..FrameTimes::default()
        });
        recorder.failed();
        let first = recorder.recent(&counters);
        assert_eq!(
            (first.captured, first.dropped, first.processed, first.failed),
            (3, 1, 1, 1)
        );
        assert_eq!(first.latency.median_ms, 40.0);
        counters.captured.fetch_add(2, Ordering::Relaxed);
        let second = recorder.recent(&counters);
        assert_eq!((second.captured, second.processed), (2, 0));
        let total = recorder.total(&counters);
        assert_eq!((total.captured, total.processed, total.failed), (5, 1, 1));
    }
}
