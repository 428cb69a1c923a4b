//! Capture through GStreamer: cameras (V4L2), files and network streams
//! decoded by whatever GStreamer has (the boards' hardware decoders
//! included), and pipelines users write themselves, all ending in an
//! `appsink` that hands RGB frames over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use image::{DynamicImage, RgbImage};

use crate::capture::{Capture, Captured};
use crate::error::StreamError;
use crate::source::Source;

/// The name Edgewise gives the elements it sets up.
const SOURCE_NAME: &str = "edgewise_source";
const SINK_NAME: &str = "edgewise_sink";

/// Longest wait between two attempts to reach a network stream again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The jitter buffer of an RTSP source, in milliseconds.
const RTSP_LATENCY_MS: u32 = 200;

/// A running GStreamer pipeline and its appsink.
pub struct GstCapture {
    source: Source,
    latest: Option<bool>,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    live: bool,
    /// Whether the appsink drops its older frame for a newer one.
    drops: bool,
    /// Frames that reached the appsink, counted by a probe on its pad.
    arrived: Arc<AtomicU64>,
    /// Frames read from the appsink.
    pulled: u64,
    /// Frames the appsinks of pipelines before this one dropped.
    lost_earlier: u64,
    /// Whether a frame came since the source opened: a network stream
    /// that never played is an error, not a stream to reconnect to.
    received: bool,
    /// The wait before the next attempt to reach a network stream again:
    /// 1 s after a frame came, doubling with every failed attempt.
    backoff: Duration,
}

impl GstCapture {
    /// Builds and starts the pipeline for `source`. `latest`: keep only the
    /// newest frame in the appsink (`None`: when the source is live).
    pub fn open(source: &Source, latest: Option<bool>) -> Result<GstCapture, StreamError> {
        let (pipeline, sink) = build(source)?;
        let arrived = count_arrivals(&sink);
        let mut capture = GstCapture {
            source: source.clone(),
            latest,
            pipeline,
            sink,
            live: false,
            drops: false,
            arrived,
            pulled: 0,
            lost_earlier: 0,
            received: false,
            backoff: Duration::from_secs(1),
        };
        capture.start()?;
        Ok(capture)
    }

    /// Sets the pipeline playing, finds out whether it is live, and sizes
    /// the appsink's queue by the policy.
    fn start(&mut self) -> Result<(), StreamError> {
        // A live source says so on the way to PAUSED (it cannot preroll);
        // straight to PLAYING, the appsink's asynchronous change hides it.
        let change = self
            .pipeline
            .set_state(gst::State::Paused)
            .and_then(|paused| {
                self.pipeline.set_state(gst::State::Playing)?;
                Ok(paused)
            });
        let change = match change {
            Ok(c) => c,
            Err(_) => {
                let why = self
                    .pending_error()
                    .unwrap_or_else(|| "it would not start".to_string());
                let _ = self.pipeline.set_state(gst::State::Null);
                return Err(self.error(why));
            }
        };
        self.live = change == gst::StateChangeSuccess::NoPreroll || self.source.is_live();
        let latest = self.latest.unwrap_or(self.live);
        self.sink.set_max_buffers(if latest { 1 } else { 4 });
        self.sink.set_drop(latest);
        self.drops = latest;
        Ok(())
    }

    fn error(&self, message: String) -> StreamError {
        if let Source::Device(path) = &self.source
            && !path.exists()
        {
            return StreamError::NoDevice(path.clone());
        }
        StreamError::Gstreamer {
            input: self.source.to_string(),
            message,
        }
    }

    fn pending_error(&self) -> Option<String> {
        super::pending_error(&self.pipeline)
    }

    /// For a network stream that failed or ended: start again after the
    /// backoff (1, 2, 4... up to 30 s between attempts while it stays
    /// away), unless `stop` is set first.
    fn reconnect(&mut self, why: &str, stop: &AtomicBool) -> bool {
        let mut why = why.to_string();
        loop {
            eprintln!(
                "stream: {} lost ({why}); trying again in {} s",
                self.source,
                self.backoff.as_secs()
            );
            let _ = self.pipeline.set_state(gst::State::Null);
            let until = Instant::now() + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // A new pipeline: the old one's decoder linked its pads once,
            // and a new connection brings new pads.
            match build(&self.source) {
                Ok((pipeline, sink)) => {
                    // What the old appsink still held is gone with it.
                    if self.drops {
                        self.lost_earlier += self
                            .arrived
                            .load(Ordering::Relaxed)
                            .saturating_sub(self.pulled);
                    }
                    self.pulled = 0;
                    self.arrived = count_arrivals(&sink);
                    self.pipeline = pipeline;
                    self.sink = sink;
                }
                Err(e) => {
                    why = e.to_string();
                    continue;
                }
            }
            // A server that refuses at once fails here; one that is slow to
            // answer fails later, on the bus, and comes back through the
            // caller.
            match self.start() {
                Ok(()) => return true,
                Err(e) => why = e.to_string(),
            }
        }
    }

    /// When the frame in `sample` was captured, on our monotonic clock: a
    /// live pipeline's buffer carries its capture time on the pipeline
    /// clock, so the time it spent queued inside GStreamer is known.
    fn capture_instant(&self, sample: &gst::Sample, pts: Option<gst::ClockTime>) -> Instant {
        let now = Instant::now();
        if !self.live {
            return now;
        }
        let age = (|| {
            let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
            let running = segment.to_running_time(pts?)?;
            let clock = self.pipeline.clock()?;
            let base = self.pipeline.base_time()?;
            let now_running = clock.time().checked_sub(base)?;
            now_running.checked_sub(running)
        })();
        age.map_or(now, |a| {
            now.checked_sub(Duration::from_nanos(a.nseconds()))
                .unwrap_or(now)
        })
    }
}

/// The pipeline for `source` and its appsink, set to give RGB frames.
fn build(source: &Source) -> Result<(gst::Pipeline, gst_app::AppSink), StreamError> {
    let failed = |message: String| StreamError::Gstreamer {
        input: source.to_string(),
        message,
    };
    if let Source::Device(path) = source
        && !path.exists()
    {
        return Err(StreamError::NoDevice(path.clone()));
    }
    gst::init().map_err(|e| failed(format!("GStreamer would not start: {e}")))?;
    let description = match source {
        // decodebin: cameras give raw frames, MJPEG or H.264.
        Source::Device(_) => {
            format!(
                "v4l2src name={SOURCE_NAME} ! decodebin ! videoconvert ! appsink name={SINK_NAME}"
            )
        }
        Source::File(_) | Source::Network(_) => {
            format!("uridecodebin name={SOURCE_NAME} ! videoconvert ! appsink name={SINK_NAME}")
        }
        Source::Pipeline(text) => text.clone(),
    };
    let element = gst::parse::launch(&description).map_err(|e| {
        failed(format!(
            "cannot build the pipeline `{description}`: {e} (is the plugin that provides it installed? `gst-inspect-1.0 NAME` tells)"
        ))
    })?;
    let pipeline = element
        .downcast::<gst::Pipeline>()
        .map_err(|_| failed("a pipeline needs a source, links (`!`) and an appsink".into()))?;
    match source {
        Source::Device(path) => {
            let named = pipeline.by_name(SOURCE_NAME).expect("named above");
            named.set_property("device", path.display().to_string());
        }
        Source::File(path) => {
            let absolute = path
                .canonicalize()
                .map_err(|_| StreamError::NoFile(path.clone()))?;
            let uri = gst::glib::filename_to_uri(&absolute, None)
                .map_err(|e| failed(format!("cannot name it as a URI: {e}")))?;
            let named = pipeline.by_name(SOURCE_NAME).expect("named above");
            named.set_property("uri", uri.as_str());
        }
        Source::Network(url) => {
            let named = pipeline.by_name(SOURCE_NAME).expect("named above");
            named.set_property("uri", url.as_str());
            // rtspsrc holds 2 s of frames in its jitter buffer by
            // default: a detector wants the picture now.
            named.connect("source-setup", false, |values| {
                if let Some(Ok(element)) = values.get(1).map(|v| v.get::<gst::Element>())
                    && element.has_property("latency")
                {
                    element.set_property("latency", RTSP_LATENCY_MS);
                }
                None
            });
        }
        Source::Pipeline(_) => {}
    }
    let sink = find_appsink(&pipeline).ok_or_else(|| {
        failed("the pipeline has no appsink: end it with `! videoconvert ! appsink`".into())
    })?;
    // RGB, whatever the source gives: the videoconvert before the sink
    // (ours, or the user's) converts.
    sink.set_caps(Some(
        &gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Rgb)
            .build(),
    ));
    // Never wait for the clock: a file is read as fast as the pipeline
    // takes it, a live source comes at its own pace anyway.
    sink.set_property("sync", false);
    Ok((pipeline, sink))
}

/// A count of the buffers that reach `sink`, kept by a probe on its pad.
fn count_arrivals(sink: &gst_app::AppSink) -> Arc<AtomicU64> {
    let arrived = Arc::new(AtomicU64::new(0));
    if let Some(pad) = sink.static_pad("sink") {
        let count = arrived.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    arrived
}

fn find_appsink(pipeline: &gst::Pipeline) -> Option<gst_app::AppSink> {
    if let Some(named) = pipeline.by_name(SINK_NAME) {
        return named.dynamic_cast::<gst_app::AppSink>().ok();
    }
    pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
}

/// Copies an RGB sample into an image, row by row (GStreamer pads rows
/// to 4 bytes).
fn to_image(sample: &gst::Sample) -> Result<RgbImage, String> {
    let caps = sample.caps().ok_or("a frame without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("{e}"))?;
    let buffer = sample.buffer().ok_or("a frame without data")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| format!("cannot read a frame: {e}"))?;
    let (width, height) = (info.width(), info.height());
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|e| format!("{e}"))?;
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| "a frame of the wrong size".into())
}

impl Capture for GstCapture {
    fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<Captured>, StreamError> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            {
                let pts = sample.buffer().and_then(|b| b.pts());
                let at = self.capture_instant(&sample, pts);
                let image = to_image(&sample).map_err(|e| self.error(e))?;
                self.pulled += 1;
                self.received = true;
                if self.backoff > Duration::from_secs(1) {
                    eprintln!("stream: {} playing again", self.source);
                    self.backoff = Duration::from_secs(1);
                }
                return Ok(Some(Captured {
                    image: DynamicImage::ImageRgb8(image),
                    timestamp: pts.map(|t| Duration::from_nanos(t.nseconds())),
                    at,
                }));
            }
            let failure = self.pending_error();
            let ended = failure.is_none() && self.sink.is_eos();
            if failure.is_none() && !ended {
                continue;
            }
            // A network stream that played and failed, or a live one that
            // ended (an RTSP server restarting), is tried again; one that
            // never played is an error, and a clip served over HTTP ends.
            let again = matches!(self.source, Source::Network(_))
                && self.received
                && (failure.is_some() || self.source.is_live());
            if again {
                let why = failure.unwrap_or_else(|| "end of stream".into());
                if self.reconnect(&why, stop) {
                    continue;
                }
                return Ok(None);
            }
            return match failure {
                Some(why) if !self.received && matches!(self.source, Source::Network(_)) => {
                    Err(self.error(format!("cannot reach it: {why}")))
                }
                Some(why) => Err(self.error(why)),
                None => Ok(None),
            };
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn lost(&self) -> u64 {
        if !self.drops {
            return self.lost_earlier;
        }
        // One frame may be waiting in the appsink, not lost yet.
        let arrived = self.arrived.load(Ordering::Relaxed);
        self.lost_earlier + arrived.saturating_sub(self.pulled + 1)
    }
}

impl Drop for GstCapture {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline of the user's: frames of its size and colours, with its
    /// timestamps, row padding removed (a width of 98 pads RGB rows), and
    /// the end of the stream as the end.
    #[test]
    fn a_pipeline_source_gives_its_frames_as_rgb_with_timestamps() {
        let source = Source::parse(
            "videotestsrc num-buffers=5 pattern=red ! video/x-raw,width=98,height=50,framerate=25/1 ! videoconvert ! appsink",
        )
        .unwrap();
        let mut capture = GstCapture::open(&source, None).unwrap();
        assert!(!capture.is_live());
        let stop = AtomicBool::new(false);
        let mut times = vec![];
        while let Some(frame) = capture.next_frame(&stop).unwrap() {
            let image = frame.image.to_rgb8();
            assert_eq!(image.dimensions(), (98, 50));
            for pixel in [image.get_pixel(0, 0), image.get_pixel(97, 49)] {
                let [r, g, b] = pixel.0;
                assert!(r > 230 && g < 25 && b < 25, "{:?}", pixel.0);
            }
            times.push(frame.timestamp.unwrap().as_millis());
        }
        assert_eq!(times, [0, 40, 80, 120, 160]);
        assert_eq!(capture.lost(), 0);
    }

    #[test]
    fn a_pipeline_without_an_appsink_or_an_element_is_refused() {
        let no_sink = Source::Pipeline("videotestsrc ! fakesink".into());
        let message = GstCapture::open(&no_sink, None).err().unwrap().to_string();
        assert!(message.contains("has no appsink"), "{message}");
        let unknown = Source::Pipeline("nosuchsrc ! appsink".into());
        let message = GstCapture::open(&unknown, None).err().unwrap().to_string();
        assert!(message.contains("gst-inspect-1.0"), "{message}");
    }
}
