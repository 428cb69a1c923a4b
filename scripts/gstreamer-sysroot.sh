#!/usr/bin/env bash
# A sysroot with a board's GStreamer, for `edge-deploy build --gstreamer
# --sysroot DIR` on a Debian machine: the arm64 (or armhf) packages of
# GStreamer's development files and everything they depend on, unpacked
# into DIR without installing them (Debian 12's
# libgstreamer-plugins-base1.0-dev cannot be installed for two
# architectures side by side). With it, qemu-user runs the board's edge-run
# here too: `qemu-aarch64 -L DIR` (GStreamer's plugins: GST_PLUGIN_SYSTEM_PATH).
#
# A copy of the board's own root filesystem works as well, and matches its
# library versions exactly: `rsync -a pi@board:/usr pi@board:/lib DIR/`.
#
# usage: scripts/gstreamer-sysroot.sh [arm64|armhf] [DIR]
set -euo pipefail

arch=${1:-arm64}
dir=${2:-target/sysroots/$arch}
case "$arch" in
arm64 | armhf) ;;
*)
    echo "usage: $0 [arm64|armhf] [DIR]" >&2
    exit 2
    ;;
esac
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    $sudo dpkg --add-architecture "$arch"
    $sudo apt-get update -qq
fi
# What the `gstreamer` feature links (the core, app and video libraries)
# and what a stream needs at run time (plugins-base: videoconvert, appsink,
# videotestsrc). Graphics stacks, compilers and interpreters the closure
# drags in are left out: nothing Edgewise links or loads needs them.
roots="libgstreamer1.0-dev:$arch libgstreamer-plugins-base1.0-dev:$arch gstreamer1.0-plugins-base:$arch"
skip='^(libllvm|libgl1-mesa-dri|python|libpython|libperl|libicu|perl|dpkg|tar|install-info|cdebconf|sysvinit|libz3|pkgconf|pkg-config|libglib2.0-bin|libglib2.0-dev-bin|liborc-0.4-dev-bin|libwayland-bin|xfonts|libdebian|libnewt|libslang|libtextwrap|fontconfig-config|libxml2|<)'
# shellcheck disable=SC2086
packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances $roots |
    grep -v '^ ' | grep ":$arch\$" | grep -vE "$skip" | sort -u)

debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
# shellcheck disable=SC2086
(cd "$debs" && apt-get download -q $packages >/dev/null)
partial="$dir.partial"
rm -rf "$partial"
mkdir -p "$partial"
for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$partial"
done
rm -rf "$dir"
mv "$partial" "$dir"
echo "$dir: $(ls "$debs" | wc -l) packages for $arch; now: edge-deploy build --board BOARD --gstreamer --sysroot $dir"
