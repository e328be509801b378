"""OKS-based keypoint AP: CrowdPose (``keypoints_crowd``, AP(E/M/H)) and COCO keypoints.

The engine is xthotcoco / hotcoco when the ``fast-eval`` extra is installed, else faster-coco-eval
(:mod:`.coco_backend`; both reproduce the CrowdPose golden scores and agree to 1e-9, tested).

CrowdPose protocol (docs/datasets-and-metrics.md §2.3; crowdposetools / xtcocotools, reproduced by both engines):
OKS with the 14 CrowdPose sigmas and ``s² = 0.53·w·h`` of the GT box (no ``area`` field: ``use_area=False``),
maxDets 20, GT with ``iscrowd`` or ``num_keypoints == 0`` ignored, AP(E/M/H) from images with crowdIndex < 0.2,
[0.2, 0.8) and ≥ 0.8. The split re-reads the GT json, so the GT is always opened **from its file path**.
COCO keypoints: the standard 17-joint OKS protocol with the GT ``area``.

Results use the COCO format: ``{"image_id", "category_id": 1, "keypoints": [x, y, s] * K, "score"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data.schema import CROWDPOSE_SIGMAS
from .coco_backend import keypoint_eval

__all__ = [
    "COCO_SIGMAS",
    "CROWDPOSE_SIGMAS",
    "evaluate_coco_files",
    "evaluate_crowdpose_files",
    "evaluate_keypoint_results",
    "keypoint_results",
]

#: OKS sigmas of the 17 COCO joints (cocoapi ``COCOeval`` keypoint params)
COCO_SIGMAS: tuple[float, ...] = tuple(
    v / 10.0
    for v in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)
_CROWDPOSE_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)")
_COCO_KEYS = ("AP", "AP50", "AP75", "AP(M)", "AP(L)", "AR", "AR50", "AR75", "AR(M)", "AR(L)")


def keypoint_results(
    keypoints: np.ndarray, image_ids: np.ndarray, vis_threshold: float = 0.2, box_scores: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """COCO-format results from (N, K, 3) original-pixel ``[x, y, confidence]`` predictions.

    The instance score is mmpose's top-down rescoring: the mean confidence of the joints above ``vis_threshold``
    (0 if none) times the box score (1 for GT boxes).
    """
    keypoints = np.asarray(keypoints, np.float64)
    conf = keypoints[..., 2]  # (N, K)
    above = conf > vis_threshold
    mean = np.where(above.any(1), (conf * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)  # (N,)
    if box_scores is not None:
        mean = mean * np.asarray(box_scores, np.float64)
    return [
        {"image_id": int(i), "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(s)}
        for i, k, s in zip(image_ids, keypoints, mean)
    ]


def evaluate_keypoint_results(gt_file: str | Path, results: list[dict[str, Any]], protocol: str) -> dict[str, float]:
    """Score COCO-format keypoint results against a GT json file.

    Args:
        gt_file: CrowdPose or COCO keypoints GT json (opened from the path; CrowdPose needs it for AP(E/M/H)).
        results: COCO results (see :func:`keypoint_results`).
        protocol: ``"crowdpose"`` or ``"coco"``.

    Returns:
        ``AP, AP50, AP75, AR, AR50, AR75, AP(E), AP(M), AP(H)`` (CrowdPose) or ``AP, AP50, AP75, AP(M), AP(L), AR,
        AR50, AR75, AR(M), AR(L)`` (COCO), on the 0–1 scale.
    """
    if protocol not in ("crowdpose", "coco"):
        raise ValueError(f"protocol must be 'crowdpose' or 'coco', got {protocol!r}")
    gt_file = Path(gt_file)
    if not gt_file.is_file():
        raise FileNotFoundError(f"keypoint GT {gt_file} not found; pass the dataset's val annotation json")
    if not results:
        raise ValueError("no keypoint predictions to evaluate (the results list is empty)")
    num_joints = len(results[0]["keypoints"]) // 3
    sigmas = CROWDPOSE_SIGMAS if protocol == "crowdpose" else COCO_SIGMAS
    if num_joints != len(sigmas):
        raise ValueError(f"{protocol} keypoint AP needs {len(sigmas)} joints per prediction, got {num_joints}")
    stats = keypoint_eval(gt_file, results, protocol, sigmas)
    keys = _CROWDPOSE_KEYS if protocol == "crowdpose" else _COCO_KEYS
    return {k: float(v) for k, v in zip(keys, stats)}


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"keypoint predictions {path} not found")
    try:
        results = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid json ({e})") from e
    if not isinstance(results, list) or not all(isinstance(r, dict) and "keypoints" in r for r in results):
        raise ValueError(f"{path}: expected a COCO results list of {{image_id, category_id, keypoints, score}}")
    return results


def evaluate_crowdpose_files(gt: Path, pred: Path, **options: object) -> dict[str, float]:
    """``kd-suite evaluate --format crowdpose``: COCO results json vs a CrowdPose GT json."""
    if options:
        raise ValueError(f"crowdpose evaluation takes no options, got {sorted(options)}")
    return evaluate_keypoint_results(gt, _read_results(pred), "crowdpose")


def evaluate_coco_files(gt: Path, pred: Path, **options: object) -> dict[str, float]:
    """``kd-suite evaluate --format coco-keypoints``: COCO results json vs a COCO person-keypoints GT json."""
    if options:
        raise ValueError(f"coco-keypoints evaluation takes no options, got {sorted(options)}")
    return evaluate_keypoint_results(gt, _read_results(pred), "coco")
