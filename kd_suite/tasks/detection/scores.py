"""DetectionScores: the detection task's epoch metric (VOC or COCO protocol) in original-image pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor

from ...data.batch import DetectionBatch
from ...evaluation import TaskMetric, sample_ids
from ...metrics.detection import DetectionEvaluator, ImageRecord
from .decode import unletterbox


class DetectionScores(TaskMetric):
    """Per-image records of detections and GT, scored at epoch end by :class:`DetectionEvaluator`.

    ``update(detections, batch)`` takes the decoded detections of each image in *letterboxed input* pixels (as
    :func:`~kd_suite.tasks.detection.decode.postprocess` returns them) and maps them and the batch's GT boxes back to
    original pixels (validation applies only the letterbox, so this is exact), with ``meta["difficult"]`` flags when
    the DataModule gives them (VOC). Records are keyed by ``meta["image_id"]`` (else ``batch.sample_id``); under DDP
    the evaluator gathers every rank's records and keeps one per key, so padded duplicates count once.

    Args:
        metric: ``"voc"`` (logs ``mAP50`` 11-point and ``mAP50_allpoint``) or ``"coco"`` (``mAP`` @[.5:.95],
            ``mAP50``, ``mAP75``); per-class AP50 is logged as ``AP/<class>``.
        class_names: class names in index order.
        coco_gt: COCO GT json to score against (COCO metric only).
    """

    def __init__(
        self, metric: Literal["voc", "coco"], class_names: tuple[str, ...], coco_gt: str | Path | None = None
    ) -> None:
        super().__init__(sync_on_compute=False)  # records are python objects: the evaluator gathers them itself
        self.evaluator = DetectionEvaluator(metric, class_names, coco_gt)
        self.metric = metric
        self.headline = "mAP50" if metric == "voc" else "mAP"

    def update(self, detections: list[dict[str, Tensor]], batch: DetectionBatch) -> None:
        if len(batch.meta) != len(detections):
            raise KeyError(
                "DetectionDistiller needs batch.meta with image_id, orig_size, scale and pad for every image"
            )
        ids = sample_ids(batch).tolist()
        for i, (det, meta) in enumerate(zip(detections, batch.meta)):
            valid = batch.labels[i] >= 0
            gt_boxes = unletterbox(batch.boxes[i][valid].float(), meta).cpu().numpy()
            gt_labels = batch.labels[i][valid].cpu().numpy()
            difficult = np.asarray(meta.get("difficult", np.zeros(len(gt_labels))), bool).reshape(-1)
            if len(difficult) != len(gt_labels):
                raise ValueError(
                    f"image {meta.get('image_id')}: meta['difficult'] has {len(difficult)} flags for "
                    f"{len(gt_labels)} boxes; validation must keep every object (VOCDataModule keeps difficult ones)"
                )
            key = meta.get("image_id", ids[i] if ids[i] >= 0 else f"{len(self.evaluator.records)}")
            self.evaluator.add(
                ImageRecord(
                    key,
                    tuple(int(v) for v in meta["orig_size"]),
                    unletterbox(det["boxes"], meta).cpu().numpy(),
                    det["scores"].cpu().numpy(),
                    det["labels"].cpu().numpy(),
                    gt_boxes=gt_boxes,
                    gt_labels=gt_labels,
                    gt_difficult=difficult,
                    index=ids[i],
                )
            )

    def compute(self) -> dict[str, Any]:
        return self.evaluator.compute()

    def reset(self) -> None:
        super().reset()
        self.evaluator.reset()

    def scalars(self, results: dict[str, Any]) -> dict[str, float]:
        if self.metric == "voc":
            main = {"mAP50": results["mAP50"], "mAP50_allpoint": results["mAP50_allpoint"]}
        else:
            main = {"mAP": results["AP"], "mAP50": results["AP50"], "mAP75": results["AP75"]}
        out = {k: float(v) for k, v in main.items()}
        for name, value in results["per_class"].items():
            ap = value["AP50"] if isinstance(value, dict) else value
            if np.isfinite(ap):
                out[f"AP/{name}"] = float(ap)
        return out
