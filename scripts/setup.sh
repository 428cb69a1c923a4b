#!/usr/bin/env bash
# Everything a fresh machine needs for the tests: rustfmt and clippy, the ARM
# targets, Debian's cross linkers and qemu-user, GStreamer (edge-run
# --source), OpenSSH's server and client, fdisk, e2fsprogs, mtools and dosfstools (SD-card images), pip, Chromium (the HTML
# report is checked in a headless browser), the `onnx`, `onnxruntime` and `pillow`
# Python packages (ONNX's checker, onnxruntime's quantizer, the evaluation set's
# augmentations); then the real models, photos and labeled evaluation set
# (python3 models/fetch.py). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-gcc >/dev/null || missing+=(gcc-arm-linux-gnueabihf)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
# edge-deploy's tests push to an OpenSSH server on loopback.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
# edge-deploy flash: partition tables, ext4 and FAT without mounting.
command -v sfdisk >/dev/null || missing+=(fdisk)
command -v debugfs >/dev/null || missing+=(e2fsprogs)
command -v mcopy >/dev/null || missing+=(mtools)
command -v mkfs.vfat >/dev/null || missing+=(dosfstools)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v chromium >/dev/null || missing+=(chromium)
# edge-run --source (the `gstreamer` feature): GStreamer's libraries to build
# against, its decoders and muxers (good: Matroska, AVI, JPEG, V4L2, RTSP;
# libav: H.264 and the rest), gst-launch-1.0, which makes the test videos, and
# GStreamer's RTSP server for Debian's Python (scripts/rtsp_server.py).
command -v pkg-config >/dev/null || missing+=(pkg-config)
for pkg in libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-libav gstreamer1.0-tools \
    gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup component add rustfmt clippy 2>/dev/null
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf 2>/dev/null
# onnx: ONNX's own checker on every zoo detector; onnxruntime: its quantizer
# makes the standard QDQ models our runtime must run as integer; pillow
# (imported as PIL): models/fetch.py flips, scales and crops the evaluation
# set's photos with it. Each is `requirement:module`.
for spec in onnx==1.23.2:onnx onnxruntime==1.32.0:onnxruntime pillow==13.0.0:PIL; do
    pkg=${spec%%:*}
    if ! python3 -c "import ${spec##*:}" 2>/dev/null; then
        echo "setup: installing the $pkg Python package"
        python3 -m pip install --quiet "$pkg" ||
            python3 -m pip install --quiet --break-system-packages "$pkg"
    fi
done
python3 models/fetch.py
