#!/usr/bin/env python3
"""ONNX's own checker, full check with shape inference, on the models named
on stdin (one path per line). For each it prints one line: `ok PATH`, or
`error PATH: MESSAGE`. Used by crates/zoo/tests/detectors.rs, which keeps one
process for many models (importing onnx takes longer than checking one).

With --run, onnxruntime also loads each model and runs it once on a
deterministic input (dynamic dimensions set to --size), and the line gives
the output shapes: `ok PATH 1x4x64x64 ...`."""

import argparse
import sys

try:
    import onnx
except ImportError:
    print("error onnx: the `onnx` Python package is missing; `python3 -m pip install onnx` "
          "(scripts/setup.sh installs it)", flush=True)
    sys.exit(1)


def run(path, size):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else size for d in i.shape]
        if i.shape and not isinstance(i.shape[0], int):
            dims[0] = 1
        x = np.linspace(-1.0, 1.0, num=int(np.prod(dims)), dtype=np.float32).reshape(dims)
        feeds[i.name] = x
    outputs = session.run(None, feeds)
    for o in outputs:
        if not np.all(np.isfinite(o)):
            raise ValueError("non-finite output")
    return " ".join("x".join(str(d) for d in o.shape) for o in outputs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="store_true", help="also run each model in onnxruntime")
    parser.add_argument("--size", type=int, default=64, help="dynamic dimensions for --run")
    args = parser.parse_args()
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            onnx.checker.check_model(path, full_check=True)
            shapes = run(path, args.size) if args.run else ""
            print(f"ok {path} {shapes}".rstrip(), flush=True)
        except Exception as e:  # the checker and onnxruntime raise several kinds
            message = " ".join(str(e).split())
            print(f"error {path}: {type(e).__name__}: {message}", flush=True)


main()
