//! Annotated video written through GStreamer: `appsrc ! videoconvert !
//! encoder ! parser ! muxer ! filesink`, into a hidden file beside the
//! target that is renamed onto it once the muxer has finished.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use image::RgbImage;

use crate::error::StreamError;
use crate::writer::{Container, Encoder, VideoWriter, check, folder_of};

const FRAMES_NAME: &str = "edgewise_frames";
const FILE_NAME: &str = "edgewise_file";

/// The frame interval assumed until the source's timestamps say otherwise.
const DEFAULT_STEP: Duration = Duration::from_nanos(1_000_000_000 / 30);

/// How long the muxer may take to finish the file.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A video file being written through GStreamer.
pub struct GstWriter {
    path: PathBuf,
    /// The hidden file being written; taken when it is moved into place.
    partial: Option<tempfile::NamedTempFile>,
    pipeline: gst::Pipeline,
    frames: gst_app::AppSrc,
    info: gst_video::VideoInfo,
    /// The source timestamp of the first frame: the video starts at 0.
    first: Option<Duration>,
    /// The last frame's time in the video, and the interval before it.
    last: Option<Duration>,
    step: Duration,
    written: u64,
}

impl GstWriter {
    /// Starts a `width` x `height` video at `path`, with the best encoder
    /// installed for its container.
    pub fn create(path: &Path, width: u32, height: u32) -> Result<GstWriter, StreamError> {
        let failed = |message: String| StreamError::Writer {
            path: path.to_path_buf(),
            message,
        };
        let container = check(path)?;
        gst::init().map_err(|e| failed(format!("GStreamer would not start: {e}")))?;
        let encoder = pick_encoder(container).ok_or_else(|| {
            failed(format!(
                "GStreamer has no encoder for it (tried {}): install gstreamer1.0-plugins-ugly (x264enc), gstreamer1.0-plugins-bad (openh264enc) or gstreamer1.0-libav (avenc_mpeg4)",
                container
                    .encoders()
                    .iter()
                    .map(|e| e.element)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(folder_of(path))
            .map_err(|e| failed(format!("cannot create a file beside it: {e}")))?;
        let parser = encoder
            .parser
            .map(|p| format!("{p} ! "))
            .unwrap_or_default();
        let description = format!(
            "appsrc name={FRAMES_NAME} ! videoconvert ! {} {} ! {parser}{} ! filesink name={FILE_NAME} sync=false async=false",
            encoder.element,
            encoder.settings,
            container.muxer()
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| failed(format!("cannot build `{description}`: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| failed(format!("`{description}` is not a pipeline")))?;
        pipeline
            .by_name(FILE_NAME)
            .expect("named above")
            .set_property("location", partial.path().display().to_string());
        let partial = Some(partial);
        let frames = pipeline
            .by_name(FRAMES_NAME)
            .expect("named above")
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| failed("appsrc is not an AppSrc".into()))?;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
            // A nominal rate: encoders need one (OpenH264 loses a frame
            // without). MP4 and MKV keep each frame's own time, with gaps
            // where --latest dropped some; AVI plays at this rate.
            .fps(gst::Fraction::new(30, 1))
            .build()
            .map_err(|e| failed(format!("a {width}x{height} video: {e}")))?;
        let caps = info
            .to_caps()
            .map_err(|e| failed(format!("a {width}x{height} video: {e}")))?;
        frames.set_caps(Some(&caps));
        frames.set_format(gst::Format::Time);
        // Room for more than the frames held back in [`VideoWriter::write`].
        frames.set_max_bytes(8 * info.size() as u64);
        let writer = GstWriter {
            path: path.to_path_buf(),
            partial,
            pipeline,
            frames,
            info,
            first: None,
            last: None,
            step: DEFAULT_STEP,
            written: 0,
        };
        if writer.pipeline.set_state(gst::State::Playing).is_err() {
            let why = writer
                .pending_error()
                .unwrap_or_else(|| "the pipeline would not start".into());
            return Err(writer.failed(why));
        }
        Ok(writer)
    }

    fn failed(&self, message: String) -> StreamError {
        StreamError::Writer {
            path: self.path.clone(),
            message,
        }
    }

    fn pending_error(&self) -> Option<String> {
        super::pending_error(&self.pipeline)
    }

    /// The frame's time in the video: the source's clock from the first
    /// frame, always moving forward (a reconnected source restarts its
    /// clock; frames without timestamps come one interval apart).
    fn video_time(&mut self, timestamp: Option<Duration>) -> Duration {
        let first = *self.first.get_or_insert(timestamp.unwrap_or_default());
        let from_source = timestamp.and_then(|t| t.checked_sub(first));
        let time = match (self.last, from_source) {
            (None, t) => t.unwrap_or_default(),
            (Some(last), Some(t)) if t > last => {
                self.step = t - last;
                t
            }
            (Some(last), _) => {
                // The source's clock went back: carry on from here.
                if let Some(t) = timestamp {
                    self.first = Some(t.saturating_sub(last + self.step));
                }
                last + self.step
            }
        };
        self.last = Some(time);
        time
    }
}

/// The first encoder of `container`'s list that GStreamer has, with its
/// parser.
fn pick_encoder(container: Container) -> Option<Encoder> {
    container.encoders().iter().copied().find(|e| {
        gst::ElementFactory::find(e.element).is_some()
            && e.parser
                .is_none_or(|p| gst::ElementFactory::find(p).is_some())
    })
}

impl VideoWriter for GstWriter {
    fn write(&mut self, image: &RgbImage, timestamp: Option<Duration>) -> Result<(), StreamError> {
        let (width, height) = (self.info.width(), self.info.height());
        let scaled;
        let image = if image.dimensions() == (width, height) {
            image
        } else {
            // A stream that came back at another size: the video keeps its
            // first one.
            scaled = image::imageops::resize(
                image,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
            &scaled
        };
        // GStreamer's RGB rows are padded to 4 bytes.
        let stride = self.info.stride()[0] as usize;
        let row = width as usize * 3;
        let mut data = vec![0u8; self.info.size()];
        for (y, pixels) in image.as_raw().chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(pixels);
        }
        let time = self.video_time(timestamp);
        let mut buffer = gst::Buffer::from_mut_slice(data);
        let frame = buffer.get_mut().expect("a new buffer is writable");
        frame.set_pts(gst::ClockTime::from_nseconds(time.as_nanos() as u64));
        // Until the next frame comes, it lasts as long as the last interval
        // (muxers give the last frame of a video its duration).
        frame.set_duration(gst::ClockTime::from_nseconds(self.step.as_nanos() as u64));
        // Backpressure when the encoder is slower than the detector, but
        // never a wait on a pipeline that has failed (appsrc's own
        // blocking push would wait for ever).
        let limit = 4 * self.info.size() as u64;
        while self.frames.current_level_bytes() >= limit {
            if let Some(why) = self.pending_error() {
                return Err(self.failed(why));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.frames.push_buffer(buffer).is_err() {
            let why = self
                .pending_error()
                .unwrap_or_else(|| "the encoder stopped taking frames".into());
            return Err(self.failed(why));
        }
        self.written += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64, StreamError> {
        let _ = self.frames.end_of_stream();
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let ended = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = self.pipeline.set_state(gst::State::Null);
        match ended.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => return Err(self.failed(super::error_text(e))),
            _ => {
                return Err(self.failed(format!(
                    "the muxer did not finish within {} s",
                    FINISH_TIMEOUT.as_secs()
                )));
            }
        }
        let partial = self.partial.take().expect("finished once");
        partial
            .persist(&self.path)
            .map_err(|e| self.failed(format!("cannot move it into place: {}", e.error)))?;
        Ok(self.written)
    }
}

impl Drop for GstWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::capture::Capture;
    use crate::gst::GstCapture;
    use crate::source::Source;

    /// Frames of a solid colour each, of a width whose rows GStreamer pads.
    fn frames(count: u8, width: u32, height: u32) -> Vec<RgbImage> {
        (0..count)
            .map(|i| RgbImage::from_pixel(width, height, image::Rgb([20 * i, 200 - 20 * i, 128])))
            .collect()
    }

    /// Writes the frames 40 ms apart and reads the video back.
    fn round_trip(name: &str, width: u32, height: u32) -> (Vec<RgbImage>, Vec<Duration>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let mut writer: Box<dyn VideoWriter> =
            Box::new(GstWriter::create(&path, width, height).unwrap());
        let written = frames(8, width, height);
        for (i, frame) in written.iter().enumerate() {
            // A source clock that does not start at 0.
            let at = Duration::from_millis(5_000 + 40 * i as u64);
            writer.write(frame, Some(at)).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 8);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "only the video: {leftovers:?}");
        let mut capture = GstCapture::open(&Source::File(path), Some(false)).unwrap();
        let stop = AtomicBool::new(false);
        let (mut images, mut times) = (vec![], vec![]);
        while let Some(frame) = capture.next_frame(&stop).unwrap() {
            images.push(frame.image.to_rgb8());
            times.push(frame.timestamp.unwrap());
        }
        (images, times)
    }

    #[test]
    fn a_written_video_reads_back_frame_for_frame() {
        for name in ["out.mp4", "out.mkv", "out.avi"] {
            let (images, times) = round_trip(name, 98, 50);
            assert_eq!(images.len(), 8, "{name}: {times:?}");
            for (i, image) in images.iter().enumerate() {
                assert_eq!(image.dimensions(), (98, 50), "{name}");
                let expected = [20 * i as i32, 200 - 20 * i as i32, 128];
                let got = image.get_pixel(49, 25).0;
                for c in 0..3 {
                    assert!(
                        (got[c] as i32 - expected[c]).abs() <= 12,
                        "{name} frame {i}: {got:?} against {expected:?}"
                    );
                }
            }
            // The video starts at 0 and keeps the source's 40 ms steps
            // (AVI: its constant 30 fps).
            assert!(times[0] < Duration::from_millis(1), "{name}: {times:?}");
            let span = if name.ends_with("avi") {
                7_000 / 30
            } else {
                280
            };
            assert!(
                (times[7] - times[0]).abs_diff(Duration::from_millis(span))
                    < Duration::from_millis(2),
                "{name}: {times:?}"
            );
        }
    }

    #[test]
    fn an_unfinished_video_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mp4");
        let mut writer = GstWriter::create(&path, 64, 48).unwrap();
        writer.write(&frames(1, 64, 48)[0], None).unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
