"""``kd-suite evaluate --format F --gt PATH --pred PATH``: score prediction files with the official protocol.

Each format is one function ``evaluate_files(gt: Path, pred: Path, **options) -> dict[str, float | dict]`` in the
metrics module of its task: the same code that validation runs. The JSON printed is strict: an undefined score (NaN,
e.g. the AP of a class with no ground truth) is written as ``null``; its ``unit`` key gives the scores' unit
(fractions; PCKh in percent).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: format → (module, function, one-line description)
FORMATS = {
    "lip": ("kd_suite.metrics.parsing", "evaluate_files", "LIP label PNG folder vs LIP GT folder (mIoU, pixel acc)"),
    "mpii": ("kd_suite.metrics.pckh", "evaluate_files", "MPII json of per-person joints vs gt_valid.mat (PCKh)"),
    "crowdpose": ("kd_suite.metrics.keypoints", "evaluate_crowdpose_files", "COCO results json vs CrowdPose GT (AP)"),
    "coco-keypoints": ("kd_suite.metrics.keypoints", "evaluate_coco_files", "COCO results json vs COCO kpt GT (AP)"),
    "voc": ("kd_suite.metrics.detection", "evaluate_voc_files", "COCO-style results json vs a VOCdevkit split (mAP)"),
    "coco-bbox": ("kd_suite.metrics.detection", "evaluate_coco_files", "COCO results json vs COCO GT json (mAP)"),
}


#: the unit of the scores each format's evaluator returns, as its official toolkit reports them
UNITS = {"mpii": "percent (PCKh tables, as the MPII toolkit)"}


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf floats (e.g. the AP of a class without ground truth) as ``None``, so it is valid JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kd-suite evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="ground-truth / prediction format")
    p.add_argument("--gt", required=True, type=Path, help="ground truth file or folder")
    p.add_argument("--pred", required=True, type=Path, help="prediction file or folder")
    p.add_argument("--split", default=None, help="dataset split where the format needs one (voc: test)")
    p.add_argument(
        "--classes", default=None, help="voc: comma-separated class names in index order (default: VOC's 20)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for path in (args.gt, args.pred):
        if not path.exists():
            print(f"kd-suite evaluate: {path} does not exist", file=sys.stderr)
            return 2
    module, func, _ = FORMATS[args.format]
    options = {"split": args.split} if args.split else {}
    if args.classes and args.format == "voc":
        options["class_names"] = args.classes
    try:
        result = getattr(importlib.import_module(module), func)(args.gt, args.pred, **options)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"kd-suite evaluate: {e}", file=sys.stderr)
        return 2
    if isinstance(result, dict):  # each official toolkit's own convention (kd-suite logs and prints percent)
        result = {"unit": UNITS.get(args.format, "fraction in [0, 1]"), **result}
    text = json.dumps(json_safe(result), indent=2, allow_nan=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0
