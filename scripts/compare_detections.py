#!/usr/bin/env python3
"""Checks that two edge-run outputs (JSON lines) agree: the same detections in
the same order, box corners and polygon points within --box-tol pixels,
scores within --score-tol. Used to compare an ARM build (under qemu) with x86.

Usage: compare_detections.py A.jsonl B.jsonl [--box-tol 1] [--score-tol 1e-3]
"""

import argparse
import json
import sys


def points(d):
    b = d["box"]
    pts = [(b["x1"], b["y1"]), (b["x2"], b["y2"])]
    pts += [tuple(p) for p in d.get("polygon", [])] + [tuple(p) for p in d.get("keypoints", [])]
    return pts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--box-tol", type=float, default=1.0)
    parser.add_argument("--score-tol", type=float, default=1e-3)
    args = parser.parse_args()
    a = [json.loads(line) for line in open(args.a) if line.strip()]
    b = [json.loads(line) for line in open(args.b) if line.strip()]
    if not a:
        print(f"compare: {args.a} has no detection: nothing to compare", file=sys.stderr)
        return 1
    if len(a) != len(b):
        print(f"compare: {len(a)} detections in {args.a}, {len(b)} in {args.b}", file=sys.stderr)
        return 1
    worst_box, worst_score = 0.0, 0.0
    for i, (x, y) in enumerate(zip(a, b)):
        if (x["image"], x["label"], x["class_id"]) != (y["image"], y["label"], y["class_id"]):
            print(f"compare: detection {i} differs: {x} vs {y}", file=sys.stderr)
            return 1
        px, py = points(x), points(y)
        if len(px) != len(py):
            print(f"compare: detection {i} has different geometry: {x} vs {y}", file=sys.stderr)
            return 1
        worst_box = max([worst_box] + [max(abs(p[0] - q[0]), abs(p[1] - q[1])) for p, q in zip(px, py)])
        worst_score = max(worst_score, abs(x["score"] - y["score"]))
    print(f"compare: {len(a)} detections agree; largest box difference {worst_box:.3f} px, score {worst_score:.2e}")
    if worst_box > args.box_tol or worst_score > args.score_tol:
        print(f"compare: beyond tolerance (box {args.box_tol} px, score {args.score_tol})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
