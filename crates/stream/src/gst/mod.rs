//! GStreamer: capture from cameras, files, network streams and users'
//! pipelines ([`GstCapture`]), and annotated video written back out
//! ([`GstWriter`]).

mod capture;
mod writer;

pub use capture::GstCapture;
pub use writer::GstWriter;

use gstreamer as gst;
use gstreamer::prelude::*;

/// The first error message on `pipeline`'s bus, with GStreamer's details.
fn pending_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = message.view() {
            return Some(error_text(e));
        }
    }
    None
}

/// An error message: the element that sent it, what, and the details.
fn error_text(e: &gst::message::Error) -> String {
    let from = e
        .src()
        .map(|s| format!("{}: ", s.name()))
        .unwrap_or_default();
    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
    format!("{from}{}{debug}", e.error())
}
