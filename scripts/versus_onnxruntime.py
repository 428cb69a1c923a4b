#!/usr/bin/env python3
"""Side-by-side latency of Edgewise and onnxruntime on the same ONNX detectors.

For every model and thread count T it measures
  - onnxruntime FP32, in this process: one InferenceSession per (model, T)
    (CPUExecutionProvider, intra_op_num_threads=T, inter_op_num_threads=1),
    fed one fixed input (numpy default_rng(0), normal), warm-up runs, then
    --runs timed session.run calls;
  - Edgewise FP32, and Edgewise INT8 when the model has a QDQ twin made by
    `edge-convert quantize` (run on integer kernels: `--qdq integer`), with
    one `edge-bench FP32 [INT8] --threads T --format json` call per round, in
    which the two models take turns frame by frame;
  - with --tract-conv, Edgewise FP32 on tract's own convolutions too
    (`--float-conv tract`: the engine before Edgewise had its own), as a
    third runtime in the same rounds;
and reports the median of whole-frame (plain, unprofiled) times, in ms.

Why rounds and alternation: a machine's speed drifts (clock ramp-up, thermal
throttling, other jobs), and whatever runs first or during a slow spell would
carry that drift into the ratio. So each round runs every runtime once, the
order rotating per round so neither always goes first; the rounds of all
configurations are interleaved; and each runtime's result is the median over
rounds of its round medians. `--json` keeps every round median.

Usage:
  python3 scripts/versus_onnxruntime.py --model NAME=PATH[:SHAPE] ... [--int8 NAME=PATH ...]
      [--threads 1,2] [--rounds 3] [--runs 15] [--warmup 3]
      [--tract-conv] [--edge-bench target/release/edge-bench] [--markdown] [--json FILE]

SHAPE (e.g. 1x3x640x640) is needed when the model's input has dynamic
dimensions; an --int8 model runs at its --model's shape. Needs
`pip install onnxruntime numpy` and `cargo build --release --bins`.
"""

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.exit(f"versus_onnxruntime: {e}; `python3 -m pip install onnxruntime numpy` (scripts/setup.sh does)")

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "edgewise.bench/1"


def fail(message):
    sys.exit(f"versus_onnxruntime: error: {message}")


def parse_args():
    p = argparse.ArgumentParser(usage="%(prog)s --model NAME=PATH[:SHAPE] ... [options]",
                                description=__doc__.split("\nUsage:")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH[:SHAPE]",
                   help="an FP32 ONNX model; repeat for several")
    p.add_argument("--int8", action="append", default=[], metavar="NAME=PATH",
                   help="the QDQ (INT8) model of --model NAME, run by Edgewise only")
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per runtime (default 3)")
    p.add_argument("--runs", type=int, default=15, help="timed runs per round and runtime (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before them (default 3)")
    p.add_argument("--edge-bench", type=Path, default=ROOT / "target/release/edge-bench",
                   metavar="PATH", help="the binary (default: this checkout's release build)")
    p.add_argument("--tract-conv", action="store_true",
                   help="also run Edgewise FP32 on tract's own convolutions (--float-conv tract), "
                        "the engine before Edgewise had its own, in the same rounds")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every round median here")
    args = p.parse_args()
    try:
        args.threads = sorted({int(t) for t in args.threads.split(",")})
    except ValueError:
        p.error(f"--threads takes a list such as 1,2, not `{args.threads}`")
    if min(args.threads) < 1 or args.rounds < 1 or args.runs < 1 or args.warmup < 1:
        p.error("--threads, --rounds, --runs and --warmup must be at least 1")
    return args


def parse_models(model_specs, int8_specs):
    """{name: {"fp32": path, "shape": str or None, "int8": path or None}}, files checked."""
    models = {}
    for spec in model_specs:
        name, sep, rest = spec.partition("=")
        if not (sep and name and rest):
            fail(f"--model `{spec}`: expected NAME=PATH[:SHAPE]")
        path, shape = rest, None
        head, colon, tail = rest.rpartition(":")
        if colon and re.fullmatch(r"\d+(x\d+)*", tail):
            path, shape = head, tail
        if name in models:
            fail(f"--model `{name}` is given twice")
        models[name] = {"fp32": path, "shape": shape, "int8": None}
    for spec in int8_specs:
        name, sep, path = spec.partition("=")
        if not (sep and path):
            fail(f"--int8 `{spec}`: expected NAME=PATH")
        if name not in models:
            fail(f"--int8 `{name}` names no --model (given: {', '.join(models)})")
        models[name]["int8"] = path
    for name, m in models.items():
        for kind in ("fp32", "int8"):
            if m[kind] and not Path(m[kind]).is_file():
                fail(f"model file not found: {m[kind]} ({name}, {kind.upper()})")
    return models


def machine(edge_bench):
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                cpu = value.strip()
                break
    except OSError:
        pass
    version = subprocess.run([str(edge_bench), "--version"], capture_output=True, text=True).stdout
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}; "
            f"onnxruntime {ort.__version__}; {version.strip() or 'edge-bench'}")


class OrtRunner:
    """onnxruntime FP32 sessions, created once per (model, threads)."""

    def __init__(self):
        self.sessions = {}

    def shape(self, name, model, threads):
        """The input shape: the one given, else the model's static one."""
        session = self.session(model["fp32"], threads)
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            fail(f"{name}: expected one float input, found "
                 + ", ".join(f"{i.name} {i.type}" for i in inputs))
        declared = inputs[0].shape
        static = all(isinstance(d, int) and d > 0 for d in declared)
        if model["shape"]:
            dims = [int(d) for d in model["shape"].split("x")]
            if len(dims) != len(declared) or any(
                    isinstance(d, int) and d > 0 and d != g for d, g in zip(declared, dims)):
                fail(f"{name}: shape {model['shape']} does not fit the input {declared}")
            return model["shape"]
        if not static:
            fail(f"{name}: the input {inputs[0].name} has dynamic dimensions {declared}; "
                 f"give a shape: --model {name}={model['fp32']}:1x3x640x640")
        return "x".join(map(str, declared))

    def session(self, path, threads):
        key = (path, threads)
        if key not in self.sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self.sessions[key] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return self.sessions[key]

    def median_ms(self, path, shape, threads, runs, warmup):
        session = self.session(path, threads)
        dims = [int(d) for d in shape.split("x")]
        feed = {session.get_inputs()[0].name:
                np.random.default_rng(0).normal(size=dims).astype(np.float32)}
        for _ in range(warmup):
            session.run(None, feed)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - started) * 1e3)
        return statistics.median(times)


def edgewise_ms(edge_bench, model, shape, threads, runs, warmup, tract_conv=False):
    """One edge-bench call; {"fp32": ms, "int8": ms (if any)} plain medians. With
    `tract_conv`, FP32 alone on tract's convolutions."""
    paths, labels = [model["fp32"]], ["fp32"]
    if model["int8"] and not tract_conv:
        paths.append(model["int8"])
        labels.append("int8")
    command = [str(edge_bench), *paths, *(a for label in labels for a in ("--label", label)),
               "--input-shape", shape, "--threads", str(threads), "--runs", str(runs),
               "--warmup", str(warmup), "--max-seconds", "3600", "--qdq", "integer",
               "--top", "0", "--format", "json"]
    if tract_conv:
        command += ["--float-conv", "tract"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"edge-bench failed (exit {done.returncode}): {shlex.join(command)}\n{done.stderr.strip()}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as e:
        fail(f"edge-bench printed no JSON ({e}): {shlex.join(command)}\n{done.stdout[:500]}")
    if report.get("schema") != SCHEMA:
        fail(f"edge-bench wrote a `{report.get('schema')}` report; this script reads `{SCHEMA}`")
    variants = {v["label"]: v for v in report["variants"]}
    result = {}
    for label in labels:
        v = variants[label]
        if v["settings"]["runs"] < v["settings"]["runs_requested"]:
            print(f"warning: edge-bench ran {v['settings']['runs']} of {runs} runs of {v['model']}"
                  " (time budget)", file=sys.stderr)
        if label == "int8" and v["precision"] != "int8":
            print(f"warning: edge-bench ran {v['model']} as {v['precision']}, not int8", file=sys.stderr)
        result[label] = v["plain"]["median_ms"]
    return result


def measure(args, models, shapes, ort_runner):
    """{(name, threads): {"ort_fp32": [...], "edgewise_fp32": [...], "edgewise_int8": [...]}}."""
    rounds = {(n, t): {"ort_fp32": [], "edgewise_fp32": [], "edgewise_int8": [],
                       "tract_conv_fp32": []}
              for n in models for t in args.threads}
    for r in range(args.rounds):
        for (name, threads), out in rounds.items():
            model, shape = models[name], shapes[name]

            def run_ort():
                out["ort_fp32"].append(ort_runner.median_ms(
                    model["fp32"], shape, threads, args.runs, args.warmup))

            def run_edgewise():
                ms = edgewise_ms(args.edge_bench, model, shape, threads, args.runs, args.warmup)
                out["edgewise_fp32"].append(ms["fp32"])
                if "int8" in ms:
                    out["edgewise_int8"].append(ms["int8"])

            def run_tract_conv():
                ms = edgewise_ms(args.edge_bench, model, shape, threads, args.runs, args.warmup,
                                 tract_conv=True)
                out["tract_conv_fp32"].append(ms["fp32"])

            jobs = [run_ort, run_edgewise] + ([run_tract_conv] if args.tract_conv else [])
            turn = r % len(jobs)
            for job in jobs[turn:] + jobs[:turn]:
                job()
            print(f"round {r + 1}/{args.rounds} {name} {threads}t: "
                  + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in out.items() if v),
                  file=sys.stderr)
    return rounds


def table(args, rounds):
    med = {key: {k: statistics.median(v) if v else None for k, v in runs.items()}
           for key, runs in rounds.items()}
    scaling = 1 in args.threads
    header = ["model", "threads", "ort FP32 ms", "Edgewise FP32 ms", "FP32 ours/ort",
              "Edgewise INT8 ms", "INT8 speedup ort/ours"]
    if args.tract_conv:
        header[5:5] = ["FP32 on tract's conv ms", "tract's conv/ort"]
    if scaling:
        header += ["FP32 scaling 1t/Tt", "INT8 scaling 1t/Tt"]

    def ms(x):
        return "-" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}"

    rows = []
    for (name, threads), m in med.items():
        row = [name, str(threads), ms(m["ort_fp32"]), ms(m["edgewise_fp32"]),
               ratio(m["edgewise_fp32"], m["ort_fp32"]), ms(m["edgewise_int8"]),
               ratio(m["ort_fp32"], m["edgewise_int8"])]
        if args.tract_conv:
            row[5:5] = [ms(m["tract_conv_fp32"]), ratio(m["tract_conv_fp32"], m["ort_fp32"])]
        if scaling:
            one = med[(name, 1)]
            row += [ratio(one["edgewise_fp32"], m["edgewise_fp32"]),
                    ratio(one["edgewise_int8"], m["edgewise_int8"])]
        rows.append(row)
    if args.markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(r, widths)))
        lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines), med


def main():
    args = parse_args()
    models = parse_models(args.model, args.int8)
    if not args.edge_bench.is_file() or not os.access(args.edge_bench, os.X_OK):
        fail(f"edge-bench not found at {args.edge_bench}; build it first: cargo build --release --bins")
    command = shlex.join(["python3", *sys.argv])
    host = machine(args.edge_bench)
    ort_runner = OrtRunner()
    shapes = {name: ort_runner.shape(name, m, args.threads[0]) for name, m in models.items()}

    settings = (f"{args.rounds} rounds x {args.runs} timed runs after {args.warmup} warm-up, "
                f"median over rounds of round medians; shapes: "
                + ", ".join(f"{n} {s}" for n, s in shapes.items()))
    if args.markdown:
        print(f"Command: `{command}`\n\nMachine: {host}\n\nSettings: {settings}\n", flush=True)
    else:
        print(f"command: {command}\nmachine: {host}\nsettings: {settings}\n", flush=True)

    rounds = measure(args, models, shapes, ort_runner)
    text, med = table(args, rounds)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "machine": host, "threads": args.threads, "rounds": args.rounds,
            "runs": args.runs, "warmup": args.warmup,
            "results": [{"model": name, "fp32": models[name]["fp32"], "int8": models[name]["int8"],
                         "shape": shapes[name], "threads": threads,
                         "round_medians_ms": runs, "median_ms": med[(name, threads)]}
                        for (name, threads), runs in rounds.items()],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
