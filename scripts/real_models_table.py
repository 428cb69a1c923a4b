#!/usr/bin/env python3
"""The real-model table of docs/benchmarks.md: for every fetched real model,
per-stage FP32 and INT8 latency (one edge-bench run, the two models taking
turns frame by frame), INT8 fidelity against FP32 on the held-back photos,
and MACs and time after pruning backbone and neck by 30%.

Every number comes from the project's own commands, run here:
  edge-convert quantize MODEL --calib models/.cache/calibration
      --eval models/.cache/held-back -o DIR/NAME_int8.onnx --json
  edge-bench MODEL DIR/NAME_int8.toml --image PHOTO --threads 1 --runs N --format json
  edge-convert prune MODEL --ratio backbone=0.3,neck=0.3 --bench-runs N -o ... --json

Usage: python3 scripts/real_models_table.py [--runs 10] [--out target/real]
       [--only NAME ...]  (needs `cargo build --release --bins` and
       `python3 models/fetch.py`)
       python3 scripts/real_models_table.py --render target/real/table.json
The measurements are kept in OUT/table.json as each model finishes; --render
prints the table from such a file.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target/release"

# name, input shape (None: the manifest's size), photo benched on.
MODELS = [
    ("yolox_ddddocr", None, "text.png"),
    ("yolov8n_nudenet", None, "astronaut.png"),
    ("yolov8n_doclaynet", None, "page.png"),
    ("yolo26n_isbnx", "1x3x640x640", "page.png"),
    ("picodet_layout_cdla", None, "page.png"),
    ("scrfd", None, "astronaut.png"),
    ("retinaface_mnet025", "1x3x640x640", "astronaut.png"),
    ("ppocr_v4_det", None, "page.png"),
    ("ppocr_v5_det", "1x3x640x640", "page.png"),
    ("ppocr_v6_det_tiny", "1x3x640x640", "page.png"),
]


def run_json(cmd: list) -> dict:
    print("$", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(str(c) for c in cmd)}\n{result.stderr}")
    return json.loads(result.stdout)


def stage_ms(variant: dict) -> dict:
    return {s["stage"]: s["time"]["median_ms"] for s in variant["stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "target/real")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--render", type=Path, help="print the table of a saved table.json")
    args = parser.parse_args()
    if args.render:
        render(json.loads(args.render.read_text()))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, shape, photo in MODELS:
        if args.only and name not in args.only:
            continue
        manifest = f"models/{name}.toml"
        shape_args = ["--input-shape", shape] if shape else []
        int8 = args.out / f"{name}_int8.onnx"
        q = run_json([BIN / "edge-convert", "quantize", manifest, "--calib", "models/.cache/calibration",
                      "--eval", "models/.cache/held-back", "-o", int8, "--json", *shape_args])
        integer = next(f for f in q["fidelity"] if f["qdq"] == "integer")
        det = integer["detections"]
        bench = run_json([BIN / "edge-bench", manifest, int8.with_suffix(".toml"), "--image",
                          f"models/.cache/photos/{photo}", "--threads", "1", "--warmup", "2",
                          "--runs", str(args.runs), "--format", "json", *shape_args])
        fp32, q8 = (stage_ms(v) for v in bench["variants"][:2])
        frame = [v["plain"]["median_ms"] for v in bench["variants"][:2]]
        pruned = args.out / f"{name}_pruned.onnx"
        p = run_json([BIN / "edge-convert", "prune", manifest, "--ratio", "backbone=0.3,neck=0.3",
                      "--bench-runs", str(args.runs), "-o", pruned, "--json", *shape_args])
        macs_before = sum(s["macs_before"] for s in p["report"]["stages"])
        macs_after = sum(s["macs_after"] for s in p["report"]["stages"])
        ms_before = sum(s["ms_before"] for s in p["report"]["stages"])
        ms_after = sum(s["ms_after"] for s in p["report"]["stages"])
        rows.append({
            "name": name,
            "shape": q["report"]["shape"],
            "fp32": fp32,
            "int8": q8,
            "frame": frame,
            "f1": det["f1"],
            "map": det["map"],
            "boxes": det["reference"],
            "macs": (macs_before, macs_after),
            "ms": (ms_before, ms_after),
        })
        saved = args.out / "table.json"
        saved.write_text(json.dumps(rows, indent=1))
    render(rows)


def render(rows: list) -> None:
    print("| model | input | backbone FP32 / INT8 | neck FP32 / INT8 | head FP32 / INT8 | frame FP32 / INT8 | INT8 F1 | INT8 mAP@.5:.95 | FP32 boxes | pruned 30%: MACs | pruned: layers ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cell = lambda s: f"{r['fp32'].get(s, 0):.1f} / {r['int8'].get(s, 0):.1f}"
        shape = "x".join(str(d) for d in r["shape"][-2:]) if isinstance(r["shape"], list) else r["shape"]
        m = "n/a" if r["map"] is None else f"{r['map']['map50_95']:.3f}"
        (mb, ma), (tb, ta) = r["macs"], r["ms"]
        print(f"| {r['name']} | {shape} | {cell('backbone')} | {cell('neck')} | {cell('head')} | "
              f"{r['frame'][0]:.1f} / {r['frame'][1]:.1f} | {r['f1']:.3f} | {m} | {r['boxes']} | "
              f"{mb / 1e9:.2f} G -> {ma / 1e9:.2f} G ({100 * (ma - mb) / mb:+.0f}%) | {tb:.1f} -> {ta:.1f} |")


if __name__ == "__main__":
    main()
