#!/usr/bin/env python3
"""Reference latency of onnxruntime on the same model, input shape and thread
count as edge-bench: median of session.run over measured runs after warm-up.
For docs/benchmarks.md only; needs `pip install onnxruntime numpy`.

Usage: ort_latency.py MODEL.onnx --shape 1x3x640x640 --threads 1 [--runs 30 --warmup 5]
"""

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--shape", default="1x3x640x640")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    shape = [int(d) for d in args.shape.split("x")]
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)}
    times = []
    for run in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        if run >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(
        f"onnxruntime {ort.__version__} {args.shape} threads={args.threads}: "
        f"median {statistics.median(times):.2f} ms, min {min(times):.2f} ms over {len(times)} runs"
    )


if __name__ == "__main__":
    main()
