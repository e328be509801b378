"""Detection metrics: PASCAL VOC AP (11-point VOC2007 and all-point) and the COCO mAP@[.5:.95] family.

VOC protocol (py-faster-rcnn / YOLOX ``voc_eval.py``, reimplemented): per class, detections sorted by score are
matched greedily to the unmatched GT of highest IoU; a match needs IoU **> 0.5** (strict) with the legacy ``+1`` pixel
convention for widths and heights; a detection whose best GT is *difficult* is neither TP nor FP and difficult GT
are not counted in the recall denominator. VOC2007 AP averages the interpolated precision at recall 0, 0.1, …, 1
(11 points); the all-point AP is the area under the monotone precision envelope (VOC2010+). mAP averages the classes
that have GT (mmdet convention; a class without GT has AP NaN and is left out).

COCO protocol: hotcoco's Rust ``COCOeval`` when the ``fast-eval`` extra is installed, else faster-coco-eval's C++
``COCOeval_faster`` (:mod:`.coco_backend`; both agree with pycocotools to 1e-9, tested), stats AP, AP50, AP75,
APs/m/l, AR1/10/100, ARs/m/l and per-class AP. Scores are fractions in [0, 1].

:func:`evaluate_voc_files` and :func:`evaluate_coco_files` serve ``kd-suite evaluate --format voc|coco-bbox``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from ..data.schema import VOC_CLASSES
from .coco_backend import bbox_eval

__all__ = [
    "COCO_STATS",
    "DetectionEvaluator",
    "ImageRecord",
    "ap_table",
    "coco_evaluate",
    "evaluate_coco_files",
    "evaluate_voc_files",
    "records_to_coco",
    "voc_ap",
    "voc_class_pr",
    "voc_evaluate",
]

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class ImageRecord:
    """Detections and GT of one image in original-image pixels (xyxy); empty arrays when there are none."""

    key: str | int
    size: tuple[int, int]  # (h, w)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    gt_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gt_difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    index: int = -1  # dataset order (sample id); orders records gathered from several processes, -1 if unknown


# --------------------------------------------------------------------------------------------------------------- VOC
def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a PR curve: 11-point interpolation (VOC2007) or the area under the precision envelope (all points)."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the legacy float grid, 0.30000000000000004 included
            above = recall >= t
            ap += (np.max(precision[above]) if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone envelope
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _iou_legacy(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (g, 4) boxes, widths and heights counted as ``x2 − x1 + 1`` (VOC devkit)."""
    iw = np.maximum(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    union = area + (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0) - inter
    return inter / union


def voc_class_pr(
    dets: Sequence[tuple[np.ndarray, np.ndarray]],
    gts: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thr: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Recall and precision of one class after each detection (score order), and the number of non-difficult GT.

    Args:
        dets: per image (boxes (n, 4), scores (n,)).
        gts: per image (boxes (g, 4), difficult (g,) bool), aligned with ``dets``.
        iou_thr: a detection matches when IoU > ``iou_thr``.
    """
    npos = int(sum((~d.astype(bool)).sum() for _, d in gts))
    image = np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(dets)] + [np.zeros(0, int)]).astype(int)
    boxes = np.concatenate([b.reshape(-1, 4) for b, _ in dets] + [np.zeros((0, 4))])
    scores = np.concatenate([s for _, s in dets] + [np.zeros(0)])
    order = np.argsort(-scores, kind="stable")
    taken = [np.zeros(len(g), bool) for g, _ in gts]
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, j in enumerate(order):
        gt_boxes, difficult = gts[image[j]]
        if len(gt_boxes) == 0:
            fp[d] = 1
            continue
        overlaps = _iou_legacy(boxes[j], gt_boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] > iou_thr:
            if difficult[best]:
                continue  # neither TP nor FP
            if taken[image[j]][best]:
                fp[d] = 1
            else:
                tp[d], taken[image[j]][best] = 1, True
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / max(npos, 1)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision, npos


def voc_evaluate(
    records: Sequence[ImageRecord], class_names: Sequence[str], iou_thr: float = 0.5, curves: bool = False
) -> dict[str, Any]:
    """VOC mAP over images: ``mAP50`` (11-point, VOC2007) and ``mAP50_allpoint``, plus per-class results.

    Returns:
        ``{"mAP50", "mAP50_allpoint", "per_class": {name: {"AP50", "AP50_allpoint", "num_gt"[, "recall",
        "precision"]}}}``; per-class AP is NaN for a class without GT.
    """
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        dets = [(r.boxes[r.labels == k], r.scores[r.labels == k]) for r in records]
        gts = [(r.gt_boxes[r.gt_labels == k], r.gt_difficult[r.gt_labels == k]) for r in records]
        recall, precision, npos = voc_class_pr(dets, gts, iou_thr)
        entry: dict[str, Any] = {"num_gt": npos, "AP50": math.nan, "AP50_allpoint": math.nan}
        if npos > 0:
            entry["AP50"], entry["AP50_allpoint"] = voc_ap(recall, precision, True), voc_ap(recall, precision, False)
        if curves:
            entry["recall"], entry["precision"] = recall, precision
        per_class[name] = entry
    scored = [e for e in per_class.values() if e["num_gt"] > 0]
    return {
        "mAP50": float(np.mean([e["AP50"] for e in scored])) if scored else 0.0,
        "mAP50_allpoint": float(np.mean([e["AP50_allpoint"] for e in scored])) if scored else 0.0,
        "per_class": per_class,
    }


# -------------------------------------------------------------------------------------------------------------- COCO
def coco_evaluate(
    gt: dict[str, Any] | str | Path, results: list[dict[str, Any]], image_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """COCO bbox evaluation on hotcoco when installed, else faster-coco-eval (:mod:`.coco_backend`).

    Args:
        gt: COCO GT (dict or json path).
        results: COCO results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
        image_ids: evaluate only these GT images (e.g. the part of the val set that was run); default all.

    Returns:
        the 12 :data:`COCO_STATS` and ``per_class`` ``{category name: AP}`` (NaN for a category without GT).
    """
    res = bbox_eval(gt, results, image_ids)
    if res.precision is None:  # nothing detected: every score is 0
        return {**dict.fromkeys(COCO_STATS, 0.0), "per_class": dict.fromkeys(res.names.values(), 0.0)}
    out: dict[str, Any] = {k: float(v) for k, v in zip(COCO_STATS, res.stats)}
    per_class = {}
    for k, cat in enumerate(res.cat_ids):
        p = res.precision[:, :, k, 0, -1]  # (T, R) at area "all", the largest maxDets
        per_class[res.names.get(cat, str(cat))] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
    out["per_class"] = per_class
    return out


def records_to_coco(records: Sequence[ImageRecord], class_names: Sequence[str]) -> tuple[dict, list[dict]]:
    """In-memory COCO GT (category id = class index + 1, area = box area, no crowd) and results of records."""
    images, annotations, results = [], [], []
    for i, r in enumerate(records):
        images.append({"id": i + 1, "height": int(r.size[0]), "width": int(r.size[1])})
        for box, label in zip(r.gt_boxes, r.gt_labels):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            ann = {"bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0}
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1, **ann})
        results += _coco_results(i + 1, r, lambda k: k + 1)
    categories = [{"id": k + 1, "name": n, "supercategory": "none"} for k, n in enumerate(class_names)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}, results


def _coco_results(image_id: int | str, r: ImageRecord, category: Any) -> list[dict]:
    xywh = np.concatenate([r.boxes[:, :2], r.boxes[:, 2:] - r.boxes[:, :2]], axis=1) if len(r.boxes) else r.boxes
    return [
        {"image_id": image_id, "category_id": category(int(k)), "bbox": [float(v) for v in b], "score": float(s)}
        for b, s, k in zip(xywh, r.scores, r.labels)
    ]


# ------------------------------------------------------------------------------------------------------ accumulator
class DetectionEvaluator:
    """Collects :class:`ImageRecord` s during validation and scores them at epoch end (VOC or COCO protocol).

    Under DDP the records of every rank are gathered (duplicates from sampler padding collapse by key).

    Args:
        metric: ``"voc"`` (mAP50 11-point + all-point) or ``"coco"`` (mAP@[.5:.95] family).
        class_names: class names in index order.
        coco_gt: COCO GT json to score against, restricted to the images seen (its sorted category ids map class
            indices; record keys must be its image ids). Without it the GT comes from the records themselves.
    """

    def __init__(self, metric: str, class_names: Sequence[str], coco_gt: str | Path | None = None) -> None:
        if metric not in ("voc", "coco"):
            raise ValueError(f"metric must be 'voc' or 'coco', got {metric!r}")
        self.metric, self.class_names, self.coco_gt = metric, list(class_names), coco_gt
        self.records: dict[Any, ImageRecord] = {}

    def reset(self) -> None:
        self.records = {}

    def add(self, record: ImageRecord) -> None:
        self.records[record.key] = record

    def gathered(self) -> list[ImageRecord]:
        """Every rank's records, one per key, in dataset order when known (equal-score ties then rank the same)."""
        records = list(self.records.values())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, records)
            records = list({r.key: r for part in parts for r in part}.values())
        if all(r.index >= 0 for r in records):
            records.sort(key=lambda r: r.index)
        return records

    def compute(self, curves: bool = False) -> dict[str, Any]:
        records = self.gathered()
        if self.metric == "voc":
            return voc_evaluate(records, self.class_names, curves=curves)
        if self.coco_gt is None:
            return coco_evaluate(*records_to_coco(records, self.class_names))
        gt = json.loads(Path(self.coco_gt).read_text())
        cat_ids = sorted(c["id"] for c in gt["categories"])  # class index = rank of the category id (YOLOX)
        results = [d for r in records for d in _coco_results(r.key, r, lambda k: cat_ids[k])]
        return coco_evaluate(gt, results, image_ids=[int(r.key) for r in records])


def ap_table(per_class: dict[str, Any], key: str = "AP50") -> str:
    """Markdown table of per-class AP (percent) with the GT count when known."""
    lines = ["| class | AP | #GT |", "|---|---:|---:|"]
    for name, v in per_class.items():
        ap = v[key] if isinstance(v, dict) else v
        n = v.get("num_gt", "") if isinstance(v, dict) else ""
        lines.append(f"| {name} | {'n/a' if math.isnan(ap) else f'{100 * ap:.2f}'} | {n} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------ files
def evaluate_voc_files(
    gt: Path, pred: Path, split: str = "test", class_names: Sequence[str] | str | None = None
) -> dict[str, Any]:
    """Score a COCO-style results json against a VOC split (``kd-suite evaluate --format voc``).

    Args:
        gt: ``VOCdevkit/VOC2007`` (a folder holding ``Annotations``) or ``VOCdevkit`` (uses its ``VOC2007``).
        pred: json list of ``{"image_id": VOC id (str, or int for numeric ids), "category_id": class index (0-based)
            or name, "bbox": [x, y, w, h], "score"}`` in original-image pixels.
        split: id list ``ImageSets/Main/<split>.txt``.
        class_names: class list (or comma-separated string); default the 20 VOC classes.
    """
    from ..data.voc import read_voc_annotation

    names = list(VOC_CLASSES) if class_names is None else _split_names(class_names)
    root = Path(gt)
    root = root if (root / "Annotations").is_dir() else root / "VOC2007"
    ids_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(f"{ids_file} not found; --gt must be VOCdevkit/VOC2007 (or VOCdevkit) with that split")
    ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
    records: dict[str, ImageRecord] = {}
    for i in ids:
        ann = read_voc_annotation(root / "Annotations" / f"{i}.xml", names)
        h, w = ann["size"][:2]
        records[i] = ImageRecord(
            i, (int(h), int(w)), gt_boxes=np.asarray(ann["boxes"], float).reshape(-1, 4),
            gt_labels=np.asarray(ann["labels"], np.int64), gt_difficult=np.asarray(ann["difficult"], bool),
        )  # fmt: skip
    numeric = {int(i): i for i in ids if i.isdigit()}
    dets: dict[str, list[tuple[list[float], float, int]]] = {i: [] for i in ids}
    for n, d in enumerate(_read_results(pred)):
        key = d["image_id"] if isinstance(d["image_id"], str) else numeric.get(int(d["image_id"]))
        if key not in dets:
            raise KeyError(f"{pred}: entry {n} has image_id {d['image_id']!r}, which is not in {ids_file}")
        dets[key].append((d["bbox"], float(d["score"]), _class_index(d["category_id"], names, pred, n)))
    for key, rows in dets.items():
        if rows:
            xywh = np.asarray([b for b, _, _ in rows], float)
            records[key].boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            records[key].scores = np.asarray([s for _, s, _ in rows])
            records[key].labels = np.asarray([k for _, _, k in rows], np.int64)
    result = voc_evaluate(list(records.values()), names)
    return {"num_images": len(ids), **result}


def evaluate_coco_files(gt: Path, pred: Path) -> dict[str, Any]:
    """Score a COCO results json against a COCO GT json (``kd-suite evaluate --format coco-bbox``)."""
    if not Path(gt).is_file():
        raise FileNotFoundError(f"COCO GT {gt} not found")
    return coco_evaluate(Path(gt), _read_results(pred))


def _read_results(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid json ({e})") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a json list of detections (COCO results format)")
    for n, d in enumerate(data):
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in d]
        if missing or len(d.get("bbox", ())) != 4:
            raise ValueError(f"{path}: entry {n} lacks {missing or ['a 4-number bbox']}; expected COCO results format")
    return data


def _class_index(category: int | str, names: list[str], path: Path, n: int) -> int:
    if isinstance(category, str):
        if category not in names:
            raise KeyError(f"{path}: entry {n} has category {category!r}, not one of {names}")
        return names.index(category)
    if not 0 <= int(category) < len(names):
        raise KeyError(f"{path}: entry {n} has category_id {category}; VOC results use 0-based class indices")
    return int(category)


def _split_names(names: Sequence[str] | str) -> list[str]:
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
