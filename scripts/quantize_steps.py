#!/usr/bin/env python3
"""What each step of `edge-convert quantize` buys, on an evaluation set, next
to onnxruntime's quantizer given the same calibration photos.

For one model (its manifest), quantizes it once per step, each adding one
thing to the one before:

  minmax                          --method minmax --no-bias-correction
  mse, ranges on values           --range-on-values --no-bias-correction
  + ranges through the activation --no-bias-correction
  + bias correction (default)     (no flags: today's default)
  + learned rounding              --reconstruct-seconds S   (with --reconstruct-seconds)
  + mixed precision               --max-drop X              (with --max-drop)

then compares each INT8 model with the FP32 original on the held-back photos
(`edge-convert compare --eval DIR --qdq integer --json`: detections F1 and
mAP@0.5:0.95 against the FP32 model's, with 95% bootstrap intervals over the
photos, and the first output's SNR) and, with --bench-runs N, times it
(`edge-bench --threads 1 --runs N`, plain median; one edge-bench call per
step, so read speed differences under 5% as noise). With --ort it also
quantizes the model with onnxruntime's `quantize_static` (QDQ, weights per
channel, MinMax, on the same photos preprocessed by `edge-convert
preprocess`; graphs below opset 13 raised to 13 first, since onnxruntime
writes per-channel DequantizeLinear) and runs that model the same way in our
runtime.

Usage:
  python3 scripts/quantize_steps.py models/yolox_ddddocr.toml --eval models/.cache/eval/person \\
      [--calib models/.cache/calibration] [--reconstruct-seconds 120] [--max-drop 0.03] \\
      [--ort] [--bench-runs 10] [--input-shape 1x3x320x320] [--out-dir target/steps/NAME] [--json FILE]

Prints a Markdown table; --json keeps every figure.
"""

import argparse
import json
import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"  # --bin-dir changes it


def fail(message):
    sys.exit(f"quantize_steps: {message}")


def run(command, what):
    """Runs `command`; its stdout, or a clear failure naming `what`."""
    started = time.monotonic()
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{what} failed (exit {done.returncode}): {shlex.join(map(str, command))}\n"
             f"{done.stderr.strip()[-2000:]}")
    return done.stdout, time.monotonic() - started


def parse_args():
    global BIN
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", type=Path, help="the model's manifest (models/*.toml)")
    p.add_argument("--eval", type=Path, required=True, help="folder of held-back photos")
    p.add_argument("--calib", type=Path, default=ROOT / "models/.cache/calibration",
                   help="folder of calibration photos (default: the fetched ones)")
    p.add_argument("--reconstruct-seconds", type=float, default=0.0,
                   help="add a learned-rounding step with this budget")
    p.add_argument("--max-drop", type=float, help="add a mixed-precision step with this F1 drop")
    p.add_argument("--ort", action="store_true", help="add onnxruntime's quantize_static")
    p.add_argument("--bench-runs", type=int, default=0,
                   help="time each model with edge-bench on this many frames (0: not timed)")
    p.add_argument("--threads", type=int, default=2, help="threads for quantize and compare")
    p.add_argument("--input-shape", help="input shape, e.g. 1x3x320x320 (default: the manifest's size)")
    p.add_argument("--out-dir", type=Path, help="where the models go (default: target/steps/NAME)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every figure here")
    p.add_argument("--bin-dir", type=Path, default=BIN, help="where edge-convert and edge-bench are")
    args = p.parse_args()
    BIN = args.bin_dir
    for tool in ["edge-convert"] + (["edge-bench"] if args.bench_runs > 0 else []):
        if not (BIN / tool).is_file():
            fail(f"{BIN / tool} not found: build it first (cargo build --release --bins)")
    for folder, flag in ((args.eval, "--eval"), (args.calib, "--calib")):
        if not folder.is_dir():
            fail(f"{flag} {folder} is not a folder (python3 models/fetch.py fetches the photos)")
    if not args.manifest.is_file():
        fail(f"{args.manifest} is not a file: give a model manifest (models/*.toml)")
    return args


def steps(args):
    rows = [
        ("minmax", ["--method", "minmax", "--no-bias-correction"]),
        ("mse, ranges on values", ["--method", "mse", "--range-on-values", "--no-bias-correction"]),
        ("+ ranges through the activation", ["--method", "mse", "--no-bias-correction"]),
        ("+ bias correction (default)", []),
    ]
    if args.reconstruct_seconds > 0:
        rows.append((f"+ learned rounding, {args.reconstruct_seconds:g} s",
                     ["--reconstruct-seconds", args.reconstruct_seconds]))
    if args.max_drop is not None:
        extra = ["--reconstruct-seconds", args.reconstruct_seconds] if args.reconstruct_seconds > 0 else []
        rows.append((f"+ mixed precision, --max-drop {args.max_drop:g}",
                     extra + ["--max-drop", args.max_drop]))
    return rows


def shape_flags(args):
    return ["--input-shape", args.input_shape] if args.input_shape else []


def fidelity(args, manifest, candidate):
    """The figures of `candidate` against the manifest's model, and the path
    of that model as edge-convert resolved it."""
    command = [BIN / "edge-convert", "compare", manifest, candidate, "--eval", args.eval,
               "--qdq", "integer", "--threads", args.threads, "--json"] + shape_flags(args)
    out, _ = run(command, "edge-convert compare")
    report = json.loads(out)
    entries = report.get("fidelity") or []
    if not entries:
        fail(f"edge-convert compare reported nothing for {candidate}")
    entry = entries[0]
    det = entry.get("detections") or {}
    tensors = entry.get("tensors") or []
    outputs = [t for t in tensors if t.get("role") == "output"] or tensors
    return report.get("model"), {
        "f1": det.get("f1"),
        # One photo has no interval.
        "f1_interval": [(det.get("f1_interval") or {}).get(k) for k in ("low", "high")],
        "map50_95": (det.get("map") or {}).get("map50_95"),
        "map_interval": [(det.get("map50_95_interval") or {}).get(k) for k in ("low", "high")],
        "reference_detections": det.get("reference"),
        "photos": entry.get("photos"),
        "snr_db": outputs[0].get("snr_db") if outputs else None,
    }


def bench_ms(args, model):
    if args.bench_runs <= 0:
        return None
    out, _ = run([BIN / "edge-bench", model, "--threads", 1, "--runs", args.bench_runs,
                  "--top", 0, "--format", "json"] + shape_flags(args), "edge-bench")
    return json.loads(out)["variants"][0]["plain"]["median_ms"]


def ort_model(args, onnx_path, out_dir):
    """onnxruntime's quantize_static of `onnx_path` on the same photos; the
    path written."""
    try:
        import onnx
        from onnx import version_converter
    except ImportError as e:
        fail(f"--ort needs onnx and onnxruntime ({e}): python3 -m pip install onnx onnxruntime")
    calib = out_dir / "calib.bin"
    run([BIN / "edge-convert", "preprocess", args.manifest, args.calib, "-o", calib] + shape_flags(args),
        "edge-convert preprocess")
    # The shape the photos were preprocessed at: the first tensor's rank and dims.
    with open(calib, "rb") as f:
        (rank,) = struct.unpack("<I", f.read(4))
        dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
    shape = "x".join(map(str, dims))
    model = onnx.load(str(onnx_path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    source = onnx_path
    if opset < 13:
        source = out_dir / "opset13.onnx"
        onnx.save(version_converter.convert_version(model, 13), str(source))
    out = out_dir / "ort.onnx"
    run([sys.executable, ROOT / "tests/fixtures/ort_quantize.py", source, out, out_dir / "ort_reference.bin",
         "--shape", shape, "--calib-tensors", calib], "onnxruntime quantize_static")
    return out


def interval(pair):
    if None in pair:
        return ""
    return f" [{pair[0]:.3f}, {pair[1]:.3f}]"


def cell(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main():
    args = parse_args()
    name = args.manifest.stem
    out_dir = args.out_dir or ROOT / "target/steps" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    original = None
    fp32_ms = bench_ms(args, args.manifest)
    for i, (label, flags) in enumerate(steps(args)):
        out = out_dir / f"step{i}.onnx"
        print(f"{label}: quantizing", file=sys.stderr)
        _, seconds = run([BIN / "edge-convert", "quantize", args.manifest, "--calib", args.calib,
                          "-o", out, "--threads", args.threads] + shape_flags(args) + flags,
                         "edge-convert quantize")
        row = {"step": label, "flags": [str(f) for f in flags], "quantize_seconds": seconds}
        original, figures = fidelity(args, args.manifest, out)
        row.update(figures)
        row["int8_ms"] = bench_ms(args, out.with_suffix(".toml"))
        rows.append(row)
    if args.ort:
        print("onnxruntime quantize_static: quantizing", file=sys.stderr)
        out = ort_model(args, original, out_dir)
        row = {"step": "onnxruntime quantize_static (QDQ, per channel, MinMax)", "flags": []}
        row.update(fidelity(args, args.manifest, out)[1])
        row["int8_ms"] = None
        rows.append(row)

    photos = rows[0].get("photos")
    reference = rows[0].get("reference_detections")
    print(f"{name}: INT8 against FP32 on {photos} photos of {args.eval} ({reference} FP32 detections), "
          f"calibrated on {args.calib}, run on our integer kernels; F1 and mAP with 95% bootstrap intervals")
    print()
    timed = args.bench_runs > 0
    head = "| step | F1 | mAP@0.5:0.95 | output SNR |" + (" INT8 ms, 1 thread |" if timed else "")
    print(head)
    print("|---|---|---|---:|" + ("---:|" if timed else ""))
    for r in rows:
        line = (f"| {r['step']} | {cell(r['f1'])}{interval(r['f1_interval'])} | "
                f"{cell(r['map50_95'])}{interval(r['map_interval'])} | {cell(r['snr_db'], 1)} dB |")
        if timed:
            line += f" {cell(r['int8_ms'], 1)} |"
        print(line)
    if timed:
        print(f"\nFP32 (ours), 1 thread: {cell(fp32_ms, 1)} ms")
    if args.json:
        args.json.write_text(json.dumps({"model": name, "eval": str(args.eval), "calib": str(args.calib),
                                         "fp32_ms": fp32_ms, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
