#!/usr/bin/env python3
"""Two or more `edge-bench` binaries (or one under different environment
variables) taking turns on the same models, for comparing builds of our own
runtime side by side on a noisy machine.

Each round runs every variant once (`--runs 15 --format json`); the report
gives, per variant, the median of the plain-run medians and the minimum of
the run minima, each with its ratio to the first variant. On a shared
machine the minima of many short runs agree between two copies of one binary
far better than the medians do.

Usage: python3 scripts/ab_bench.py THREADS ROUNDS LABEL=BIN[:VAR=VALUE...]... -- MODEL[:SHAPE]...
(SHAPE, e.g. 1x3x640x640, for a model whose input size is free)
Example: python3 scripts/ab_bench.py 1 6 old=/tmp/old/edge-bench new=target/release/edge-bench -- a.onnx
"""
import json
import os
import statistics
import subprocess
import sys

def main():
    if "--" not in sys.argv or len(sys.argv) < 6:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    threads, rounds = int(sys.argv[1]), int(sys.argv[2])
    variants, models = sys.argv[3:split], sys.argv[split + 1:]
    for spec in models:
        model, _, shape = spec.partition(":")
        extra = ["--input-shape", shape] if shape else []
        medians = {v: [] for v in variants}
        minima = {v: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                label, rest = v.split("=", 1)
                binary, *assignments = rest.split(":")
                env = dict(os.environ)
                for a in assignments:
                    key, value = a.split("=", 1)
                    env[key] = value
                run = subprocess.run([binary, model, "--threads", str(threads), "--runs", "15",
                                      "--format", "json", *extra], capture_output=True, text=True, env=env)
                if run.returncode != 0:
                    sys.exit(f"ab_bench.py: {label} failed on {model}:\n{run.stderr}")
                plain = json.loads(run.stdout)["variants"][0]["plain"]
                medians[v].append(plain["median_ms"])
                minima[v].append(plain["min_ms"])
        base_median, base_min = statistics.median(medians[variants[0]]), min(minima[variants[0]])
        cells = []
        for v in variants:
            med, low = statistics.median(medians[v]), min(minima[v])
            cells.append(f"{v.split('=')[0]}: median {med:.3f} ms ({med / base_median:.3f}), "
                         f"min {low:.3f} ms ({low / base_min:.3f})")
        print(f"{os.path.basename(model)}, {threads} thread(s): " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
