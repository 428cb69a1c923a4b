#!/usr/bin/env python3
"""A small RTSP server on loopback for edge-run's stream tests and for trying
`edge-run --source rtsp://...` without a camera: GStreamer's RTSP server
(gst-rtsp-server, through PyGObject) serving a live test picture as MJPEG
over RTP.

Usage:
  /usr/bin/python3 scripts/rtsp_server.py --port 8554 [--path /test]
      [--size 640x480] [--fps 30]

Prints `serving rtsp://127.0.0.1:PORT/PATH` once it listens, then runs until
killed. Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0 and
gstreamer1.0-rtsp (`bash scripts/setup.sh` installs them); they are built for
Debian's own Python, /usr/bin/python3.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/test")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args()
    width, height = args.size.split("x")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={args.fps}/1 ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=90 ! rtpjpegpay name=pay0 pt=26 )"
    )
    # One pipeline for every client: a camera does not restart per viewer.
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(f"serving rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
