//! Live sources for detectors, and the pipeline that keeps up with them.
//!
//! A [`Source`] names where frames come from (a V4L2 camera, a video file,
//! an `rtsp://` or `http(s)://` stream, or a GStreamer pipeline ending in an
//! appsink); [`open`] turns it into a [`Capture`] (GStreamer, with the
//! `gstreamer` feature). [`pipeline::run`] then runs capture, preprocess,
//! inference, decode and output as stages on their own threads joined by
//! bounded queues, so pre- and post-processing overlap inference, under a
//! [`Policy`]: every frame (files) or the latest (live sources, stale frames
//! dropped). [`stats`] counts frames captured, skipped, dropped and
//! processed, and measures end-to-end latency from capture to result;
//! [`writer`] writes annotated frames back out as a video file.

pub mod capture;
pub mod error;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod latest;
pub mod pipeline;
pub mod source;
pub mod stats;
pub mod writer;

pub use capture::{AVAILABLE, Capture, Captured, open};
pub use error::StreamError;
pub use pipeline::{Ended, Event, Options, Policy, Processed, Stages};
pub use source::Source;
pub use stats::{Latency, Report};
pub use writer::VideoWriter;
