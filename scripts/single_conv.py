#!/usr/bin/env python3
"""Writes an ONNX file holding one convolution (seeded weights, a bias, and
optionally SiLU as Sigmoid and Mul, or one filter per channel), to time a
convolution shape on its own with `edge-bench` or `scripts/ab_bench.py`.

Usage: python3 scripts/single_conv.py OUT.onnx IN_C OUT_C H W K STRIDE [silu|dw]
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def main():
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    out, ic, oc, height, width, k, s = sys.argv[1], *map(int, sys.argv[2:8])
    extra = sys.argv[8] if len(sys.argv) > 8 else ""
    if extra not in ("", "silu", "dw"):
        sys.exit(f"single_conv.py: unknown option {extra!r}: use silu or dw")
    dw = extra == "dw"
    if dw and ic != oc:
        sys.exit("single_conv.py: a depthwise convolution needs IN_C == OUT_C")
    rng = np.random.default_rng(0)
    w = nh.from_array((rng.standard_normal((oc, 1 if dw else ic, k, k)) * 0.1).astype(np.float32), "w")
    b = nh.from_array((rng.standard_normal(oc) * 0.1).astype(np.float32), "b")
    p = k // 2
    conv = h.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[s, s],
                       pads=[p] * 4, group=ic if dw else 1, name="conv")
    nodes = [conv]
    if extra == "silu":
        nodes += [h.make_node("Sigmoid", ["c"], ["sg"], name="sig"),
                  h.make_node("Mul", ["c", "sg"], ["y"], name="mul")]
    else:
        conv.output[0] = "y"
    oh, ow = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
    graph = h.make_graph(nodes, "single_conv", [h.make_tensor_value_info("x", T.FLOAT, [1, ic, height, width])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, oc, oh, ow])], [w, b])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main()
