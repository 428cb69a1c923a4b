#!/usr/bin/env python3
"""Streams through `edge-run --source`: does the pipeline hide pre- and
post-processing behind inference, and how far behind a live camera is it?

For every model it measures, in alternating rounds:
  - inference alone: `edge-bench MODEL --image FRAME --threads T --format
    json`, frames back to back on the stream's input size; its plain median
    is the `infer_ms` the pipeline's throughput is held against;
  - sequential: `edge-run MODEL FRAMES... --threads T` on the video's frames
    as PNG files, one after the other (load, preprocess, infer, decode, then
    the next image); the medians of its per-image `pre`, `infer` and `post`;
  - pipelined: `edge-run MODEL --source VIDEO --every-frame --threads T`
    on a 640x480, 30 fps MJPEG video of the same frames (decoded by
    GStreamer on the capture thread); its processed frames per second;
  - live: `edge-run MODEL --source "videotestsrc is-live=true ... 30 fps"
    --latest --threads T`; its latency from capture to detections (median,
    p90, max), frames processed and dropped.
and prints a Markdown table: pipelined fps against 1000 / infer_ms (the
ceiling when pre- and post-processing are hidden) and against 1000 / (pre +
infer + post) of the sequential run (no overlap).

Usage:
  python3 scripts/stream_bench.py [--model models/ppocr_v4_det.toml[:640x640] ...]
      [--threads 2] [--rounds 3] [--frames 150] [--live-seconds 10]
      [--edge-run target/release/edge-run] [--edge-bench target/release/edge-bench]

A model given with `:HxW` runs at that input size in every mode
(`edge-run --input-size`, `edge-bench --input-shape`): dynamic models such as
PP-OCRv4 otherwise take each frame's own size in edge-run and the manifest's
in edge-bench. Fixed-shape models need none.

Needs an edge-run built with GStreamer (`cargo build --release --bin
edge-run --features edgewise-runtime/gstreamer`), gst-launch-1.0 and Pillow
(`bash scripts/setup.sh` installs them).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "page.png", "text.png"]


def make_video(folder: Path, frames: int) -> tuple[Path, list[Path]]:
    """`frames` frames at 640x480 cycling through the photos (5 frames
    each), as PNG files and as a 30 fps MJPEG AVI."""
    sized = [
        Image.open(ROOT / "models/.cache/photos" / p).convert("RGB").resize((640, 480))
        for p in PHOTOS
    ]
    files = []
    for i in range(frames):
        path = folder / f"f{i:04d}.png"
        sized[(i // 5) % len(sized)].save(path)
        files.append(path)
    video = folder / "video.avi"
    subprocess.run(
        ["gst-launch-1.0", "-q", "multifilesrc", f"location={folder}/f%04d.png", "index=0",
         f"stop-index={frames - 1}", "caps=image/png,framerate=30/1", "!", "pngdec", "!",
         "videoconvert", "!", "jpegenc", "quality=90", "!", "avimux", "!", "filesink",
         f"location={video}"],
        check=True,
    )
    return video, files


def split(spec):
    """`PATH[:HxW]` as the path and the extra flags of edge-run and edge-bench."""
    path, _, size = spec.partition(":")
    if not size:
        return path, [], []
    h, w = size.split("x")
    return path, ["--input-size", size], ["--input-shape", f"1x3x{h}x{w}"]


def inference_alone(edge_bench, spec, frame, threads, out):
    model, _, shape = split(spec)
    subprocess.run(
        [edge_bench, model, *shape, "--image", str(frame), "--threads", str(threads), "--runs", "30",
         "--format", "json", "--save", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return json.loads(out.read_text())["variants"][0]["plain"]["median_ms"]


def sequential(edge_run, spec, files, threads):
    model, size, _ = split(spec)
    out = subprocess.run(
        [edge_run, model, *size, "--threads", str(threads), *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    times = [tuple(map(float, m)) for m in re.findall(
        r"pre ([\d.]+) ms, infer ([\d.]+) ms, post ([\d.]+) ms", out.stderr)]
    # The first image builds the engine's caches; it is not a frame of a stream.
    times = times[1:]
    return [statistics.median(t[i] for t in times) for i in range(3)]


def streamed(edge_run, spec, source, threads, extra, stats):
    model, size, _ = split(spec)
    subprocess.run(
        [edge_run, model, *size, "--threads", str(threads), "--source", source, "--report-every", "0",
         "--stats-json", str(stats), *extra],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return json.loads(stats.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--live-seconds", type=int, default=10)
    ap.add_argument("--edge-run", default=str(ROOT / "target/release/edge-run"))
    ap.add_argument("--edge-bench", default=str(ROOT / "target/release/edge-bench"))
    args = ap.parse_args()
    models = args.model or ["models/ppocr_v4_det.toml:640x640", "models/yolox_ddddocr.toml"]
    live = (f"videotestsrc is-live=true pattern=ball num-buffers={30 * args.live_seconds} ! "
            "video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! appsink")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video, files = make_video(tmp, args.frames)
        rows = {m: {"alone": [], "seq": [], "fps": [], "live": []} for m in models}
        for r in range(args.rounds):
            for m in models:
                rows[m]["alone"].append(inference_alone(args.edge_bench, m, files[0], args.threads,
                                                        tmp / "bench.json"))
                rows[m]["seq"].append(sequential(args.edge_run, m, files, args.threads))
                rows[m]["fps"].append(streamed(args.edge_run, m, str(video), args.threads,
                                               ["--every-frame"], tmp / "file.json")["fps"])
                rows[m]["live"].append(streamed(args.edge_run, m, live, args.threads,
                                                ["--latest"], tmp / "live.json"))
                print(f"round {r + 1}: {m} done", file=sys.stderr)
    print(f"| model | threads | infer_ms (edge-bench) | sequential pre / infer / post ms | 1000 / infer_ms | 1000 / (pre+infer+post) "
          f"| pipelined fps (file) | pipelined / (1000 / infer) | live --latest: latency median / p90 / max ms "
          f"| live: processed / dropped |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for m, v in rows.items():
        pre, seq_infer, post = (statistics.median(s[i] for s in v["seq"]) for i in range(3))
        infer = statistics.median(v["alone"])
        fps = statistics.median(v["fps"])
        mid = sorted(v["live"], key=lambda x: x["latency"]["median_ms"])[len(v["live"]) // 2]
        lat = mid["latency"]
        print(f"| {Path(m.partition(':')[0]).stem}{' at ' + m.partition(':')[2] if ':' in m else ''} | {args.threads} | {infer:.1f} | {pre:.1f} / {seq_infer:.1f} / {post:.1f} "
              f"| {1000 / infer:.1f} | {1000 / (pre + seq_infer + post):.1f} | {fps:.1f} | {fps * infer / 1000:.2f} "
              f"| {lat['median_ms']:.0f} / {lat['p90_ms']:.0f} / {lat['max_ms']:.0f} "
              f"| {mid['processed']} / {mid['dropped']} |")


if __name__ == "__main__":
    main()
