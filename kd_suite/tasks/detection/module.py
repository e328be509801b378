"""DetectionDistiller: YOLOX training (SimOTA task loss + any KD terms) and VOC/COCO-protocol evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from ...consistency import check_class_count
from ...data.batch import DetectionBatch, require_targets
from ...data.common import denormalize
from ...data.facts import DatasetFacts
from ...distiller import Distiller
from ...outputs import DetectionOutput, check_tap
from ...viz import draw_boxes
from .decode import postprocess, unletterbox
from .losses import yolox_loss
from .scores import DetectionScores

RENDER_SCORE = 0.3  # detections drawn in pictures (demo report, notebooks); evaluation keeps all of them


class DetectionDistiller(Distiller):
    """YOLOX-style detection with optional distillation (FSD, FGD, CWD … by tap).

    Task loss (:func:`~kd_suite.tasks.detection.losses.yolox_loss`): ``reg_weight``·IoU + obj + cls (+ L1 during the
    last ``l1_last_epochs`` epochs, YOLOX's no-augmentation phase), SimOTA targets from the post-augmentation boxes.

    Validation/test (the shared protocol of :mod:`kd_suite.evaluation`, metric
    :class:`~kd_suite.tasks.detection.scores.DetectionScores`): detections are decoded (score ≥ ``score_thresh``,
    class-wise NMS at ``nms_thresh``, at most ``max_det``), mapped back to original-image pixels (letterbox undone
    with the batch's ``scale``, ``pad`` and ``orig_size``) and scored at epoch end: ``metric="voc"`` logs
    ``val/mAP50`` (VOC2007 11-point) and ``val/mAP50_allpoint``; ``metric="coco"`` logs ``val/mAP`` (@[.5:.95]),
    ``val/mAP50``, ``val/mAP75``, against the DataModule's ``val_ann_file`` when it has one. Per-class AP goes to
    ``val/AP/<class>``; the teacher's score is logged once as ``val/teacher_<key>``.

    Args:
        student: the detector being trained (:class:`~kd_suite.tasks.detection.YOLOX`).
        metric: ``"voc"`` or ``"coco"``.
        class_names: class names in index order; ``None`` takes the DataModule's (class indices without one)
        reg_weight: weight of the IoU loss (YOLOX: 5).
        center_radius: SimOTA centre radius in strides (mmdet 2.5; official YOLOX ≥ 0.3: 1.5 centre-only).
        l1_last_epochs: switch the L1 term on for the last N epochs (YOLOX: 15 of 300).
        score_thresh: evaluation score threshold (YOLOX: 0.01).
        nms_thresh: class-wise NMS IoU threshold (YOLOX: 0.65).
        max_det: detections kept per image.
        **kwargs: :class:`~kd_suite.Distiller` arguments (``teacher``, ``teacher_ckpt``, ``losses``, ``optimizer``,
            ``scheduler``, ``scheduler_interval``, ``teacher_fast_path``, ``log_images``).
    """

    def __init__(
        self,
        student: nn.Module,
        metric: Literal["voc", "coco"] = "voc",
        class_names: tuple[str, ...] | None = None,
        reg_weight: float = 5.0,
        center_radius: float = 2.5,
        l1_last_epochs: int = 0,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.65,
        max_det: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(student, **kwargs)
        if metric not in ("voc", "coco"):
            raise ValueError(f"metric must be 'voc' or 'coco', got {metric!r}")
        self.num_classes = check_tap(self.student.tap_info, "cls.0", "DetectionDistiller student").channels
        for i, t in enumerate(self.teachers):
            channels = check_tap(t.tap_info, "cls.0", f"DetectionDistiller teacher {i}").channels
            if channels != self.num_classes:
                raise ValueError(f"teacher {i} predicts {channels} classes but the student {self.num_classes}")
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"class_names lists {len(class_names)} names for a {self.num_classes}-class student")
        self.metric, self.class_names = metric, None if class_names is None else tuple(class_names)
        self.reg_weight, self.center_radius, self.l1_last_epochs = reg_weight, center_radius, l1_last_epochs
        self.score_thresh, self.nms_thresh, self.max_det = score_thresh, nms_thresh, max_det
        self.coco_gt: Path | None = None  # the DataModule's COCO GT json, found in setup()

    # ------------------------------------------------------------------ training
    @property
    def use_l1(self) -> bool:
        """True during the last ``l1_last_epochs`` epochs of the fit."""
        if self.l1_last_epochs <= 0 or self._trainer is None or not self.trainer.max_epochs:
            return False
        return self.current_epoch >= self.trainer.max_epochs - self.l1_last_epochs

    def task_loss(self, output: DetectionOutput, batch: DetectionBatch) -> dict[str, Tensor]:
        """``{"iou", "obj", "cls"}`` (+ ``"l1"``) YOLOX loss terms, already weighted."""
        return yolox_loss(
            output, batch.boxes, batch.labels, self.student.strides, self.reg_weight, self.use_l1, self.center_radius
        )

    # ------------------------------------------------------------------ inference
    def detect(self, image: Tensor, model: nn.Module | None = None) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes" (n, 4) xyxy input pixels, "scores", "labels"}`` of ``model`` (default the student)."""
        model = self.student if model is None else model
        return postprocess(model(image), model.strides, self.score_thresh, self.nms_thresh, self.max_det)

    def predict_step(self, batch: DetectionBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{"image_id" (``None`` without ``batch.image_ids``), "boxes" (n, 4) xyxy original pixels,
        "scores", "labels"}`` as NumPy arrays.

        Raises:
            MissingTargetError: the batch lacks ``orig_size``, ``scale`` or ``pad`` (letterboxed batches have them).
        """
        require_targets(batch, ("orig_size", "scale", "pad"), "DetectionDistiller.predict_step")
        ids = batch.image_ids or [None] * batch.image.shape[0]
        out = []
        for i, det in enumerate(self.detect(batch.image)):
            boxes = unletterbox(det["boxes"], batch.scale[i], batch.pad[i], batch.orig_size[i]).cpu().numpy()  # (n, 4)
            out.append({"image_id": ids[i], "boxes": boxes, **_np(det, ("scores", "labels"))})
        return out

    # ------------------------------------------------------------------ evaluation
    def link_data(self, facts: DatasetFacts) -> None:
        """Unset class names (and, for COCO, the GT json) come from the data; its class count must be the student's."""
        super().link_data(facts)
        check_class_count(
            facts, self.num_classes, "the student (its num_classes)", "the student's and teacher's num_classes"
        )
        if self.class_names is None:
            self.class_names = facts.class_names
        self.coco_gt = facts.val_ann_file if self.metric == "coco" else None

    def label_names(self) -> tuple[str, ...]:
        """Class names for logs: ``class_names`` (or the linked data's), else class indices."""
        return self.class_names if self.class_names is not None else tuple(map(str, range(self.num_classes)))

    def decode(self, model: nn.Module, batch: DetectionBatch, output: DetectionOutput) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes" (n, 4) xyxy input pixels, "scores", "labels"}`` (letterbox undone by the metric)."""
        return postprocess(output, model.strides, self.score_thresh, self.nms_thresh, self.max_det)

    def build_metric(self) -> DetectionScores:
        return DetectionScores(self.metric, self.label_names(), self.coco_gt)

    # ------------------------------------------------------------------ pictures
    def render(self, batch: DetectionBatch, output: DetectionOutput | None, n: int = 4) -> list[np.ndarray]:
        """Letterboxed images with GT boxes (``output=None``) or the detections of ``output`` scoring ≥ RENDER_SCORE.

        Evaluation keeps every detection above ``score_thresh`` (low by design, for AP); a picture shows only the
        confident ones so that it stays readable.
        """
        names = self.label_names()
        if output is not None:
            dets = postprocess(output, self.student.strides, self.score_thresh, self.nms_thresh, self.max_det)
        pictures = []
        for i in range(min(n, batch.image.shape[0])):
            image = denormalize(batch.image[i])
            if output is None:
                valid = batch.labels[i] >= 0
                pictures.append(
                    draw_boxes(image, batch.boxes[i][valid].cpu().numpy(), batch.labels[i][valid].tolist(), names)
                )
            else:
                d = dets[i]
                keep = d["scores"] >= RENDER_SCORE
                boxes, labels, scores = d["boxes"][keep], d["labels"][keep], d["scores"][keep]
                pictures.append(draw_boxes(image, boxes.cpu().numpy(), labels.tolist(), names, scores.tolist()))
        return pictures


def _np(det: dict[str, Tensor], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: det[k].cpu().numpy() for k in keys}
