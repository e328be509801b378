"""DetectionScores: the detection task's epoch metric (VOC or COCO protocol) in original-image pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor

from ...data.batch import DetectionBatch, require_targets
from ...evaluation import TaskMetric, sample_ids
from ...metrics.detection import DetectionEvaluator, ImageRecord
from .decode import unletterbox


class DetectionScores(TaskMetric):
    """Per-image records of detections and GT, scored at epoch end by :class:`DetectionEvaluator`.

    ``update(detections, batch)`` takes the decoded detections of each image in *letterboxed input* pixels (as
    :func:`~kd_suite.tasks.detection.decode.postprocess` returns them) and maps them and the batch's GT boxes back to
    original pixels through ``batch.scale``, ``batch.pad`` and ``batch.orig_size`` (validation applies only the
    letterbox, so this is exact), with the ``batch.difficult`` flags (VOC; ``None`` = none difficult). Records are
    keyed by ``batch.image_ids`` (else ``batch.sample_id``); under DDP the evaluator gathers every rank's records and
    keeps one per key, so padded duplicates count once.

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
        """Record each image's detections (letterboxed input pixels) and GT, both in original pixels.

        Raises:
            MissingTargetError: the batch lacks ``orig_size``, ``scale`` or ``pad``.
            ValueError: the batch's sizes disagree (detections, ids or ``difficult`` flags vs. images and boxes).
        """
        require_targets(batch, ("orig_size", "scale", "pad"), "DetectionScores (boxes back to original pixels)")
        n = batch.labels.shape[0]
        if len(detections) != n or len(batch.image_ids) not in (0, n):
            raise ValueError(
                f"DetectionScores: {len(detections)} detection lists and {len(batch.image_ids)} image_ids for a batch "
                f"of {n} images"
            )
        difficult = batch.difficult
        if difficult is not None and difficult.shape != batch.labels.shape:
            raise ValueError(
                f"DetectionBatch.difficult is {tuple(difficult.shape)} but labels are {tuple(batch.labels.shape)}: "
                "the flags must be aligned with boxes (collate_detection pads them with False)"
            )
        ids, image_ids = sample_ids(batch).tolist(), batch.image_ids or [None] * n
        sizes = batch.orig_size.tolist()  # (B, 2) (h, w)
        for i, det in enumerate(detections):
            valid = batch.labels[i] >= 0  # (M,)
            letterbox = (batch.scale[i], batch.pad[i], batch.orig_size[i])
            gt_boxes = unletterbox(batch.boxes[i][valid].float(), *letterbox).cpu().numpy()  # (g, 4)
            gt_labels = batch.labels[i][valid].cpu().numpy()  # (g,)
            flags = np.zeros(len(gt_labels), bool) if difficult is None else difficult[i][valid].cpu().numpy()
            key = image_ids[i]
            if key is None:
                key = ids[i] if ids[i] >= 0 else f"{len(self.evaluator.records)}"
            self.evaluator.add(
                ImageRecord(
                    key,
                    tuple(sizes[i]),
                    unletterbox(det["boxes"], *letterbox).cpu().numpy(),
                    det["scores"].cpu().numpy(),
                    det["labels"].cpu().numpy(),
                    gt_boxes=gt_boxes,
                    gt_labels=gt_labels,
                    gt_difficult=flags,
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
