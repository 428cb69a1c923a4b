#!/usr/bin/env bash
# The main job, on a fresh machine: fetch the default detector (PP-OCRv4 det)
# and the photos, build, show where its cost lies stage by stage, run it on
# two photos (annotated copies in target/main-job/), and time it stage by
# stage (report pages in target/main-job/).
#
# Offline (nothing could be fetched), or with EDGEWISE_OFFLINE=1, the same job
# runs on the zoo's default detector (mobilenet_v2+fpn+retinanet at 320,
# built here with seeded weights) and on a generated test card when no photo
# is cached.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/main-job
photos=models/.cache/photos
fetched=false
if [ "${EDGEWISE_OFFLINE:-0}" != 1 ]; then
    # Only what the job runs: the default detector and the photos.
    python3 models/fetch.py --only ppocr_v4_det photos && fetched=true ||
        echo "main: fetching failed (offline?); using the zoo's default detector instead" >&2
fi
cargo build --release --bins
mkdir -p "$out"
if $fetched; then
    model=models/ppocr_v4_det.toml
    images=("$photos/page.png" "$photos/text.png")
    bench_image="$photos/page.png"
else
    ./target/release/edge-convert zoo mobilenet_v2+fpn+retinanet --input 320 --classes 80 \
        -o "$out/zoo_mobilenet_v2_fpn_retinanet.onnx"
    model="$out/zoo_mobilenet_v2_fpn_retinanet.toml"
    if [ -f "$photos/astronaut.png" ] && [ -f "$photos/coffee.png" ]; then
        images=("$photos/astronaut.png" "$photos/coffee.png")
    else
        python3 scripts/test_card.py "$out/test_card.png"
        images=("$out/test_card.png")
    fi
    bench_image="${images[0]}"
fi
./target/release/edge-convert inspect "$model"
./target/release/edge-run "$model" "${images[@]}" --draw "$out"
./target/release/edge-bench "$model" --image "$bench_image" --board host \
    --save "$out/bench.html" --save "$out/bench.json"
