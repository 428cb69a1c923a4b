#!/usr/bin/env bash
# The tests, on a fresh machine: set up (scripts/setup.sh: toolchain pieces,
# cross linkers, qemu, the fetched models and photos), check formatting and
# lints, check the ARM builds against x86 (scripts/arm-check.sh), then run
# every test of the workspace. Tests run in the release profile: tract in
# debug is far too slow.
set -euo pipefail
cd "$(dirname "$0")/.."

# Free disk, printed first: a full disk shows up later as a linker crash
# (signal 7), far from its cause.
df -h . | sed 's/^/disk: /'
# Each step says how long it took, so that a slow CI run shows where.
step() {
    local start=$SECONDS
    "$@"
    echo "step: $* took $((SECONDS - start)) s"
}
step bash scripts/setup.sh
step cargo fmt --all --check
# One lint pass, with the runtime's GPIO actions and GStreamer streams (features) included.
step cargo clippy --release --workspace --all-targets --features edgewise-runtime/gpio,edgewise-runtime/gstreamer -- -D warnings
# The x86 build, then the two board builds, one after the other: side by side
# on two cores the board builds took longer (2030 s for the pair) than
# one after the other, as each already keeps both cores busy.
step bash scripts/arm-check.sh
# With GStreamer: edge-run's stream tests read videos and live sources.
step cargo test --release --workspace --features edgewise-runtime/gstreamer
