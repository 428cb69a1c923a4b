//! What `--source` names: a camera, a video file, a network stream, or a
//! GStreamer pipeline.

use std::fmt;
use std::path::PathBuf;

use crate::error::StreamError;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A V4L2 device: `/dev/video0`, or its number (`0`).
    Device(PathBuf),
    /// A video file (MP4, MKV, AVI, MJPEG, anything GStreamer decodes).
    File(PathBuf),
    /// A network stream: `rtsp://`, `rtsps://`, `http://` or `https://`.
    Network(String),
    /// A GStreamer pipeline description ending in an `appsink` (Pi CSI
    /// cameras through `libcamerasrc`, Jetson's `nvarguscamerasrc`, test
    /// sources).
    Pipeline(String),
}

impl Source {
    /// Reads `--source`: a number or `/dev/...` is a camera, a URL a network
    /// stream, text with `!` links a pipeline, anything else a file, which
    /// must exist.
    pub fn parse(text: &str) -> Result<Source, StreamError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StreamError::BadSource {
                input: text.into(),
                reason: "it is empty".into(),
            });
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Source::Device(PathBuf::from(format!("/dev/video{text}"))));
        }
        if text.starts_with("/dev/") {
            return Ok(Source::Device(PathBuf::from(text)));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "rtsp" | "rtsps" | "rtspt" | "http" | "https" if !rest.is_empty() => {
                    Ok(Source::Network(text.into()))
                }
                "file" => Source::parse(rest),
                _ => Err(StreamError::BadSource {
                    input: text.into(),
                    reason: "the URL schemes read are rtsp://, rtsps://, rtspt:// (RTSP over TCP), http:// and https://"
                        .into(),
                }),
            };
        }
        if text.contains('!') {
            if !text.contains("appsink") {
                return Err(StreamError::BadSource {
                    input: text.into(),
                    reason: "a pipeline must end in an appsink (`... ! videoconvert ! appsink`)"
                        .into(),
                });
            }
            return Ok(Source::Pipeline(text.into()));
        }
        let path = PathBuf::from(text);
        if !path.is_file() {
            return Err(StreamError::NoFile(path));
        }
        Ok(Source::File(path))
    }

    /// Whether frames arrive in real time whether we read them or not, so
    /// that the latest should win over every frame. Pipelines say so when
    /// they start; see [`crate::Capture::is_live`].
    pub fn is_live(&self) -> bool {
        match self {
            Source::Device(_) => true,
            // RTSP serves cameras; HTTP serves clips as often as cameras
            // (MJPEG), so it says so when it starts, as pipelines do.
            Source::Network(url) => url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("rtsp")),
            Source::File(_) | Source::Pipeline(_) => false,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Device(p) | Source::File(p) => write!(f, "{}", p.display()),
            Source::Network(url) => f.write_str(url),
            Source::Pipeline(text) => write!(f, "pipeline `{text}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_source_is_recognized() {
        assert_eq!(
            Source::parse("0").unwrap(),
            Source::Device("/dev/video0".into())
        );
        assert_eq!(
            Source::parse("/dev/video2").unwrap(),
            Source::Device("/dev/video2".into())
        );
        assert_eq!(
            Source::parse("rtsp://10.0.0.2:8554/cam").unwrap(),
            Source::Network("rtsp://10.0.0.2:8554/cam".into())
        );
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(
            Source::parse(&format!("file://{here}")).unwrap(),
            Source::File(here.into())
        );
        assert!(matches!(
            Source::parse("videotestsrc ! videoconvert ! appsink").unwrap(),
            Source::Pipeline(_)
        ));
        assert!(Source::parse("0").unwrap().is_live());
        assert!(Source::parse("rtsp://cam/1").unwrap().is_live());
        assert!(!Source::parse("https://host/clip.mp4").unwrap().is_live());
    }

    #[test]
    fn bad_sources_say_what_is_wrong() {
        let missing = Source::parse("no/such/video.mp4").unwrap_err().to_string();
        assert!(missing.contains("no/such/video.mp4"), "{missing}");
        let scheme = Source::parse("ftp://host/v.mp4").unwrap_err().to_string();
        assert!(scheme.contains("rtsp://"), "{scheme}");
        let sink = Source::parse("videotestsrc ! autovideosink")
            .unwrap_err()
            .to_string();
        assert!(sink.contains("appsink"), "{sink}");
    }
}
