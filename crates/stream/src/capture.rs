//! A source opened for reading: frames one after the other.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use image::DynamicImage;

use crate::error::StreamError;
use crate::source::Source;

/// One frame as it left the source.
pub struct Captured {
    /// The picture.
    pub image: DynamicImage,
    /// The source's own timestamp (presentation time), when it gives one.
    pub timestamp: Option<Duration>,
    /// When the frame was captured, on this machine's monotonic clock: for
    /// live sources the capture time GStreamer's clock gives, so that time
    /// spent in the source's own queues counts as latency; else when it was
    /// read.
    pub at: Instant,
}

/// An open source.
pub trait Capture: Send {
    /// The next frame; `None` at the end of the stream or once `stop` is
    /// set (checked at least every 100 ms while waiting).
    fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<Captured>, StreamError>;

    /// Frames the source captured but dropped itself before they could be
    /// read (its own queue of the latest frame full), since it opened.
    fn lost(&self) -> u64 {
        0
    }

    /// Whether frames come in real time (a camera, a network stream, a live
    /// pipeline) rather than as fast as they are read (a file).
    fn is_live(&self) -> bool;
}

/// Whether this build reads streams (the `gstreamer` feature): without
/// it, [`open`] says how to rebuild.
pub const AVAILABLE: bool = cfg!(feature = "gstreamer");

/// Opens `source`. `latest` asks the source to keep only its newest frame
/// while the reader is busy (live sources), rather than to hold back
/// (files, every frame).
#[cfg(feature = "gstreamer")]
pub fn open(source: &Source, latest: Option<bool>) -> Result<Box<dyn Capture>, StreamError> {
    Ok(Box::new(crate::gst::GstCapture::open(source, latest)?))
}

/// Opens `source`: this build has no GStreamer, so it says how to get it.
#[cfg(not(feature = "gstreamer"))]
pub fn open(source: &Source, _latest: Option<bool>) -> Result<Box<dyn Capture>, StreamError> {
    if let Source::Device(path) = source
        && !path.exists()
    {
        return Err(StreamError::NoDevice(path.clone()));
    }
    Err(StreamError::NoGstreamer {
        input: source.to_string(),
    })
}
