#!/usr/bin/env bash
# The tests, on a fresh machine: fetch the real models and photos the tests
# run on, check formatting and lints, then run every test of the workspace.
# Tests run in the release profile: tract in debug is far too slow.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 models/fetch.py
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
