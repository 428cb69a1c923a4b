#!/usr/bin/env bash
# The main job, on a fresh machine: fetch the default detector (PP-OCRv4 det)
# and the photos, build, show where its cost lies stage by stage, run it on
# two photos (annotated copies in target/main-job/), and time it stage by
# stage (report pages in target/main-job/).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 models/fetch.py
cargo build --release --bins
./target/release/edge-convert inspect models/ppocr_v4_det.toml
./target/release/edge-run models/ppocr_v4_det.toml models/.cache/photos/page.png models/.cache/photos/text.png \
    --draw target/main-job
./target/release/edge-bench models/ppocr_v4_det.toml --image models/.cache/photos/page.png --board host \
    --save target/main-job/bench.html --save target/main-job/bench.json
