#!/usr/bin/env bash
# Prune, then quantize, PP-OCRv4 det (docs/benchmarks.md, "Pruning then
# quantizing"): the pruned model (least-squares recovery on the calibration
# photos) quantized to INT8 by edge-convert, its fidelity against the
# original on the held-back photos, and its latency beside the original,
# the unpruned INT8 model and onnxruntime's FP32 and INT8 (its own
# `quantize_static` on the same calibration photos), all on one thread.
#
#   bash scripts/prune-quantize.sh [RATIO] [SHAPE]
#
# RATIO defaults to backbone=0.05,neck=0.3 (the largest with F1 >= 0.95 in
# "Pruning: fidelity"), SHAPE to 1x3x640x640. Needs the fetched model and
# photos (python3 models/fetch.py), onnxruntime (scripts/setup.sh) and a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."

ratio=${1:-backbone=0.05,neck=0.3}
shape=${2:-1x3x640x640}
out=target/prune-quantize
mkdir -p "$out"
convert=./target/release/edge-convert
bench=./target/release/edge-bench
[ -x "$convert" ] && [ -x "$bench" ] || cargo build --release --bin edge-convert --bin edge-bench
calib=models/.cache/calibration
eval=models/.cache/held-back
orig=models/.cache/ch_PP-OCRv4_det_infer.onnx

$convert prune models/ppocr_v4_det.toml --ratio "$ratio" --criterion activation \
    --calib $calib --input-shape "$shape" -o $out/pruned.onnx >$out/prune.txt
$convert quantize $out/pruned.toml --calib $calib --input-shape "$shape" --no-cache \
    -o $out/pruned_int8.onnx >$out/quantize_pruned.txt
$convert quantize models/ppocr_v4_det.toml --calib $calib --input-shape "$shape" --no-cache \
    -o $out/int8.onnx >$out/quantize.txt
$convert preprocess models/ppocr_v4_det.toml $calib --input-shape "$shape" -o $out/calib.bin >/dev/null
python3 tests/fixtures/ort_quantize.py $orig $out/ort_int8.onnx $out/ort_ref.bin --shape "$shape" \
    --calib-tensors $out/calib.bin >/dev/null

echo "## Fidelity against the original, $(ls $eval | wc -l) held-back photos"
for m in pruned pruned_int8 int8 ort_int8; do
    echo "### $m"
    $convert compare models/ppocr_v4_det.toml $out/$m.onnx --eval $eval --input-shape "$shape" --threads 1
done

echo "## edge-bench, 1 thread (INT8 on integer kernels)"
$bench models/ppocr_v4_det.toml $out/pruned.toml $out/pruned_int8.toml $out/int8.toml \
    --label fp32 --label pruned --label pruned-int8 --label int8 --qdq integer \
    --input-shape "$shape" --threads 1 --runs 10 --warmup 2 --top 0 --format markdown

echo "## onnxruntime, 1 thread, models taking turns"
python3 tests/fixtures/ort_latency.py $orig $out/ort_int8.onnx $out/pruned.onnx $out/pruned_int8.onnx \
    $out/int8.onnx --shape "$shape" --threads 1 --runs 20
