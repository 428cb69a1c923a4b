//! Annotated video out: frames written to a video file as they are
//! processed (`edge-run --source ... --draw out.mp4`).
//!
//! The container comes from the file's extension and the encoder is the
//! best one GStreamer has: H.264 (x264, else OpenH264) for MP4 and MKV,
//! MPEG-4 part 2 where neither is installed, Motion JPEG for AVI. The file
//! appears whole when the stream ends, or not at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;

use crate::error::StreamError;

/// A video file being written.
pub trait VideoWriter: Send {
    /// Appends `image` (scaled to the video's size if it differs), shown at
    /// `timestamp` (the source's clock; `None`: one frame after the last).
    fn write(&mut self, image: &RgbImage, timestamp: Option<Duration>) -> Result<(), StreamError>;

    /// Ends the video and moves it into place; returns the frames written.
    fn finish(self: Box<Self>) -> Result<u64, StreamError>;
}

/// A container Edgewise writes, known by its file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `.mp4`, `.m4v`, `.mov`.
    Mp4,
    /// `.mkv`.
    Matroska,
    /// `.avi`: a constant 30 frames per second (the format has no
    /// timestamps), so frames `--latest` dropped shorten the video.
    Avi,
}

impl Container {
    /// The container for `path`, or why there is none.
    pub fn of(path: &Path) -> Result<Container, StreamError> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match extension.as_deref() {
            Some("mp4" | "m4v" | "mov") => Ok(Container::Mp4),
            Some("mkv") => Ok(Container::Matroska),
            Some("avi") => Ok(Container::Avi),
            _ => Err(StreamError::Writer {
                path: path.to_path_buf(),
                message: "annotated video is written as .mp4, .mkv or .avi: name the file with one of these extensions".into(),
            }),
        }
    }

    /// The GStreamer muxer.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4mux",
            Container::Matroska => "matroskamux",
            Container::Avi => "avimux",
        }
    }

    /// Encoders to try, best first, each with its settings and the parser
    /// between it and the muxer.
    pub fn encoders(self) -> &'static [Encoder] {
        const X264: Encoder = Encoder {
            element: "x264enc",
            settings: "speed-preset=ultrafast tune=zerolatency bitrate=4000",
            parser: Some("h264parse"),
        };
        const OPENH264: Encoder = Encoder {
            element: "openh264enc",
            settings: "bitrate=4000000 complexity=low",
            parser: Some("h264parse"),
        };
        const MPEG4: Encoder = Encoder {
            element: "avenc_mpeg4",
            settings: "bitrate=4000000",
            parser: Some("mpeg4videoparse"),
        };
        const MJPEG: Encoder = Encoder {
            element: "jpegenc",
            settings: "quality=90",
            parser: None,
        };
        match self {
            Container::Mp4 => &[X264, OPENH264, MPEG4],
            Container::Matroska => &[X264, OPENH264, MPEG4, MJPEG],
            Container::Avi => &[MJPEG, MPEG4],
        }
    }
}

/// A video encoder as GStreamer names it.
#[derive(Clone, Copy, Debug)]
pub struct Encoder {
    /// The element.
    pub element: &'static str,
    /// Its properties, as `gst-launch-1.0` takes them.
    pub settings: &'static str,
    /// The parser that prepares its stream for the muxer.
    pub parser: Option<&'static str>,
}

/// Checks that `path` can receive a video before anything is started: a
/// known extension, and a folder that exists.
pub fn check(path: &Path) -> Result<Container, StreamError> {
    let container = Container::of(path)?;
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(StreamError::Writer {
            path: path.to_path_buf(),
            message: format!("its folder {} does not exist", folder.display()),
        });
    }
    Ok(container)
}

/// The folder a file goes into (`.` for a bare name).
pub(crate) fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Starts writing a `width` x `height` video to `path`.
#[cfg(feature = "gstreamer")]
pub fn create(path: &Path, width: u32, height: u32) -> Result<Box<dyn VideoWriter>, StreamError> {
    Ok(Box::new(crate::gst::GstWriter::create(
        path, width, height,
    )?))
}

/// Starts writing a video: this build has no GStreamer, so it says how to
/// get it.
#[cfg(not(feature = "gstreamer"))]
pub fn create(path: &Path, _width: u32, _height: u32) -> Result<Box<dyn VideoWriter>, StreamError> {
    Err(StreamError::NoGstreamer {
        input: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_come_from_extensions() {
        assert_eq!(Container::of(Path::new("a/b.MP4")).unwrap(), Container::Mp4);
        assert_eq!(
            Container::of(Path::new("b.mkv")).unwrap(),
            Container::Matroska
        );
        assert_eq!(Container::of(Path::new("b.avi")).unwrap(), Container::Avi);
        let refused = Container::of(Path::new("out.png")).unwrap_err().to_string();
        assert!(refused.contains(".mp4, .mkv or .avi"), "{refused}");
        assert!(Container::of(Path::new("out")).is_err());
    }

    #[test]
    fn a_missing_folder_is_named_before_anything_starts() {
        let message = check(Path::new("/no/such/folder/out.mp4"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/no/such/folder"), "{message}");
        assert!(check(Path::new("out.mkv")).is_ok());
    }
}
