//! What can go wrong with a stream, named so the user knows what to do.

use std::path::PathBuf;

/// An error opening or reading a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A camera device that is not there.
    #[error(
        "no camera at {0}: is it connected? (`ls /dev/video*` lists the V4L2 devices, `v4l2-ctl --list-devices` names them)"
    )]
    NoDevice(PathBuf),
    /// A video file that is not there.
    #[error("no video file {0}")]
    NoFile(PathBuf),
    /// A source this build cannot open.
    #[error(
        "{input} needs GStreamer, which this build of Edgewise was made without; rebuild with `cargo build --release --features edgewise-runtime/gstreamer` (Debian: `apt-get install libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-good gstreamer1.0-libav`)"
    )]
    NoGstreamer {
        /// The source as given.
        input: String,
    },
    /// A source description that makes no sense.
    #[error("bad source {input}: {reason}")]
    BadSource {
        /// The source as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// GStreamer refused or failed while running.
    #[error("{input}: {message}")]
    Gstreamer {
        /// The source as given.
        input: String,
        /// GStreamer's message, with its debug details.
        message: String,
    },
    /// The detector could not be set up for the stream.
    #[error("the {what} could not be set up for the stream: {message}")]
    FirstFrame {
        /// What failed: the model, the decoder.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// An annotated video that cannot be written.
    #[error("cannot write the video {}: {message}", path.display())]
    Writer {
        /// The video file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A stage thread panicked.
    #[error("the {0} stage panicked")]
    Panicked(&'static str),
}
