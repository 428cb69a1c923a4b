#!/usr/bin/env python3
"""ONNX's own checker, full check with shape inference, on the models named
on stdin (one path per line). For each it prints one line: `ok PATH`, or
`error PATH: MESSAGE`. Used by crates/zoo/tests/detectors.rs, which keeps one
process for many models (importing onnx takes longer than checking one)."""

import sys

try:
    import onnx
except ImportError:
    print("error onnx: the `onnx` Python package is missing; `python3 -m pip install onnx` "
          "(scripts/setup.sh installs it)", flush=True)
    sys.exit(1)

for line in sys.stdin:
    path = line.strip()
    if not path:
        continue
    try:
        onnx.checker.check_model(path, full_check=True)
        print(f"ok {path}", flush=True)
    except Exception as e:  # the checker raises several kinds
        message = " ".join(str(e).split())
        print(f"error {path}: {type(e).__name__}: {message}", flush=True)
