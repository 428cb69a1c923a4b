#!/usr/bin/env bash
# edge-run on ARM: cross-build for aarch64 (Pi 4/5, Jetson) and armv7 (Pi 3,
# Zero 2 W on a 32-bit OS) with Debian's cross linkers (.cargo/config.toml),
# run the aarch64 build under qemu on PP-OCRv4 det and page.png, and check its
# detections against the x86 build's (and the armv7 build's, at 320x640):
# boxes within 1 px, scores within 1e-3.
# qemu shows that the binaries work and agree, not how fast they are.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p edgewise-runtime --bin edge-run
cargo build --release --target aarch64-unknown-linux-gnu -p edgewise-runtime --bin edge-run
cargo build --release --target armv7-unknown-linux-gnueabihf -p edgewise-runtime --bin edge-run

out=target/arm-check
mkdir -p "$out"
args=(models/ppocr_v4_det.toml models/.cache/photos/page.png --threads 1)
./target/release/edge-run "${args[@]}" >"$out/x86_64.jsonl"
qemu-aarch64 -L /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/release/edge-run "${args[@]}" >"$out/aarch64.jsonl"
python3 scripts/compare_detections.py "$out/x86_64.jsonl" "$out/aarch64.jsonl"

# armv7 too, at a smaller input so that the emulated run stays short.
small=(models/ppocr_v4_det.toml models/.cache/photos/page.png --threads 1 --input-size 320x640)
./target/release/edge-run "${small[@]}" >"$out/x86_64-320.jsonl"
qemu-arm -L /usr/arm-linux-gnueabihf target/armv7-unknown-linux-gnueabihf/release/edge-run "${small[@]}" >"$out/armv7-320.jsonl"
python3 scripts/compare_detections.py "$out/x86_64-320.jsonl" "$out/armv7-320.jsonl"
