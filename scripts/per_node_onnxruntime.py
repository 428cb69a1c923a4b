#!/usr/bin/env python3
"""Per-node times of Edgewise and onnxruntime on one model, side by side.

Usage: python3 scripts/per_node_onnxruntime.py MODEL.onnx EDGE_BENCH.json [SHAPE] [--top N]

EDGE_BENCH.json is `edge-bench MODEL --threads 1 --format json`'s report (its
per-node medians, profiled). onnxruntime 1.32 runs the same model on one
thread with profiling on (25 runs, the first 5 dropped, medians per node).
onnxruntime fuses nodes and renames them after the output of the last one
fused (`conv_703_nchwc` for a Conv whose output is `conv_703`, a Relu or Clip
after a Conv named after the Relu's output); each of its nodes is mapped back
to the Conv it starts from, so both sides are compared per ONNX Conv node.
Rows are sorted by how many milliseconds more Edgewise takes; nodes
onnxruntime added (reorders into and out of its NCHWc layout, fused SiLU) are
summed at the end.

The two sides are measured one after the other, not alternated: read ratios
of large nodes, not small differences (scripts/versus_onnxruntime.py is the
side-by-side whole-frame comparison).
"""
import argparse
import collections
import json
import os
import re
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

# Ops onnxruntime folds into the Conv before them.
FOLDED = ("Relu", "Clip", "BatchNormalization", "LeakyRelu", "Sigmoid", "HardSigmoid")


def ort_node_times(model, shape):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    dims = shape or [d if isinstance(d, int) else 1 for d in first.shape]
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    for _ in range(25):
        session.run(None, {first.name: x})
    path = session.end_profiling()
    events = json.load(open(path))
    os.remove(path)
    runs = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs[e["name"][: -len("_kernel_time")]].append(e["dur"] / 1000.0)
    return {name: float(np.median(times[5:] or times)) for name, times in runs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("report")
    parser.add_argument("shape", nargs="?", help="input shape such as 1x3x640x640 (default: the model's)")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    shape = [int(d) for d in args.shape.split("x")] if args.shape else None

    graph = onnx.load(args.model).graph
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {t.name: t for t in graph.initializer}

    def source_conv(ort_name):
        base = re.sub(r"(_nchwc|_token_\d+)$", "", ort_name)
        node = producer.get(base) or producer.get(base.split("_", 1)[-1])
        while node is not None and node.op_type in FOLDED:
            node = producer.get(node.input[0])
        return node.name if node is not None else ort_name

    theirs = collections.defaultdict(float)
    for name, ms in ort_node_times(args.model, shape).items():
        theirs[source_conv(name)] += ms
    variant = json.load(open(args.report))["variants"][0]
    ours = {n["name"]: n for n in variant["nodes"]}

    def describe(name):
        node = next((n for n in graph.node if n.name == name), None)
        if node is None or node.op_type != "Conv":
            return ""
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weights = initializers.get(node.input[1])
        dims = "x".join(map(str, weights.dims)) if weights is not None else "?"
        return f"w {dims} stride {attrs.get('strides', [1, 1])[0]} group {attrs.get('group', 1)}"

    print(f"Edgewise {sum(n['median_ms'] for n in ours.values()):.1f} ms, "
          f"onnxruntime {sum(theirs.values()):.1f} ms (sums of per-node medians, one thread)")
    print(f"{'node':24s} {'MMAC':>8s} {'ours ms':>8s} {'ort ms':>8s} {'ratio':>6s}  shape")
    rows = [(name, n, theirs.get(name)) for name, n in ours.items()]
    rows.sort(key=lambda r: -(r[1]["median_ms"] - (r[2] or 0.0)))
    for name, n, ort_ms in rows[: args.top]:
        ratio = f"{n['median_ms'] / ort_ms:6.2f}" if ort_ms else "     -"
        ort_text = f"{ort_ms:8.2f}" if ort_ms is not None else "       -"
        print(f"{name:24s} {n.get('macs', 0) / 1e6:8.1f} {n['median_ms']:8.2f} {ort_text} {ratio}  {describe(name)}")
    extra = {k: v for k, v in theirs.items() if k not in ours}
    print(f"onnxruntime's own nodes (reorders, fused activations): {sum(extra.values()):.2f} ms in {len(extra)}")


if __name__ == "__main__":
    main()
