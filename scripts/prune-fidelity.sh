#!/usr/bin/env bash
# Fidelity of pruned PP-OCRv4 det against the unpruned model, per ratio and
# recovery: detection F1 and mAP on the held-back photos, and the cosine of
# the text map. Prints a Markdown table (docs/benchmarks.md, "Pruning:
# fidelity ...").
#
#   bash scripts/prune-fidelity.sh [SHAPE] [CRITERION] [RATIO ...]
#
# SHAPE defaults to 1x3x640x640, CRITERION to activation; the ratios default
# to a sweep over backbone and neck. Needs the fetched model and photos
# (python3 models/fetch.py) and a release build of edge-convert.
set -euo pipefail
cd "$(dirname "$0")/.."

shape=${1:-1x3x640x640}
criterion=${2:-activation}
shift $(($# < 2 ? $# : 2))
ratios=("$@")
if ((${#ratios[@]} == 0)); then
    ratios=(backbone=0.05 backbone=0.1 backbone=0.2 neck=0.3 neck=0.5
        backbone=0.05,neck=0.3 backbone=0.1,neck=0.3 backbone=0.3,neck=0.3)
fi
convert=target/release/edge-convert
[ -x "$convert" ] || cargo build --release --bin edge-convert
out=target/prune-fidelity
mkdir -p "$out"

echo "| ratio | recovery | F1 | precision | recall | mAP@0.5 | mAP@0.5:0.95 | text map cosine | backbone+neck MACs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for ratio in "${ratios[@]}"; do
    for recovery in none bias least-squares; do
        case $recovery in
        none) flags=(--no-reconstruct) ;;
        *) flags=(--recover "$recovery") ;;
        esac
        "$convert" prune models/ppocr_v4_det.toml --ratio "$ratio" --criterion "$criterion" \
            --input-shape "$shape" --calib models/.cache/calibration --eval models/.cache/held-back \
            "${flags[@]}" -o "$out/pruned.onnx" --json 2>/dev/null >"$out/report.json"
        python3 - "$ratio" "$recovery" "$out/report.json" <<'EOF'
import json, sys
ratio, recovery, path = sys.argv[1:]
d = json.load(open(path))
f = d["fidelity"][0]
det = f["detections"]
cos = next(t["cosine"] for t in f["tensors"] if t["role"] == "output")
stages = {s["stage"]: s for s in d["report"]["stages"]}
before = sum(stages[s]["macs_before"] for s in ("backbone", "neck"))
after = sum(stages[s]["macs_after"] for s in ("backbone", "neck"))
print(f"| {ratio} | {recovery} | {det['f1']:.3f} | {det['precision']:.3f} | {det['recall']:.3f} "
      f"| {det['map']['map50']:.3f} | {det['map']['map50_95']:.3f} | {cos:.4f} | {after / before - 1:+.1%} |")
EOF
    done
done
