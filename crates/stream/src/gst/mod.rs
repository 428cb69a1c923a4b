//! GStreamer: capture from cameras, files, network streams and users'
//! pipelines ([`GstCapture`]), and annotated video written back out
//! ([`GstWriter`]).

mod capture;
mod writer;

pub use capture::GstCapture;
pub use writer::GstWriter;
