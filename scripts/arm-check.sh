#!/usr/bin/env bash
# edge-run and edge-bench on ARM: cross-build for aarch64 (Pi 4/5, Jetson) and
# armv7 (Pi 3, Zero 2 W on a 32-bit OS) with `edge-deploy build` (the boards'
# profiles: Debian's cross linkers, target-cpu), run the aarch64 build under
# qemu on PP-OCRv4 det and page.png and on YOLOX (SiLU, every convolution on
# F32Conv's NEON loop), and check its detections against the x86 build's (and
# the armv7 build's, at 320x640): boxes within 1 px, scores within 1e-3; the same for an
# INT8 model on integer kernels on two aarch64 CPUs, and FP16 on a Cortex-A76. edge-bench runs
# under qemu too: the same stages and nodes as on x86 (armv7, which keeps
# tract's convolutions, as on x86 with `--float-conv tract`), nothing
# unattributed.
# qemu shows that the binaries work and agree, not how fast they are.
set -euo pipefail
cd "$(dirname "$0")/.."

# x86: the whole workspace with its tests, as `cargo test --release
# --workspace --features edgewise-runtime/gstreamer` builds it (the same
# features, so the tests reuse every dependency). Then edge-deploy, one of
# its binaries, cross-builds the two boards, one after the other: a Pi 4 (aarch64, Cortex-A72) and a Pi 3 on its
# 32-bit OS (armv7).
cargo build --release --workspace --all-targets --features edgewise-runtime/gstreamer
./target/release/edge-deploy build --board rpi4
./target/release/edge-deploy build --board rpi3 --target armv7-unknown-linux-gnueabihf
a64=target/boards/rpi4/aarch64-unknown-linux-gnu/deploy
armv7=target/boards/rpi3/armv7-unknown-linux-gnueabihf/deploy

out=target/arm-check
mkdir -p "$out"
# A Cortex-A72 (Pi 4): qemu's default `max` CPU emulates pointer
# authentication so slowly that the same run takes over 10x longer.
qemu_a64=(qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu)
args=(models/ppocr_v4_det.toml models/.cache/photos/page.png --threads 1)
./target/release/edge-run "${args[@]}" >"$out/x86_64.jsonl"
"${qemu_a64[@]}" "$a64"/edge-run "${args[@]}" >"$out/aarch64.jsonl"
python3 scripts/compare_detections.py "$out/x86_64.jsonl" "$out/aarch64.jsonl"

# A SiLU detector (YOLOX, every convolution on F32Conv with SiLU fused):
# the same detections, and the NEON tile loop under every convolution.
yolox=(models/yolox_ddddocr.toml models/.cache/photos/astronaut.png --threads 1)
./target/release/edge-run "${yolox[@]}" >"$out/x86_64-yolox.jsonl"
"${qemu_a64[@]}" "$a64"/edge-run "${yolox[@]}" >"$out/aarch64-yolox.jsonl"
python3 scripts/compare_detections.py "$out/x86_64-yolox.jsonl" "$out/aarch64-yolox.jsonl"
"${qemu_a64[@]}" "$a64"/edge-bench models/yolox_ddddocr.toml --threads 1 --warmup 1 --runs 1 \
    --format json >"$out/bench-yolox.json"
python3 - "$out/bench-yolox.json" <<'PY'
import json, sys
kernels = json.load(open(sys.argv[1]))["variants"][0]["kernels"]
convs = {(k["op"], tuple(k["kernels"])) for k in kernels}
# The NEON tile loop, flat or with its roles swapped for a small map
# (`edgewise_f32_conv_neon_8x12_pixel_rows`).
neon = "edgewise_f32_conv_neon_8x12"
assert convs and all(op == "F32Conv" and names and all(n.startswith(neon) for n in names) for op, names in convs), \
    f"aarch64 YOLOX convolutions on {convs}"
print(f"FP32 on aarch64: {len(kernels)} convolutions on F32Conv's NEON loop; detections as on x86_64")
PY

# armv7 too, at a smaller input so that the emulated run stays short.
small=(models/ppocr_v4_det.toml models/.cache/photos/page.png --threads 1 --input-size 320x640)
./target/release/edge-run "${small[@]}" >"$out/x86_64-320.jsonl"
qemu-arm -L /usr/arm-linux-gnueabihf "$armv7"/edge-run "${small[@]}" >"$out/armv7-320.jsonl"
python3 scripts/compare_detections.py "$out/x86_64-320.jsonl" "$out/armv7-320.jsonl"

# INT8: the model quantized on x86, run on integer kernels (--qdq integer)
# on x86 and on two aarch64 CPUs: a Cortex-A72 (Pi 4; tract's SMLAL kernel)
# and a Cortex-A76 (Pi 5; dot-product instructions, its SDOT kernel). The
# integer convolutions are exact, so only tract's float ops in between may
# differ.
./target/release/edge-convert quantize models/ppocr_v4_det.toml --calib models/.cache/calibration \
    --input-shape 1x3x320x320 -o "$out/ppocr_int8.onnx" --no-cache >"$out/quantize.txt"
int8=("$out/ppocr_int8.toml" models/.cache/photos/page.png --threads 1 --input-size 320x320 --qdq integer)
./target/release/edge-run "${int8[@]}" >"$out/x86_64-int8.jsonl"
for cpu_kernel in cortex-a72:arm64simd_mmm_i32_8x8 cortex-a76:arm64simd_mmm_i32_8x8_dot; do
    cpu=${cpu_kernel%%:*}
    qemu=(qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu)
    "${qemu[@]}" "$a64"/edge-run "${int8[@]}" >"$out/aarch64-$cpu-int8.jsonl"
    python3 scripts/compare_detections.py "$out/x86_64-int8.jsonl" "$out/aarch64-$cpu-int8.jsonl"
    "${qemu[@]}" "$a64"/edge-bench "$out/ppocr_int8.toml" --qdq integer \
        --input-shape 1x3x320x320 --threads 1 --warmup 1 --runs 1 --format json >"$out/bench-$cpu-int8.json"
    python3 - "$out/bench-$cpu-int8.json" "$cpu" "${cpu_kernel#*:}" <<'PY'
import json, sys
path, cpu, expected = sys.argv[1:]
convs = [k for k in json.load(open(path))["variants"][0]["kernels"] if k["op"] == "Int8Conv"]
dense = {name for k in convs for name in k["kernels"]} - {"edgewise_depthwise_i8"}
# 62 convolutions and the head's first ConvTranspose as a pointwise one (the
# second computes the logits and stays float).
assert len(convs) == 63, f"{cpu}: {len(convs)} convolutions on Int8Conv, expected 63"
assert dense == {expected}, f"{cpu}: dense convolutions on {sorted(dense)}, expected {expected}"
print(f"INT8 on {cpu}: 63 convolutions on Int8Conv, dense ones on {expected}; detections as on x86_64")
PY
done

# FP16 (--precision f16) on a Cortex-A76 (Pi 5; FEAT_FP16, tract's arm64fp16
# kernels) against x86, where tract runs f16 on its generic kernels: the same
# detections, within f16's rounding (11 bits; the ARM kernels also accumulate
# in f16), boxes within 2 px and scores within 0.02; and x86's f16 against
# its f32, as a check of the translation itself.
f16=(models/ppocr_v4_det.toml models/.cache/photos/page.png --threads 1 --input-size 320x320)
./target/release/edge-run "${f16[@]}" >"$out/x86_64-f32-320.jsonl"
./target/release/edge-run "${f16[@]}" --precision f16 >"$out/x86_64-f16.jsonl" 2>"$out/x86_64-f16.txt"
python3 scripts/compare_detections.py "$out/x86_64-f32-320.jsonl" "$out/x86_64-f16.jsonl" --box-tol 2 --score-tol 0.02
# tract finds fp16 in /proc/cpuinfo's features (asimdhp), and qemu-user shows
# the host's /proc/cpuinfo: TRACT_CPU_ISA tells it what the emulated CPU has
# (a Pi 5's own /proc/cpuinfo lists asimdhp). edge-run itself reads the
# kernel's hwcaps, which qemu sets: it must not warn of emulated f16.
qemu_a76=(env TRACT_CPU_ISA=+fp16 qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu)
"${qemu_a76[@]}" "$a64"/edge-run "${f16[@]}" --precision f16 >"$out/aarch64-f16.jsonl" 2>"$out/aarch64-f16.txt"
python3 scripts/compare_detections.py "$out/x86_64-f16.jsonl" "$out/aarch64-f16.jsonl" --box-tol 2 --score-tol 0.02
if grep -q "no half-precision arithmetic" "$out/aarch64-f16.txt"; then
    echo "arm-check: edge-run found no fp16 arithmetic on qemu's cortex-a76" >&2
    exit 1
fi
"${qemu_a76[@]}" "$a64"/edge-bench models/ppocr_v4_det.toml --precision f16 \
    --input-shape 1x3x320x320 --threads 1 --warmup 1 --runs 1 --format json >"$out/bench-f16.json"
python3 - "$out/bench-f16.json" <<'PY'
import json, sys
variant = json.load(open(sys.argv[1]))["variants"][0]
assert variant["precision"] == "f16", variant["precision"]
matmuls = [k for k in variant["kernels"] if k["op"] == "OptMatMul" and k["precision"] == "f16"]
names = {name for k in matmuls for name in k["kernels"]}
assert matmuls and all(n.startswith("arm64fp16") for n in names), f"f16 matrix products on {sorted(names)}"
print(f"FP16 on cortex-a76: {len(matmuls)} matrix products on {', '.join(sorted(names))}; detections as on x86_64")
PY

# edge-bench on both ARM builds (one frame of each kind; qemu times mean nothing).
bench=(models/ppocr_v4_det.toml --image models/.cache/photos/page.png --input-shape 1x3x320x320
    --threads 1 --warmup 1 --runs 1 --board rpi4 --format json)
# armv7 has no F32Conv tile loop (NEON is optional there): its convolutions
# stay tract's, with the batch norms and activations as nodes of their own,
# so it is compared with x86 on tract's convolutions (`--float-conv tract`).
./target/release/edge-bench "${bench[@]}" >"$out/bench-x86_64.json"
./target/release/edge-bench "${bench[@]}" --float-conv tract >"$out/bench-x86_64-tract-conv.json"
"${qemu_a64[@]}" "$a64"/edge-bench "${bench[@]}" >"$out/bench-aarch64.json"
qemu-arm -L /usr/arm-linux-gnueabihf "$armv7"/edge-bench "${bench[@]}" >"$out/bench-armv7.json"
python3 - "$out"/bench-{x86_64,aarch64,x86_64-tract-conv,armv7}.json <<'PY'
import json, sys
reports = [json.load(open(p)) for p in sys.argv[1:]]
def shape(r):
    v = r["variants"][0]
    assert v["unattributed"] == [], v["unattributed"]
    return ([s["stage"] for s in v["stages"]], sorted((n["name"], n["stage"]) for n in v["nodes"]))
# aarch64 against x86 as it runs by default; armv7 against x86 on tract's
# convolutions.
for base, other in [(0, 1), (2, 3)]:
    expected, r = shape(reports[base]), reports[other]
    assert shape(r) == expected, \
        f"{sys.argv[1 + other]}: stages or attributed nodes differ from {sys.argv[1 + base]}"
    arch = r["variants"][0]["machine"]["arch"]
    print(f"edge-bench {arch}: {len(expected[1])} ONNX nodes in {', '.join(expected[0])}, as on x86_64")
PY

# The `gstreamer` feature (edge-run --source) on aarch64: Debian 12 cannot
# install GStreamer's arm64 development files beside the host's, so they are
# unpacked into a sysroot (scripts/gstreamer-sysroot.sh), the stream crate
# is built and linked against it as `edge-deploy build --gstreamer
# --sysroot` builds edge-run (the same pkg-config and linker settings), and
# its GStreamer tests run under qemu with the arm64 plugins: frames from a
# pipeline, row padding removed, timestamps, refused pipelines.
sysroot=$PWD/target/sysroots/arm64
[ -f "$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig/gstreamer-video-1.0.pc" ] ||
    bash scripts/gstreamer-sysroot.sh arm64 "$sysroot"
lib=$sysroot/usr/lib/aarch64-linux-gnu
stream_test=$(
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot -C link-arg=-Wl,-rpath-link,$lib:$sysroot/lib/aarch64-linux-gnu" \
        PKG_CONFIG_ALLOW_CROSS=1 \
        PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="$lib/pkgconfig:$sysroot/usr/share/pkgconfig" \
        PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu="$sysroot" \
        cargo test --release -p edgewise-stream --features gstreamer \
        --target aarch64-unknown-linux-gnu --target-dir target/boards/stream+gstreamer \
        --no-run --message-format=json |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "edgewise_stream":
        print(m["executable"])'
)
env GST_REGISTRY_FORK=no GST_REGISTRY_1_0="$out/gst-registry-aarch64.bin" GST_PLUGIN_PATH_1_0= \
    GST_PLUGIN_SYSTEM_PATH_1_0="$lib/gstreamer-1.0" \
    qemu-aarch64 -cpu cortex-a72 -L "$sysroot" "$stream_test" gst::capture::tests --test-threads 1
echo "GStreamer on aarch64: the stream crate links against arm64 GStreamer and reads a pipeline under qemu"
