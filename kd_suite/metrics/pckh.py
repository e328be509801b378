"""MPII PCKh (the Python reference protocol of HRNet ``lib/dataset/mpii.py::evaluate`` and mmpose ``MpiiPCKAccuracy``).

Protocol (docs/datasets-and-metrics.md §2.2): head size = 0.6 × the diagonal of the annotated head box; a joint is
correct when ``‖pred − gt‖ / head_size ≤ thr``; joints missing in the GT are excluded. Reported columns: Head =
head_top (9) only, Shoulder/Elbow/Wrist/Hip/Knee/Ankle = mean of the left and right joints' PCKh, Mean = all joints
pooled except pelvis (6) and thorax (7) (upper_neck is inside Mean but has no column), Mean@0.1 = the same at
threshold 0.10 (mmpose; HRNet's ``pckAll[11]`` is really 0.11). Values are percentages (0–100), as in both codes.
The official MATLAB toolkit differs (its "Head" averages upper_neck and head_top); it is not reproduced.

``evaluate_files`` reads the GT from ``gt_valid.mat`` (``mpii_gt_val.mat``) and predictions from a json list of
per-person joints in GT order, 0-based pixels (``[[x, y], ...]``, ``[[x, y, score], ...]`` or ``{"joints": ...}``);
like HRNet it adds 1 to the predictions before comparing them with the 1-based MATLAB coordinates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "SC_BIAS", "evaluate_files", "pckh_per_joint", "pckh_table", "read_gt_valid"]

SC_BIAS = 0.6  # official util_get_head_size.m: 0.8 * 0.75
#: reported column → MPII joint indices (HRNet's names)
COLUMNS: dict[str, tuple[int, ...]] = {
    "Head": (9,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
MASKED = (6, 7)  # pelvis, thorax
NUM_JOINTS = 16


def pckh_per_joint(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint PCKh in percent and the per-joint count of labelled GT joints.

    Shape:
        pred, gt: (N, K, 2); visible: (N, K) (nonzero = labelled); head_size: (N,) → (K,), (K,).
        A joint with no labelled instance gets NaN.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    vis = np.asarray(visible) > 0  # (N, K)
    head = np.asarray(head_size, np.float64)[:, None]  # (N, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.linalg.norm(pred - gt, axis=-1) / head  # (N, K)
    correct = (err <= threshold) & vis
    count = vis.sum(0).astype(np.float64)  # (K,)
    with np.errstate(divide="ignore", invalid="ignore"):
        pck = 100.0 * correct.sum(0) / count
    return pck, count


def pckh_table(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_size: np.ndarray,
    threshold: float = 0.5,
    low_threshold: float = 0.1,
) -> dict[str, float]:
    """The MPII table: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean (@``threshold``) and Mean@0.1.

    Shape:
        pred, gt: (N, 16, 2) in the same pixel frame; visible: (N, 16); head_size: (N,) (0.6 × head-box diagonal).
    """
    if np.shape(pred)[1:] != (NUM_JOINTS, 2) or np.shape(gt) != np.shape(pred):
        raise ValueError(
            f"PCKh needs (N, 16, 2) predictions and GT in MPII joint order, got {np.shape(pred)} and {np.shape(gt)}"
        )
    table: dict[str, float] = {}
    pck, count = pckh_per_joint(pred, gt, visible, head_size, threshold)
    for name, joints in COLUMNS.items():
        table[name] = float(np.mean(pck[list(joints)]))
    keep = np.ones(NUM_JOINTS, bool)
    keep[list(MASKED)] = False
    for name, thr in (("Mean", threshold), (f"Mean@{low_threshold:g}", low_threshold)):
        p, c = pckh_per_joint(pred, gt, visible, head_size, thr)
        ok = keep & (c > 0)
        table[name] = float(np.sum(p[ok] * c[ok]) / max(np.sum(c[ok]), 1.0))  # count-weighted = pooled
    return table


def read_gt_valid(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``gt_valid.mat``: GT joints (N, 16, 2) (1-based MATLAB pixels), visible (N, 16) and head sizes (N,).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a key is missing or has the wrong shape.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPII GT {path} not found; pass the gt_valid.mat (mpii_gt_val.mat) of the val split")
    mat = loadmat(str(path))
    for key in ("jnt_missing", "pos_gt_src", "headboxes_src"):
        if key not in mat:
            raise ValueError(
                f"{path}: key {key!r} missing; an MPII gt_valid.mat has jnt_missing, pos_gt_src and headboxes_src"
            )
    missing, pos, boxes = mat["jnt_missing"], mat["pos_gt_src"], mat["headboxes_src"]
    if pos.ndim != 3 or pos.shape[:2] != (NUM_JOINTS, 2) or missing.shape != (NUM_JOINTS, pos.shape[2]):
        raise ValueError(f"{path}: pos_gt_src {pos.shape} / jnt_missing {missing.shape} are not (16, 2, N) / (16, N)")
    if boxes.shape != (2, 2, pos.shape[2]):
        raise ValueError(f"{path}: headboxes_src has shape {boxes.shape}, expected (2, 2, {pos.shape[2]})")
    gt = np.transpose(pos, (2, 0, 1)).astype(np.float64)  # (N, 16, 2)
    visible = (1 - np.asarray(missing)).T.astype(np.float64)  # (N, 16)
    head = SC_BIAS * np.linalg.norm(boxes[1] - boxes[0], axis=0)  # (N,)
    return gt, visible, head


def _read_predictions(path: Path, n: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"MPII predictions {path} not found")
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid json ({e})") from e
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a json list of per-person joints, got {type(items).__name__}")
    items = [it["joints"] if isinstance(it, dict) and "joints" in it else it for it in items]
    arr = np.asarray(items, dtype=np.float64) if items else np.zeros((0, NUM_JOINTS, 2))
    if arr.ndim != 3 or arr.shape[1] != NUM_JOINTS or arr.shape[2] not in (2, 3):
        raise ValueError(f"{path}: predictions must be N × 16 × (2 or 3) numbers, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(
            f"{path}: {len(arr)} predictions for {n} GT persons; give one per gt_valid.mat entry, in order"
        )
    return arr[..., :2]


def evaluate_files(gt: Path, pred: Path, **options: object) -> dict[str, float]:
    """``kd-suite evaluate --format mpii``: PCKh table of a prediction json against ``gt_valid.mat``."""
    if options:
        raise ValueError(f"mpii evaluation takes no options, got {sorted(options)}")
    gt_joints, visible, head = read_gt_valid(gt)
    preds = _read_predictions(Path(pred), len(gt_joints)) + 1.0  # 0-based → MATLAB 1-based, as HRNet does
    return pckh_table(preds, gt_joints, visible, head)
