"""COCO-style evaluation engines: hotcoco / xthotcoco (Rust) when installed, faster-coco-eval (C++) otherwise.

``hotcoco`` reproduces pycocotools' bbox and keypoint evaluation and ``xthotcoco`` adds xtcocotools' CrowdPose
protocol (``keypoints_crowd``: ``use_area=False``, AP(E/M/H) by crowdIndex) on top of it; both agree with
pycocotools / faster-coco-eval to 1e-9 on the project's test cases and reproduce the CrowdPose golden scores exactly
(tested). On 2,000 images (``benchmarks/coco_eval.py``) they measured 68× pycocotools for bbox (faster-coco-eval
6.7×), 30× for COCO keypoints, and 3.3× faster-coco-eval for CrowdPose. They are an optional extra
(``pip install kd-suite[fast-eval]``); without them faster-coco-eval, a required dependency, does the work.
``KD_SUITE_COCO_BACKEND`` forces one (``hotcoco`` or ``faster-coco-eval``; default ``auto``).

Every function returns plain numpy arrays, so callers do not depend on which engine ran.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BACKEND_ENV", "BACKENDS", "BboxEval", "bbox_eval", "coco_backend", "keypoint_eval"]

BACKEND_ENV = "KD_SUITE_COCO_BACKEND"
BACKENDS = ("hotcoco", "faster-coco-eval")


def coco_backend(protocol: str = "bbox") -> str:
    """The engine used for ``protocol`` (``"bbox"``, ``"coco"`` keypoints or ``"crowdpose"``).

    ``auto`` (default) picks hotcoco when it is installed (xthotcoco as well for CrowdPose), else faster-coco-eval.

    Raises:
        ValueError: ``KD_SUITE_COCO_BACKEND`` names an unknown engine.
        ImportError: it forces hotcoco but hotcoco (or, for CrowdPose, xthotcoco) is not installed.
    """
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower()
    if choice not in ("auto", *BACKENDS):
        raise ValueError(f"{BACKEND_ENV}={choice!r}: choose auto, {' or '.join(BACKENDS)}")
    needs = ["hotcoco"] + (["xthotcoco"] if protocol == "crowdpose" else [])
    available = all(importlib.util.find_spec(n) is not None for n in needs)
    if choice == "hotcoco" and not available:
        raise ImportError(f"{BACKEND_ENV}=hotcoco but {' and '.join(needs)} is not installed (kd-suite[fast-eval])")
    if choice == "faster-coco-eval" or not available:
        return "faster-coco-eval"
    return "hotcoco"


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the engines' summary tables and hotcoco's non-default-sigma notice."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass
class BboxEval:
    """Result of :func:`bbox_eval`.

    Attributes:
        stats: the 12 COCO summary stats (zeros when there were no results).
        precision: (T, R, K, A, M) precision array (``None`` when there were no results).
        cat_ids: category ids of the K axis.
        names: category id → name from the GT.
    """

    stats: np.ndarray
    precision: np.ndarray | None
    cat_ids: list[int]
    names: dict[int, str]


def _check_ids(results: list[dict[str, Any]], known: Sequence[int], gt: str) -> None:
    unknown = sorted({r["image_id"] for r in results} - set(known))
    if unknown:
        raise ValueError(f"results name image ids {unknown[:5]} that are not in the GT{gt}; check the GT file")


def bbox_eval(
    gt: dict[str, Any] | str | Path, results: list[dict[str, Any]], image_ids: Sequence[int] | None = None
) -> BboxEval:
    """COCO bbox evaluation (GT as a dict or a json path) on the engine :func:`coco_backend` picks.

    Raises:
        ValueError: ``results`` name image ids that the GT does not contain.
    """
    source = str(gt) if isinstance(gt, Path) else gt
    hot = coco_backend("bbox") == "hotcoco"
    with _quiet():
        if hot:
            import hotcoco

            coco_gt = hotcoco.COCO(source)
        else:
            from faster_coco_eval import COCO

            coco_gt = COCO(source)
        cats = coco_gt.loadCats(coco_gt.getCatIds())
        names = {int(c["id"]): c["name"] for c in cats}
        if not results:  # nothing detected: every score is 0 (avoids loadRes([]) corner cases)
            return BboxEval(np.zeros(12), None, sorted(names), names)
        _check_ids(results, coco_gt.getImgIds(), f" {source}" if isinstance(source, str) else "")
        if hot:
            evaluator = hotcoco.COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        else:
            from faster_coco_eval import COCOeval_faster

            evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, dtype=np.float64)
    precision = np.asarray(evaluator.eval["precision"], dtype=np.float64)
    return BboxEval(stats, precision, [int(c) for c in evaluator.params.catIds], names)


def keypoint_eval(
    gt_file: str | Path, results: list[dict[str, Any]], protocol: str, sigmas: Sequence[float]
) -> np.ndarray:
    """OKS keypoint AP of non-empty ``results`` against a GT json file.

    Args:
        gt_file: the GT json (CrowdPose needs the file: AP(E/M/H) re-reads its ``crowdIndex``).
        results: COCO keypoint results.
        protocol: ``"crowdpose"`` (9 stats: AP, AP50, AP75, AR, AR50, AR75, AP(E), AP(M), AP(H)) or ``"coco"``
            (10 stats: AP, AP50, AP75, AP(M), AP(L), AR, AR50, AR75, AR(M), AR(L)).
        sigmas: per-joint OKS sigmas.

    Raises:
        ValueError: ``results`` name image ids that the GT file does not contain.
    """
    path = str(gt_file)
    where = f" {path}"
    with _quiet():
        if coco_backend(protocol) == "hotcoco" and protocol == "crowdpose":
            from xthotcoco import COCO as XTCOCO
            from xthotcoco import COCOeval as XTCOCOeval

            gt = XTCOCO(path)
            _check_ids(results, [im["id"] for im in gt.dataset.get("images", [])], where)
            ev = XTCOCOeval(gt, results, "keypoints_crowd", list(sigmas), use_area=False)
        elif coco_backend(protocol) == "hotcoco":
            import hotcoco

            gt = hotcoco.COCO(path)
            _check_ids(results, gt.getImgIds(), where)
            ev = hotcoco.COCOeval(gt, gt.loadRes(results), "keypoints")
            ev.params.kpt_oks_sigmas = [float(s) for s in sigmas]
        else:
            from faster_coco_eval import COCO, COCOeval_faster

            gt = COCO(path)
            _check_ids(results, gt.getImgIds(), where)
            iou_type, extra = ("keypoints_crowd", {"use_area": False}) if protocol == "crowdpose" else ("keypoints", {})
            ev = COCOeval_faster(gt, gt.loadRes(results), iouType=iou_type, kpt_oks_sigmas=list(sigmas), **extra)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)
