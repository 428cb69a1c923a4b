#!/usr/bin/env python3
"""Where a detector's time goes, by kind of operator, in onnxruntime and in Edgewise.

Runs MODEL on onnxruntime (CPUExecutionProvider, per-node profiling) and on
`edge-bench --format json` (its per-node medians) at each thread count, and
sums both by the same kinds: convolutions by kernel (1x1, 3x3...), stride,
depthwise or not and size (> 50, 10-50, < 10 MMAC), other operators by ONNX
type. onnxruntime's names for fused nodes (`QuickGelu` for SiLU, its NCHWc
reorders) are kept as they are; Edgewise fuses SiLU into its convolutions.

Usage:
  python3 scripts/time_by_kind.py MODEL [--shape 1x3x640x640] [--threads 1,2] [--runs 25]

The onnxruntime side is each node's median over the runs after 5 warm-up
runs; both sides are per-node sums, so they leave out the time between nodes.
Needs `pip install onnxruntime onnx numpy` and `cargo build --release --bins`.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:
    sys.exit(f"time_by_kind: {e}; `python3 -m pip install onnxruntime onnx numpy` (scripts/setup.sh does)")

ROOT = Path(__file__).resolve().parent.parent


def conv_kind(weights, x_shape, y_shape):
    """`3x3/s2 dw big`: a convolution's kernel, stride, grouping and size."""
    out_c, per_group, kh, kw = weights
    stride = x_shape[-2] // y_shape[-2] if y_shape[-2] else 1
    macs = out_c * per_group * kh * kw * y_shape[-2] * y_shape[-1]
    size = "big" if macs > 50e6 else ("mid" if macs > 10e6 else "small")
    depthwise = " dw" if per_group == 1 and kh * kw > 1 and x_shape[1] == out_c else ""
    return f"{kh}x{kw}/s{stride}{depthwise} {size}"


def onnx_kinds(path):
    """Each ONNX node's kind, by name, from the model and its inferred shapes."""
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.value_info) + list(g.input) + list(g.output)}
    weights = {t.name: list(t.dims) for t in g.initializer}
    kinds = {}
    for node in g.node:
        kind = node.op_type
        if node.op_type == "Conv" and node.input[1] in weights:
            x, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if x and y and len(x) == 4 and len(y) == 4 and all(x) and all(y):
                kind = conv_kind(weights[node.input[1]], x, y)
        kinds[node.name] = kind
    return kinds


def onnxruntime_times(path, shape, threads, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        name = session.get_inputs()[0].name
        for _ in range(runs + 5):
            session.run(None, {name: x})
        events = json.load(open(session.end_profiling()))
    durations = collections.defaultdict(list)
    args = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            durations[e["name"]].append(e["dur"])
            args[e["name"]] = e["args"]
    sums = collections.defaultdict(float)
    for node, ds in durations.items():
        a = args[node]
        kind = a.get("op_name", "?")
        if kind == "Conv":
            inputs = [list(t.values())[0] for t in a["input_type_shape"]]
            output = list(a["output_type_shape"][0].values())[0]
            if len(inputs) > 1 and len(inputs[1]) == 4 and len(output) == 4:
                kind = conv_kind(inputs[1], inputs[0], output)
        sums[kind] += float(np.median(ds[5:])) / 1000
    return sums


def edgewise_times(path, shape, threads, runs, kinds):
    command = [str(ROOT / "target/release/edge-bench"), str(path), "--threads", str(threads),
               "--runs", str(runs), "--format", "json"]
    if shape:
        command += ["--input-shape", "x".join(map(str, shape))]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    sums = collections.defaultdict(float)
    for node in report["variants"][0]["nodes"]:
        sums[kinds.get(node["name"], node["op"])] += node["median_ms"]
    return sums


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--shape", help="input shape, e.g. 1x3x640x640, for a model with dynamic dimensions")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=25)
    a = p.parse_args()
    if not a.model.is_file():
        sys.exit(f"time_by_kind: error: no model at {a.model}")
    session = ort.InferenceSession(str(a.model), providers=["CPUExecutionProvider"])
    shape = [int(d) for d in a.shape.split("x")] if a.shape else session.get_inputs()[0].shape
    if not all(isinstance(d, int) for d in shape):
        sys.exit(f"time_by_kind: error: {a.model} has dynamic input dimensions {shape}; give --shape")
    kinds = onnx_kinds(a.model)
    threads = [int(t) for t in a.threads.split(",")]
    table = {}
    for t in threads:
        table[("ort", t)] = onnxruntime_times(a.model, shape, t, a.runs)
        table[("edgewise", t)] = edgewise_times(a.model, shape if a.shape else None, t, a.runs, kinds)
    every = sorted({k for sums in table.values() for k in sums}, key=lambda k: -table[("ort", threads[0])].get(k, 0) - table[("edgewise", threads[0])].get(k, 0))
    header = " | ".join(f"{side} {t}t ms" for t in threads for side in ("ort", "edgewise"))
    print(f"| kind | {header} |")
    print("|---|" + "---:|" * (2 * len(threads)))
    for kind in every:
        cells = " | ".join(f"{table[(side, t)].get(kind, 0):.2f}" for t in threads for side in ("ort", "edgewise"))
        print(f"| {kind} | {cells} |")
    totals = " | ".join(f"{sum(table[(side, t)].values()):.2f}" for t in threads for side in ("ort", "edgewise"))
    print(f"| total of the nodes | {totals} |")


if __name__ == "__main__":
    main()
